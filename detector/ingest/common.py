"""What every loader shares: each file in its own transaction, skipped when already loaded (same
content hash), and recorded in `loads` with its counts.

A loader module only writes the SQL that maps its source's columns onto `flows` (or
`declarations`) and flags invalid rows; the staging (`staging`, `fast_staging`), the SQL pieces
(`sql`), the writing of flows (`writing`) and of rejects (`rejects`) are the same for every source.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from detector.errors import InputError
from detector.ingest.files import file_digest, first_line
from detector.warehouse import Warehouse


@dataclass
class LoadSummary:
    file: str
    source: str
    status: str = "loaded"  # loaded | skipped
    rows_read: int = 0
    rows_loaded: int = 0
    rows_replaced: int = 0
    rows_rejected: int = 0
    aggregates: int = 0  # of the rejected rows: partner World / area totals, kept out of flows
    fixed_codes: int = 0  # HS codes restored with their lost leading zero
    seconds: float = 0.0
    load_id: str = ""
    reasons: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
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


def load_files(wh: Warehouse, paths, source: str, load_one) -> list[LoadSummary]:
    """Load each file in its own transaction; `load_one(con, path, summary)` does the source's part."""
    summaries = []
    for raw_path in paths:
        path = Path(raw_path)
        if not path.is_file():
            raise InputError(path, "no such file")
        started = time.perf_counter()
        digest = file_digest(path)
        summary = LoadSummary(file=str(path), source=source, load_id=make_load_id(source, digest))
        previous = already_loaded(wh.con, digest)
        if previous:
            summary.status, summary.load_id = "skipped", previous
            summaries.append(summary)
            continue
        with wh.transaction() as con:
            con.execute("CREATE OR REPLACE TEMP TABLE staged_rejects (row_no BIGINT, reason VARCHAR)")
            sync_source_precedence(con)
            try:
                load_one(con, path, summary)
                record_load(con, summary, path, digest)
            except duckdb.Error as exc:  # a case the loader's checks missed: still one line, nothing kept
                raise InputError(path, f"internal error while loading, nothing was kept; please report "
                                       f"it ({first_line(exc)})") from None
        for t in ("staged_raw", "staged_broken", "staged_rejects", "ranked", "candidates", "parsed"):
            wh.con.execute(f"DROP TABLE IF EXISTS {t}")
        summary.seconds = time.perf_counter() - started
        summaries.append(summary)
    return summaries
