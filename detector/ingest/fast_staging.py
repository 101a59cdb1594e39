"""Staging a large, structurally clean CSV in batches with the Arrow reader, proven line by line to
read the same as the DuckDB reader would; any doubt, and the file is staged whole by `stage_csv`."""

from __future__ import annotations

import codecs
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import duckdb

from detector.errors import InputError
from detector.ingest.staging import csv_header, stage_csv


def stage_csv_batches(con: duckdb.DuckDBPyConnection, path: Path, choose_columns, each_batch,
                      table: str = "staged_raw") -> tuple[list[str], bool]:
    """Hand a structurally clean CSV to `each_batch(header, first, execute)` a batch at a time; else
    stage it whole.

    A plain utf-8 file is read by the Arrow CSV reader in batches of whole lines (about
    `_BATCH_BYTES` of text each), each proven clean before it is used (see `_clean_batches`);
    `execute(sql)` runs SQL that reads the batch as `table` (the chosen text columns + row_no
    numbering the file's rows). A file without rows still gets one empty batch. Returns (header, True),
    with an empty `staged_broken`. Memory is two batches (this one and the next) whatever the
    file's size, and no staged copy of the file's text is made.

    Any other file, or any doubt in any batch, is staged whole by `stage_csv` (the DuckDB reader
    keeps broken lines with their line numbers): (header, False), and the caller then reads
    `table` whole, replacing whatever it made of the earlier batches.
    """
    header, encoding = csv_header(con, path, allow_duplicates=False)
    chosen = choose_columns(header)
    if FAST_STAGING and encoding == "utf-8":
        delimiter = _plain_delimiter(con, path)
        if delimiter is not None:
            con.execute(f"DROP TABLE IF EXISTS {table}")
            batches = _clean_batches(path, header, chosen, delimiter)
            try:
                # The next batch is read and checked on a thread while DuckDB parses this one.
                with ThreadPoolExecutor(1) as reader:
                    ahead, first = reader.submit(next, batches, None), True
                    while (batch := ahead.result()) is not None:
                        ahead = reader.submit(next, batches, None)
                        # A relation, not a registered view: a transaction keeps what it dropped
                        # (a view and its Arrow table) until it ends, which would keep every batch.
                        rel = con.from_arrow(batch)
                        each_batch(header, first, partial(rel.query, table))
                        first = False
                        del rel, batch
                con.execute("CREATE OR REPLACE TEMP TABLE staged_broken (line BIGINT, raw VARCHAR, reason VARCHAR)")
                return header, True
            except _NotClean:
                pass
            finally:
                batches.close()
    return stage_csv(con, path, choose_columns, table), False


def restage_rows(con: duckdb.DuckDBPyConnection, path: Path, choose_columns, rows: str,
                 table: str = "staged_raw") -> None:
    """Temp table `table` with only the staged rows whose row_no is in the relation `rows`, from a
    file `stage_csv_batches` took in batches (the few rows whose raw text a reject quotes)."""
    con.execute(f"DROP TABLE IF EXISTS {table}")

    def keep(header, first, execute):
        into = f"CREATE TEMP TABLE {table} AS" if first else f"INSERT INTO {table}"
        execute(f"{into} SELECT b.* FROM staged_batch b SEMI JOIN {rows} r USING (row_no)")

    header, batched = stage_csv_batches(con, path, choose_columns, keep, table="staged_batch")
    if not batched:  # the file changed under the load: it was proven clean a moment ago
        raise InputError(path, "file changed while it was being loaded; load it again")


# On: plain utf-8 files are read in batches by the Arrow reader; False sends every file through the
# DuckDB reader (both paths must give the same tables).
FAST_STAGING = True
_BATCH_BYTES = 64 << 20  # text per batch of the fast path (an Arrow batch takes about twice this)
_MAX_LINE = 1 << 20  # well under the DuckDB reader's line limit (2 MB), where it would reject a line


