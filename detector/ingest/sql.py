"""SQL pieces the loaders build their mapping from: column look-up, the raw text of a row, HS codes
and revisions, and the checks on every flow's period, code and measures."""

from __future__ import annotations

from pathlib import Path

import duckdb

from detector.errors import InputError


def column_map(header: list[str], path: Path, columns: list[str], required: dict[str, list[str]],
               what: str) -> dict[str, str]:
    """Canonical column name -> SQL expression reading it (NULL when the file lacks it).

    Names match case-insensitively; `required` lists, per need, names of which one must be
    present, else the file is refused as "not {what}".
    """
    by_lower = {}
    for name in header:
        key = name.strip().lstrip("\ufeff").lower()
        if key in by_lower:
            raise InputError(path, f"duplicated header column '{name}'", line=1)
        by_lower[key] = name
    missing = [need for need, names in required.items() if not any(n.lower() in by_lower for n in names)]
    if missing:
        raise InputError(
            path,
            f"not {what}: no column for " + ", ".join(
                f"{need} ({' or '.join(required[need])})" for need in missing),
            line=1,
        )
    return {
        name: (str(duckdb.ColumnExpression(by_lower[name.lower()])) if name.lower() in by_lower else "NULL")
        for name in columns
    }


def raw_row_sql(header: list[str], row: str = "s.") -> str:
    """SQL rebuilding a staged row (`row` prefixes its columns) as comma-joined text, for `rejects.raw`."""
    cols = ", ".join(f"coalesce({row}{duckdb.ColumnExpression(c)}, '')" for c in header)
    return f"concat_ws(',', {cols})"


def hs_restored_sql(code: str) -> str:
    """SQL for an HS code with the leading zero a spreadsheet dropped put back (5, 7 or 9 digits)."""
    return (f"CASE WHEN regexp_full_match({code}, '\\d{{5}}|\\d{{7}}|\\d{{9}}') "
            f"THEN '0' || {code} ELSE {code} END")


def hs_fixed_sql(code: str) -> str:
    return f"coalesce(regexp_full_match({code}, '\\d{{5}}|\\d{{7}}|\\d{{9}}'), false)"


# First year of each HS revision: national tariffs (CN, HTS) switch on 1 January of that year.
HS_REVISION_YEARS = {2022: "HS2022", 2017: "HS2017", 2012: "HS2012", 2007: "HS2007", 2002: "HS2002",
                     1996: "HS1996", 1988: "HS1992"}


def hs_revision_sql(year: str) -> str:
    """SQL naming the HS revision in force in `year` (an integer expression)."""
    whens = " ".join(f"WHEN {year} >= {y} THEN '{rev}'" for y, rev in HS_REVISION_YEARS.items())
    return f"CASE {whens} END"


# CASE branches every flow loader ends with: period range, HS code shape, then value, weight and
# quantity. Needs the columns period, hs_code, value_usd, value_txt, net_weight_kg, weight_txt,
# quantity, qty_txt.
MEASURE_CHECKS_SQL = """
         WHEN NOT year(period) BETWEEN 1962 AND 2100
              THEN 'period ' || strftime(period, '%Y-%m') || ' out of range (1962 to 2100)'
         WHEN coalesce(hs_code, '') = '' THEN 'missing HS code'
         WHEN NOT regexp_full_match(hs_code, '\\d+') THEN 'HS code ''' || hs_code || ''' is not numeric'
         WHEN length(hs_code) NOT IN (6, 8, 10)
              THEN 'wrong HS length: ''' || hs_code || ''' has ' || length(hs_code) || ' digits (need 6, 8 or 10)'
         WHEN value_txt IS NULL THEN 'missing value'
         WHEN value_usd IS NULL OR NOT isfinite(value_usd) THEN 'non-numeric value ''' || value_txt || ''''
         WHEN value_usd < 0 THEN 'negative value ' || CAST(value_usd AS VARCHAR)
         WHEN weight_txt IS NOT NULL AND (net_weight_kg IS NULL OR NOT isfinite(net_weight_kg))
              THEN 'non-numeric net weight ''' || weight_txt || ''''
         WHEN net_weight_kg < 0 THEN 'negative net weight ' || CAST(net_weight_kg AS VARCHAR)
         WHEN qty_txt IS NOT NULL AND (quantity IS NULL OR NOT isfinite(quantity))
              THEN 'non-numeric quantity ''' || qty_txt || ''''
         WHEN quantity < 0 THEN 'negative quantity ' || CAST(quantity AS VARCHAR)"""
