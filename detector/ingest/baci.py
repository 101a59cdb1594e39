"""CEPII BACI annual files (`BACI_HS22_Y2023_V202501.csv`: t,i,j,k,v,q), plain or gzip.

Conventions handled here (see the reference notes on BACI):
- BACI reconciles the exporter's and the importer's reports into one figure per (exporter,
  importer, product, year). It is stored once, as the importer's import: reporter = importer j,
  partner = exporter i, flow 'M', source 'baci', freq 'A', period = 1 January of t. Storing it
  again as the exporter's export would count every trade twice in any sum over flows.
- v is in thousands of current USD and q in metric tons: value_usd = v * 1000, net_weight_kg =
  q * 1000 (quantity keeps q with unit 't'); q is 'NA' or empty when unknown -> NULL. BACI values
  are FOB (it removes estimated freight and insurance from import values).
- i and j are Comtrade-style numeric codes (842 USA, 251 France, 699 India, 490 Taiwan). They are
  resolved with BACI's own `country_codes_V*.csv` (given, or found next to the data file), else
  with the Comtrade codes of the `countries` table; codes BACI maps to no ISO3 country fall back
  to the Comtrade codes too.
- k is the HS6 product written as an integer, so 080300 arrives as 80300: the leading zero is
  restored and counted. The HS revision comes from the file name (HS22 -> HS2022, HS92 -> HS1992).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import duckdb

from detector.errors import InputError
from detector.ingest.batch import Batch
from detector.ingest.common import LoadSummary, load_files
from detector.ingest.sql import MEASURE_CHECKS_SQL, column_map, hs_fixed_sql, hs_restored_sql, raw_row_sql
from detector.ingest.staging import stage_csv
from detector.ingest.writing import batch_candidates_sql, finish_flows
from detector.warehouse import Warehouse

SOURCE = "baci"
BACI_COLUMNS = ["t", "i", "j", "k", "v", "q"]
REQUIRED = {"year": ["t"], "exporter": ["i"], "importer": ["j"], "product": ["k"], "value": ["v"]}
CODE_FILE_COLUMNS = ["country_code", "country_name", "country_iso2", "country_iso3"]

_NAME = re.compile(r"BACI_HS(\d\d)_", re.IGNORECASE)
_VERSION = re.compile(r"_(V\d{6}\w*?)\.csv", re.IGNORECASE)

PARSE_SQL = """
{into}
WITH src AS (
    SELECT row_no{carry},
           nullif(trim({t}), '') AS year_txt,
           nullif(trim({i}), '') AS exporter_code,
           nullif(trim({j}), '') AS importer_code,
           regexp_replace(coalesce(trim({k}), ''), '[\\s.]', '', 'g') AS k_raw,
           nullif(trim({v}), '') AS value_txt,
           CASE WHEN upper(trim({q})) IN ('', 'NA', 'NAN') THEN NULL ELSE trim({q}) END AS qty_txt
    FROM staged_raw
),
typed AS (
    SELECT *,
           CASE WHEN TRY_CAST(year_txt AS INTEGER) BETWEEN 1988 AND 2100
                THEN make_date(CAST(year_txt AS INTEGER), 1, 1) END AS period,
           {hs_code} AS hs_code,
           {hs_fixed} AS hs_fixed,
           TRY_CAST(value_txt AS DOUBLE) * 1000 AS value_usd,
           TRY_CAST(qty_txt AS DOUBLE) AS quantity,
           qty_txt AS weight_txt
    FROM src
),
resolved AS (
    SELECT t.*,
           t.quantity * 1000 AS net_weight_kg,
           coalesce(jb.iso3, jc.iso3) AS reporter,
           coalesce(ib.iso3, ic.iso3) AS partner,
           ia.name AS exporter_area, ja.name AS importer_area
    FROM typed t
    LEFT JOIN baci_codes bj ON bj.code = TRY_CAST(t.importer_code AS INTEGER)
    LEFT JOIN countries jb ON jb.iso3 = bj.iso3
    LEFT JOIN countries jc ON jc.comtrade_code = TRY_CAST(t.importer_code AS INTEGER)
    LEFT JOIN baci_codes bi ON bi.code = TRY_CAST(t.exporter_code AS INTEGER)
    LEFT JOIN countries ib ON ib.iso3 = bi.iso3
    LEFT JOIN countries ic ON ic.comtrade_code = TRY_CAST(t.exporter_code AS INTEGER)
    LEFT JOIN comtrade_areas ja ON ja.comtrade_code = TRY_CAST(t.importer_code AS INTEGER)
    LEFT JOIN comtrade_areas ia ON ia.comtrade_code = TRY_CAST(t.exporter_code AS INTEGER)
)
SELECT *, 'A' AS freq, 'M' AS flow, CAST(NULL AS VARCHAR) AS partner2, CAST({hs_revision} AS VARCHAR) AS hs_revision,
       CASE WHEN quantity IS NOT NULL THEN 't' END AS quantity_unit,
       CASE
         WHEN period IS NULL THEN 'unparseable year ''' || coalesce(year_txt, '') || ''''
         WHEN reporter IS NULL AND importer_area IS NOT NULL
              THEN 'reporter is an aggregate (' || importer_area || '), not a country'
         WHEN reporter IS NULL THEN 'unknown importer code ''' || coalesce(importer_code, '') || ''''
         WHEN partner IS NULL AND exporter_area IS NOT NULL
              THEN 'partner is an aggregate (' || exporter_area || '), not a country'
         WHEN partner IS NULL THEN 'unknown exporter code ''' || coalesce(exporter_code, '') || ''''
         WHEN length(hs_code) <> 6 AND regexp_full_match(hs_code, '\\d+')
              THEN 'wrong HS length: ''' || hs_code || ''' has ' || length(hs_code) || ' digits (BACI is HS6)'
         {checks}
       END AS reject_reason
FROM resolved
"""


def hs_revision_from_name(path: Path) -> str | None:
    """'BACI_HS22_Y2023_V202501.csv' -> 'HS2022'; HS92 -> 'HS1992'; None when the name says nothing."""
    m = _NAME.search(path.name)
    if not m:
        return None
    yy = int(m.group(1))
    return f"HS{1900 + yy if yy >= 88 else 2000 + yy}"


def find_country_codes(path: Path) -> Path | None:
    """BACI's country-code file next to a data file: the same version if present, else the newest."""
    version = _VERSION.search(path.name)
    if version:
        same = path.parent / f"country_codes_{version.group(1)}.csv"
        if same.is_file():
            return same
    found = sorted(path.parent.glob("country_codes_V*.csv"))
    return found[-1] if found else None


def _stage_country_codes(con: duckdb.DuckDBPyConnection, codes: Path | None) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE baci_codes (code INTEGER, iso3 VARCHAR)")
    if codes is None:
        return
    if not codes.is_file():
        raise InputError(codes, "no such file (BACI country codes)")
    header = stage_csv(con, codes, table="baci_codes_raw")
    cols = column_map(header, codes, CODE_FILE_COLUMNS, {"code": ["country_code"], "iso3": ["country_iso3"]},
                      "a BACI country-code file")
    con.execute(
        f"""INSERT INTO baci_codes
            SELECT DISTINCT TRY_CAST(trim({cols['country_code']}) AS INTEGER), upper(trim({cols['country_iso3']}))
            FROM baci_codes_raw WHERE TRY_CAST(trim({cols['country_code']}) AS INTEGER) IS NOT NULL"""
    )
    con.execute("DROP TABLE baci_codes_raw")
    con.execute("DROP TABLE IF EXISTS staged_broken")


def _parse_sql(header: list[str], path: Path, into: str = "CREATE OR REPLACE TEMP TABLE parsed AS",
               batch: bool = False) -> str:
    """PARSE_SQL for a file of this header and name; `batch`: `staged_raw` holds a group of files,
    each row's file_idx and line text carried into `parsed`."""
    cols = column_map(header, path, BACI_COLUMNS, REQUIRED, "a BACI file (t,i,j,k,v,q)")
    revision = hs_revision_from_name(path)
    return PARSE_SQL.format(
        into=into, carry=f", file_idx, {raw_row_sql(header, row='')} AS raw" if batch else "",
        hs_code=hs_restored_sql("k_raw"), hs_fixed=hs_fixed_sql("k_raw"), checks=MEASURE_CHECKS_SQL,
        hs_revision="NULL" if revision is None else f"'{revision}'", **cols)


def _parse(con: duckdb.DuckDBPyConnection, path: Path, summary: LoadSummary, country_codes: Path | None) -> list[str]:
    """Read and parse the file into the temp table `parsed` (before the file's transaction opens); its header."""
    _stage_country_codes(con, country_codes or find_country_codes(path))
    header = stage_csv(con, path)
    con.execute(_parse_sql(header, path))
    return header


def _batch(country_codes: Path | None) -> Batch:
    """Groups of BACI files: those of one HS revision (from the name) and one country-code file."""
    def codes(path: Path) -> Path | None:
        return country_codes or find_country_codes(path)

    return Batch(SOURCE, lambda header: header,
                 lambda names, path: column_map(names, path, BACI_COLUMNS, REQUIRED, "a BACI file (t,i,j,k,v,q)"),
                 lambda header, path, into: _parse_sql(header, path, into, batch=True),
                 batch_candidates_sql(SOURCE),
                 key_extra=lambda path: (hs_revision_from_name(path), str(codes(path))),
                 prepare=lambda con, path: _stage_country_codes(con, codes(path)))


def load_baci(wh: Warehouse, paths, country_codes: str | Path | None = None) -> list[LoadSummary]:
    """Load BACI files; `country_codes` is BACI's country_codes_V*.csv (default: found next to each file).
    Files of one header, revision and code file load in groups (see detector.ingest.batch)."""
    codes = Path(country_codes) if country_codes else None
    try:
        return load_files(wh, paths, SOURCE, finish_flows, batch=_batch(codes),
                          prepare=functools.partial(_parse, country_codes=codes))
    finally:
        wh.con.execute("DROP TABLE IF EXISTS baci_codes")
