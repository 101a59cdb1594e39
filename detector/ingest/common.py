"""What every loader shares: each file in its own transaction, skipped when already loaded (same
content hash), and recorded in `loads` with its counts.

A loader module only writes the SQL that maps its source's columns onto `flows` (or
`declarations`) and flags invalid rows; the staging (`staging`, `fast_staging`), the SQL pieces
(`sql`), the writing of flows (`writing`) and of rejects (`rejects`) are the same for every source.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from detector.errors import DetectorError, InputError
from detector.ingest.files import file_digest, first_line
from detector.warehouse import Warehouse


@dataclass
class LoadSummary:
    file: str
    source: str
    status: str = "loaded"  # loaded | skipped | refused
    rows_read: int = 0
    rows_loaded: int = 0
    rows_replaced: int = 0
    rows_rejected: int = 0
    aggregates: int = 0  # of the rejected rows: partner World / area totals, kept out of flows
    fixed_codes: int = 0  # HS codes restored with their lost leading zero
    seconds: float = 0.0
    load_id: str = ""
    reasons: dict[str, int] = field(default_factory=dict)
    error: str = ""  # status refused: the one-line error (file, line, problem)

    def line(self) -> str:
        if self.status == "refused":
            return f"{self.error} (refused, nothing of it loaded)"
        if self.status == "skipped":
            return f"{self.file}: skipped (already loaded as {self.load_id}; nothing changed)"
        extra = []
        if self.aggregates:
            extra.append(f"{self.aggregates:,} of them partner aggregates")
        if self.fixed_codes:
            extra.append(f"{self.fixed_codes:,} HS codes zero-padded")
        note = f" ({'; '.join(extra)})" if extra else ""
        return (
            f"{self.file}: read {self.rows_read:,}, loaded {self.rows_loaded:,}, replaced "
            f"{self.rows_replaced:,}, rejected {self.rows_rejected:,}{note} in {self.seconds:.2f}s"
        )


def sync_source_precedence(con: duckdb.DuckDBPyConnection) -> None:
    """Refresh `source_precedence` (read by the flows_preferred view) from the sources' declarations."""
    from detector.ingest.sources import precedence

    con.execute("DELETE FROM source_precedence")
    con.executemany("INSERT INTO source_precedence VALUES (?, ?)", precedence())


def already_loaded(con: duckdb.DuckDBPyConnection, digest: str) -> str | None:
    row = con.execute("SELECT load_id FROM loads WHERE content_hash = ?", [digest]).fetchone()
    return row[0] if row else None


def make_load_id(source: str, digest: str) -> str:
    return f"{source}-{digest[:16]}"


def record_load(con: duckdb.DuckDBPyConnection, summary: LoadSummary, path: Path, digest: str) -> None:
    con.execute(
        "INSERT INTO loads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [summary.load_id, summary.source, str(path), digest, summary.rows_read, summary.rows_loaded,
         summary.rows_replaced, summary.rows_rejected, datetime.now(UTC).replace(tzinfo=None)],
    )


def _cleanup(con: duckdb.DuckDBPyConnection) -> None:
    for t in ("staged_raw", "staged_broken", "staged_rejects", "ranked", "candidates", "parsed"):
        con.execute(f"DROP TABLE IF EXISTS {t}")


def _load_one_file(wh: Warehouse, path: Path, digest: str, summary: LoadSummary, load_one, prepare=None) -> None:
    """One file in its own transaction (the path every source has, and the fallback of a group).

    `prepare(con, path, summary)`, when given, reads and parses the file into temp tables before
    the transaction opens (DuckDB scans a big temp table made inside a transaction markedly slower
    than one made outside it), and what it returns is handed to `load_one(con, path, summary,
    prepared)`, which writes to the warehouse inside the transaction. Temp tables are the
    connection's own, so the file is still written whole or not at all.
    """
    started = time.perf_counter()
    prepared = ()
    if prepare is not None:
        with _internal_errors(path):
            prepared = (prepare(wh.con, path, summary),)
    with wh.transaction() as con:
        con.execute("CREATE OR REPLACE TEMP TABLE staged_rejects (row_no BIGINT, reason VARCHAR)")
        sync_source_precedence(con)
        with _internal_errors(path):
            load_one(con, path, summary, *prepared)
            record_load(con, summary, path, digest)
    _cleanup(wh.con)
    summary.seconds = time.perf_counter() - started


