"""US Census international-trade API responses (api.census.gov/data/timeseries/intltrade/
imports/hs and exports/hs): JSON as the API returns it (an array of arrays, the first one the
header) or CSV with the same column names, plain or gzip.

Conventions handled here (see the reference notes on the Census API):
- reporter is always USA; the partner comes from CTY_CODE (Schedule C) through
  `countries.census_code`. For imports it is the country of origin, for exports the country of
  destination.
- The API mixes country rows with totals: CTY_CODE '-' (all countries), codes starting with 0
  (groups: 0003 European Union, 0014 Pacific Rim, 0022 OECD, ...), region codes such as 5XXX
  (Asia) and any row with SUMMARY_LVL 'CGP'. They are rejected as partner aggregates (summing
  them with the countries multiplies the total) but still mark the month as reported.
- Imports: general imports are preferred to imports for consumption (general imports count
  every arrival, including goods entering bonded warehouses and zones, which is where a detour
  shows first). value_usd is CIF where the file has GEN_CIF_MO, else the customs value
  GEN_VAL_MO (FOB-like); CON_CIF_MO / CON_VAL_MO only when the file has no general-imports
  column. Exports: ALL_VAL_MO (f.a.s. value), quantity QTY_1_MO.
- COMM_LVL HS2 and HS4 rows are sums of the detailed lines and are rejected; HS6 and HS10 are
  kept (the flows_hs6 view avoids adding an HS6 total to its own HS10 lines).
- Quantities are in UNIT_QY1: 'KG' gives net_weight_kg, 'T' (metric tons) too (times 1000);
  other units keep quantity and quantity_unit only. Unit '-' or 'X' means no quantity.
- The period is `time` ('YYYY-MM') or YEAR + MONTH.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from detector.errors import InputError
from detector.ingest.batch import Batch
from detector.ingest.common import LoadSummary, load_files
from detector.ingest.files import head_bytes
from detector.ingest.sql import (
    MEASURE_CHECKS_SQL,
    column_map,
    hs_fixed_sql,
    hs_restored_sql,
    hs_revision_sql,
    raw_row_sql,
)
from detector.ingest.staging import stage_csv
from detector.ingest.writing import batch_candidates_sql, finish_flows
from detector.warehouse import Warehouse

SOURCE = "census"

CENSUS_COLUMNS = [
    "I_COMMODITY", "E_COMMODITY", "GEN_VAL_MO", "CON_VAL_MO", "GEN_CIF_MO", "CON_CIF_MO", "ALL_VAL_MO",
    "GEN_QY1_MO", "CON_QY1_MO", "QTY_1_MO", "UNIT_QY1", "CTY_CODE", "CTY_NAME", "time", "YEAR", "MONTH",
    "SUMMARY_LVL", "COMM_LVL",
]
REQUIRED = {
    "commodity": ["I_COMMODITY", "E_COMMODITY"],
    "country": ["CTY_CODE"],
    "value": ["GEN_VAL_MO", "GEN_CIF_MO", "CON_VAL_MO", "CON_CIF_MO", "ALL_VAL_MO"],
    "period": ["time", "YEAR"],
}

PARSE_SQL = """
{into}
WITH src AS (
    SELECT row_no{carry},
           regexp_replace(coalesce(trim({commodity}), ''), '[\\s.]', '', 'g') AS code_raw,
           upper(nullif(trim({COMM_LVL}), ''))    AS comm_lvl,
           nullif(trim({CTY_CODE}), '')           AS cty_code,
           nullif(trim({CTY_NAME}), '')           AS cty_name,
           upper(nullif(trim({SUMMARY_LVL}), '')) AS summary_lvl,
           nullif(trim({time}), '')               AS time_txt,
           nullif(trim({YEAR}), '')               AS year_txt,
           nullif(trim({MONTH}), '')              AS month_txt,
           nullif(trim({value}), '')              AS value_txt,
           upper(nullif(trim({UNIT_QY1}), ''))    AS unit,
           nullif(trim({qty}), '')                AS qty_raw
    FROM staged_raw
),
typed AS (
    SELECT *,
           coalesce(CAST(try_strptime(time_txt, '%Y-%m') AS DATE),
                    try(make_date(TRY_CAST(year_txt AS INTEGER), TRY_CAST(month_txt AS INTEGER), 1))) AS period,
           {hs_code} AS hs_code,
           {hs_fixed} AS hs_fixed,
           TRY_CAST(value_txt AS DOUBLE) AS value_usd,
           CASE WHEN coalesce(unit, '-') NOT IN ('-', 'X') THEN qty_raw END AS qty_txt,
           coalesce(cty_code = '-' OR cty_code LIKE '0%' OR upper(cty_code) LIKE '%X%', false)
               OR coalesce(summary_lvl = 'CGP', false) AS partner_is_aggregate
    FROM src
),
resolved AS (
    SELECT t.*,
           TRY_CAST(t.qty_txt AS DOUBLE) AS quantity,
           c.iso3 AS partner
    FROM typed t
    LEFT JOIN countries c ON c.census_code = TRY_CAST(t.cty_code AS INTEGER)
                         AND regexp_full_match(t.cty_code, '\\d{{4}}') AND NOT t.partner_is_aggregate
)
SELECT *,
       'USA' AS reporter, '{flow}' AS flow, 'M' AS freq, CAST(NULL AS VARCHAR) AS partner2,
       CASE WHEN quantity IS NOT NULL THEN unit END AS quantity_unit,
       CASE WHEN unit = 'KG' THEN quantity WHEN unit = 'T' THEN quantity * 1000 END AS net_weight_kg,
       CAST(NULL AS VARCHAR) AS weight_txt,
       {hs_revision} AS hs_revision,
       CASE
         WHEN period IS NULL THEN 'unparseable period ''' || coalesce(time_txt, year_txt || '-' || month_txt, '') || ''''
         WHEN partner_is_aggregate
              THEN 'partner is an aggregate (' || coalesce(cty_name, cty_code, 'SUMMARY_LVL ' || summary_lvl) || '), not a country'
         WHEN partner IS NULL THEN 'unknown partner code ''' || coalesce(cty_code, '') || ''' (Schedule C)'
         WHEN comm_lvl IN ('HS2', 'HS4')
              THEN 'HS level ' || comm_lvl || ' is an aggregate; need 6 to 10 digits'
         WHEN comm_lvl IS NULL AND regexp_full_match(hs_code, '\\d{{2}}|\\d{{4}}')
              THEN 'HS level HS' || length(hs_code) || ' is an aggregate; need 6 to 10 digits'
         WHEN hs_code IN ('-', 'TOTAL') THEN 'all-commodities total is an aggregate; need 6 to 10 digits'
         {checks}
       END AS reject_reason
FROM resolved
"""


def stage_json(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    """An API response (array of arrays, header first) into `staged_raw` / `staged_broken`.

    The API writes one array per line, so the array's position is its file line; arrays with
    another length than the header are kept aside as broken lines.
    """
    for t in ("census_json", "staged_raw", "staged_broken"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    try:
        con.execute(
            """CREATE TEMP TABLE census_json AS
               SELECT row_number() OVER () AS n, json AS arr
               FROM read_json(?, format = 'array', records = false, columns = {'json': 'VARCHAR[]'})""",
            [str(path)],
        )
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(path, f"not a Census API JSON response (array of arrays): {first}") from None
    row = con.execute("SELECT arr FROM census_json WHERE n = 1").fetchone()
    if not row or not row[0]:
        raise InputError(path, "empty JSON response (no header row)", line=1)
    header, seen = [], {}
    for name in row[0]:  # a column asked for twice (get= and a predicate) comes back twice
        name = str(name)
        seen[name.lower()] = seen.get(name.lower(), 0) + 1
        header.append(name if seen[name.lower()] == 1 else f"{name}_{seen[name.lower()]}")
    width = len(header)
    cols = ", ".join(f"arr[{i + 1}] AS {duckdb.ColumnExpression(name)}" for i, name in enumerate(header))
    con.execute(
        f"""CREATE TEMP TABLE staged_raw AS
            SELECT {cols}, row_number() OVER (ORDER BY n) AS row_no
            FROM census_json WHERE n > 1 AND len(arr) = {width}"""
    )
    con.execute(
        f"""CREATE TEMP TABLE staged_broken AS
            SELECT n AS line, array_to_string(arr, ',') AS raw,
                   'wrong number of fields: ' || len(arr) || ' (the header has {width})' AS reason
            FROM census_json WHERE n > 1 AND len(arr) <> {width}"""
    )
    con.execute("DROP TABLE census_json")
    return header


def _is_json(path: Path) -> bool:
    return head_bytes(path, 4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")


def _parse_sql(header: list[str], path: Path, into: str = "CREATE OR REPLACE TEMP TABLE parsed AS",
               batch: bool = False) -> str:
    """PARSE_SQL for a file of this header (imports or exports); refuses a header that is neither.
    `batch`: `staged_raw` holds a group of files, each row's file_idx and line text carried into `parsed`."""
    cols = column_map(header, path, CENSUS_COLUMNS, REQUIRED, "a US Census trade file")
    imports = cols["I_COMMODITY"] != "NULL"
    if imports and cols["E_COMMODITY"] != "NULL":
        raise InputError(path, "both I_COMMODITY and E_COMMODITY: give imports and exports in separate files",
                         line=1)
    if imports:
        value = f"coalesce({cols['GEN_CIF_MO']}, {cols['GEN_VAL_MO']}, {cols['CON_CIF_MO']}, {cols['CON_VAL_MO']})"
        qty = f"coalesce({cols['GEN_QY1_MO']}, {cols['CON_QY1_MO']})"
    else:
        value, qty = cols["ALL_VAL_MO"], cols["QTY_1_MO"]
        if value == "NULL":
            raise InputError(path, "export file without ALL_VAL_MO (the export value)", line=1)
    return PARSE_SQL.format(
        into=into, carry=f", file_idx, {raw_row_sql(header, row='')} AS raw" if batch else "",
        commodity=cols["I_COMMODITY" if imports else "E_COMMODITY"], value=value, qty=qty,
        flow="M" if imports else "X", hs_code=hs_restored_sql("code_raw"), hs_fixed=hs_fixed_sql("code_raw"),
        hs_revision=hs_revision_sql("year(period)"), checks=MEASURE_CHECKS_SQL, **cols,
    )


def _parse(con: duckdb.DuckDBPyConnection, path: Path, summary: LoadSummary) -> list[str]:
    """Read and parse the file into the temp table `parsed` (before the file's transaction opens); its header."""
    # The API repeats a column asked for both in get= and as a predicate (same values): like the
    # JSON reader, the CSV reader keeps the first one.
    header = stage_json(con, path) if _is_json(path) else stage_csv(con, path, allow_duplicates=True)
    con.execute(_parse_sql(header, path))
    return header


# CSV files of one header load in groups (see detector.ingest.batch); a JSON response loads alone.
BATCH = Batch(SOURCE, lambda header: header, lambda names, path: _parse_sql(names, path),
              lambda header, path, into: _parse_sql(header, path, into, batch=True),
              batch_candidates_sql(SOURCE), key_extra=lambda path: None if _is_json(path) else ())


def load_census(wh: Warehouse, paths) -> list[LoadSummary]:
    """Load Census imports/exports API responses (JSON or CSV); each file whole or not at all."""
    return load_files(wh, paths, SOURCE, finish_flows, batch=BATCH, prepare=_parse)
