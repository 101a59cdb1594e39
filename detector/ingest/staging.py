"""Staging a whole file with the DuckDB reader: a CSV (plain or .gz) or a Parquet file as text
columns in a temp table, with the lines the parser could not split kept aside with their line
numbers (`staged_broken`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb

from detector.errors import InputError
from detector.ingest.files import first_line, head_bytes, sniff_encoding


def _duplicated_header_name(con: duckdb.DuckDBPyConnection, path: Path, encoding: str,
                            header: list[str]) -> str | None:
    """The first header name the file repeats (case-insensitively), from its raw header line.

    DuckDB renames a repeated column (period, period_1), so a file with two `period` columns
    would load whichever one the loader picks; this looks at the line itself, and only when
    the DuckDB names suggest a rename (a genuine `period_1` column is not a duplicate).
    """
    names = {h.lower() for h in header}
    renamed = [h for h in header if "_" in h and h.rsplit("_", 1)[1].isdigit()
               and h.rsplit("_", 1)[0].lower() in names]
    if not renamed:
        return None
    try:
        delimiter = con.execute("SELECT Delimiter FROM sniff_csv(?, encoding = ?)", [str(path), encoding]).fetchone()[0]
        text = head_bytes(path).decode(encoding, errors="replace").lstrip("\ufeff")
        raw = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
    except (duckdb.Error, csv.Error, TypeError):
        return None
    seen = set()
    for name in raw:
        key = name.strip().lower()
        if key in seen:
            return name.strip()
        seen.add(key)
    return None


_READER = """read_csv(?, all_varchar = true, header = true, encoding = ?, store_rejects = true,
                      rejects_scan = 'staged_scan', rejects_table = 'staged_errors')"""


def csv_header(con: duckdb.DuckDBPyConnection, path: Path, allow_duplicates: bool) -> tuple[list[str], str]:
    """(the header as the DuckDB reader names it, the file's encoding); refuses an empty file or a
    header naming a column twice (unless `allow_duplicates`)."""
    if not path.exists():
        raise InputError(path, "no such file")
    head = head_bytes(path, 4096)
    if not head.strip():
        raise InputError(path, "empty file (no header line)", line=1)
    encoding = sniff_encoding(path)
    try:
        header = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {_READER}", [str(path), encoding]).fetchall()]
    except duckdb.Error as exc:
        raise InputError(path, f"not a readable CSV file ({first_line(exc)})") from None
    repeated = None if allow_duplicates else _duplicated_header_name(con, path, encoding, header)
    if repeated is not None:
        raise InputError(path, f"duplicated header column '{repeated}'", line=1)
    return header, encoding


def stage_csv(con: duckdb.DuckDBPyConnection, path: Path, choose_columns=None,
              table: str = "staged_raw", allow_duplicates: bool = False) -> list[str]:
    """Read a CSV (plain or .gz) as text columns into a temp table; return the file's header.

    `choose_columns(header) -> list[str]` picks the columns to read (the CSV reader then skips
    parsing the others, which matters for 47-column Comtrade files). Rows the parser cannot split
    go to the temp table `staged_broken(line, raw, reason)`. The temp table gets a `row_no`
    column (1-based, file order: the table keeps the reader's order, so row ids number the rows).
    A header naming a column twice is an error unless `allow_duplicates` (the repeats then come
    back renamed name_1, name_2, ... and the first one is the one read).
    """
    header, encoding = csv_header(con, path, allow_duplicates)
    chosen = choose_columns(header) if choose_columns else header
    select = "".join(f"{duckdb.ColumnExpression(c)}, " for c in chosen)
    try:  # (a sniff that failed in a transaction aborts it: the first statement here says so)
        for t in (table, f"{table}_text", "staged_broken"):
            con.execute(f"DROP TABLE IF EXISTS {t}")
        # A window row_number() makes the reader run on one thread; a table keeps the file's
        # order when insertion order is preserved (the default), so its row ids number the rows
        # instead, copied into row_no by a second table (an UPDATE of every row is slower, and
        # slows every later scan in a transaction). Row ids of a table made inside a transaction
        # start at an offset: count from the first.
        ordered = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
        if ordered and select:
            con.execute(f"CREATE TEMP TABLE {table}_text AS SELECT {select.rstrip(', ')} FROM {_READER}",
                        [str(path), encoding])
            con.execute(f"""CREATE TEMP TABLE {table} AS
                            SELECT *, rowid - (SELECT coalesce(min(rowid), 0) FROM {table}_text) + 1 AS row_no
                            FROM {table}_text""")
            con.execute(f"DROP TABLE {table}_text")
        else:
            con.execute(f"CREATE TEMP TABLE {table} AS SELECT {select}row_number() OVER () AS row_no FROM {_READER}",
                        [str(path), encoding])
    except duckdb.Error as exc:
        raise InputError(path, f"not a readable CSV file ({first_line(exc)})") from None
    con.execute(
        """CREATE TEMP TABLE staged_broken AS
           SELECT line, min(csv_line) AS raw, min(error_type || ': ' || error_message) AS reason
           FROM staged_errors GROUP BY line"""
    )
    con.execute("DROP TABLE IF EXISTS staged_errors")
    con.execute("DROP TABLE IF EXISTS staged_scan")
    return header


def stage_parquet(con: duckdb.DuckDBPyConnection, path: Path, table: str = "staged_raw") -> list[str]:
    """Read a Parquet file into the same text-column temp table `stage_csv` makes (no broken lines)."""
    for t in (table, "staged_broken"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    try:
        names = [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()]
        casts = ", ".join(f"CAST({duckdb.ColumnExpression(n)} AS VARCHAR) AS {duckdb.ColumnExpression(n)}"
                          for n in names)
        con.execute(
            f"""CREATE TEMP TABLE {table} AS
                SELECT {casts}, row_number() OVER () AS row_no FROM read_parquet(?)""",
            [str(path)],
        )
    except duckdb.Error as exc:
        raise InputError(path, f"not a readable Parquet file ({first_line(exc)})") from None
    con.execute("CREATE TEMP TABLE staged_broken (line BIGINT, raw VARCHAR, reason VARCHAR)")
    return names
