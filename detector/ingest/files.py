"""Reading a file before loading it: its content hash, its first bytes, its text encoding, and the
column names of its header (to tell which source a file is)."""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import re
import zlib
from pathlib import Path

from detector.errors import InputError


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes; a .gz file is also inflated to its end on the way.

    The CSV reader reads a gzip stream cut short (an interrupted download) as far as it goes
    and never sees the missing end, which would load part of a file as if it were all of it.
    """
    h = hashlib.sha256()
    inflate = zlib.decompressobj(wbits=31) if path.name.lower().endswith(".gz") else None
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            while inflate is not None and chunk:
                try:
                    inflate.decompress(chunk, 1 << 16)
                    chunk = inflate.unconsumed_tail
                    if inflate.eof and inflate.unused_data:  # the next member of a multi-member file
                        chunk, inflate = inflate.unused_data, zlib.decompressobj(wbits=31)
                except zlib.error as exc:
                    raise InputError(path, f"corrupt gzip data ({exc})") from None
    if inflate is not None and not inflate.eof:
        raise InputError(path, "gzip file ends early (truncated download?); fetch it again")
    return h.hexdigest()


def head_bytes(path: Path, n: int = 1 << 16) -> bytes:
    """The first `n` bytes of the file's text (of a .gz file: inflated)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            return fh.read(n)
    except (OSError, EOFError) as exc:
        raise InputError(path, f"cannot read file ({exc})") from None


def sniff_encoding(path: Path) -> str:
    """DuckDB reads utf-8, utf-16 and latin-1; choose from the BOM or a trial decode."""
    head = head_bytes(path)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
            return "latin-1"
    return "utf-8"


def header_names(path: Path) -> tuple[list[str], bool]:
    """The first record's column names, and whether the file is a JSON array (Census API); no names
    for a file that cannot be read."""
    try:
        head = head_bytes(path)
    except InputError:
        return [], False
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = head.decode("utf-16", errors="replace")
    else:
        text = head.decode("utf-8-sig", errors="replace")
    text = text.lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        first = text.split("]", 1)[0]
        return re.findall(r'"([^"]*)"', first), True
    line = text.splitlines()[0] if text else ""
    delimiter = max([",", ";", "\t", "|"], key=line.count)
    names = next(csv.reader(io.StringIO(line), delimiter=delimiter), [])
    return [n.strip() for n in names], False


def first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__
