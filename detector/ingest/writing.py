"""Writing a loader's valid rows into `flows`: repeated keys in one file rejected, revised rows
replaced, the reporters' published months recorded, the rejects set aside."""

from __future__ import annotations

from pathlib import Path

import duckdb

from detector.ingest.common import LoadSummary
from detector.ingest.rejects import record_rejects
from detector.ingest.sql import raw_row_sql

FLOW_KEY = ["source", "period", "reporter", "partner", "partner2", "flow", "hs_code"]
FLOW_COLUMNS = [
    "source", "period", "freq", "reporter", "partner", "partner2", "flow", "hs_code", "hs_revision",
    "value_usd", "net_weight_kg", "quantity", "quantity_unit", "load_id",
]


def write_flows(con: duckdb.DuckDBPyConnection, summary: LoadSummary, candidates: str) -> None:
    """Replace revised keys and insert new rows from the `candidates` table (FLOW_COLUMNS).

    A key present twice in one file keeps its first line; the others are rejected. The usual
    case, a file without repeated keys whose reporter-months are new to the warehouse, is checked
    first with one sort of key hashes and one semi-join, and skips the ranking sort and the delete.
    """
    key = ", ".join(FLOW_KEY)
    # One hash of the key per row, sorted to find a repeat: cheaper than a hash aggregate with
    # one group per row; a collision only sends a file down the exact ranking path below, which
    # then rejects nothing more.
    hashes = con.execute(f"SELECT hash({key}) AS h FROM {candidates}").fetchnumpy()["h"]
    hashes.sort()
    repeated = bool((hashes[1:] == hashes[:-1]).any())
    del hashes
    rows = candidates
    if repeated:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE ranked AS
                SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY row_no) AS dup
                FROM {candidates}"""
        )
        con.execute(
            """INSERT INTO staged_rejects
                SELECT row_no, 'duplicate key in file (same reporter, partner, flow, hs_code, period as an earlier line)'
                FROM ranked WHERE dup > 1"""
        )
        rows = "(SELECT * FROM ranked WHERE dup = 1)"
    overlap = con.execute("SELECT EXISTS (SELECT 1 FROM flows)").fetchall()[0][0] and con.execute(
        f"""SELECT EXISTS (SELECT 1 FROM flows f
                           SEMI JOIN (SELECT DISTINCT source, reporter, period, flow FROM {candidates}) c
                           USING (source, reporter, period, flow))"""
    ).fetchall()[0][0]
    replaced = 0
    if overlap:
        on = " AND ".join(f"f.{k} IS NOT DISTINCT FROM r.{k}" for k in FLOW_KEY)
        replaced = con.execute(f"DELETE FROM flows f USING (SELECT {key} FROM {rows} d) r WHERE {on}").fetchone()[0]
    cols = ", ".join(FLOW_COLUMNS)
    inserted = con.execute(f"INSERT INTO flows ({cols}) SELECT {cols} FROM {rows} d").fetchone()[0]
    summary.rows_replaced = int(replaced)
    summary.rows_loaded = int(inserted) - int(replaced)


# Who published what: every parsed row with a valid reporter, flow and period counts, aggregates included.
REPORTING_SQL = """
INSERT INTO reporting (source, reporter, flow, period, freq, load_id)
SELECT DISTINCT ?, p.reporter, p.{flow}, p.period, p.freq, ?
FROM parsed p
WHERE p.reporter IS NOT NULL AND p.period IS NOT NULL AND p.{flow} IN ('M', 'X', 'RM', 'RX')
  AND NOT EXISTS (SELECT 1 FROM reporting r WHERE r.source = ? AND r.reporter = p.reporter
                  AND r.flow = p.{flow} AND r.period = p.period AND r.freq = p.freq)
"""


def record_reporting(con: duckdb.DuckDBPyConnection, source: str, load_id: str, flow: str = "flow") -> None:
    """Mark (reporter, flow, period) as published, from the temp table `parsed`."""
    con.execute(REPORTING_SQL.format(flow=flow), [source, load_id, source])


# Rows of one key that are parts of one flow (Comext lines per statistical procedure) summed into it.
SUMMED_CANDIDATES_SQL = """
SELECT period, freq, reporter, partner, partner2, flow, hs_code, min(hs_revision) AS hs_revision,
       sum(value_usd) AS value_usd,
       CASE WHEN count(net_weight_kg) = count(*) THEN sum(net_weight_kg) END AS net_weight_kg,
       CASE WHEN count(quantity) = count(*) AND count(DISTINCT quantity_unit) <= 1 THEN sum(quantity) END AS quantity,
       CASE WHEN count(DISTINCT quantity_unit) = 1 THEN min(quantity_unit) END AS quantity_unit,
       min(row_no) AS row_no{carry}
FROM parsed WHERE reject_reason IS NULL
GROUP BY period, freq, reporter, partner, partner2, flow, hs_code{carry}
"""


def finish_flows(con: duckdb.DuckDBPyConnection, path: Path, summary: LoadSummary, header: list[str],
                 sum_parts: bool = False) -> None:
    """The common tail of a flow loader, from a temp table `parsed` holding row_no, the FLOW_COLUMNS
    but source and load_id, reject_reason and hs_fixed: set rejects aside, write flows, record reporting.

    `sum_parts`: valid rows sharing a flows key are parts of one flow (a breakdown the source gives
    and flows does not keep) and are summed; otherwise the second one is a duplicate.
    """
    summary.rows_read = con.execute("SELECT count(*) FROM parsed").fetchone()[0] + con.execute(
        "SELECT count(*) FROM staged_broken").fetchone()[0]
    cols = ", ".join(c for c in FLOW_COLUMNS if c not in ("source", "load_id"))
    rows = f"({SUMMED_CANDIDATES_SQL.format(carry='')})" if sum_parts else "(SELECT * FROM parsed WHERE reject_reason IS NULL)"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE candidates AS
            SELECT CAST(? AS VARCHAR) AS source, {cols}, CAST(? AS VARCHAR) AS load_id, row_no
            FROM {rows} valid""",
        [summary.source, summary.load_id],
    )
    con.execute("INSERT INTO staged_rejects SELECT row_no, reject_reason FROM parsed WHERE reject_reason IS NOT NULL")
    summary.aggregates = con.execute(
        "SELECT count(*) FROM parsed WHERE reject_reason LIKE 'partner is %aggregate%'").fetchone()[0]
    summary.fixed_codes = con.execute(
        "SELECT count(*) FROM parsed WHERE reject_reason IS NULL AND hs_fixed").fetchone()[0]
    write_flows(con, summary, "candidates")
    record_reporting(con, summary.source, summary.load_id)
    record_rejects(con, summary, path, raw_row_sql(header))


def batch_candidates_sql(source: str, sum_parts: bool = False) -> str:
    """The valid rows of a group's `parsed` (see `detector.ingest.batch`) as FLOW_COLUMNS + row_no +
    file_idx, each with its file's load id; parts of one flow summed within their own file only."""
    cols = ", ".join(c for c in FLOW_COLUMNS if c not in ("source", "load_id"))
    rows = (f"({SUMMED_CANDIDATES_SQL.format(carry=', file_idx')})" if sum_parts
            else "(SELECT * FROM parsed WHERE reject_reason IS NULL)")
    literal = "'" + source.replace("'", "''") + "'"
    return f"""SELECT {literal} AS source, {cols}, b.load_id, valid.row_no, file_idx
               FROM {rows} valid JOIN batch_files b USING (file_idx)"""
