"""Inspection results (CSV or Parquet) attached to declaration lines loaded earlier, through a TOML mapping.

The daily cycle of a customs service: new declaration lines arrive before inspection (no label,
`detector ingest declarations`), are scored, some are inspected, and the results arrive later as a
small file: declaration id, inspection date, outcome, optionally a critical flag. Loading it sets
`declarations.label` (1 = fraud found, 0 = nothing found) and keeps the inspection date and the
critical flag (the source's code, as given) in `extra` (`inspected_date`, `critical_fraud`); the
next run trains on these labels (months before the scored month only, as always).

A result for a declaration id that is not loaded (for the mapping's source) is rejected with its
reason, as is an unreadable date, an unknown outcome, or a date before the declaration's own. Each
file is one transaction and one `loads` row; the same file again is skipped; a later file's result
for the same line replaces the earlier one (counted as replaced). Mapping keys: docs/declarations.md.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import duckdb

from detector.errors import ConfigError, InputError
from detector.ingest.common import LoadSummary, load_files
from detector.ingest.declarations import _col, _expect, _lit, _q, _stage, _str_list, mapped_columns
from detector.ingest.rejects import record_rejects
from detector.warehouse import Warehouse

DEFAULT_MAPPING = "kcs_results.toml"
REQUIRED_FIELDS = ("declaration_id", "inspected", "outcome")
COLUMN_FIELDS = (*REQUIRED_FIELDS, "critical")
TOP_KEYS = {"source", "description", "format", "date_format", "columns", "outcomes"}


@dataclasses.dataclass(frozen=True)
class ResultsMapping:
    """A validated results mapping. `outcomes`: outcome code (upper case) -> 0/1; empty: numeric, > 0 = fraud."""

    source: str
    columns: dict[str, str | tuple[str, ...]]
    outcomes: dict[str, int]
    format: str = "auto"
    date_format: tuple[str, ...] = ("%Y-%m-%d",)
    description: str = ""


def default_mapping_path() -> Path:
    return Path(str(resources.files("detector.ingest").joinpath("mappings", DEFAULT_MAPPING)))


def read_results_mapping(path: str | Path | None = None) -> ResultsMapping:
    """Parse and validate a results mapping TOML; unknown keys are a ConfigError naming the key."""
    path = Path(path) if path else default_mapping_path()
    where, data, columns = mapped_columns(path, TOP_KEYS, COLUMN_FIELDS, REQUIRED_FIELDS,
                                          "the declarations source the results belong to")
    outcomes_raw = data.get("outcomes", {})
    if not isinstance(outcomes_raw, dict):
        raise ConfigError(f"{where}: key 'outcomes' must be a table (outcome code = 0 or 1)")
    outcomes = {}
    for code, value in outcomes_raw.items():
        if value not in (0, 1) or isinstance(value, bool):
            raise ConfigError(f"{where}: key 'outcomes.{code}' must be 1 (fraud found) or 0 (nothing found)")
        outcomes[code.strip().upper()] = int(value)
    fmt = _expect(where, "format", data.get("format", "auto"), str).lower()
    if fmt not in ("auto", "csv", "parquet"):
        raise ConfigError(f"{where}: key 'format' must be auto, csv or parquet")
    return ResultsMapping(
        source=_expect(where, "source", data["source"], str),
        columns=columns,
        outcomes=outcomes,
        format=fmt,
        date_format=_str_list(where, "date_format", data.get("date_format", "%Y-%m-%d")),
        description=_expect(where, "description", data.get("description", ""), str),
    )


def parse_sql(mapping: ResultsMapping) -> str:
    """Staged text rows -> `parsed` (row_no, declaration_id, inspected, label, critical, reason)."""
    if mapping.outcomes:
        codes = ", ".join(f"({_lit(k)}, {v})" for k, v in sorted(mapping.outcomes.items()))
        label = f"(SELECT v FROM (VALUES {codes}) o(k, v) WHERE o.k = upper(outcome_txt))"
        expected = "one of " + ", ".join(sorted(mapping.outcomes))
    else:
        label = "CAST(TRY_CAST(outcome_txt AS DOUBLE) > 0 AS INTEGER)"
        expected = "a number, > 0 = fraud found"
    dates = ", ".join(f"try_strptime(inspected_txt, {_lit(f)})" for f in mapping.date_format)
    return f"""