class _NotClean(Exception):
    """A file, or a batch of it, the fast path cannot vouch for: the DuckDB reader reads it whole."""


def _plain_delimiter(con: duckdb.DuckDBPyConnection, path: Path) -> str | None:
    """The one-byte delimiter of a plain file DuckDB sniffs as delimited without quoting, comment
    or skipped rows; None for anything else (a .gz file, another dialect)."""
    if path.name.lower().endswith(".gz"):
        return None
    try:
        sniffed = con.execute(
            "SELECT Delimiter, Quote, SkipRows, Comment FROM sniff_csv(?, header = true, encoding = 'utf-8')",
            [str(path)]).fetchall()
    except duckdb.Error:
        return None
    delimiter, quote, skip_rows, comment = sniffed[0]
    if (len(delimiter.encode()) != 1 or delimiter in "\"\r\n" or quote not in ("", "(empty)")
            or skip_rows or comment not in ("", "(empty)")):
        return None
    return delimiter


def _check_lines(text: bytes, crlf: bool, delimiter: bytes, width: int) -> int:
    """The number of lines in `text` (whole lines; the last may lack its line break), or _NotClean.

    Clean lines: no quote or NUL byte, valid utf-8, none over _MAX_LINE bytes, every line ending
    in CR LF when `crlf` and no CR at all otherwise, and width - 1 delimiters per line on average
    (the Arrow reader then refuses a line of any other width but an empty one, which this count
    refuses). Without quotes a line is a record and every delimiter splits a field, so these
    counts are the whole structure, found with a few fast passes over the bytes.
    """
    import numpy as np

    if b'"' in text or b"\0" in text:
        raise _NotClean
    ends = np.flatnonzero(np.frombuffer(text, np.uint8) == 0x0A)
    last = len(text) - 1 - int(ends[-1]) if len(ends) else len(text)  # bytes after the last line break
    lines = len(ends) + (last > 0)
    longest = max(int(ends[0]) if len(ends) else 0, int(np.diff(ends).max(initial=0)) - 1, last)
    if longest > _MAX_LINE:
        raise _NotClean
    if crlf:
        if not text.count(b"\r") == text.count(b"\r\n") == len(ends):
            raise _NotClean  # a CR that does not end a line, or a line without one
    elif b"\r" in text:
        raise _NotClean
    if text.count(delimiter) != (width - 1) * lines:
        raise _NotClean
    if not text.isascii():
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            raise _NotClean from None
    return lines


def _clean_batches(path: Path, header: list[str], chosen: list[str], delimiter: str):
    """The `chosen` columns of a structurally clean CSV as Arrow tables of text (+ row_no), a batch
    of whole lines at a time; raises _NotClean at the first doubt.

    Clean means the file reads the same with the Arrow CSV reader as with the DuckDB reader,
    proven by: a header line of the header's width; lines that pass `_check_lines`; and the Arrow
    reader, which refuses a row of any other width, giving one row per line (no blank line skipped).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    width = len(header)  # (one column: a blank line has the right delimiter count, 0)
    if width < 2:
        raise _NotClean
    options = _arrow_text_options(header, chosen, delimiter)
    with open(path, "rb") as fh:
        first = fh.readline(_MAX_LINE + 1)
        crlf = first.endswith(b"\r\n")
        if len(first) > _MAX_LINE:
            raise _NotClean
        _check_lines(first.removeprefix(codecs.BOM_UTF8), crlf, delimiter.encode(), width)
        row_no, rest, done = 1, b"", False
        while not done:
            chunk = fh.read(_BATCH_BYTES)
            done = not chunk
            text = rest + chunk
            cut = len(text) if done else text.rfind(b"\n") + 1
            text, rest = text[:cut], text[cut:]
            if len(rest) > _MAX_LINE:
                raise _NotClean
            if not text and not (done and row_no == 1):
                continue
            lines = _check_lines(text, crlf, delimiter.encode(), width) if text else 0
            try:
                table = pa_csv.read_csv(pa.py_buffer(text), **options) if text else pa.table(
                    {c: pa.array([], pa.string()) for c in chosen})
            except (pa.ArrowException, OSError, ValueError):  # any complaint: not clean
                raise _NotClean from None
            if table.num_rows != lines or table.column_names != chosen:
                raise _NotClean
            yield table.append_column("row_no", pa.array(np.arange(row_no, row_no + lines, dtype=np.int64)))
            row_no += lines


def _arrow_text_options(header: list[str], chosen: list[str], delimiter: str) -> dict:
    """The Arrow CSV reader's options for a clean file: the `chosen` columns as text, no quoting,
    no line in a value, no blank line skipped, empty = NULL, UTF-8 checked."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    return dict(
        read_options=pa_csv.ReadOptions(column_names=header),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter, quote_char=False, escape_char=False,
                                          newlines_in_values=False, ignore_empty_lines=False),
        convert_options=pa_csv.ConvertOptions(
            column_types={c: pa.string() for c in chosen}, include_columns=chosen,
            strings_can_be_null=True, null_values=[""], check_utf8=True),
    )


