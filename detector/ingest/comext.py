"""Eurostat Comext monthly bulk files, in the historical header (DECLARANT_ISO, PARTNER_ISO,
STAT_REGIME, VALUE_IN_EUROS, QUANTITY_IN_KG, ...) and the current one (REPORTER, PARTNER,
STAT_PROCEDURE, VALUE_EUR, QUANTITY_KG, ...), any delimiter (sniffed), plain or gzip.

Conventions handled here (see the reference notes on Comext):
- FLOW 1 = import 'M', 2 = export 'X'. Reporter and partner are Eurostat geo codes, ISO2 but
  for EL (Greece, ISO GR), UK (GB) and XI / XU (Northern Ireland / Great Britain since 2021),
  which are all mapped to the ISO3 of `countries`. Totals (EU27_2020, EXTRA_EU, WORLD, ...) are
  partner aggregates; QP..QZ are "no country" codes (stores, secret, not determined).
- PERIOD is YYYYMM; YYYY52 is the annual total, repeating the months: rejected.
- PRODUCT_NC is CN8. Codes with letters (99RRR100, 2606XXXX) are confidential lines and TOTAL
  the all-products sum: both rejected. A 7-digit code lost its leading zero and is restored.
- Files break each flow down by statistical procedure (and, once XI/XU are mapped, a reporter
  or partner can appear twice): rows with the same flows key are summed into one flow.
- Values are in EUR and converted with the month's rate from `eur_usd` (monthly averages of the
  ECB reference rate, reference/eur_usd_monthly.csv, or the `rates` file given). A month without
  a rate is rejected. Net mass is in kg; the supplementary quantity keeps its unit.
"""

from __future__ import annotations

import functools
from pathlib import Path

import duckdb

from detector.ingest.batch import Batch
from detector.ingest.common import LoadSummary, load_files
from detector.ingest.fx import load_eur_usd
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

SOURCE = "comext"

COMEXT_COLUMNS = [
    "DECLARANT", "DECLARANT_ISO", "REPORTER", "PARTNER", "PARTNER_ISO", "TRADE_TYPE", "PRODUCT_NC", "FLOW",
    "STAT_REGIME", "STAT_PROCEDURE", "SUPP_UNIT", "SUPPL_UNIT", "PERIOD", "VALUE_IN_EUROS", "VALUE_EUR",
    "QUANTITY_IN_KG", "QUANTITY_KG", "SUP_QUANTITY", "QUANTITY_SUPPL_UNIT",
]
REQUIRED = {
    "reporter": ["REPORTER", "DECLARANT_ISO"],
    "partner": ["PARTNER", "PARTNER_ISO"],
    "product": ["PRODUCT_NC"],
    "flow": ["FLOW"],
    "period": ["PERIOD"],
    "value": ["VALUE_EUR", "VALUE_IN_EUROS"],
}

# Eurostat geo codes that differ from ISO 3166 alpha-2.
EUROSTAT_ISO2 = {"EL": "GR", "UK": "GB", "XI": "GB", "XU": "GB"}
# Eurostat partner codes for totals of several countries.
AGGREGATES = ["EU", "EU27_2020", "EU28", "EU27", "EU15", "EA", "EXT_EU", "EXT_EU27_2020", "EXT_EU28",
              "EXTRA_EU", "INT_EU", "INT_EU27_2020", "INT_EU28", "INTRA_EU", "WORLD", "WLD", "TOTAL"]