CREATE OR REPLACE TEMP TABLE parsed AS
WITH src AS (
    SELECT s.row_no,
           {_col(mapping, 'declaration_id')} AS declaration_id,
           {_col(mapping, 'inspected')}      AS inspected_txt,
           {_col(mapping, 'outcome')}        AS outcome_txt,
           {_col(mapping, 'critical')}       AS critical_txt
    FROM staged_raw s
),
typed AS (
    SELECT *, coalesce({dates})::DATE AS inspected, {label} AS label, critical_txt AS critical
    FROM src
)
SELECT t.row_no, t.declaration_id, t.inspected, t.label, t.critical, d.label AS label_before,
       CASE
         WHEN t.declaration_id IS NULL THEN 'missing declaration id'
         WHEN t.inspected IS NULL THEN 'unparseable inspection date ''' || coalesce(t.inspected_txt, '') || ''' (expected '
              || {_lit(' or '.join(mapping.date_format))} || ')'
         WHEN t.outcome_txt IS NULL THEN 'missing outcome'
         WHEN t.label IS NULL THEN 'unknown outcome ''' || t.outcome_txt || ''' (expected {expected})'
         WHEN d.declaration_id IS NULL THEN 'unknown declaration id ''' || t.declaration_id
              || ''' (no {mapping.source} declaration line loaded with it; load the declarations first)'
         WHEN t.inspected < d.date THEN 'inspection date ' || strftime(t.inspected, '%Y-%m-%d')
              || ' is before the declaration date ' || strftime(d.date, '%Y-%m-%d')
       END AS reason
FROM typed t
LEFT JOIN declarations d ON d.source = {_lit(mapping.source)} AND d.declaration_id = t.declaration_id
"""


def load_results(wh: Warehouse, paths, mapping_path: str | Path | None = None) -> dict:
    """Attach inspection results to loaded declaration lines; return a summary dict (totals and per file).

    rows_loaded: lines that get their first result; rows_replaced: lines whose earlier result is replaced.
    """
    mapping = read_results_mapping(mapping_path)

    def load_one(con: duckdb.DuckDBPyConnection, path: Path, summary: LoadSummary) -> None:
        header = _stage(con, path, mapping.format)
        # the critical flag is optional per file
        this_file = dataclasses.replace(mapping, columns={
            k: v for k, v in mapping.columns.items() if k != "critical" or v in header})
        wanted = [n for v in this_file.columns.values() for n in (v if isinstance(v, tuple) else (v,))]
        missing = sorted({n for n in wanted if n not in header})
        if missing:
            raise InputError(path, f"column(s) {', '.join(repr(m) for m in missing)} named in the mapping "
                                   f"are not in the file (it has: {', '.join(header[:30])})", line=1)
        summary.rows_read = int(con.execute("SELECT count(*) FROM staged_raw").fetchall()[0][0]) + int(
            con.execute("SELECT count(*) FROM staged_broken").fetchall()[0][0])
        con.execute(parse_sql(this_file))
        con.execute("INSERT INTO staged_rejects SELECT row_no, reason FROM parsed WHERE reason IS NOT NULL")
        con.execute(
            """CREATE OR REPLACE TEMP TABLE ranked AS
               SELECT *, row_number() OVER (PARTITION BY declaration_id ORDER BY row_no) AS dup
               FROM parsed WHERE reason IS NULL"""
        )
        con.execute(
            """INSERT INTO staged_rejects
               SELECT row_no, 'duplicate declaration id ''' || declaration_id || ''' in file (an earlier line '
                              || 'has it; the first one is kept)'
               FROM ranked WHERE dup > 1"""
        )
        summary.rows_replaced, summary.rows_loaded = (int(v or 0) for v in con.execute(
            "SELECT count(label_before), count(*) - count(label_before) FROM ranked WHERE dup = 1").fetchall()[0])
        con.execute(
            """UPDATE declarations d
               SET label = r.label,
                   extra = CAST(json_merge_patch(coalesce(d.extra, '{}'), json_object(
                       'inspected_date', strftime(r.inspected, '%Y-%m-%d'),
                       'critical_fraud', r.critical)) AS VARCHAR)
               FROM ranked r
               WHERE r.dup = 1 AND d.source = ? AND d.declaration_id = r.declaration_id""",
            [mapping.source],
        )
        raw_cols = [c for c in header if c != "row_no"]
        raw_sql = "array_to_string([" + ", ".join(f"coalesce(s.{_q(c)}, '')" for c in raw_cols) + "], ',')"
        record_rejects(con, summary, path, raw_sql)

    summaries = load_files(wh, paths, f"{mapping.source}-results", load_one)
    wh.con.execute("DROP TABLE IF EXISTS parsed")
    files = [dataclasses.asdict(s) | {"line": s.line()} for s in summaries]
    return {
        "source": mapping.source,
        "mapping": mapping.description or mapping.source,
        "files": files,
        "skipped": sum(1 for s in summaries if s.status == "skipped"),
        **{k: sum(getattr(s, k) for s in summaries if s.status != "skipped")
           for k in ("rows_read", "rows_loaded", "rows_replaced", "rows_rejected")},
    }