@contextmanager
def _internal_errors(path: Path):
    """A case the loader's checks missed: still one line, nothing kept."""
    try:
        yield
    except duckdb.Error as exc:
        raise InputError(path, f"internal error while loading, nothing was kept; please report "
                               f"it ({first_line(exc)})") from None


class FilesRefused(InputError):
    """Some files of a batch were refused (each with its one-line error); the others loaded.

    `summaries` has every file's outcome, the refused ones with status "refused" and their error."""

    def __init__(self, refused: list[LoadSummary], summaries: list[LoadSummary]):
        first = refused[0]
        loaded = sum(s.status == "loaded" for s in summaries)
        more = f" (and {len(refused) - 1} more refused)" if len(refused) > 1 else ""
        skipped = sum(s.status == "skipped" for s in summaries)
        DetectorError.__init__(self, f"{first.error}{more}; {len(refused)} of {len(summaries)} files refused "
                                     f"({loaded} loaded, {skipped} skipped as already loaded)")
        self.path, self.line, self.problem = first.file, None, first.error
        self.refused, self.summaries = refused, summaries


# Called with each file's LoadSummary as it is done (loaded, skipped or refused): the CLI's progress.
_progress: ContextVar = ContextVar("ingest_progress", default=None)


@contextmanager
def reporting_progress(callback):
    """Within the block, every loader calls `callback(summary)` as each file is done."""
    token = _progress.set(callback)
    try:
        yield
    finally:
        _progress.reset(token)


@dataclass
class PendingFile:
    """A file that passed the per-file checks (hash, not yet loaded, header) and waits for its group."""

    path: Path
    digest: str
    summary: LoadSummary
    key: tuple | None = None  # files of one key can be read in one scan (same header, encoding, compression)
    size: int = 0


def load_files(wh: Warehouse, paths, source: str, load_one, batch=None, prepare=None) -> list[LoadSummary]:
    """Load a batch of files; one LoadSummary per file, in the order given.

    Per file, cheaply: the content hash (a file loaded before, or earlier in this batch, is
    skipped) and, with `batch`, the header checks. A file refused by a check is reported and
    the rest of the batch still loads; when any file was refused, FilesRefused is raised at the
    end (a batch of one file raises that file's own InputError), after the good files committed.

    `batch` (a source's `Batch`, see `detector.ingest.batch`) loads groups of files of one header
    in one scan and one transaction per group; without it, or for a group of one file, each file
    is loaded alone by `load_one(con, path, summary)` in its own transaction (with `prepare`, read
    and parsed first by `prepare(con, path, summary)`, see `_load_one_file`).
    """
    summaries: list[LoadSummary] = []
    refused: list[LoadSummary] = []
    pending: list[PendingFile] = []
    seen: dict[str, str] = {}
    errors: list[InputError] = []
    notify = _progress.get()

    def done(summary: LoadSummary) -> None:
        if notify is not None:
            notify(summary)

    def refuse(summary: LoadSummary, exc: InputError) -> None:
        summary.status, summary.error = "refused", str(exc)
        refused.append(summary)
        errors.append(exc)
        done(summary)

    for raw_path in paths:
        path = Path(raw_path)
        summary = LoadSummary(file=str(path), source=source)
        summaries.append(summary)
        try:
            if not path.is_file():
                raise InputError(path, "no such file")
            digest = file_digest(path)
        except InputError as exc:
            refuse(summary, exc)
            continue
        summary.load_id = make_load_id(source, digest)
        previous = already_loaded(wh.con, digest) or seen.get(digest)
        if previous:
            summary.status, summary.load_id = "skipped", previous
            done(summary)
            continue
        seen[digest] = summary.load_id
        item = PendingFile(path, digest, summary, size=path.stat().st_size)
        if batch is not None:
            item.key = batch.key(path)
        pending.append(item)

    def one(item: PendingFile) -> None:
        try:
            _load_one_file(wh, item.path, item.digest, item.summary, load_one, prepare)
        except InputError as exc:
            _cleanup(wh.con)
            refuse(item.summary, exc)
            return
        done(item.summary)

    groups = batch.groups(pending) if batch is not None else [[item] for item in pending]
    for group in groups:
        if len(group) == 1:
            one(group[0])
        elif not batch.load_group(wh, group, done):
            for item in group:  # the group could not vouch for every file: each alone, in order
                one(item)
    if refused:
        if len(summaries) == 1:
            raise errors[0]
        raise FilesRefused(refused, summaries)
    return summaries