PARSE_SQL = """
{into}
WITH src AS (
    SELECT row_no{carry},
           upper(nullif(trim(coalesce({REPORTER}, {DECLARANT_ISO})), ''))  AS reporter_code,
           upper(nullif(trim(coalesce({PARTNER_ISO}, {PARTNER})), ''))     AS partner_code,
           regexp_replace(coalesce(trim({PRODUCT_NC}), ''), '[\\s.]', '', 'g') AS product_raw,
           nullif(trim({FLOW}), '')                                        AS flow_code,
           nullif(trim(coalesce({STAT_PROCEDURE}, {STAT_REGIME})), '')     AS procedure,
           upper(nullif(trim({TRADE_TYPE}), ''))                          AS trade_type,
           nullif(trim({PERIOD}), '')                                      AS period_txt,
           nullif(trim(coalesce({VALUE_EUR}, {VALUE_IN_EUROS})), '')       AS value_txt,
           nullif(trim(coalesce({QUANTITY_KG}, {QUANTITY_IN_KG})), '')     AS weight_txt,
           upper(nullif(trim(coalesce({SUPPL_UNIT}, {SUPP_UNIT})), ''))    AS supp_unit,
           nullif(trim(coalesce({QUANTITY_SUPPL_UNIT}, {SUP_QUANTITY})), '') AS supp_qty
    FROM staged_raw
),
typed AS (
    SELECT *,
           regexp_full_match(coalesce(period_txt, ''), '\\d{{4}}52') AS annual_total,
           CASE WHEN regexp_full_match(coalesce(period_txt, ''), '\\d{{6}}')
                THEN try(make_date(CAST(substr(period_txt, 1, 4) AS INTEGER),
                                   CAST(substr(period_txt, 5, 2) AS INTEGER), 1)) END AS period,
           CASE flow_code WHEN '1' THEN 'M' WHEN '2' THEN 'X' END AS flow,
           {hs_code} AS hs_code,
           {hs_fixed} AS hs_fixed,
           CASE WHEN supp_unit IS NOT NULL AND supp_unit NOT IN ('NO_SU', '-') THEN supp_qty END AS qty_txt,
           coalesce({geo}[reporter_code], reporter_code) AS reporter_iso2,
           coalesce({geo}[partner_code], partner_code) AS partner_iso2,
           row_number() OVER (PARTITION BY reporter_code, partner_code, product_raw, flow_code, period_txt,
                                           procedure, trade_type{carry_key} ORDER BY row_no) AS dup
    FROM src
),
resolved AS (
    SELECT t.*,
           r.iso3 AS reporter, p.iso3 AS partner,
           x.usd_per_eur,
           TRY_CAST(t.value_txt AS DOUBLE) * x.usd_per_eur AS value_usd,
           TRY_CAST(t.weight_txt AS DOUBLE) AS net_weight_kg,
           TRY_CAST(t.qty_txt AS DOUBLE) AS quantity
    FROM typed t
    LEFT JOIN countries r ON r.iso2 = t.reporter_iso2 AND length(t.reporter_iso2) = 2
    LEFT JOIN countries p ON p.iso2 = t.partner_iso2 AND length(t.partner_iso2) = 2
    LEFT JOIN eur_usd x ON x.month = t.period
)
SELECT *, 'M' AS freq, CAST(NULL AS VARCHAR) AS partner2,
       CASE WHEN quantity IS NOT NULL THEN supp_unit END AS quantity_unit,
       {hs_revision} AS hs_revision,
       CASE
         WHEN annual_total
              THEN 'annual total (PERIOD ' || period_txt || ') repeats the months; an aggregate, not a month'
         WHEN period IS NULL THEN 'unparseable period ''' || coalesce(period_txt, '') || ''' (need YYYYMM)'
         WHEN reporter IS NULL THEN 'unknown reporter code ''' || coalesce(reporter_code, '') || ''''
         WHEN flow IS NULL THEN 'unsupported flow code ''' || coalesce(flow_code, '') || ''' (1 import, 2 export)'
         WHEN partner_code IN ({aggregates})
              THEN 'partner is an aggregate (' || partner_code || '), not a country'
         WHEN regexp_full_match(coalesce(partner_code, ''), 'Q[M-Z]')
              THEN 'partner ''' || partner_code || ''' is a Eurostat code for no country (stores, secret or not determined)'
         WHEN partner IS NULL THEN 'unknown partner code ''' || coalesce(partner_code, '') || ''''
         WHEN upper(product_raw) = 'TOTAL' THEN 'product TOTAL is an aggregate, not a product'
         WHEN regexp_matches(product_raw, '[A-Za-z]')
              THEN 'confidential product code ''' || product_raw || ''' (letters mark a suppressed line)'
         WHEN usd_per_eur IS NULL THEN 'no EUR/USD rate for ' || strftime(period, '%Y-%m')
         {checks}
         WHEN dup > 1 THEN 'duplicate line in file (same reporter, partner, product, flow, period, procedure)'
       END AS reject_reason
FROM resolved
"""


def _sql_list(values) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _parse_sql(header: list[str], path: Path, into: str = "CREATE OR REPLACE TEMP TABLE parsed AS",
               batch: bool = False) -> str:
    """PARSE_SQL for a file of this header; `batch`: `staged_raw` holds a group of files, each row's
    file_idx and line text carried into `parsed` (a repeated line is one within its own file)."""
    cols = column_map(header, path, COMEXT_COLUMNS, REQUIRED, "a Eurostat Comext file")
    geo = "MAP {" + ", ".join(f"'{k}': '{v}'" for k, v in EUROSTAT_ISO2.items()) + "}"
    return PARSE_SQL.format(
        into=into, carry=f", file_idx, {raw_row_sql(header, row='')} AS raw" if batch else "",
        carry_key=", file_idx" if batch else "",
        hs_code=hs_restored_sql("product_raw"), hs_fixed=hs_fixed_sql("product_raw"),
        hs_revision=hs_revision_sql("year(period)"), geo=geo, aggregates=_sql_list(AGGREGATES),
        checks=MEASURE_CHECKS_SQL, **cols,
    )


def _parse(con: duckdb.DuckDBPyConnection, path: Path, summary: LoadSummary) -> list[str]:
    """Read and parse the file into the temp table `parsed` (before the file's transaction opens); its header."""
    header = stage_csv(con, path)
    con.execute(_parse_sql(header, path))
    return header


# Files of one header load in groups (see detector.ingest.batch); the parts of a flow are summed
# per file, and a flow in two files of a group sends the group one by one (the later file replaces).
BATCH = Batch(SOURCE, lambda header: header,
              lambda names, path: column_map(names, path, COMEXT_COLUMNS, REQUIRED, "a Eurostat Comext file"),
              lambda header, path, into: _parse_sql(header, path, into, batch=True),
              batch_candidates_sql(SOURCE, sum_parts=True))


def load_comext(wh: Warehouse, paths, rates: str | Path | None = None) -> list[LoadSummary]:
    """Load Comext monthly files; `rates` overrides the shipped EUR/USD monthly rate table."""
    load_eur_usd(wh.con, rates)
    try:
        return load_files(wh, paths, SOURCE, functools.partial(finish_flows, sum_parts=True), batch=BATCH,
                          prepare=_parse)
    finally:
        wh.con.execute("DROP TABLE IF EXISTS eur_usd")
