"""Reference data shipped with the package (CSV files here) and its loader into the warehouse.

The facts live in the CSV files, not in code: `countries.csv` (ISO 3166 with UN Comtrade and US
Census codes), `comtrade_areas.csv` (Comtrade partner codes that are not countries),
`watchlist.csv` (HS prefixes of the controlled minerals; `basket`: the code mixes products whose
prices differ widely, so its unit value moves with the mix) and `controls.csv` (dated export
controls and tariffs). `build/` holds the script that regenerates `countries.csv`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import duckdb

from detector.errors import DetectorError

# Explicit types so that codes stay text ('261710', 'NA' for Namibia) and numeric codes integers.
COLUMNS: dict[str, dict[str, str]] = {
    "countries": {
        "iso3": "VARCHAR", "iso2": "VARCHAR", "m49": "INTEGER", "comtrade_code": "INTEGER",
        "census_code": "INTEGER", "name": "VARCHAR",
    },
    "comtrade_areas": {"comtrade_code": "INTEGER", "name": "VARCHAR", "kind": "VARCHAR"},
    "watchlist": {
        "hs_prefix": "VARCHAR", "commodity": "VARCHAR", "controlling_country": "VARCHAR", "basket": "BOOLEAN",
        "description": "VARCHAR", "note": "VARCHAR",
    },
    "code_shift_pairs": {"from_code": "VARCHAR", "to_code": "VARCHAR", "note": "VARCHAR"},
    "controls": {
        "date": "DATE", "country": "VARCHAR", "instrument": "VARCHAR", "commodities": "VARCHAR",
        "targets": "VARCHAR", "kind": "VARCHAR", "until": "DATE", "note": "VARCHAR",
    },
}

def reference_path(name: str) -> Path:
    """Path of a reference file shipped in the package, e.g. reference_path('watchlist.csv')."""
    path = Path(str(resources.files(__name__).joinpath(name)))
    if not path.is_file():
        raise DetectorError(f"{path}: reference file missing from the installed package")
    return path


def reference_sql(table: str) -> tuple[str, list[str]]:
    """SQL (and its parameter) reading one reference CSV with the declared column types."""
    columns = COLUMNS[table]
    path = reference_path(f"{table}.csv")
    with path.open(encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    if header != list(columns):
        raise DetectorError(f"{path}:1: header {header} differs from the expected {list(columns)}")
    types = ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items())
    sql = f"SELECT * FROM read_csv(?, header = true, auto_detect = false, columns = {{{types}}})"
    return sql, [str(path)]


def load_reference(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Replace the contents of countries, comtrade_areas, watchlist and controls from the CSVs.

    All files are read into temporary tables first, so a bad file changes nothing. Runs inside
    the caller's transaction when there is one (Warehouse.transaction()). Returns row counts.
    """
    counts: dict[str, int] = {}
    try:
        for table in COLUMNS:
            sql, params = reference_sql(table)
            con.execute(f"CREATE OR REPLACE TEMP TABLE _ref_{table} AS {sql}", params)
        for table, columns in COLUMNS.items():
            names = ", ".join(f'"{c}"' for c in columns)
            con.execute(f"DELETE FROM {table}")
            con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM _ref_{table}")
            counts[table] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            con.execute(f"DROP TABLE _ref_{table}")
    except duckdb.Error as exc:
        raise DetectorError(f"reference data: cannot load ({str(exc).splitlines()[0]})") from None
    return counts
