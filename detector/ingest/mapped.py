"""Any trade-flow table (CSV or Parquet) loaded onto `flows` through a TOML mapping.

The mapping names source columns and constants, never SQL: column names become quoted
identifiers and constants SQL string literals, so a mapping file cannot run a query. Every key
is checked: an unknown key or a value of the wrong type is a ConfigError naming it. Layout
(documented with examples in docs/sources.md and detector/ingest/mappings/):

    source = "be_customs"            # flows.source (required)
    format = "csv"                   # csv | parquet (default: from the file name)
    freq = "M"                       # M | A
    period_format = "%Y%m"           # %Y-%m | %Y%m | %Y-%m-%d | %Y (with [columns] period)
    hs_revision = "HS2022"           # default: the revision in force in the period's year
    [columns]                        # flows field = "source column" or { constant = "..." }
    [codes]   system = "iso2", aggregates = [...], [codes.table] SRC = "ISO3"
    [units]   value_multiplier = 1.0, currency = "USD" | "EUR", weight_unit = "kg" | "t", rates = "..."
    [flow_codes]  I = "M", E = "X"
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import duckdb

from detector.errors import ConfigError, InputError
from detector.ingest.batch import Batch
from detector.ingest.common import LoadSummary, load_files
from detector.ingest.fx import load_eur_usd
from detector.ingest.sql import (
    MEASURE_CHECKS_SQL,
    hs_fixed_sql,
    hs_restored_sql,
    hs_revision_sql,
    raw_row_sql,
)
from detector.ingest.staging import stage_csv, stage_parquet
from detector.ingest.writing import batch_candidates_sql, finish_flows
from detector.userfiles import read_toml
from detector.warehouse import Warehouse

FIELDS = ["reporter", "partner", "partner2", "flow", "hs_code", "period", "year", "month", "value",
          "net_weight", "quantity", "quantity_unit"]
CODE_SYSTEMS = {  # system -> (countries column, SQL turning the source text into that column's type)
    "iso3": ("iso3", "upper({})"), "iso2": ("iso2", "upper({})"), "m49": ("m49", "TRY_CAST({} AS INTEGER)"),
    "comtrade": ("comtrade_code", "TRY_CAST({} AS INTEGER)"), "census": ("census_code", "TRY_CAST({} AS INTEGER)"),
}
PERIOD_FORMATS = ["%Y-%m", "%Y%m", "%Y-%m-%d", "%Y", "%d/%m/%Y", "%m/%Y"]
FLOWS = ["M", "X", "RM", "RX"]

# key -> (type, allowed values or None); tables are checked by their own schema below.
TOP_KEYS: dict[str, tuple[type, list | None]] = {
    "source": (str, None), "format": (str, ["csv", "parquet"]), "freq": (str, ["M", "A"]),
    "period_format": (str, PERIOD_FORMATS), "hs_revision": (str, None), "description": (str, None),
}
CODES_KEYS = {"system": (str, list(CODE_SYSTEMS)), "aggregates": (list, None), "table": (dict, None)}
UNITS_KEYS = {"value_multiplier": ((int, float), None), "currency": (str, ["USD", "EUR"]),
              "weight_unit": (str, ["kg", "t"]), "rates": (str, None)}
TABLES = {"columns", "codes", "units", "flow_codes"}


def _type_name(kind) -> str:
    names = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({str: "a string", int: "a number", float: "a number", list: "a list",
                        dict: "a table"}[k] for k in dict.fromkeys(names))


def _check(where: str, key: str, value: Any, kind, allowed, path: Path) -> None:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{path}: '{where}{key}' must be {_type_name(kind)}, not {value!r}")
    if allowed is not None and value not in allowed:
        raise ConfigError(f"{path}: '{where}{key}' must be one of {', '.join(map(str, allowed))}, not {value!r}")


def _check_table(where: str, table: Any, schema: dict, path: Path) -> dict:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: '{where}' must be a table")
    for key, value in table.items():
        if key not in schema:
            raise ConfigError(f"{path}: unknown key '{where}.{key}' (allowed: {', '.join(schema)})")
        _check(f"{where}.", key, value, *schema[key], path)
    return table


def read_mapping(path: str | Path) -> dict:
    """Parse and validate a mapping file; returns it with defaults filled in."""
    path = Path(path)
    raw = read_toml(path, "mapping")
    for key, value in raw.items():
        if key in TABLES:
            continue
        if key not in TOP_KEYS:
            raise ConfigError(f"{path}: unknown key '{key}' (allowed: {', '.join([*TOP_KEYS, *sorted(TABLES)])})")
        _check("", key, value, *TOP_KEYS[key], path)
    if "source" not in raw or not raw["source"].strip():
        raise ConfigError(f"{path}: 'source' (the name stored in flows.source) is required")
    columns = raw.get("columns")
    if not isinstance(columns, dict):
        raise ConfigError(f"{path}: '[columns]' is required (flows field = \"source column\")")
    for field, spec in columns.items():
        if field not in FIELDS:
            raise ConfigError(f"{path}: unknown key 'columns.{field}' (allowed: {', '.join(FIELDS)})")
        if isinstance(spec, dict):
            if set(spec) != {"constant"} or not isinstance(spec["constant"], str):
                raise ConfigError(f"{path}: 'columns.{field}' must be a column name or {{ constant = \"...\" }}")
        elif not isinstance(spec, str) or not spec:
            raise ConfigError(f"{path}: 'columns.{field}' must be a column name or {{ constant = \"...\" }}")
    needed = ["reporter", "partner", "flow", "hs_code", "value"]
    missing = [f for f in needed if f not in columns]
    if "period" not in columns and "year" not in columns:
        missing.append("period (or year and month)")
    if missing:
        raise ConfigError(f"{path}: [columns] lacks {', '.join(missing)}")
    if "period" in columns and "period_format" not in raw:
        raise ConfigError(f"{path}: 'period_format' is required with columns.period "
                          f"(one of {', '.join(PERIOD_FORMATS)})")
    codes = _check_table("codes", raw.get("codes", {}), CODES_KEYS, path)
    if "system" not in codes:
        raise ConfigError(f"{path}: 'codes.system' is required (one of {', '.join(CODE_SYSTEMS)})")
    for code, iso3 in codes.get("table", {}).items():
        if not (isinstance(iso3, str) and len(iso3) == 3 and iso3.isalpha()):
            raise ConfigError(f"{path}: 'codes.table.{code}' must be an ISO3 code, not {iso3!r}")
    if not all(isinstance(a, str) for a in codes.get("aggregates", [])):
        raise ConfigError(f"{path}: 'codes.aggregates' must be a list of strings")
    units = _check_table("units", raw.get("units", {}), UNITS_KEYS, path)
    flow_codes = raw.get("flow_codes", {})
    if not isinstance(flow_codes, dict):
        raise ConfigError(f"{path}: 'flow_codes' must be a table")
    for code, flow in flow_codes.items():
        if flow not in FLOWS:
            raise ConfigError(f"{path}: 'flow_codes.{code}' must be one of {', '.join(FLOWS)}, not {flow!r}")
    if units.get("rates") and not Path(units["rates"]).is_absolute():
        units["rates"] = str(path.parent / units["rates"])
    return {
        "source": raw["source"].strip(), "format": raw.get("format"), "freq": raw.get("freq", "M"),
        "period_format": raw.get("period_format"), "hs_revision": raw.get("hs_revision"),
        "columns": columns, "codes": codes, "units": {"value_multiplier": 1.0, "currency": "USD",
                                                      "weight_unit": "kg", **units},
        "flow_codes": flow_codes,
    }


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


PARSE_SQL = """
{into}
WITH src AS (
    SELECT row_no{carry},
           {reporter} AS reporter_code, {partner} AS partner_code, {partner2} AS partner2_code,
           {flow} AS flow_raw, regexp_replace(coalesce({hs_code}, ''), '[\\s.]', '', 'g') AS code_raw,
           {period} AS period_txt, {year} AS year_txt, {month} AS month_txt,
           {value} AS value_txt, {net_weight} AS weight_txt, {quantity} AS qty_txt,
           {quantity_unit} AS quantity_unit
    FROM staged_raw
),
typed AS (
    SELECT *,
           {period_sql} AS period,
           coalesce({flow_map}[flow_raw], upper(flow_raw)) AS flow,
           {hs_code_sql} AS hs_code,
           {hs_fixed_sql} AS hs_fixed,
           TRY_CAST(weight_txt AS DOUBLE) * {weight_factor} AS net_weight_kg,
           TRY_CAST(qty_txt AS DOUBLE) AS quantity
    FROM src
),
resolved AS (
    SELECT t.*,
           coalesce(rt.iso3, rc.iso3) AS reporter,
           coalesce(pt.iso3, pc.iso3) AS partner,
           coalesce(p2t.iso3, p2c.iso3) AS partner2,
           {rate} AS usd_per_eur,
           TRY_CAST(t.value_txt AS DOUBLE) * {value_factor} * {rate} AS value_usd
    FROM typed t
    LEFT JOIN mapped_codes rt  ON rt.code = t.reporter_code
    LEFT JOIN countries rc     ON rc.{code_col} = {code_cast_r}
    LEFT JOIN mapped_codes pt  ON pt.code = t.partner_code
    LEFT JOIN countries pc     ON pc.{code_col} = {code_cast_p}
    LEFT JOIN mapped_codes p2t ON p2t.code = t.partner2_code
    LEFT JOIN countries p2c    ON p2c.{code_col} = {code_cast_p2}
    {rate_join}
)
SELECT *, '{freq}' AS freq, {hs_revision} AS hs_revision,
       CASE
         WHEN period IS NULL
              THEN 'unparseable period ''' || coalesce(period_txt, year_txt || '-' || month_txt, '') || ''''
         WHEN reporter IS NULL THEN 'unknown reporter code ''' || coalesce(reporter_code, '') || ''' ({system})'
         WHEN flow IS NULL OR flow NOT IN ('M', 'X', 'RM', 'RX')
              THEN 'unsupported flow code ''' || coalesce(flow_raw, '') || ''' (map it in [flow_codes])'
         WHEN partner_code IN ({aggregates}) THEN 'partner is an aggregate (' || partner_code || '), not a country'
         WHEN partner IS NULL THEN 'unknown partner code ''' || coalesce(partner_code, '') || ''' ({system})'
         WHEN partner2 IS NULL AND partner2_code IS NOT NULL AND partner2_code NOT IN ({aggregates})
              THEN 'unknown partner2 code ''' || partner2_code || ''' ({system})'
         WHEN usd_per_eur IS NULL THEN 'no EUR/USD rate for ' || strftime(period, '%Y-%m')
         {checks}
       END AS reject_reason
FROM resolved
"""


def _format(path: Path, mapping: dict) -> str:
    return mapping["format"] or ("parquet" if path.name.lower().endswith((".parquet", ".pq")) else "csv")


def _parse_sql(header: list[str], path: Path, mapping: dict, into: str = "CREATE OR REPLACE TEMP TABLE parsed AS",
               batch: bool = False) -> str:
    """PARSE_SQL for a file of this header through the mapping; refuses a file without a mapped column.
    `batch`: `staged_raw` holds a group of files, each row's file_idx and line text carried into `parsed`."""
    by_lower = {h.strip().lstrip("\ufeff").lower(): h for h in header}
    exprs = {}
    for field in FIELDS:
        spec = mapping["columns"].get(field)
        if spec is None:
            exprs[field] = "CAST(NULL AS VARCHAR)"
        elif isinstance(spec, dict):
            exprs[field] = _literal(spec["constant"])
        elif spec.lower() in by_lower:
            exprs[field] = f"nullif(trim({duckdb.ColumnExpression(by_lower[spec.lower()])}), '')"
        else:
            raise InputError(path, f"no column '{spec}' (mapped to {field}); the file has: {', '.join(header)}",
                             line=1)
    units, codes = mapping["units"], mapping["codes"]
    code_col, cast = CODE_SYSTEMS[codes["system"]]
    if mapping["columns"].get("period") is not None:
        period_sql = f"CAST(date_trunc('month', try_strptime(period_txt, {_literal(mapping['period_format'])})) AS DATE)"
    else:
        month = "1" if mapping["freq"] == "A" else "TRY_CAST(month_txt AS INTEGER)"
        period_sql = f"try(make_date(TRY_CAST(year_txt AS INTEGER), {month}, 1))"
    if mapping["freq"] == "A":
        period_sql = f"CAST(date_trunc('year', {period_sql}) AS DATE)"
    flow_map = ("MAP {" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in mapping["flow_codes"].items())
                + "}") if mapping["flow_codes"] else "MAP {'': ''}"
    euro = units["currency"] == "EUR"
    return PARSE_SQL.format(
        **exprs, into=into, carry=f", file_idx, {raw_row_sql(header, row='')} AS raw" if batch else "",
        period_sql=period_sql, flow_map=flow_map,
        hs_code_sql=hs_restored_sql("code_raw"), hs_fixed_sql=hs_fixed_sql("code_raw"),
        weight_factor=1000.0 if units["weight_unit"] == "t" else 1.0,
        value_factor=float(units["value_multiplier"]),
        rate="x.usd_per_eur" if euro else "1.0",
        rate_join="LEFT JOIN eur_usd x ON x.month = date_trunc('month', t.period)" if euro else "",
        code_col=code_col, code_cast_r=cast.format("t.reporter_code"), code_cast_p=cast.format("t.partner_code"),
        code_cast_p2=cast.format("t.partner2_code"), freq=mapping["freq"],
        hs_revision=_literal(mapping["hs_revision"]) if mapping["hs_revision"] else hs_revision_sql("year(period)"),
        system=codes["system"], aggregates=", ".join(map(_literal, codes.get("aggregates", []))) or "NULL",
        checks=MEASURE_CHECKS_SQL,
    )


def _parse(con: duckdb.DuckDBPyConnection, path: Path, summary: LoadSummary, mapping: dict) -> list[str]:
    """Read and parse the file into the temp table `parsed` (before the file's transaction opens); its header."""
    header = stage_parquet(con, path) if _format(path, mapping) == "parquet" else stage_csv(con, path)
    con.execute(_parse_sql(header, path, mapping))
    return header


def _batch(mapping: dict) -> Batch:
    """CSV files of one header load in groups (see detector.ingest.batch); a Parquet file loads alone."""
    return Batch(mapping["source"], lambda header: header, lambda names, path: _parse_sql(names, path, mapping),
                 lambda header, path, into: _parse_sql(header, path, mapping, into, batch=True),
                 batch_candidates_sql(mapping["source"]),
                 key_extra=lambda path: () if _format(path, mapping) == "csv" else None)


def load_mapped(wh: Warehouse, paths, mapping_path: str | Path) -> list[LoadSummary]:
    """Load CSV/Parquet trade tables described by the TOML mapping at `mapping_path`."""
    mapping = read_mapping(mapping_path)
    if mapping["units"]["currency"] == "EUR":
        load_eur_usd(wh.con, mapping["units"].get("rates"))
    wh.con.execute("CREATE OR REPLACE TEMP TABLE mapped_codes (code VARCHAR, iso3 VARCHAR)")
    table = mapping["codes"].get("table", {})
    if table:
        wh.con.executemany("INSERT INTO mapped_codes VALUES (?, ?)", [[c, iso3.upper()] for c, iso3 in table.items()])
    try:
        return load_files(wh, paths, mapping["source"], finish_flows, batch=_batch(mapping),
                          prepare=functools.partial(_parse, mapping=mapping))
    finally:
        wh.con.execute("DROP TABLE IF EXISTS eur_usd")
        wh.con.execute("DROP TABLE IF EXISTS mapped_codes")
