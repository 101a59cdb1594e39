"""Declaration-level customs lines (CSV or Parquet) through a column/code mapping (TOML).

The mapping says which source column fills which `declarations` field, how countries are coded,
the currency and weight unit, and which source-specific fields go to the `extra` JSON. The format
of a mapping is documented, key by key, in docs/declarations.md; `mappings/kcs.toml` is the default.

All mapping and checking is one SQL statement over the staged text columns; rows that fail a check
go to `rejects` with the reason, the rest replace earlier lines with the same declaration_id.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import duckdb

from detector.errors import ConfigError, InputError
from detector.ingest.common import LoadSummary, load_files
from detector.ingest.rejects import record_rejects
from detector.ingest.staging import stage_csv
from detector.userfiles import read_toml
from detector.warehouse import Warehouse

DEFAULT_MAPPING = "kcs.toml"

# Target fields a mapping may fill from source columns ([columns]); the first three are required.
REQUIRED_FIELDS = ("declaration_id", "date", "hs_code")
COLUMN_FIELDS = (
    "declaration_id", "date", "declarant_id", "importer_id", "exporter_id", "origin", "consignment",
    "hs_code", "description", "value", "net_weight", "quantity", "port", "mode", "label", "critical",
)
# Inspection results: a file of declarations not inspected yet lacks them, so they are optional per file
# (absent = not inspected, NULL). `critical` (the source's code for a critical finding) is kept as
# given in `extra.critical_fraud`.
LABEL_FIELDS = ("label", "critical")
# The `extra` keys that carry an inspection result beside `label`.
RESULT_EXTRAS = ("critical_fraud", "inspected_date")
TOP_KEYS = {
    "source", "description", "format", "date_format", "country_codes", "unknown_country_codes",
    "currency", "usd_per_unit", "weight_unit", "destination", "columns", "extra", "preferences",
}
PREFERENCE_KEYS = {"field", "partners"}
# How a source country code is matched to the `countries` table ({a} = table alias, {v} = code).
COUNTRY_CODES = {"iso2": "{a}.iso2 = {v}", "iso3": "{a}.iso3 = {v}",
                 "m49": "{a}.m49 = TRY_CAST({v} AS INTEGER)",
                 "comtrade": "{a}.comtrade_code = TRY_CAST({v} AS INTEGER)"}
WEIGHT_UNITS = {"kg": 1.0, "g": 0.001, "t": 1000.0, "lb": 0.45359237}
DECLARATION_COLUMNS = [
    "source", "declaration_id", "date", "period", "declarant_id", "importer_id", "exporter_id", "origin",
    "consignment", "hs_code", "description", "value_usd", "net_weight_kg", "quantity", "port", "mode",
    "extra", "label", "load_id",
]


@dataclasses.dataclass(frozen=True)
class Mapping:
    """A validated mapping file."""

    source: str
    columns: dict[str, str | tuple[str, ...]]
    extra: dict[str, str]
    format: str = "auto"
    date_format: tuple[str, ...] = ("%Y-%m-%d",)
    country_codes: str = "iso3"
    unknown_country_codes: tuple[str, ...] = ()
    currency: str = "USD"
    usd_per_unit: float = 1.0
    weight_unit: str = "kg"
    destination: str | None = None
    description: str = ""
    preference_field: str | None = None
    preference_partners: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


def default_mapping_path() -> Path:
    return Path(str(resources.files("detector.ingest").joinpath("mappings", DEFAULT_MAPPING)))


def _expect(where: str, key: str, value, kind):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"{where}: key '{key}' must be {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _str_list(where: str, key: str, value) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: key '{key}' must be a string or a list of strings")
    return tuple(value)


def mapped_columns(path: Path, top_keys, column_fields, required,
                   source_doc: str) -> tuple[str, dict, dict[str, str | tuple[str, ...]]]:
    """A declarations-style mapping file read and checked: its top keys, its `source`, and its
    [columns] table (target field = source column; declaration_id may join several). Returns the
    file's name for messages, the parsed file and the columns."""
    data = read_toml(path, "mapping")
    where = str(path)
    for key in data:
        if key not in top_keys:
            raise ConfigError(f"{where}: unknown key '{key}' (known: {', '.join(sorted(top_keys))})")
    if "source" not in data:
        raise ConfigError(f"{where}: missing key 'source' ({source_doc})")
    columns_raw = data.get("columns")
    if not isinstance(columns_raw, dict):
        raise ConfigError(f"{where}: missing table [columns] (target field = source column)")
    columns: dict[str, str | tuple[str, ...]] = {}
    for key, value in columns_raw.items():
        if key not in column_fields:
            raise ConfigError(f"{where}: unknown key '{key}' in [columns] (known: {', '.join(column_fields)})")
        names = _str_list(where, f"columns.{key}", value)
        if len(names) > 1 and key != "declaration_id":
            raise ConfigError(f"{where}: key 'columns.{key}' takes one source column (only declaration_id "
                              "may join several)")
        columns[key] = names if len(names) > 1 else names[0]
    for key in required:
        if key not in columns:
            raise ConfigError(f"{where}: [columns] must map '{key}'")
    return where, data, columns