def clean_batches_of_files(paths: list[Path], header: list[str], chosen: list[str], delimiter: str, lines: list[int]):
    """`_clean_batches` over a group of plain utf-8 files of one header line, as if they were one
    file: Arrow tables of the `chosen` text columns + row_no (numbering the group's rows) + file_idx
    (the file's place in `paths`), about `_BATCH_BYTES` of text each; `lines` gets each file's
    row count as it is read. Raises NotClean at the first doubt (a file whose first line differs
    from the first file's, or any line `_check_lines` or the Arrow reader doubts)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    width = len(header)
    if width < 2:
        raise _NotClean
    options = _arrow_text_options(header, chosen, delimiter)
    sep = delimiter.encode()
    first_line = None
    crlf = False
    texts, owners, size, row_no = [], [], 0, 1

    def flush():
        text = b"".join(texts)
        counts = [n for _, n in owners]
        table = pa_csv.read_csv(pa.py_buffer(text), **options) if text else None
        total = sum(counts)
        if table is None or table.num_rows != total or table.column_names != chosen:
            raise _NotClean
        idx = np.repeat(np.array([i for i, _ in owners], dtype=np.int32), counts)
        return table.append_column("row_no", pa.array(np.arange(row_no, row_no + total, dtype=np.int64))) \
            .append_column("file_idx", pa.array(idx))

    for i, path in enumerate(paths):
        data = Path(path).read_bytes()
        cut = data.find(b"\n") + 1
        if cut == 0:  # no line break: a header alone, or nothing
            head, body = data, b""
        else:
            head, body = data[:cut], data[cut:]
        head = head.removeprefix(codecs.BOM_UTF8)
        if first_line is None:
            first_line, crlf = head.rstrip(b"\r\n"), head.endswith(b"\r\n")
            if len(head) > _MAX_LINE:
                raise _NotClean
            _check_lines(head, crlf, sep, width)
        elif head.rstrip(b"\r\n") != first_line:
            raise _NotClean
        if body and not body.endswith(b"\n"):
            body += b"\r\n" if crlf else b"\n"
        n = _check_lines(body, crlf, sep, width) if body else 0
        lines.append(n)
        if n:
            texts.append(body)
            owners.append((i, n))
            size += len(body)
        if size >= _BATCH_BYTES:
            try:
                yield flush()
            except (pa.ArrowException, OSError, ValueError):
                raise _NotClean from None
            row_no += sum(n for _, n in owners)
            texts, owners, size = [], [], 0
    if owners:
        try:
            yield flush()
        except (pa.ArrowException, OSError, ValueError):
            raise _NotClean from None


NotClean = _NotClean
plain_delimiter = _plain_delimiter
