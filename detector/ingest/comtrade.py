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

from detector.ingest.batch import Batch
from detector.ingest.common import LoadSummary, load_files
from detector.ingest.fast_staging import restage_rows, stage_csv_batches
from detector.ingest.rejects import record_rejects
from detector.ingest.sql import column_map, raw_row_sql
from detector.ingest.writing import record_reporting, write_flows
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
# The text columns of few distinct values (period parts, country codes, flow and breakdown codes,
# commodity codes) are trimmed, typed and looked up once per distinct value in small tables joined
# back to the rows; the numeric columns are cast as read (a cast ignores surrounding blanks, as trim
# would), and their trimmed text is only made for the rows whose reject reason quotes it.
PARSE_SQL = """
{into}
WITH period_src AS (
    SELECT DISTINCT {freqCode} AS k_freq, {period} AS k_period, {refPeriodId} AS k_ref_period_id,
                    {refYear} AS k_ref_year, {refMonth} AS k_ref_month
    FROM staged_raw
),
period_txt AS (
    SELECT *,
           nullif(trim(k_freq), '')          AS freq_txt,
           nullif(trim(k_period), '')        AS period_txt,
           nullif(trim(k_ref_period_id), '') AS ref_period_id,
           nullif(trim(k_ref_year), '')      AS ref_year,
           nullif(trim(k_ref_month), '')     AS ref_month
    FROM period_src
),
period_p AS (
    SELECT *,
           coalesce(period_txt, substr(ref_period_id, 1, 6),
                    ref_year || CASE WHEN ref_month IS NULL OR ref_month = '52' THEN ''
                                     ELSE lpad(ref_month, 2, '0') END) AS p,
           CASE WHEN upper(freq_txt) IN ('A', 'M') THEN upper(freq_txt)
                WHEN ref_month = '52' THEN 'A'
                WHEN length(coalesce(period_txt, '')) = 4 THEN 'A'
                ELSE 'M' END AS freq
    FROM period_txt
),
period_dim AS (
    SELECT k_freq, k_period, k_ref_period_id, k_ref_year, k_ref_month, p, freq,
           CASE WHEN regexp_full_match(p, '\\d{{4}}(\\d{{2}})?')
                     AND TRY_CAST(substr(p, 1, 4) AS INTEGER) BETWEEN 1962 AND 2100
                THEN try(make_date(CAST(substr(p, 1, 4) AS INTEGER),
                                   CASE WHEN freq = 'A' THEN 1 ELSE TRY_CAST(substr(p, 5, 2) AS INTEGER) END,
                                   1))
           END AS period
    FROM period_p
),
-- every (code, ISO) pair seen as reporter, partner or partner2, resolved once
code_src AS (
    SELECT DISTINCT k_code, k_iso FROM (
        SELECT {reporterCode} AS k_code, {reporterISO} AS k_iso FROM staged_raw
        UNION ALL SELECT {partnerCode}, {partnerISO} FROM staged_raw
        UNION ALL SELECT {partner2Code}, {partner2ISO} FROM staged_raw)
),
code_txt AS (
    SELECT k_code, k_iso, nullif(trim(k_code), '') AS code, upper(nullif(trim(k_iso), '')) AS iso
    FROM code_src
),
code_dim AS (
    SELECT t.k_code, t.k_iso, t.code, t.iso,
           coalesce(cc.iso3, ci.iso3) AS country,
           a.name AS area,
           (t.code = '0' OR t.iso IN ('W00', 'WLD')) AS is_world
    FROM code_txt t
    LEFT JOIN countries cc ON cc.comtrade_code = TRY_CAST(t.code AS INTEGER)
    LEFT JOIN countries ci ON ci.iso3 = t.iso AND t.code IS NULL
    LEFT JOIN comtrade_areas a ON a.comtrade_code = TRY_CAST(t.code AS INTEGER)
),
kind_txt AS (
    SELECT k_flow, k_class, k_customs, k_mot, k_unit,
           upper(nullif(trim(k_flow), ''))  AS flow_code,
           upper(nullif(trim(k_class), '')) AS classification,
           nullif(trim(k_customs), '')      AS customs_code,
           nullif(trim(k_mot), '')          AS mot_code,
           nullif(trim(k_unit), '')         AS qty_unit
    FROM (SELECT DISTINCT {flowCode} AS k_flow, {classificationCode} AS k_class, {customsCode} AS k_customs,
                          {motCode} AS k_mot, {qtyUnitAbbr} AS k_unit
          FROM staged_raw)
),
kind_dim AS (
    SELECT *, {hs_revision} AS hs_revision FROM kind_txt
),
cmd_txt AS (
    SELECT k_cmd, regexp_replace(coalesce(trim(k_cmd), ''), '[\\s.]', '', 'g') AS cmd_raw
    FROM (SELECT DISTINCT {cmdCode} AS k_cmd FROM staged_raw)
),
cmd_dim AS (
    SELECT k_cmd,
           CASE WHEN regexp_full_match(cmd_raw, '\\d{{5}}|\\d{{7}}|\\d{{9}}') THEN '0' || cmd_raw
                ELSE cmd_raw END AS hs_code,
           regexp_full_match(cmd_raw, '\\d{{5}}|\\d{{7}}|\\d{{9}}') AS hs_fixed
    FROM cmd_txt
),
cmd_checked AS (
    SELECT *, CASE
         WHEN hs_code = '' THEN 'missing HS code'
         WHEN NOT regexp_full_match(hs_code, '\\d+') THEN 'HS code ''' || hs_code || ''' is not numeric'
         WHEN length(hs_code) NOT IN (6, 8, 10)
              THEN 'wrong HS length: ''' || hs_code || ''' has ' || length(hs_code) || ' digits (need 6, 8 or 10)'
       END AS hs_problem
    FROM cmd_dim
),
rows AS (
    SELECT s.row_no, pd.p, pd.freq, pd.period,
           rd.code AS reporter_code, rd.iso AS reporter_iso, rd.country AS reporter, rd.area AS reporter_area,
           pt.code AS partner_code, pt.iso AS partner_iso, pt.country AS partner, pt.area AS partner_area,
           pt.is_world AS partner_is_world,
           p2.code AS partner2_code, p2.iso AS partner2_iso, p2.country AS partner2,
           (p2.code IS NULL OR p2.is_world OR p2.area IS NOT NULL) AS partner2_is_aggregate,
           kd.flow_code, kd.hs_revision, kd.customs_code, kd.mot_code, kd.qty_unit,
           cd.hs_code, cd.hs_fixed, cd.hs_problem,
           s.cif_raw, s.fob_raw, s.primary_raw, s.weight_raw, s.qty_raw,
           TRY_CAST(s.cif_raw AS DOUBLE)     AS cif,
           TRY_CAST(s.fob_raw AS DOUBLE)     AS fob,
           TRY_CAST(s.primary_raw AS DOUBLE) AS primary_value,
           TRY_CAST(s.weight_raw AS DOUBLE)  AS net_weight_kg,
           TRY_CAST(s.qty_raw AS DOUBLE)     AS quantity,
           {raw_refs}{carry_rows}
    FROM (SELECT row_no, {freqCode} AS k_freq, {period} AS k_period, {refPeriodId} AS k_ref_period_id,
                 {refYear} AS k_ref_year, {refMonth} AS k_ref_month,
                 {reporterCode} AS k_rc, {reporterISO} AS k_ri, {partnerCode} AS k_pc, {partnerISO} AS k_pi,
                 {partner2Code} AS k_p2c, {partner2ISO} AS k_p2i,
                 {flowCode} AS k_flow, {classificationCode} AS k_class, {customsCode} AS k_customs,
                 {motCode} AS k_mot, {qtyUnitAbbr} AS k_unit, {cmdCode} AS k_cmd,
                 {cifvalue} AS cif_raw, {fobvalue} AS fob_raw, {primaryValue} AS primary_raw,
                 {netWgt} AS weight_raw, {qty} AS qty_raw, {raw_columns}{carry_in}
          FROM staged_raw) s
    JOIN period_dim pd ON pd.k_freq IS NOT DISTINCT FROM s.k_freq AND pd.k_period IS NOT DISTINCT FROM s.k_period
         AND pd.k_ref_period_id IS NOT DISTINCT FROM s.k_ref_period_id
         AND pd.k_ref_year IS NOT DISTINCT FROM s.k_ref_year AND pd.k_ref_month IS NOT DISTINCT FROM s.k_ref_month
    JOIN code_dim rd ON rd.k_code IS NOT DISTINCT FROM s.k_rc AND rd.k_iso IS NOT DISTINCT FROM s.k_ri
    JOIN code_dim pt ON pt.k_code IS NOT DISTINCT FROM s.k_pc AND pt.k_iso IS NOT DISTINCT FROM s.k_pi
    JOIN code_dim p2 ON p2.k_code IS NOT DISTINCT FROM s.k_p2c AND p2.k_iso IS NOT DISTINCT FROM s.k_p2i
    JOIN kind_dim kd ON kd.k_flow IS NOT DISTINCT FROM s.k_flow AND kd.k_class IS NOT DISTINCT FROM s.k_class
         AND kd.k_customs IS NOT DISTINCT FROM s.k_customs AND kd.k_mot IS NOT DISTINCT FROM s.k_mot
         AND kd.k_unit IS NOT DISTINCT FROM s.k_unit
    JOIN cmd_checked cd ON cd.k_cmd IS NOT DISTINCT FROM s.k_cmd
),
valued AS (
    SELECT *,
           CASE WHEN flow_code IN ('M', 'RM') THEN coalesce(cif, primary_value)
                ELSE coalesce(fob, primary_value) END AS value_usd
    FROM rows
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
         WHEN hs_problem IS NOT NULL THEN hs_problem
         WHEN value_usd IS NULL
              AND coalesce(nullif(trim(cif_raw), ''), nullif(trim(fob_raw), ''), nullif(trim(primary_raw), '')) IS NULL
              THEN 'missing value'
         WHEN value_usd IS NULL OR NOT isfinite(value_usd)
              THEN 'non-numeric value '''
                   || coalesce(nullif(trim(cif_raw), ''), nullif(trim(fob_raw), ''), nullif(trim(primary_raw), ''))
                   || ''''
         WHEN value_usd < 0 THEN 'negative value ' || CAST(value_usd AS VARCHAR)
         WHEN (net_weight_kg IS NULL OR NOT isfinite(net_weight_kg)) AND nullif(trim(weight_raw), '') IS NOT NULL
              THEN 'non-numeric net weight ''' || trim(weight_raw) || ''''
         WHEN net_weight_kg < 0 THEN 'negative net weight ' || CAST(net_weight_kg AS VARCHAR)
         WHEN (quantity IS NULL OR NOT isfinite(quantity)) AND nullif(trim(qty_raw), '') IS NOT NULL
              THEN 'non-numeric quantity ''' || trim(qty_raw) || ''''
         WHEN quantity < 0 THEN 'negative quantity ' || CAST(quantity AS VARCHAR)
       END AS reject_reason
    FROM valued
)
-- only what the rest of the load reads: a narrow table is cheap to write and scan; the line as
-- read (for `rejects.raw`) only for the rows rejected
SELECT row_no, period, freq, reporter, partner,
       CASE WHEN partner2_is_aggregate THEN NULL ELSE partner2 END AS partner2,
       flow_code, hs_code, hs_revision, hs_fixed,
       value_usd, net_weight_kg, quantity, qty_unit, reject_reason,
       CASE WHEN reject_reason IS NOT NULL THEN {raw_line} END AS raw{carry_out}
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


def _parse_sql(header: list[str], path: Path, into: str, batch: bool = False) -> str:
    """PARSE_SQL over `staged_raw` for a file of this header, writing `into` the table parsed;
    `batch`: `staged_raw` holds a group of files, each row's file_idx carried into `parsed`."""
    columns = column_map(header, path, USED_COLUMNS, REQUIRED, "a UN Comtrade file")
    read = _read_columns(header)
    # The staged text of the read columns rides along as raw_0.. so that a rejected row's line
    # (the text raw_row_sql gives) is made in the parse, not by joining every staged row back.
    return PARSE_SQL.format(
        **columns, into=into, hs_revision=_hs_revision_sql(),
        raw_columns=", ".join(f"{duckdb.ColumnExpression(c)} AS raw_{i}" for i, c in enumerate(read)),
        raw_refs=", ".join(f"s.raw_{i}" for i in range(len(read))),
        raw_line="concat_ws(',', " + ", ".join(f"coalesce(raw_{i}, '')" for i in range(len(read))) + ")",
        carry_in=", file_idx" if batch else "", carry_rows=", s.file_idx" if batch else "",
        carry_out=", file_idx" if batch else "")


