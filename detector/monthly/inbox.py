"""The inbox: every file that arrived, which source it is (told from its columns), and loading it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from detector.errors import DetectorError
from detector.ingest import sources
from detector.ingest.files import header_names
from detector.warehouse import Warehouse


@dataclass(frozen=True)
class InboxFile:
    path: Path
    kind: str  # a source's name, "companion" (read beside a data file) or "unknown"
    note: str = ""


def classify(path: Path) -> InboxFile:
    """The source a file is, told from its columns (`detector.ingest.sources`)."""
    path = Path(path)
    names, is_json = header_names(path)
    if path.suffix.lower() in (".parquet", ".zip", ".7z", ".xlsx", ".xls", ".toml", ".json") and not is_json:
        return InboxFile(path, "unknown", f"unsupported file type {path.suffix}")
    kind, note = sources.recognise(names)
    return InboxFile(path, kind, note)


def scan_inbox(inbox: str | os.PathLike) -> list[InboxFile]:
    """Every file under the inbox (hidden files aside), in arrival order: modification time, then name."""
    root = Path(inbox)
    if not root.is_dir():
        raise DetectorError(f"{root}: inbox folder not found; give the folder the monthly files arrive in")
    files = [p for p in root.rglob("*")
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
    return [classify(p) for p in files]


def load_file(wh: Warehouse, item: InboxFile):
    """Load an inbox file with its source's loader (its LoadSummary list)."""
    return sources.get(item.kind).load(wh, [item.path])


def load_files_of(wh: Warehouse, items: list[InboxFile]):
    """Load inbox files of one source as one batch with its loader (their LoadSummary list)."""
    kinds = {item.kind for item in items}
    if len(kinds) != 1:
        raise DetectorError(f"one source per batch, not {', '.join(sorted(kinds))}")
    return sources.get(kinds.pop()).load(wh, [item.path for item in items])
