"""UN Comtrade CSV (API / comtradeapicall column names, the full 47-column getFinalData layout or
any subset with the essential columns), plain or gzip.

Conventions handled here (see the reference notes on Comtrade):
- reporter/partner codes are Comtrade's (USA 842, FRA 251, IND 699, CHE 757, NOR 579, 490 = Taiwan);
  the ISO columns are used when the numeric code is absent;
- partner 0 "World" and area aggregates ("Areas, nes", free zones, ...) never reach `flows`: they
  are counted, kept in `rejects` with their reason, and used only to know who reported when;
- value_usd is CIF for imports and FOB for exports where given, else primaryValue;
- breakdown rows (customsCode other than C00, motCode other than 0) are not totals and are kept out;
- refMonth 52 / a 4-digit period / freqCode A mark annual rows (freq 'A', period = 1 January);
- a 5-, 7- or 9-digit HS code is one that lost its leading zero in a spreadsheet: it is restored and
  counted in the load summary.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from detector.ingest.common import (
    LoadSummary,
    column_map,
    load_files,
    raw_row_sql,
    record_rejects,
    record_reporting,
    stage_csv,
    write_flows,
)
from detector.warehouse import Warehouse

SOURCE = "comtrade"

COMTRADE_COLUMNS = [
    "typeCode", "freqCode", "refPeriodId", "refYear", "refMonth", "period", "reporterCode", "reporterISO",
    "reporterDesc", "flowCode", "flowDesc", "partnerCode", "partnerISO", "partnerDesc", "partner2Code",
    "partner2ISO", "partner2Desc", "classificationCode", "classificationSearchCode",
    "isOriginalClassification", "cmdCode", "cmdDesc", "aggrLevel", "isLeaf", "customsCode", "customsDesc",
    "mosCode", "motCode", "motDesc", "qtyUnitCode", "qtyUnitAbbr", "qty", "isQtyEstimated", "altQtyUnitCode",
    "altQtyUnitAbbr", "altQty", "isAltQtyEstimated", "netWgt", "isNetWgtEstimated", "grossWgt",
    "isGrossWgtEstimated", "cifvalue", "fobvalue", "primaryValue", "legacyEstimationFlag", "isReported",
    "isAggregate",
]

# What a file must have, as alternatives: any one name of each group.
REQUIRED = {
    "commodity code": ["cmdCode"],
    "flow": ["flowCode"],
    "reporter": ["reporterCode", "reporterISO"],
    "partner": ["partnerCode", "partnerISO"],
    "period": ["period", "refPeriodId", "refYear"],
    "value": ["primaryValue", "cifvalue", "fobvalue"],
}

HS_REVISIONS = {"H0": "HS1992", "H1": "HS1996", "H2": "HS2002", "H3": "HS2007", "H4": "HS2012",
                "H5": "HS2017", "H6": "HS2022"}

# Maps the (possibly absent) source columns onto typed fields, then says what is wrong with a row.
PARSE_SQL = """
CREATE OR REPLACE TEMP TABLE parsed AS
WITH src AS (
    SELECT row_no,
           nullif(trim({freqCode}), '')            AS freq_txt,
           nullif(trim({period}), '')              AS period_txt,
           nullif(trim({refPeriodId}), '')         AS ref_period_id,
           nullif(trim({refYear}), '')             AS ref_year,
           nullif(trim({refMonth}), '')            AS ref_month,
           nullif(trim({reporterCode}), '')        AS reporter_code,
           upper(nullif(trim({reporterISO}), ''))  AS reporter_iso,
           nullif(trim({partnerCode}), '')         AS partner_code,
           upper(nullif(trim({partnerISO}), ''))   AS partner_iso,
           nullif(trim({partner2Code}), '')        AS partner2_code,
           upper(nullif(trim({partner2ISO}), ''))  AS partner2_iso,
           upper(nullif(trim({flowCode}), ''))     AS flow_code,
           regexp_replace(coalesce(trim({cmdCode}), ''), '[\\s.]', '', 'g') AS cmd_raw,
           upper(nullif(trim({classificationCode}), '')) AS classification,
           nullif(trim({customsCode}), '')         AS customs_code,
           nullif(trim({motCode}), '')             AS mot_code,
           nullif(trim({cifvalue}), '')            AS cif_txt,
           nullif(trim({fobvalue}), '')            AS fob_txt,
           nullif(trim({primaryValue}), '')        AS primary_txt,
           nullif(trim({netWgt}), '')              AS weight_txt,
           nullif(trim({qty}), '')                 AS qty_txt,
           nullif(trim({qtyUnitAbbr}), '')         AS qty_unit
    FROM staged_raw
),
periods AS (
    SELECT *,
           coalesce(period_txt, substr(ref_period_id, 1, 6),
                    ref_year || CASE WHEN ref_month IS NULL OR ref_month = '52' THEN ''
                                     ELSE lpad(ref_month, 2, '0') END) AS p,
           CASE WHEN upper(freq_txt) IN ('A', 'M') THEN upper(freq_txt)
                WHEN ref_month = '52' THEN 'A'
                WHEN length(coalesce(period_txt, '')) = 4 THEN 'A'
                ELSE 'M' END AS freq
    FROM src
),
typed AS (
    SELECT *,
           CASE WHEN regexp_full_match(p, '\\d{{4}}(\\d{{2}})?')
                     AND TRY_CAST(substr(p, 1, 4) AS INTEGER) BETWEEN 1962 AND 2100
                THEN try(make_date(CAST(substr(p, 1, 4) AS INTEGER),
                                   CASE WHEN freq = 'A' THEN 1 ELSE TRY_CAST(substr(p, 5, 2) AS INTEGER) END,
                                   1))
           END AS period,
           CASE WHEN regexp_full_match(cmd_raw, '\\d{{5}}|\\d{{7}}|\\d{{9}}') THEN '0' || cmd_raw
                ELSE cmd_raw END AS hs_code,
           regexp_full_match(cmd_raw, '\\d{{5}}|\\d{{7}}|\\d{{9}}') AS hs_fixed,
           TRY_CAST(cif_txt AS DOUBLE)     AS cif,
           TRY_CAST(fob_txt AS DOUBLE)     AS fob,
           TRY_CAST(primary_txt AS DOUBLE) AS primary_value,
           TRY_CAST(weight_txt AS DOUBLE)  AS net_weight_kg,
           TRY_CAST(qty_txt AS DOUBLE)     AS quantity
    FROM periods
),
countries_joined AS (
    SELECT t.*,
           coalesce(rc.iso3, ri.iso3) AS reporter,
           coalesce(pc.iso3, pi.iso3) AS partner,
           coalesce(p2c.iso3, p2i.iso3) AS partner2,
           (t.partner_code = '0' OR t.partner_iso IN ('W00', 'WLD')) AS partner_is_world,
           pa.name AS partner_area,
           (t.partner2_code IS NULL OR t.partner2_code = '0' OR t.partner2_iso IN ('W00', 'WLD')
            OR p2a.name IS NOT NULL) AS partner2_is_aggregate,
           ra.name AS reporter_area
    FROM typed t
    LEFT JOIN countries rc  ON rc.comtrade_code  = TRY_CAST(t.reporter_code AS INTEGER)
    LEFT JOIN countries ri  ON ri.iso3 = t.reporter_iso AND t.reporter_code IS NULL
    LEFT JOIN countries pc  ON pc.comtrade_code  = TRY_CAST(t.partner_code AS INTEGER)
    LEFT JOIN countries pi  ON pi.iso3 = t.partner_iso AND t.partner_code IS NULL
    LEFT JOIN countries p2c ON p2c.comtrade_code = TRY_CAST(t.partner2_code AS INTEGER)
    LEFT JOIN countries p2i ON p2i.iso3 = t.partner2_iso AND t.partner2_code IS NULL
    LEFT JOIN comtrade_areas pa  ON pa.comtrade_code  = TRY_CAST(t.partner_code AS INTEGER)
    LEFT JOIN comtrade_areas p2a ON p2a.comtrade_code = TRY_CAST(t.partner2_code AS INTEGER)
    LEFT JOIN comtrade_areas ra  ON ra.comtrade_code  = TRY_CAST(t.reporter_code AS INTEGER)
),
valued AS (
    SELECT *,
           CASE WHEN flow_code IN ('M', 'RM') THEN coalesce(cif, primary_value)
                ELSE coalesce(fob, primary_value) END AS value_usd
    FROM countries_joined
),
judged AS (
    SELECT *,
       CASE
         WHEN period IS NULL THEN 'unparseable period ''' || coalesce(p, '') || ''''
         WHEN reporter IS NULL AND reporter_area IS NOT NULL
              THEN 'reporter is an aggregate (' || reporter_area || '), not a country'
         WHEN reporter IS NULL THEN 'unknown reporter code ''' || coalesce(reporter_code, reporter_iso, '') || ''''
         WHEN flow_code IS NULL OR flow_code NOT IN ('M', 'X', 'RM', 'RX')
              THEN 'unsupported flow code ''' || coalesce(flow_code, '') || ''' (M, X, RM, RX)'
         WHEN customs_code IS NOT NULL AND customs_code <> 'C00'
              THEN 'breakdown row (customsCode ' || customs_code || '), not a total'
         WHEN mot_code IS NOT NULL AND mot_code <> '0'
              THEN 'breakdown row (motCode ' || mot_code || '), not a total'
         WHEN partner_is_world THEN 'partner is the World aggregate, not a country'
         WHEN partner IS NULL AND partner_area IS NOT NULL
              THEN 'partner is an aggregate (' || partner_area || '), not a country'
         WHEN partner IS NULL THEN 'unknown partner code ''' || coalesce(partner_code, partner_iso, '') || ''''
         WHEN partner2 IS NULL AND NOT partner2_is_aggregate
              THEN 'unknown partner2 code ''' || coalesce(partner2_code, partner2_iso, '') || ''''
         WHEN hs_code = '' THEN 'missing HS code'
         WHEN NOT regexp_full_match(hs_code, '\\d+') THEN 'HS code ''' || hs_code || ''' is not numeric'
         WHEN length(hs_code) NOT IN (6, 8, 10)
              THEN 'wrong HS length: ''' || hs_code || ''' has ' || length(hs_code) || ' digits (need 6, 8 or 10)'
         WHEN value_usd IS NULL AND coalesce(cif_txt, fob_txt, primary_txt) IS NULL THEN 'missing value'
         WHEN value_usd IS NULL OR NOT isfinite(value_usd)
              THEN 'non-numeric value ''' || coalesce(cif_txt, fob_txt, primary_txt) || ''''
         WHEN value_usd < 0 THEN 'negative value ' || CAST(value_usd AS VARCHAR)
         WHEN weight_txt IS NOT NULL AND (net_weight_kg IS NULL OR NOT isfinite(net_weight_kg))
              THEN 'non-numeric net weight ''' || weight_txt || ''''
         WHEN net_weight_kg < 0 THEN 'negative net weight ' || CAST(net_weight_kg AS VARCHAR)
         WHEN qty_txt IS NOT NULL AND (quantity IS NULL OR NOT isfinite(quantity))
              THEN 'non-numeric quantity ''' || qty_txt || ''''
         WHEN quantity < 0 THEN 'negative quantity ' || CAST(quantity AS VARCHAR)
       END AS reject_reason
    FROM valued
)
-- only what the rest of the load reads: a narrow table is cheap to write and scan
SELECT row_no, period, freq, reporter, partner,
       CASE WHEN partner2_is_aggregate THEN NULL ELSE partner2 END AS partner2,
       flow_code, hs_code, {hs_revision} AS hs_revision, hs_fixed,
       value_usd, net_weight_kg, quantity, qty_unit, reject_reason
FROM judged
"""

# The rows to write, as a view (write_flows reads it a few times, cheaper than copying it); a view
# takes no parameters, so the load id comes in as an escaped literal.
CANDIDATES_SQL = """
CREATE OR REPLACE TEMP VIEW candidate_flows AS
SELECT 'comtrade' AS source, period, freq, reporter, partner, partner2, flow_code AS flow, hs_code,
       hs_revision, value_usd, net_weight_kg, quantity, qty_unit AS quantity_unit, {load_id} AS load_id, row_no
FROM parsed
WHERE reject_reason IS NULL
"""

# The columns this loader reads; the CSV reader skips parsing the others of the 47.
USED_COLUMNS = [
    "freqCode", "period", "refPeriodId", "refYear", "refMonth", "reporterCode", "reporterISO", "partnerCode",
    "partnerISO", "partner2Code", "partner2ISO", "flowCode", "cmdCode", "classificationCode", "customsCode",
    "motCode", "cifvalue", "fobvalue", "primaryValue", "netWgt", "qty", "qtyUnitAbbr",
]


def _read_columns(header: list[str]) -> list[str]:
    """The file's own names of the used columns, in file order."""
    wanted = {c.lower() for c in USED_COLUMNS}
    return [h for h in header if h.strip().lstrip("\ufeff").lower() in wanted]


def _hs_revision_sql() -> str:
    """The HS revision named by classificationCode (H0..H6), else the code as given."""
    whens = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in HS_REVISIONS.items())
    return f"CASE classification {whens} ELSE classification END"


def _load_one(con: duckdb.DuckDBPyConnection, path: Path, summary: LoadSummary) -> None:
    header = stage_csv(con, path, _read_columns)
    columns = column_map(header, path, USED_COLUMNS, REQUIRED, "a UN Comtrade file")
    con.execute(PARSE_SQL.format(**columns, hs_revision=_hs_revision_sql()))
    summary.rows_read = con.execute("SELECT count(*) FROM parsed").fetchone()[0] + con.execute(
        "SELECT count(*) FROM staged_broken").fetchone()[0]
    con.execute(CANDIDATES_SQL.format(load_id="'" + summary.load_id.replace("'", "''") + "'"))
    con.execute("INSERT INTO staged_rejects SELECT row_no, reject_reason FROM parsed WHERE reject_reason IS NOT NULL")
    summary.aggregates, summary.fixed_codes = con.execute(
        """SELECT count(*) FILTER (WHERE reject_reason LIKE 'partner is %aggregate%'),
                  count(*) FILTER (WHERE reject_reason IS NULL AND hs_fixed)
           FROM parsed""").fetchone()
    write_flows(con, summary, "candidate_flows")
    record_reporting(con, SOURCE, summary.load_id, flow="flow_code")
    record_rejects(con, summary, path, raw_row_sql(_read_columns(header)))
    con.execute("DROP VIEW candidate_flows")


def load_comtrade(wh: Warehouse, paths) -> list[LoadSummary]:
    return load_files(wh, paths, SOURCE, _load_one)