def _parse(con: duckdb.DuckDBPyConnection, path: Path, summary: LoadSummary) -> tuple[list[str], bool]:
    """Read and parse the file into the temp table `parsed` (before the file's transaction opens);
    (its header, whether it was read in batches)."""
    def parse_batch(header: list[str], first: bool, execute) -> None:
        execute(_parse_sql(header, path, "CREATE OR REPLACE TEMP TABLE parsed AS" if first else "INSERT INTO parsed"))

    # A clean file is parsed a batch at a time as it is read, and never staged whole.
    header, batched = stage_csv_batches(con, path, _read_columns, parse_batch)
    if not batched:
        con.execute(_parse_sql(header, path, "CREATE OR REPLACE TEMP TABLE parsed AS"))
    return header, batched


def _load_one(con: duckdb.DuckDBPyConnection, path: Path, summary: LoadSummary,
              parsed: tuple[list[str], bool] | None = None) -> None:
    """Write the parsed file (`_parse`, run now unless given) into flows, reporting and rejects."""
    header, batched = parsed if parsed is not None else _parse(con, path, summary)
    read = _read_columns(header)
    summary.rows_read = con.execute("SELECT count(*) FROM parsed").fetchone()[0] + con.execute(
        "SELECT count(*) FROM staged_broken").fetchone()[0]
    con.execute(CANDIDATES_SQL.format(load_id="'" + summary.load_id.replace("'", "''") + "'"))
    summary.aggregates, summary.fixed_codes = con.execute(
        """SELECT count(*) FILTER (WHERE reject_reason LIKE 'partner is %aggregate%'),
                  count(*) FILTER (WHERE reject_reason IS NULL AND hs_fixed)
           FROM parsed""").fetchone()
    write_flows(con, summary, "candidate_flows")
    record_reporting(con, SOURCE, summary.load_id, flow="flow_code")
    if batched and con.execute("SELECT EXISTS (SELECT 1 FROM staged_rejects)").fetchone()[0]:
        # repeated keys: their lines' text, read again for just those rows
        restage_rows(con, path, _read_columns, "staged_rejects")
    record_rejects(con, summary, path, raw_row_sql(read),
                   with_raw="(SELECT row_no, reject_reason AS reason, raw FROM parsed WHERE reject_reason IS NOT NULL)")
    con.execute("DROP VIEW candidate_flows")


# A group of files (see detector.ingest.batch): the same rows as CANDIDATES_SQL, each with its file's load id.
BATCH_CANDIDATES_SQL = """
SELECT 'comtrade' AS source, period, freq, reporter, partner, partner2, flow_code AS flow, hs_code,
       hs_revision, value_usd, net_weight_kg, quantity, qty_unit AS quantity_unit, b.load_id, row_no, file_idx
FROM parsed JOIN batch_files b USING (file_idx)
WHERE reject_reason IS NULL
"""


def _check_header(names: list[str], path: Path) -> None:
    column_map(names, path, USED_COLUMNS, REQUIRED, "a UN Comtrade file")


BATCH = Batch(SOURCE, _read_columns, _check_header,
              lambda header, path, into: _parse_sql(header, path, into, batch=True),
              BATCH_CANDIDATES_SQL, flow="flow_code")


def load_comtrade(wh: Warehouse, paths) -> list[LoadSummary]:
    """Load the files (see detector.ingest.batch: groups of files in one scan, each file whole or not at all)."""
    return load_files(wh, paths, SOURCE, _load_one, batch=BATCH, prepare=_parse)