def read_mapping(path: str | Path | None = None) -> Mapping:
    """Parse and validate a mapping TOML; unknown keys are a ConfigError naming the key."""
    path = Path(path) if path else default_mapping_path()
    where, data, columns = mapped_columns(path, TOP_KEYS, COLUMN_FIELDS, REQUIRED_FIELDS,
                                          "a short name stored with every line")
    extra = data.get("extra", {})
    if not isinstance(extra, dict):
        raise ConfigError(f"{where}: key 'extra' must be a table (name = source column)")
    for key, value in extra.items():
        _expect(where, f"extra.{key}", value, str)
    prefs = data.get("preferences", {})
    if not isinstance(prefs, dict):
        raise ConfigError(f"{where}: key 'preferences' must be a table")
    for key in prefs:
        if key not in PREFERENCE_KEYS:
            raise ConfigError(f"{where}: unknown key '{key}' in [preferences] (known: field, partners)")
    pref_field = prefs.get("field")
    partners = prefs.get("partners", {})
    if partners and (pref_field is None or pref_field not in extra):
        raise ConfigError(f"{where}: key 'preferences.field' must name a field of [extra]")
    if not isinstance(partners, dict):
        raise ConfigError(f"{where}: key 'preferences.partners' must be a table (code prefix = [countries])")
    country_codes = _expect(where, "country_codes", data.get("country_codes", "iso3"), str).lower()
    if country_codes not in COUNTRY_CODES:
        raise ConfigError(f"{where}: key 'country_codes' must be one of {', '.join(COUNTRY_CODES)}")
    fmt = _expect(where, "format", data.get("format", "auto"), str).lower()
    if fmt not in ("auto", "csv", "parquet"):
        raise ConfigError(f"{where}: key 'format' must be auto, csv or parquet")
    weight_unit = _expect(where, "weight_unit", data.get("weight_unit", "kg"), str).lower()
    if weight_unit not in WEIGHT_UNITS:
        raise ConfigError(f"{where}: key 'weight_unit' must be one of {', '.join(WEIGHT_UNITS)}")
    usd = _expect(where, "usd_per_unit", data.get("usd_per_unit", 1.0), float)
    if usd <= 0:
        raise ConfigError(f"{where}: key 'usd_per_unit' must be positive")
    destination = data.get("destination")
    if destination is not None:
        destination = _expect(where, "destination", destination, str).upper()
    return Mapping(
        source=_expect(where, "source", data["source"], str),
        columns=columns,
        extra=dict(extra),
        format=fmt,
        date_format=_str_list(where, "date_format", data.get("date_format", "%Y-%m-%d")),
        country_codes=country_codes,
        unknown_country_codes=tuple(c.upper() for c in _str_list(
            where, "unknown_country_codes", data.get("unknown_country_codes", []))),
        currency=_expect(where, "currency", data.get("currency", "USD"), str),
        usd_per_unit=usd,
        weight_unit=weight_unit,
        destination=destination,
        description=_expect(where, "description", data.get("description", ""), str),
        preference_field=pref_field,
        preference_partners={k: tuple(c.upper() for c in _str_list(where, f"preferences.partners.{k}", v))
                              for k, v in partners.items()},
    )


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _col(mapping: Mapping, key: str) -> str:
    """SQL for a mapped source column as trimmed text (NULL when empty or not mapped)."""
    name = mapping.columns.get(key)
    if name is None:
        return "CAST(NULL AS VARCHAR)"
    if isinstance(name, tuple):
        parts = ", ".join(f"nullif(trim({_q(n)}), '')" for n in name)
        return f"nullif(concat_ws('/', {parts}), '')"
    return f"nullif(trim({_q(name)}), '')"


