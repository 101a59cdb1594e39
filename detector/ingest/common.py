"""What every loader shares: read a file into a staging table, keep bad rows aside with a reason,
replace revised rows, record the load, all in one transaction.

A loader module only writes the SQL that maps its source's columns onto `flows` (or
`declarations`) and flags invalid rows; this module does the rest the same way for every source.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from detector.errors import InputError
from detector.warehouse import Warehouse

FLOW_KEY = ["source", "period", "reporter", "partner", "partner2", "flow", "hs_code"]
FLOW_COLUMNS = [
    "source", "period", "freq", "reporter", "partner", "partner2", "flow", "hs_code", "hs_revision",
    "value_usd", "net_weight_kg", "quantity", "quantity_unit", "load_id",
]


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


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _head_bytes(path: Path, n: int = 1 << 16) -> bytes:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            return fh.read(n)
    except (OSError, EOFError) as exc:
        raise InputError(path, f"cannot read file ({exc})") from None


def sniff_encoding(path: Path) -> str:
    """DuckDB reads utf-8, utf-16 and latin-1; choose from the BOM or a trial decode."""
    head = _head_bytes(path)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
            return "latin-1"
    return "utf-8"


def stage_csv(con: duckdb.DuckDBPyConnection, path: Path, table: str = "staged_raw") -> list[str]:
    """Read a CSV (plain or .gz) as text columns into a temp table; return its header.

    Rows the CSV parser cannot split are kept in the temp table `staged_broken(line, raw, reason)`.
    The temp table gets a `row_no` column (1-based, file order: DuckDB streams an empty-OVER
    row_number in scan order) for finding file lines later.
    """
    if not path.exists():
        raise InputError(path, "no such file")
    head = _head_bytes(path, 4096)
    if not head.strip():
        raise InputError(path, "empty file (no header line)", line=1)
    encoding = sniff_encoding(path)
    for t in (table, "staged_broken"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    try:
        con.execute(
            f"""CREATE TEMP TABLE {table} AS
                SELECT *, row_number() OVER () AS row_no
                FROM read_csv(?, all_varchar = true, header = true, encoding = ?,
                                       store_rejects = true, rejects_scan = 'staged_scan',
                                       rejects_table = 'staged_errors', sample_size = -1)""",
            [str(path), encoding],
        )
    except duckdb.Error as exc:
        raise InputError(path, f"not a readable CSV file ({_first_line(exc)})") from None
    header = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall() if r[0] != "row_no"]
    con.execute(
        """CREATE TEMP TABLE staged_broken AS
           SELECT line, min(csv_line) AS raw, min(error_type || ': ' || error_message) AS reason
           FROM staged_errors GROUP BY line"""
    )
    con.execute("DROP TABLE IF EXISTS staged_errors")
    con.execute("DROP TABLE IF EXISTS staged_scan")
    return header


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def file_line_sql(row_no: str) -> str:
    """SQL for the file line of staged row `row_no`, skipping lines the parser rejected."""
    return f"""({row_no} + 1 + (SELECT count(*) FROM (
                  SELECT line - row_number() OVER (ORDER BY line) - 1 AS valid_before
                  FROM staged_broken) b WHERE b.valid_before < {row_no}))"""


def already_loaded(con: duckdb.DuckDBPyConnection, digest: str) -> str | None:
    row = con.execute("SELECT load_id FROM loads WHERE content_hash = ?", [digest]).fetchone()
    return row[0] if row else None


def make_load_id(source: str, digest: str) -> str:
    return f"{source}-{digest[:16]}"


def write_flows(con: duckdb.DuckDBPyConnection, summary: LoadSummary, candidates: str) -> None:
    """Replace revised keys and insert new rows from the `candidates` table (FLOW_COLUMNS).

    A key present twice in one file keeps its first line; the others are rejected.
    """
    key = ", ".join(FLOW_KEY)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ranked AS
            SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY row_no) AS dup
            FROM {candidates}"""
    )
    con.execute(
        f"""INSERT INTO staged_rejects
            SELECT row_no, 'duplicate key in file (same reporter, partner, flow, hs_code, period as an earlier line)'
            FROM ranked WHERE dup > 1"""
    )
    on = " AND ".join(f"f.{k} IS NOT DISTINCT FROM r.{k}" for k in FLOW_KEY)
    replaced = con.execute(
        f"DELETE FROM flows f USING (SELECT {key} FROM ranked WHERE dup = 1) r WHERE {on}"
    ).fetchone()[0]
    cols = ", ".join(FLOW_COLUMNS)
    inserted = con.execute(f"INSERT INTO flows ({cols}) SELECT {cols} FROM ranked WHERE dup = 1").fetchone()[0]
    summary.rows_replaced = int(replaced)
    summary.rows_loaded = int(inserted) - int(replaced)


def record_rejects(con: duckdb.DuckDBPyConnection, summary: LoadSummary, path: Path, raw_sql: str) -> None:
    """Move staged rejects (row_no, reason) and parser failures into `rejects` with file lines."""
    con.execute(
        f"""INSERT INTO rejects (load_id, file, line, raw, reason)
            SELECT ?, ?, {file_line_sql('s.row_no')}, {raw_sql}, r.reason
            FROM staged_rejects r JOIN staged_raw s USING (row_no)
            UNION ALL
            SELECT ?, ?, line, raw, reason FROM staged_broken""",
        [summary.load_id, str(path), summary.load_id, str(path)],
    )
    for reason, n in con.execute(
        """SELECT reason, count(*) FROM (SELECT reason FROM staged_rejects UNION ALL
                                          SELECT reason FROM staged_broken) GROUP BY reason"""
    ).fetchall():
        summary.reasons[reason] = int(n)
    summary.rows_rejected = sum(summary.reasons.values())


def record_load(con: duckdb.DuckDBPyConnection, summary: LoadSummary, path: Path, digest: str) -> None:
    con.execute(
        "INSERT INTO loads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [summary.load_id, summary.source, str(path), digest, summary.rows_read, summary.rows_loaded,
         summary.rows_replaced, summary.rows_rejected, datetime.now(timezone.utc).replace(tzinfo=None)],
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
            load_one(con, path, summary)
            record_load(con, summary, path, digest)
        for t in ("staged_raw", "staged_broken", "staged_rejects", "ranked", "candidates"):
            wh.con.execute(f"DROP TABLE IF EXISTS {t}")
        summary.seconds = time.perf_counter() - started
        summaries.append(summary)
    return summaries
