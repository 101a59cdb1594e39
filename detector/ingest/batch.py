"""Loading many files of one source with one scan per group of files, each file still whole or not at all.

A download is often many small files (UN Comtrade: one per reporter and period), and what costs
in a load of a small file is fixed per file (sniffing, planning a dozen statements, a commit), not
per row. So the cheap checks stay per file and the expensive work is per group:

- per file (`load_files`): the content hash (a file loaded before, or twice in the batch, is
  skipped) and `Batch.key`, the header read from the first bytes (the column names the loader
  needs, no name twice). A file these checks doubt is not grouped: it is loaded alone by the
  one-file path, which refuses it with its own one-line error (file, line, problem) while the
  rest of the batch loads.
- per group (`Batch.load_group`): a run of consecutive files with the same header line, encoding
  and compression, up to GROUP_BYTES, is read as if it were one file: plain utf-8 files a batch
  of lines at a time by the Arrow reader, each batch proven clean as the one-file fast path
  proves it (`fast_staging`), anything else by one DuckDB `read_csv` of the file list (in
  parallel, with a filename column); each row carries its file's index. The source's SQL parses
  and validates the rows set-wise, and `flows`, `reporting`, `rejects` and `loads` are written in
  ONE transaction. Counts, rejects (with their file and line) and the summary stay per file.

Why validate first and insert whole groups, rather than insert and take failures out: every
problem that refuses a whole file is a header problem, found per file before any group is read;
what the group scan finds is per row (kept in `rejects`) or a doubt about the group as a whole.
On any doubt the group's transaction is rolled back and its files are loaded one by one, in
order, by the one-file path (which also gives a broken file its exact error), so the result is
always that of loading the files one after another:
  - a line the CSV reader cannot split (its line numbers are the one-file path's business);
  - a flows key repeated in the group: in two files, the later file must replace the earlier
    one as it would one load later; in one file, the repeat is rejected quoting its line's
    text, which the group does not keep;
  - rows not in file order in the staged table, or any error from DuckDB.
Groups are consecutive runs of the batch, so a later file always replaces what an earlier one
wrote. A group commits whole or not at all: a process killed mid-batch leaves the groups before
it loaded and nothing of the group it was in; the files of those groups are skipped on the next
run (same content hash), the others load.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from detector.errors import InputError
from detector.ingest.common import LoadSummary, PendingFile, _cleanup, sync_source_precedence
from detector.ingest.files import head_bytes, sniff_encoding
from detector.ingest.staging import csv_header
from detector.ingest.writing import FLOW_COLUMNS, FLOW_KEY
from detector.warehouse import Warehouse

# A group's files, by size on disk (a .gz file counts GZ_FACTOR times): big enough that the fixed
# cost per group is small, small enough that the staged text of a group fits in memory.
GROUP_BYTES = int(os.environ.get("DETECTOR_BATCH_GROUP_BYTES", 192 << 20))
GZ_FACTOR = 6
GROUP_FILES = 5_000
# Files at least this big are loaded alone (the one-file path reads them in batches of bounded memory).
ALONE_BYTES = 96 << 20

_STAGE = """read_csv(?, all_varchar = true, header = true, encoding = ?, filename = true, store_rejects = true,
                      rejects_scan = 'staged_scan', rejects_table = 'staged_errors')"""


class _Doubt(Exception):
    """The group cannot vouch for every file: its files are loaded one by one instead."""


@dataclass(frozen=True)
class Batch:
    """What a source gives the batch loader.

    `choose_columns(header)`: the columns to read; `check_header(names, path)`: raises InputError
    for a header the source refuses; `parse_sql(header, path, into)`: SQL making `parsed` from
    `staged_raw` (row_no, the chosen columns, file_idx), carrying file_idx; `candidates_sql`:
    the valid rows of `parsed` as FLOW_COLUMNS + row_no + file_idx (load_id from `batch_files b`);
    `flow`: the name of the flow column in `parsed`. `key_extra(path)`: what else files of a
    group must share (a BACI file's HS revision and country codes), None for a file that loads
    alone (a JSON or Parquet file); `prepare(con, path)`: the look-up tables a group's parse reads,
    from its first file.
    """

    source: str
    choose_columns: Callable
    check_header: Callable
    parse_sql: Callable
    candidates_sql: str
    flow: str = "flow"
    key_extra: Callable | None = None
    prepare: Callable | None = None

    # ------------------------------------------------------------------ per file (cheap)
    def key(self, path: Path) -> tuple | None:
        """The group key of a file from its first bytes, or None: the file loads alone."""
        try:
            if path.stat().st_size >= ALONE_BYTES:
                return None
            head = head_bytes(path, 1 << 16)
            if not head.strip():
                return None
            encoding = sniff_encoding(path)
            text = head.decode(encoding, errors="replace").lstrip("\ufeff")
            lines = text.splitlines()
            if len(lines) < 2 and len(head) == 1 << 16:
                return None  # a header line longer than the sample
            first = lines[0] if lines else ""
            delimiter = max([",", ";", "\t", "|"], key=first.count)
            names = [n.strip() for n in next(csv.reader(io.StringIO(first), delimiter=delimiter), [])]
            if len({n.lower() for n in names}) != len(names):
                return None  # a repeated name: the one-file path says which
            self.check_header(names, path)
            extra = self.key_extra(path) if self.key_extra is not None else ()
        except (InputError, OSError, csv.Error):
            return None
        if extra is None:
            return None
        return first, encoding, path.name.lower().endswith(".gz"), extra

    def groups(self, pending: list[PendingFile]) -> list[list[PendingFile]]:
        """Runs of consecutive files of one key, up to GROUP_BYTES; an ungrouped file is a group of one."""
        groups: list[list[PendingFile]] = []
        size = 0
        for item in pending:
            weight = item.size * (GZ_FACTOR if item.key and item.key[2] else 1)
            last = groups[-1] if groups else None
            if (item.key is not None and last and last[0].key == item.key and size + weight <= GROUP_BYTES
                    and len(last) < GROUP_FILES):
                last.append(item)
                size += weight
            else:
                groups.append([item])
                size = weight
        return groups

    # ------------------------------------------------------------------ per group
    def load_group(self, wh: Warehouse, group: list[PendingFile], done) -> bool:
        """Load the group in one transaction; False (nothing kept) when the files must load one by one."""
        started = time.perf_counter()
        try:
            # read and parsed into temp tables before the transaction (see common._load_one_file)
            self._stage(wh.con, group)
            with wh.transaction() as con:
                con.execute("CREATE OR REPLACE TEMP TABLE staged_rejects (row_no BIGINT, reason VARCHAR)")
                sync_source_precedence(con)
                self._store(con, group)
                _record_loads(con, group)
        except (_Doubt, InputError, duckdb.Error):
            for item in group:
                s = item.summary
                s.rows_read = s.rows_loaded = s.rows_replaced = s.rows_rejected = s.aggregates = s.fixed_codes = 0
                s.reasons = {}
            _drop(wh.con)
            return False
        _drop(wh.con)
        elapsed = time.perf_counter() - started
        total = sum(item.size for item in group) or 1
        for item in group:
            item.summary.seconds = elapsed * item.size / total
            done(item.summary)
        return True

    def _stage(self, con: duckdb.DuckDBPyConnection, group: list[PendingFile]) -> None:
        """The group's rows parsed into the temp table `parsed`, each with its file_idx."""
        first = group[0].path
        header, encoding = csv_header(con, first, allow_duplicates=False)
        chosen = self.choose_columns(header)
        if self.prepare is not None:
            self.prepare(con, first)
        con.execute("CREATE OR REPLACE TEMP TABLE batch_files (file_idx INTEGER, file_path VARCHAR, load_id VARCHAR)")
        con.execute("INSERT INTO batch_files SELECT * FROM (SELECT unnest(?) AS i, unnest(?) AS p, unnest(?) AS l)",
                    [list(range(len(group))), [str(item.path) for item in group],
                     [item.summary.load_id for item in group]])
        if not self._stage_fast(con, group, header, chosen, encoding):
            self._stage_whole(con, group, header, chosen, encoding)

    def _store(self, con: duckdb.DuckDBPyConnection, group: list[PendingFile]) -> None:
        """Write the parsed group into flows, reporting and rejects; count each file's rows."""
        counts = self._write(con)
        self._reporting(con)
        self._rejects(con)
        # Every count of the summaries from one scan of `parsed`: rows per file and reason.
        stats: dict[int, list[int]] = {}
        reasons: dict[int, dict[str, int]] = {}
        for idx, reason, n, aggregate, fixed in con.execute(
                """SELECT file_idx, reject_reason, count(*), bool_or(reject_reason LIKE 'partner is %aggregate%'),
                          count(*) FILTER (WHERE hs_fixed)
                   FROM parsed GROUP BY ALL ORDER BY reject_reason""").fetchall():
            read, aggregates, fixed_codes = stats.setdefault(idx, [0, 0, 0])
            stats[idx] = [read + n, aggregates + (n if aggregate else 0), fixed_codes + (0 if reason else fixed)]
            if reason is not None:
                reasons.setdefault(idx, {})[reason] = int(n)
        for i, item in enumerate(group):
            s = item.summary
            s.rows_read, s.aggregates, s.fixed_codes = (int(v) for v in stats.get(i, (0, 0, 0)))
            inserted, replaced = counts.get(i, (0, 0))
            s.rows_replaced, s.rows_loaded = replaced, inserted - replaced
            s.reasons = reasons.get(i, {})
            s.rows_rejected = sum(s.reasons.values())

    def _stage_fast(self, con, group, header, chosen, encoding) -> bool:
        """Parse a group of plain utf-8 files a batch of lines at a time, as the one-file fast path
        does (`fast_staging`); False, with nothing made, for any other group or at the first doubt."""

        from detector.ingest import fast_staging

        if not fast_staging.FAST_STAGING or encoding != "utf-8" or any(
                item.path.name.lower().endswith(".gz") for item in group):
            return False
        delimiter = fast_staging.plain_delimiter(con, group[0].path)
        if delimiter is None:
            return False
        lines: list[int] = []
        batches = fast_staging.clean_batches_of_files([item.path for item in group], header, chosen, delimiter, lines)
        try:
            made = False
            for batch in batches:
                rel = con.from_arrow(batch)
                into = "INSERT INTO parsed" if made else "CREATE OR REPLACE TEMP TABLE parsed AS"
                rel.query("staged_raw", self.parse_sql(header, group[0].path, into))
                made = True
                del rel, batch
        except fast_staging.NotClean:
            con.execute("DROP TABLE IF EXISTS parsed")
            return False
        finally:
            batches.close()
        if not made:  # no rows at all
            empty = {c: [] for c in chosen}
            import pyarrow as pa

            rel = con.from_arrow(pa.table({**{c: pa.array(v, pa.string()) for c, v in empty.items()},
                                           "row_no": pa.array([], pa.int64()), "file_idx": pa.array([], pa.int32())}))
            rel.query("staged_raw", self.parse_sql(header, group[0].path, "CREATE OR REPLACE TEMP TABLE parsed AS"))
        first_rows, row = [], 1
        for n in lines:
            first_rows.append(row)
            row += n
        con.execute("""CREATE OR REPLACE TEMP TABLE batch_counts AS
                       SELECT unnest(?) AS file_idx, unnest(?) AS first_row, unnest(?) AS n""",
                    [list(range(len(group))), first_rows, lines])
        return True

    def _stage_whole(self, con, group, header, chosen, encoding) -> None:
        """Stage the group's text with one DuckDB read_csv of the file list, then parse it whole."""
        if any(c.lower() == "filename" for c in header):
            raise _Doubt("a column named filename")
        select = "".join(f"{duckdb.ColumnExpression(c)}, " for c in chosen)
        con.execute(f"CREATE OR REPLACE TEMP TABLE staged_text AS SELECT {select}filename AS file_path FROM {_STAGE}",
                    [[str(item.path) for item in group], encoding])
        if con.execute("SELECT EXISTS (SELECT 1 FROM staged_errors)").fetchone()[0]:
            raise _Doubt("lines the CSV reader could not split")
        con.execute("""CREATE OR REPLACE TEMP VIEW staged_raw AS
                       SELECT t.*, t.rowid AS row_no, b.file_idx FROM staged_text t JOIN batch_files b USING (file_path)""")
        # Each file's rows, contiguous and in batch order (the table keeps the reader's order);
        # row_no numbers the group's rows, a file's line is row_no - first_row + 2.
        con.execute("""CREATE OR REPLACE TEMP TABLE batch_counts AS
                       SELECT b.file_idx, c.first_row, coalesce(c.n, 0) AS n, c.last_row
                       FROM batch_files b LEFT JOIN (SELECT file_idx, min(row_no) AS first_row, max(row_no) AS last_row,
                                                            count(*) AS n FROM staged_raw GROUP BY file_idx) c
                       USING (file_idx)""")
        bad = con.execute("""SELECT count(*) FROM (
                                 SELECT n, first_row, last_row,
                                        lag(last_row) OVER (ORDER BY file_idx) AS before
                                 FROM batch_counts WHERE n > 0)
                             WHERE last_row - first_row + 1 <> n OR first_row <= before""").fetchone()[0]
        if bad:
            raise _Doubt("rows out of file order")
        con.execute(self.parse_sql(header, group[0].path, "CREATE OR REPLACE TEMP TABLE parsed AS"))

    def _write(self, con: duckdb.DuckDBPyConnection) -> dict[int, tuple[int, int]]:
        """Write the valid rows (see `writing.write_flows`, per file); {file_idx: (inserted, replaced)}."""
        key = ", ".join(FLOW_KEY)
        con.execute(f"CREATE OR REPLACE TEMP VIEW candidate_flows AS {self.candidates_sql}")
        hashes = con.execute(f"SELECT hash({key}) AS h FROM candidate_flows").fetchnumpy()["h"]
        hashes.sort()
        repeated = bool((hashes[1:] == hashes[:-1]).any())
        del hashes
        rows = "candidate_flows"
        if repeated:  # in one file (its rejects quote lines not kept here) or in two: each file alone
            raise _Doubt("a key repeated in the group")
        replaced: dict[str, int] = {}
        overlap = con.execute("SELECT EXISTS (SELECT 1 FROM flows)").fetchone()[0] and con.execute(
            """SELECT EXISTS (SELECT 1 FROM flows f
                               SEMI JOIN (SELECT DISTINCT source, reporter, period, flow FROM candidate_flows) c
                               USING (source, reporter, period, flow))""").fetchone()[0]
        if overlap:
            on = " AND ".join(f"f.{k} IS NOT DISTINCT FROM r.{k}" for k in FLOW_KEY)
            replaced = dict(con.execute(
                f"""SELECT r.file_idx, count(*) FROM {rows} r SEMI JOIN flows f ON {on}
                    GROUP BY r.file_idx""").fetchall())
            con.execute(f"DELETE FROM flows f USING (SELECT {key} FROM {rows} d) r WHERE {on}")
        cols = ", ".join(FLOW_COLUMNS)
        con.execute(f"INSERT INTO flows ({cols}) SELECT {cols} FROM {rows} d")
        inserted = dict(con.execute(f"SELECT file_idx, count(*) FROM {rows} d GROUP BY file_idx").fetchall())
        return {idx: (int(n), int(replaced.get(idx, 0))) for idx, n in inserted.items()}

    def _reporting(self, con: duckdb.DuckDBPyConnection) -> None:
        """`writing.record_reporting` for the group: a reporter-month published by two files is the first one's."""
        con.execute(
            f"""INSERT INTO reporting (source, reporter, flow, period, freq, load_id)
                SELECT ?, p.reporter, p.flow, p.period, p.freq, arg_min(b.load_id, b.file_idx)
                FROM (SELECT DISTINCT reporter, {self.flow} AS flow, period, freq, file_idx FROM parsed
                      WHERE reporter IS NOT NULL AND period IS NOT NULL AND {self.flow} IN ('M', 'X', 'RM', 'RX')) p
                JOIN batch_files b USING (file_idx)
                WHERE NOT EXISTS (SELECT 1 FROM reporting r WHERE r.source = ? AND r.reporter = p.reporter
                                  AND r.flow = p.flow AND r.period = p.period AND r.freq = p.freq)
                GROUP BY ALL""", [self.source, self.source])

    def _rejects(self, con: duckdb.DuckDBPyConnection) -> None:
        """Rejected rows into `rejects` with their own file and line (no broken lines in a group)."""
        con.execute("""INSERT INTO rejects (load_id, file, line, raw, reason)
                       SELECT b.load_id, b.file_path, p.row_no - c.first_row + 2, p.raw, p.reject_reason
                       FROM parsed p JOIN batch_counts c USING (file_idx) JOIN batch_files b USING (file_idx)
                       WHERE p.reject_reason IS NOT NULL""")


def _record_loads(con: duckdb.DuckDBPyConnection, group: list[PendingFile]) -> None:
    """`common.record_load` for every file of the group, in one statement."""
    now = datetime.now(UTC).replace(tzinfo=None)
    s = [item.summary for item in group]
    con.execute(
        """INSERT INTO loads SELECT unnest(?), ?, unnest(?), unnest(?), unnest(?), unnest(?), unnest(?), unnest(?), ?""",
        [[x.load_id for x in s], s[0].source, [str(item.path) for item in group], [item.digest for item in group],
         [x.rows_read for x in s], [x.rows_loaded for x in s], [x.rows_replaced for x in s],
         [x.rows_rejected for x in s], now])


def _drop(con: duckdb.DuckDBPyConnection) -> None:
    for view in ("candidate_flows", "staged_raw"):
        try:
            con.execute(f"DROP VIEW IF EXISTS {view}")
        except duckdb.Error:
            pass  # a table of that name, dropped below
    _cleanup(con)
    for table in ("staged_text", "batch_files", "batch_counts", "staged_errors", "staged_scan"):
        con.execute(f"DROP TABLE IF EXISTS {table}")


__all__ = ["Batch", "GROUP_BYTES", "LoadSummary"]