def parse_sql(mapping: Mapping) -> str:
    """One statement: staged text rows -> typed `parsed` rows with a `reason` for the bad ones."""
    code_match = COUNTRY_CODES[mapping.country_codes]
    unknown = "[" + ", ".join(_lit(c) for c in mapping.unknown_country_codes) + "]"
    extra_pairs = ", ".join(f"{_lit(k)}, nullif(trim({_q(v)}), '')" for k, v in mapping.extra.items())
    if "critical" in mapping.columns:
        extra_pairs = ", ".join(p for p in (extra_pairs, f"'critical_fraud', {_col(mapping, 'critical')}") if p)
    pref_value = "CAST(NULL AS VARCHAR)"
    if mapping.preference_field:
        pref_value = f"nullif(trim({_q(mapping.extra[mapping.preference_field])}), '')"
    extra_json = f"json_object({extra_pairs})" if extra_pairs else "json_object()"
    factor = WEIGHT_UNITS[mapping.weight_unit]
    return f"""
CREATE OR REPLACE TEMP TABLE parsed AS
WITH src AS (
    SELECT s.row_no,
           {extra_json}                       AS extra_base,
           {_col(mapping, 'declaration_id')}  AS id_txt,
           {_col(mapping, 'date')}            AS date_txt,
           {_col(mapping, 'declarant_id')}    AS declarant_id,
           {_col(mapping, 'importer_id')}     AS importer_id,
           {_col(mapping, 'exporter_id')}     AS exporter_id,
           upper({_col(mapping, 'origin')})       AS origin_txt,
           upper({_col(mapping, 'consignment')})  AS consignment_txt,
           regexp_replace(coalesce({_col(mapping, 'hs_code')}, ''), '[\\s.]', '', 'g') AS hs_raw,
           {_col(mapping, 'description')}     AS description,
           {_col(mapping, 'value')}           AS value_txt,
           {_col(mapping, 'net_weight')}      AS weight_txt,
           {_col(mapping, 'quantity')}        AS quantity_txt,
           {_col(mapping, 'port')}            AS port,
           {_col(mapping, 'mode')}            AS mode,
           {_col(mapping, 'label')}           AS label_txt,
           {pref_value}                       AS pref_code
    FROM staged_raw s
),
typed AS (
    SELECT *,
           coalesce({', '.join(f'try_strptime(date_txt, {_lit(f)})' for f in mapping.date_format)})::DATE AS date,
           CASE WHEN regexp_full_match(hs_raw, '\\d{{5}}|\\d{{7}}|\\d{{9}}') THEN '0' || hs_raw ELSE hs_raw END
               AS hs_code,
           TRY_CAST(value_txt AS DOUBLE)    AS value_src,
           TRY_CAST(weight_txt AS DOUBLE)   AS weight_src,
           TRY_CAST(quantity_txt AS DOUBLE) AS quantity,
           TRY_CAST(label_txt AS DOUBLE)    AS label_num,
           CASE WHEN list_contains({unknown}, origin_txt) THEN NULL ELSE origin_txt END AS origin_code,
           CASE WHEN list_contains({unknown}, consignment_txt) THEN NULL ELSE consignment_txt END
               AS consignment_code
    FROM src
),
pref_match AS (
    -- the longest preference-code prefix that the line's code starts with
    SELECT t.row_no, arg_max(p.partners, length(p.prefix)) AS partners
    FROM typed t JOIN preference_partners p ON starts_with(t.pref_code, p.prefix)
    GROUP BY t.row_no
)
SELECT t.row_no,
       t.id_txt AS declaration_id, t.date, date_trunc('month', t.date)::DATE AS period,
       t.declarant_id, t.importer_id, t.exporter_id,
       o.iso3 AS origin, c.iso3 AS consignment, t.hs_code, t.description,
       t.value_src * {mapping.usd_per_unit!r} AS value_usd,
       t.weight_src * {factor!r} AS net_weight_kg,
       t.quantity, t.port, t.mode,
       CAST(json_merge_patch(t.extra_base, json_object('preference_partners', pp.partners,
                                                       'destination', {_lit(mapping.destination) if mapping.destination else 'NULL'}))
            AS VARCHAR) AS extra,
       CASE WHEN t.label_num IS NULL THEN NULL WHEN t.label_num > 0 THEN 1 ELSE 0 END AS label,
       CASE
         WHEN t.id_txt IS NULL THEN 'missing declaration id'
         WHEN t.date IS NULL THEN 'unparseable date ''' || coalesce(t.date_txt, '') || ''' (expected '
              || {_lit(' or '.join(mapping.date_format))} || ')'
         WHEN t.hs_raw = '' THEN 'missing HS code'
         WHEN NOT regexp_full_match(t.hs_code, '\\d{{4,10}}') THEN 'HS code ''' || t.hs_raw || ''' is not 4-10 digits'
         WHEN t.value_txt IS NOT NULL AND t.value_src IS NULL THEN 'non-numeric value ''' || t.value_txt || ''''
         WHEN t.value_src < 0 THEN 'negative value ' || t.value_txt
         WHEN t.weight_txt IS NOT NULL AND t.weight_src IS NULL
              THEN 'non-numeric net mass ''' || t.weight_txt || ''''
         WHEN t.weight_src < 0 THEN 'negative net mass ' || t.weight_txt
         WHEN t.quantity_txt IS NOT NULL AND t.quantity IS NULL
              THEN 'non-numeric quantity ''' || t.quantity_txt || ''''
         WHEN t.label_txt IS NOT NULL AND t.label_num IS NULL THEN 'non-numeric label ''' || t.label_txt || ''''
         WHEN t.origin_code IS NOT NULL AND o.iso3 IS NULL
              THEN 'unknown origin country code ''' || t.origin_code || ''' ({mapping.country_codes})'
         WHEN t.consignment_code IS NOT NULL AND c.iso3 IS NULL
              THEN 'unknown consignment country code ''' || t.consignment_code || ''' ({mapping.country_codes})'
       END AS reason
FROM typed t
LEFT JOIN countries o ON {code_match.format(a='o', v='t.origin_code')}
LEFT JOIN countries c ON {code_match.format(a='c', v='t.consignment_code')}
LEFT JOIN pref_match pp ON pp.row_no = t.row_no
"""


