"""The DuckDB warehouse: one file, one schema version, one writer at a time.

Every write goes through `Warehouse.transaction()`, so a failed load or run leaves the file as
it was. DuckDB locks the file for a writing process; a second writer gets `WarehouseBusy`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import duckdb

from detector.errors import DetectorError, WarehouseBusy, WarehouseVersionError
from detector.leftovers import owned_name, remove_left_behind

SCHEMA_VERSION = 5
DEFAULT_DB = "detector.duckdb"
SCRATCH_PREFIX = "work-"
DEFAULT_MEMORY_LIMIT = "3GB"  # DuckDB's share of a process budget of about 4 GB

# Each entry upgrades a warehouse from version (index + 1) to the next; statements only add.
MIGRATIONS: list[list[str]] = [
    # 1 -> 2: leads carry their combined score
    ["ALTER TABLE alerts ADD COLUMN IF NOT EXISTS lead_score DOUBLE"],
    # 2 -> 3: lifecycle of the leads of each monthly run
    ["""CREATE TABLE IF NOT EXISTS lead_status (
            period DATE NOT NULL, lead_id VARCHAR NOT NULL, status VARCHAR NOT NULL,
            first_seen DATE NOT NULL, last_seen DATE NOT NULL, commodity VARCHAR, shipper VARCHAR,
            destination VARCHAR, lead_score DOUBLE, severity VARCHAR, run_id VARCHAR NOT NULL,
            PRIMARY KEY (period, lead_id))"""],
    # 3 -> 4: per-declaration scores beside the alerts
    ["""CREATE TABLE IF NOT EXISTS declaration_scores (
            source VARCHAR NOT NULL, declaration_id VARCHAR NOT NULL, period DATE NOT NULL, score DOUBLE NOT NULL,
            rank BIGINT NOT NULL, reasons VARCHAR, run_id VARCHAR NOT NULL)"""],
    # 4 -> 5: watchlist codes that are baskets of products with very different prices
    ["ALTER TABLE watchlist ADD COLUMN IF NOT EXISTS basket BOOLEAN"],
]


def _size_bytes(text: str) -> int:
    """Bytes of a size written as DuckDB reads and prints them ('4GB', '3.7 GiB', '1000 bytes')."""
    found = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", text)
    units = {"": 1, "b": 1, "byte": 1, "bytes": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
             "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
    if not found or found.group(2).lower() not in units:
        raise DetectorError(f"memory limit '{text}': write it as a size such as 4GB or 512MB")
    return int(float(found.group(1)) * units[found.group(2).lower()])


def default_path() -> str:
    return os.environ.get("DETECTOR_DB") or DEFAULT_DB


def _schema_sql() -> str:
    package = resources.files("detector")
    return package.joinpath("schema.sql").read_text() + "\n" + package.joinpath("views.sql").read_text()


def view_sql(*names: str) -> str:
    """The CREATE VIEW statements of views.sql for the named views, in file order."""
    text = resources.files("detector").joinpath("views.sql").read_text()
    statements = [part.strip() for part in text.split(";") if "CREATE" in part]
    chosen = [s for s in statements if re.search(r"CREATE OR REPLACE VIEW (\w+)", s).group(1) in names]
    return ";\n".join(chosen) + ";"


def _reference_digest() -> str:
    digest = hashlib.sha256(_schema_sql().encode())
    folder = resources.files("detector").joinpath("reference")
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".csv"):
            digest.update(item.name.encode() + item.read_bytes())
    return digest.hexdigest()[:16]


class Warehouse:
    """An open warehouse file. Use as a context manager; `con` is the DuckDB connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: str, read_only: bool):
        self.con = con
        self.path = path
        self.read_only = read_only
        self._scratch: Path | None = None
        self.memory_limit = DEFAULT_MEMORY_LIMIT  # as configured at open

    def scratch(self) -> Path:
        """A folder for this connection's large working files (the shared baselines' grid, as
        Parquet that the detectors' SQL reads through views and their array code reads as it is):
        next to the warehouse, or a temporary folder for a warehouse in memory. Removed on close;
        one left by a process that was killed is removed by the next user."""
        if self._scratch is None:
            if self.path == ":memory:":
                self._scratch = Path(tempfile.mkdtemp(prefix="detector-work-"))
                return self._scratch
            folder = Path(f"{self.path}.tmp")
            folder.mkdir(parents=True, exist_ok=True)
            remove_left_behind(folder, SCRATCH_PREFIX)  # (or a scratch database file of an earlier version)
            self._scratch = folder / owned_name(SCRATCH_PREFIX)
            self._scratch.mkdir()
        return self._scratch

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, read_only: bool = False,
             memory_limit: str | None = None) -> Warehouse:
        path = str(path or default_path())
        if read_only and not Path(path).exists():
            raise DetectorError(f"{path}: no warehouse here yet; load data first (detector ingest ...)")
        if not read_only:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Sorts and joins larger than memory_limit spill to a folder next to the warehouse file (for
        # a warehouse in memory, to a temporary folder: never into the working directory).
        spill = tempfile.mkdtemp(prefix="detector-spill-") if path == ":memory:" else f"{path}.tmp"
        config = {"memory_limit": memory_limit or os.environ.get("DETECTOR_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT),
                  "temp_directory": spill}
        try:
            con = duckdb.connect(path, read_only=read_only, config=config)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise WarehouseBusy(
                    f"{path}: warehouse is in use by another process; wait for it to finish and retry"
                ) from None
            raise DetectorError(f"{path}: cannot open the warehouse ({str(exc).splitlines()[0]})") from None
        except duckdb.Error as exc:
            raise DetectorError(f"{path}: not a readable warehouse ({str(exc).splitlines()[0]})") from None
        con.execute("SET enable_progress_bar = false")  # a long COPY would draw one on the terminal
        wh = cls(con, path, read_only)
        wh.memory_limit = config["memory_limit"]
        wh._spill = spill if path == ":memory:" else None
        try:
            wh._ensure_schema()
        except Exception:
            con.close()
            raise
        return wh

    def _ensure_schema(self) -> None:
        has_meta = self.con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
        ).fetchall()[0][0]
        if not has_meta:
            if self.read_only:
                raise DetectorError(f"{self.path}: empty warehouse; load data first (detector ingest ...)")
            with self.transaction():
                self.con.execute(_schema_sql())
                self.con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
                self._refresh_reference()
            return
        rows = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        version = int(rows[0][0]) if rows else 0
        if version > SCHEMA_VERSION:
            raise WarehouseVersionError(
                f"{self.path}: made by a newer version of detector (schema {version}, this one reads "
                f"{SCHEMA_VERSION}); upgrade detector"
            )
        if version < 1:
            raise WarehouseVersionError(f"{self.path}: not a detector warehouse (no schema version)")
        if version < SCHEMA_VERSION:
            if self.read_only:
                raise WarehouseVersionError(
                    f"{self.path}: schema {version} needs migrating to {SCHEMA_VERSION}; "
                    "run any writing command (e.g. detector ingest) first"
                )
            with self.transaction():
                for step in MIGRATIONS[version - 1:]:
                    for statement in step:
                        self.con.execute(statement)
                self.con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])
        if not self.read_only:
            rows = self.con.execute("SELECT value FROM meta WHERE key = 'reference_digest'").fetchall()
            if not rows or rows[0][0] != _reference_digest():
                with self.transaction():
                    self.con.execute(_schema_sql())  # tables added since (all CREATE ... IF NOT EXISTS)
                    self._refresh_reference()

    def _refresh_reference(self) -> None:
        """Load the package's reference CSVs; a new release's watchlist reaches old warehouses."""
        from detector.reference import load_reference

        load_reference(self.con)
        self.con.execute("INSERT OR REPLACE INTO meta VALUES ('reference_digest', ?)", [_reference_digest()])

    @property
    def schema_version(self) -> int:
        return int(self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()[0][0])

    def frame(self, sql: str, params: dict | list | None = None):
        """A query's result as a Polars frame. An earlier execute() whose rows were not all read
        would make DuckDB refuse the query, so that one is finished first."""
        self.con.complete()
        return self.con.sql(sql, params=params).pl()

    @contextmanager
    def lend_memory(self, share: float = 0.25) -> Iterator[None]:
        """While the Python side holds large arrays (the detectors' grids and features), DuckDB
        keeps only `share` of its memory_limit: the pages it cached are dropped (the tables stay
        on disk and are read again when needed), so that both together stay within the budget."""
        before = self.memory_limit
        try:
            budget = _size_bytes(before)
            self.con.execute(f"SET memory_limit = '{max(int(budget * share), min(budget, 512 * 2**20))}B'")
        except (DetectorError, duckdb.Error):  # a limit DuckDB reads and we do not, or pinned pages: keep it
            yield
            return
        try:
            yield
        finally:
            self.con.execute("SET memory_limit = ?", [before])

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All or nothing: commit on success, roll back on any exception."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        else:
            self.con.execute("COMMIT")

    def close(self) -> None:
        self.con.close()
        if getattr(self, "_spill", None):
            shutil.rmtree(self._spill, ignore_errors=True)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