def _stage(con: duckdb.DuckDBPyConnection, path: Path, fmt: str) -> list[str]:
    if fmt == "auto":
        fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    if fmt == "csv":
        return stage_csv(con, path)
    con.execute("DROP TABLE IF EXISTS staged_raw")
    con.execute("DROP TABLE IF EXISTS staged_broken")
    try:
        con.execute("CREATE TEMP TABLE staged_raw AS SELECT CAST(COLUMNS(*) AS VARCHAR) FROM read_parquet(?)",
                    [str(path)])
    except duckdb.Error as exc:
        raise InputError(path, f"not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    header = [r[0] for r in con.execute("DESCRIBE staged_raw").fetchall()]
    # Parquet has no header line: row_no is 0-based so that the reported line is the 1-based row.
    con.execute("ALTER TABLE staged_raw ADD COLUMN row_no BIGINT")
    con.execute("UPDATE staged_raw SET row_no = rowid")
    con.execute("CREATE TEMP TABLE staged_broken (line BIGINT, raw VARCHAR, reason VARCHAR)")
    return header


def _prepare_preferences(con: duckdb.DuckDBPyConnection, mapping: Mapping) -> None:
    """The mapping's preference table as a temp table (prefix, partners as comma-joined ISO3)."""
    con.execute("CREATE OR REPLACE TEMP TABLE preference_partners (prefix VARCHAR, partners VARCHAR)")
    code_match = COUNTRY_CODES[mapping.country_codes].format(a="k", v="c.code")
    for prefix, codes in mapping.preference_partners.items():
        con.execute(
            f"""INSERT INTO preference_partners
                SELECT ?, string_agg(DISTINCT k.iso3, ',' ORDER BY k.iso3)
                FROM (SELECT unnest(?::VARCHAR[]) AS code) c JOIN countries k ON {code_match}""",
            [prefix, list(codes)],
        )


def load_declarations(wh: Warehouse, paths, mapping_path: str | Path | None = None) -> dict:
    """Load declaration-line files into `declarations`; return a summary dict (totals and per file).

    Each file is loaded in one transaction; a file whose bytes were loaded before is skipped; a
    declaration_id already stored for the same source is replaced by the line from the newer file.
    """
    mapping = read_mapping(mapping_path)

    def load_one(con: duckdb.DuckDBPyConnection, path: Path, summary: LoadSummary) -> None:
        header = _stage(con, path, mapping.format)
        # label columns absent from this file: its lines are not inspected yet (NULL, never 0)
        this_file = dataclasses.replace(mapping, columns={
            k: v for k, v in mapping.columns.items() if k not in LABEL_FIELDS or v in header})
        wanted = [n for v in this_file.columns.values() for n in (v if isinstance(v, tuple) else (v,))]
        wanted += list(mapping.extra.values())
        missing = sorted({n for n in wanted if n not in header})
        if missing:
            raise InputError(path, f"column(s) {', '.join(repr(m) for m in missing)} named in the mapping "
                                   f"are not in the file (it has: {', '.join(header[:30])})")
        summary.rows_read = int(con.execute("SELECT count(*) FROM staged_raw").fetchone()[0]) + int(
            con.execute("SELECT count(*) FROM staged_broken").fetchone()[0])
        _prepare_preferences(con, mapping)
        con.execute(parse_sql(this_file))
        con.execute("INSERT INTO staged_rejects SELECT row_no, reason FROM parsed WHERE reason IS NOT NULL")
        con.execute(
            """CREATE OR REPLACE TEMP TABLE ranked AS
               SELECT *, row_number() OVER (PARTITION BY declaration_id ORDER BY row_no) AS dup,
                      min(row_no) OVER (PARTITION BY declaration_id) AS first_row
               FROM parsed WHERE reason IS NULL"""
        )
        con.execute(
            """INSERT INTO staged_rejects
               SELECT row_no, 'duplicate declaration id ''' || declaration_id || ''' in file (an earlier line '
                              || 'has it; the first one is kept)'
               FROM ranked WHERE dup > 1"""
        )
        # A line re-sent without an inspection result keeps the result stored for it (from an
        # earlier file or `detector ingest results`).
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE kept_results AS
                SELECT d.declaration_id, d.label,
                       json_object({', '.join(f"'{k}', d.extra->>'{k}'" for k in RESULT_EXTRAS)}) AS result_extra
                FROM declarations d JOIN ranked r ON r.declaration_id = d.declaration_id
                WHERE d.source = ? AND r.dup = 1 AND r.label IS NULL AND d.label IS NOT NULL""",
            [mapping.source],
        )
        replaced = con.execute(
            """DELETE FROM declarations d USING (SELECT declaration_id FROM ranked WHERE dup = 1) r
               WHERE d.source = ? AND d.declaration_id = r.declaration_id""",
            [mapping.source],
        ).fetchone()[0]
        cols = ", ".join(DECLARATION_COLUMNS)
        inserted = con.execute(
            f"""INSERT INTO declarations ({cols})
                SELECT ?, r.declaration_id, date, period, declarant_id, importer_id, exporter_id, origin,
                       consignment, hs_code, description, value_usd, net_weight_kg, quantity, port, mode,
                       CASE WHEN k.label IS NULL THEN r.extra
                            ELSE CAST(json_merge_patch(r.extra, k.result_extra) AS VARCHAR) END,
                       coalesce(r.label, k.label), ?
                FROM ranked r LEFT JOIN kept_results k USING (declaration_id)
                WHERE r.dup = 1 ORDER BY r.row_no""",
            [mapping.source, summary.load_id],
        ).fetchone()[0]
        summary.rows_replaced = int(replaced)
        summary.rows_loaded = int(inserted) - int(replaced)
        raw_cols = [c for c in header if c != "row_no"]
        raw_sql = "array_to_string([" + ", ".join(f"coalesce(s.{_q(c)}, '')" for c in raw_cols) + "], ',')"
        record_rejects(con, summary, path, raw_sql)

    summaries = load_files(wh, paths, mapping.source, load_one)
    for t in ("parsed", "preference_partners", "kept_results"):
        wh.con.execute(f"DROP TABLE IF EXISTS {t}")
    files = [dataclasses.asdict(s) | {"line": s.line()} for s in summaries]
    return {
        "source": mapping.source,
        "mapping": mapping.description or mapping.source,
        "files": files,
        "skipped": sum(1 for s in summaries if s.status == "skipped"),
        **{k: sum(getattr(s, k) for s in summaries if s.status != "skipped")
           for k in ("rows_read", "rows_loaded", "rows_replaced", "rows_rejected")},
    }
