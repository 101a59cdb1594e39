"""What every loader shares: read a file into a staging table, keep bad rows aside with a reason,
replace revised rows, record the load, all in one transaction.

A loader module only writes the SQL that maps its source's columns onto `flows` (or
`declarations`) and flags invalid rows; this module does the rest the same way for every source.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import duckdb

from detector.errors import InputError
from detector.warehouse import Warehouse

FLOW_KEY = ["source", "period", "reporter", "partner", "partner2", "flow", "hs_code"]
FLOW_COLUMNS = [
    "source", "period", "freq", "reporter", "partner", "partner2", "flow", "hs_code", "hs_revision",
    "value_usd", "net_weight_kg", "quantity", "quantity_unit", "load_id",
]


@dataclass
class LoadSummary:
    file: str
    source: str
    status: str = "loaded"  # loaded | skipped
    rows_read: int = 0
    rows_loaded: int = 0
    rows_replaced: int = 0
    rows_rejected: int = 0
    aggregates: int = 0  # of the rejected rows: partner World / area totals, kept out of flows
    fixed_codes: int = 0  # HS codes restored with their lost leading zero
    seconds: float = 0.0
    load_id: str = ""
    reasons: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        if self.status == "skipped":
            return f"{self.file}: skipped (already loaded as {self.load_id}; nothing changed)"
        extra = []
        if self.aggregates:
            extra.append(f"{self.aggregates:,} of them partner aggregates")
        if self.fixed_codes:
            extra.append(f"{self.fixed_codes:,} HS codes zero-padded")
        note = f" ({'; '.join(extra)})" if extra else ""
        return (
            f"{self.file}: read {self.rows_read:,}, loaded {self.rows_loaded:,}, replaced "
            f"{self.rows_replaced:,}, rejected {self.rows_rejected:,}{note} in {self.seconds:.2f}s"
        )


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes; a .gz file is also inflated to its end on the way.

    The CSV reader reads a gzip stream cut short (an interrupted download) as far as it goes
    and never sees the missing end, which would load part of a file as if it were all of it.
    """
    h = hashlib.sha256()
    inflate = zlib.decompressobj(wbits=31) if path.name.lower().endswith(".gz") else None
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            while inflate is not None and chunk:
                try:
                    inflate.decompress(chunk, 1 << 16)
                    chunk = inflate.unconsumed_tail
                    if inflate.eof and inflate.unused_data:  # the next member of a multi-member file
                        chunk, inflate = inflate.unused_data, zlib.decompressobj(wbits=31)
                except zlib.error as exc:
                    raise InputError(path, f"corrupt gzip data ({exc})") from None
    if inflate is not None and not inflate.eof:
        raise InputError(path, "gzip file ends early (truncated download?); fetch it again")
    return h.hexdigest()


def _head_bytes(path: Path, n: int = 1 << 16) -> bytes:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            return fh.read(n)
    except (OSError, EOFError) as exc:
        raise InputError(path, f"cannot read file ({exc})") from None


def sniff_encoding(path: Path) -> str:
    """DuckDB reads utf-8, utf-16 and latin-1; choose from the BOM or a trial decode."""
    head = _head_bytes(path)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
            return "latin-1"
    return "utf-8"


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
        text = _head_bytes(path).decode(encoding, errors="replace").lstrip("\ufeff")
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


def _csv_header(con: duckdb.DuckDBPyConnection, path: Path, allow_duplicates: bool) -> tuple[list[str], str]:
    """(the header as the DuckDB reader names it, the file's encoding); refuses an empty file or a
    header naming a column twice (unless `allow_duplicates`)."""
    if not path.exists():
        raise InputError(path, "no such file")
    head = _head_bytes(path, 4096)
    if not head.strip():
        raise InputError(path, "empty file (no header line)", line=1)
    encoding = sniff_encoding(path)
    try:
        header = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {_READER}", [str(path), encoding]).fetchall()]
    except duckdb.Error as exc:
        raise InputError(path, f"not a readable CSV file ({_first_line(exc)})") from None
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
    header, encoding = _csv_header(con, path, allow_duplicates)
    chosen = choose_columns(header) if choose_columns else header
    select = "".join(f"{duckdb.ColumnExpression(c)}, " for c in chosen)
    try:  # (a sniff that failed in a transaction aborts it: the first statement here says so)
        for t in (table, "staged_broken"):
            con.execute(f"DROP TABLE IF EXISTS {t}")
        # A window row_number() makes the reader run on one thread; a table keeps the file's
        # order when insertion order is preserved (the default), so its row ids number the rows
        # instead. Row ids of a table made inside a transaction start at an offset: count from the first.
        ordered = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
        row_no = "CAST(NULL AS BIGINT)" if ordered else "row_number() OVER ()"
        con.execute(
            f"CREATE TEMP TABLE {table} AS SELECT {select}{row_no} AS row_no FROM {_READER}",
            [str(path), encoding],
        )
        if ordered:
            con.execute(f"UPDATE {table} SET row_no = rowid - (SELECT min(rowid) FROM {table}) + 1")
    except duckdb.Error as exc:
        raise InputError(path, f"not a readable CSV file ({_first_line(exc)})") from None
    con.execute(
        """CREATE TEMP TABLE staged_broken AS
           SELECT line, min(csv_line) AS raw, min(error_type || ': ' || error_message) AS reason
           FROM staged_errors GROUP BY line"""
    )
    con.execute("DROP TABLE IF EXISTS staged_errors")
    con.execute("DROP TABLE IF EXISTS staged_scan")
    return header


def stage_csv_batches(con: duckdb.DuckDBPyConnection, path: Path, choose_columns, each_batch,
                      table: str = "staged_raw") -> tuple[list[str], bool]:
    """Hand a structurally clean CSV to `each_batch(header, first, execute)` a batch at a time; else
    stage it whole.

    A plain utf-8 file is read by the Arrow CSV reader in batches of whole lines (about
    `_BATCH_BYTES` of text each), each proven clean before it is used (see `_clean_batches`);
    `execute(sql)` runs SQL that reads the batch as `table` (the chosen text columns + row_no
    numbering the file's rows). A file without rows still gets one empty batch. Returns (header, True),
    with an empty `staged_broken`. Memory is two batches (this one and the next) whatever the
    file's size, and no staged copy of the file's text is made.

    Any other file, or any doubt in any batch, is staged whole by `stage_csv` (the DuckDB reader
    keeps broken lines with their line numbers): (header, False), and the caller then reads
    `table` whole, replacing whatever it made of the earlier batches.
    """
    header, encoding = _csv_header(con, path, allow_duplicates=False)
    chosen = choose_columns(header)
    if FAST_STAGING and encoding == "utf-8":
        delimiter = _plain_delimiter(con, path)
        if delimiter is not None:
            con.execute(f"DROP TABLE IF EXISTS {table}")
            batches = _clean_batches(path, header, chosen, delimiter)
            try:
                # The next batch is read and checked on a thread while DuckDB parses this one.
                with ThreadPoolExecutor(1) as reader:
                    ahead, first = reader.submit(next, batches, None), True
                    while (batch := ahead.result()) is not None:
                        ahead = reader.submit(next, batches, None)
                        # A relation, not a registered view: a transaction keeps what it dropped
                        # (a view and its Arrow table) until it ends, which would keep every batch.
                        rel = con.from_arrow(batch)
                        each_batch(header, first, partial(rel.query, table))
                        first = False
                        del rel, batch
                con.execute("CREATE OR REPLACE TEMP TABLE staged_broken (line BIGINT, raw VARCHAR, reason VARCHAR)")
                return header, True
            except _NotClean:
                pass
            finally:
                batches.close()
    return stage_csv(con, path, choose_columns, table), False


def restage_rows(con: duckdb.DuckDBPyConnection, path: Path, choose_columns, rows: str,
                 table: str = "staged_raw") -> None:
    """Temp table `table` with only the staged rows whose row_no is in the relation `rows`, from a
    file `stage_csv_batches` took in batches (the few rows whose raw text a reject quotes)."""
    con.execute(f"DROP TABLE IF EXISTS {table}")

    def keep(header, first, execute):
        into = f"CREATE TEMP TABLE {table} AS" if first else f"INSERT INTO {table}"
        execute(f"{into} SELECT b.* FROM staged_batch b SEMI JOIN {rows} r USING (row_no)")

    header, batched = stage_csv_batches(con, path, choose_columns, keep, table="staged_batch")
    if not batched:  # the file changed under the load: it was proven clean a moment ago
        raise InputError(path, "file changed while it was being loaded; load it again")


# On: plain utf-8 files are read in batches by the Arrow reader; False sends every file through the
# DuckDB reader (both paths must give the same tables).
FAST_STAGING = True
_BATCH_BYTES = 64 << 20  # text per batch of the fast path (an Arrow batch takes about twice this)
_MAX_LINE = 1 << 20  # well under the DuckDB reader's line limit (2 MB), where it would reject a line


class _NotClean(Exception):
    """A file, or a batch of it, the fast path cannot vouch for: the DuckDB reader reads it whole."""


def _plain_delimiter(con: duckdb.DuckDBPyConnection, path: Path) -> str | None:
    """The one-byte delimiter of a plain file DuckDB sniffs as delimited without quoting, comment
    or skipped rows; None for anything else (a .gz file, another dialect)."""
    if path.name.lower().endswith(".gz"):
        return None
    try:
        sniffed = con.execute(
            "SELECT Delimiter, Quote, SkipRows, Comment FROM sniff_csv(?, header = true, encoding = 'utf-8')",
            [str(path)]).fetchall()
    except duckdb.Error:
        return None
    delimiter, quote, skip_rows, comment = sniffed[0]
    if (len(delimiter.encode()) != 1 or delimiter in "\"\r\n" or quote not in ("", "(empty)")
            or skip_rows or comment not in ("", "(empty)")):
        return None
    return delimiter


def _check_lines(text: bytes, crlf: bool, delimiter: bytes, width: int) -> int:
    """The number of lines in `text` (whole lines; the last may lack its line break), or _NotClean.

    Clean lines: no quote or NUL byte, valid utf-8, none over _MAX_LINE bytes, every line ending
    in CR LF when `crlf` and no CR at all otherwise, and width - 1 delimiters per line on average
    (the Arrow reader then refuses a line of any other width but an empty one, which this count
    refuses). Without quotes a line is a record and every delimiter splits a field, so these
    counts are the whole structure, found with a few fast passes over the bytes.
    """
    import numpy as np

    if b'"' in text or b"\0" in text:
        raise _NotClean
    ends = np.flatnonzero(np.frombuffer(text, np.uint8) == 0x0A)
    last = len(text) - 1 - int(ends[-1]) if len(ends) else len(text)  # bytes after the last line break
    lines = len(ends) + (last > 0)
    longest = max(int(ends[0]) if len(ends) else 0, int(np.diff(ends).max(initial=0)) - 1, last)
    if longest > _MAX_LINE:
        raise _NotClean
    if crlf:
        if not text.count(b"\r") == text.count(b"\r\n") == len(ends):
            raise _NotClean  # a CR that does not end a line, or a line without one
    elif b"\r" in text:
        raise _NotClean
    if text.count(delimiter) != (width - 1) * lines:
        raise _NotClean
    if not text.isascii():
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            raise _NotClean from None
    return lines


def _clean_batches(path: Path, header: list[str], chosen: list[str], delimiter: str):
    """The `chosen` columns of a structurally clean CSV as Arrow tables of text (+ row_no), a batch
    of whole lines at a time; raises _NotClean at the first doubt.

    Clean means the file reads the same with the Arrow CSV reader as with the DuckDB reader,
    proven by: a header line of the header's width; lines that pass `_check_lines`; and the Arrow
    reader, which refuses a row of any other width, giving one row per line (no blank line skipped).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    width = len(header)  # (one column: a blank line has the right delimiter count, 0)
    if width < 2:
        raise _NotClean
    options = dict(
        read_options=pa_csv.ReadOptions(column_names=header),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter, quote_char=False, escape_char=False,
                                          newlines_in_values=False, ignore_empty_lines=False),
        convert_options=pa_csv.ConvertOptions(
            column_types={c: pa.string() for c in chosen}, include_columns=chosen,
            strings_can_be_null=True, null_values=[""], check_utf8=True),
    )
    with open(path, "rb") as fh:
        first = fh.readline(_MAX_LINE + 1)
        crlf = first.endswith(b"\r\n")
        if len(first) > _MAX_LINE:
            raise _NotClean
        _check_lines(first.removeprefix(codecs.BOM_UTF8), crlf, delimiter.encode(), width)
        row_no, rest, done = 1, b"", False
        while not done:
            chunk = fh.read(_BATCH_BYTES)
            done = not chunk
            text = rest + chunk
            cut = len(text) if done else text.rfind(b"\n") + 1
            text, rest = text[:cut], text[cut:]
            if len(rest) > _MAX_LINE:
                raise _NotClean
            if not text and not (done and row_no == 1):
                continue
            lines = _check_lines(text, crlf, delimiter.encode(), width) if text else 0
            try:
                table = pa_csv.read_csv(pa.py_buffer(text), **options) if text else pa.table(
                    {c: pa.array([], pa.string()) for c in chosen})
            except (pa.ArrowException, OSError, ValueError):  # any complaint: not clean
                raise _NotClean from None
            if table.num_rows != lines or table.column_names != chosen:
                raise _NotClean
            yield table.append_column("row_no", pa.array(np.arange(row_no, row_no + lines, dtype=np.int64)))
            row_no += lines


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
        raise InputError(path, f"not a readable Parquet file ({_first_line(exc)})") from None
    con.execute("CREATE TEMP TABLE staged_broken (line BIGINT, raw VARCHAR, reason VARCHAR)")
    return names


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


def raw_row_sql(header: list[str]) -> str:
    """SQL rebuilding a staged row `s` as comma-joined text, for `rejects.raw`."""
    cols = ", ".join(f"coalesce(s.{duckdb.ColumnExpression(c)}, '')" for c in header)
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


def load_eur_usd(con: duckdb.DuckDBPyConnection, rates: str | Path | None = None) -> None:
    """Monthly EUR->USD rates into temp table `eur_usd(month DATE, usd_per_eur DOUBLE)`.

    Default: the shipped `reference/eur_usd_monthly.csv` (monthly averages of the ECB euro
    reference rate); `rates` overrides it with a CSV of the same two columns (month as YYYY-MM).
    """
    from detector.reference import reference_path

    path = Path(rates) if rates else reference_path("eur_usd_monthly.csv")
    if not path.is_file():
        raise InputError(path, "no such file (EUR/USD rate table)")
    try:
        con.execute(
            """CREATE OR REPLACE TEMP TABLE eur_usd AS
               SELECT CAST(strptime(trim(month), '%Y-%m') AS DATE) AS month,
                      CAST(usd_per_eur AS DOUBLE) AS usd_per_eur
               FROM read_csv(?, header = true, comment = '#', all_varchar = true)""",
            [str(path)],
        )
        repeated, not_positive = con.execute(
            "SELECT count(*) - count(DISTINCT month), count(*) FILTER (WHERE NOT usd_per_eur > 0) FROM eur_usd"
        ).fetchone()
    except duckdb.Error as exc:
        raise InputError(path, f"not a month,usd_per_eur rate table ({_first_line(exc)})") from None
    if repeated or not_positive:
        raise InputError(path, "rate table has a repeated month or a rate that is not positive")


def sync_source_precedence(con: duckdb.DuckDBPyConnection) -> None:
    """Refresh `source_precedence` (read by the flows_preferred view) from the sources' declarations."""
    from detector.ingest.sources import precedence

    con.execute("DELETE FROM source_precedence")
    con.executemany("INSERT INTO source_precedence VALUES (?, ?)", precedence())


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


# Lines the parser rejected, as steps: a staged row after `valid_before` valid rows has
# `n_before` broken lines before it (one row per run of adjacent broken lines).
BROKEN_STEPS_SQL = """
SELECT valid_before, max(k) AS n_before
FROM (SELECT line - row_number() OVER (ORDER BY line) - 1 AS valid_before,
             row_number() OVER (ORDER BY line) AS k
      FROM staged_broken)
GROUP BY valid_before
"""


def already_loaded(con: duckdb.DuckDBPyConnection, digest: str) -> str | None:
    row = con.execute("SELECT load_id FROM loads WHERE content_hash = ?", [digest]).fetchone()
    return row[0] if row else None


def make_load_id(source: str, digest: str) -> str:
    return f"{source}-{digest[:16]}"


def write_flows(con: duckdb.DuckDBPyConnection, summary: LoadSummary, candidates: str) -> None:
    """Replace revised keys and insert new rows from the `candidates` table (FLOW_COLUMNS).

    A key present twice in one file keeps its first line; the others are rejected. The usual
    case, a file without repeated keys whose reporter-months are new to the warehouse, is checked
    first with one sort of key hashes and one semi-join, and skips the ranking sort and the delete.
    """
    key = ", ".join(FLOW_KEY)
    # One hash of the key per row, sorted to find a repeat: cheaper than a hash aggregate with
    # one group per row; a collision only sends a file down the exact ranking path below, which
    # then rejects nothing more.
    hashes = con.execute(f"SELECT hash({key}) AS h FROM {candidates}").fetchnumpy()["h"]
    hashes.sort()
    repeated = bool((hashes[1:] == hashes[:-1]).any())
    del hashes
    rows = candidates
    if repeated:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE ranked AS
                SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY row_no) AS dup
                FROM {candidates}"""
        )
        con.execute(
            """INSERT INTO staged_rejects
                SELECT row_no, 'duplicate key in file (same reporter, partner, flow, hs_code, period as an earlier line)'
                FROM ranked WHERE dup > 1"""
        )
        rows = "(SELECT * FROM ranked WHERE dup = 1)"
    overlap = con.execute("SELECT EXISTS (SELECT 1 FROM flows)").fetchall()[0][0] and con.execute(
        f"""SELECT EXISTS (SELECT 1 FROM flows f
                           SEMI JOIN (SELECT DISTINCT source, reporter, period, flow FROM {candidates}) c
                           USING (source, reporter, period, flow))"""
    ).fetchall()[0][0]
    replaced = 0
    if overlap:
        on = " AND ".join(f"f.{k} IS NOT DISTINCT FROM r.{k}" for k in FLOW_KEY)
        replaced = con.execute(f"DELETE FROM flows f USING (SELECT {key} FROM {rows} d) r WHERE {on}").fetchone()[0]
    cols = ", ".join(FLOW_COLUMNS)
    inserted = con.execute(f"INSERT INTO flows ({cols}) SELECT {cols} FROM {rows} d").fetchone()[0]
    summary.rows_replaced = int(replaced)
    summary.rows_loaded = int(inserted) - int(replaced)


def record_rejects(con: duckdb.DuckDBPyConnection, summary: LoadSummary, path: Path, raw_sql: str,
                   with_raw: str | None = None) -> None:
    """Move staged rejects (row_no, reason) and parser failures into `rejects` with file lines.

    `with_raw`: a relation of more rejects (row_no, reason, raw) that bring their raw text along,
    so that they need no look-up in `staged_raw` (a join that reads every staged row).
    """
    # Staged row n is file line n + 1 (after the header) plus the broken lines before it: the
    # last step below n, found once for all rejects by an as-of join.
    parts = []
    if con.execute("SELECT count(*) FROM (SELECT 1 FROM staged_rejects LIMIT 1)").fetchall()[0][0]:
        parts.append(f"SELECT r.row_no, r.reason, {raw_sql} AS raw FROM staged_rejects r JOIN staged_raw s USING (row_no)")
    if with_raw is not None:
        parts.append(f"SELECT row_no, reason, raw FROM {with_raw} w")
    if parts and con.execute("SELECT EXISTS (SELECT 1 FROM staged_broken)").fetchone()[0]:
        con.execute(
            f"""INSERT INTO rejects (load_id, file, line, raw, reason)
                SELECT ?, ?, s.row_no + 1 + coalesce(b.n_before, 0), s.raw, s.reason
                FROM ({" UNION ALL ".join(parts)}) s
                ASOF LEFT JOIN ({BROKEN_STEPS_SQL}) b ON s.row_no > b.valid_before""",
            [summary.load_id, str(path)],
        )
    elif parts:  # no broken line: staged row n is line n + 1 (the as-of join would sort every reject)
        con.execute(
            f"""INSERT INTO rejects (load_id, file, line, raw, reason)
                SELECT ?, ?, s.row_no + 1, s.raw, s.reason FROM ({" UNION ALL ".join(parts)}) s""",
            [summary.load_id, str(path)],
        )
    con.execute("INSERT INTO rejects (load_id, file, line, raw, reason) SELECT ?, ?, line, raw, reason FROM staged_broken",
                [summary.load_id, str(path)])
    more = f"UNION ALL SELECT reason FROM {with_raw} w" if with_raw is not None else ""
    for reason, n in con.execute(
        f"""SELECT reason, count(*) FROM (SELECT reason FROM staged_rejects UNION ALL
                                           SELECT reason FROM staged_broken {more}) GROUP BY reason ORDER BY reason"""
    ).fetchall():
        summary.reasons[reason] = int(n)
    summary.rows_rejected = sum(summary.reasons.values())


# Who published what: every parsed row with a valid reporter, flow and period counts, aggregates included.
REPORTING_SQL = """
INSERT INTO reporting (source, reporter, flow, period, freq, load_id)
SELECT DISTINCT ?, p.reporter, p.{flow}, p.period, p.freq, ?
FROM parsed p
WHERE p.reporter IS NOT NULL AND p.period IS NOT NULL AND p.{flow} IN ('M', 'X', 'RM', 'RX')
  AND NOT EXISTS (SELECT 1 FROM reporting r WHERE r.source = ? AND r.reporter = p.reporter
                  AND r.flow = p.{flow} AND r.period = p.period AND r.freq = p.freq)
"""


def record_reporting(con: duckdb.DuckDBPyConnection, source: str, load_id: str, flow: str = "flow") -> None:
    """Mark (reporter, flow, period) as published, from the temp table `parsed`."""
    con.execute(REPORTING_SQL.format(flow=flow), [source, load_id, source])


# Rows of one key that are parts of one flow (Comext lines per statistical procedure) summed into it.
SUMMED_CANDIDATES_SQL = """
SELECT period, freq, reporter, partner, partner2, flow, hs_code, min(hs_revision) AS hs_revision,
       sum(value_usd) AS value_usd,
       CASE WHEN count(net_weight_kg) = count(*) THEN sum(net_weight_kg) END AS net_weight_kg,
       CASE WHEN count(quantity) = count(*) AND count(DISTINCT quantity_unit) <= 1 THEN sum(quantity) END AS quantity,
       CASE WHEN count(DISTINCT quantity_unit) = 1 THEN min(quantity_unit) END AS quantity_unit,
       min(row_no) AS row_no
FROM parsed WHERE reject_reason IS NULL
GROUP BY period, freq, reporter, partner, partner2, flow, hs_code
"""


def finish_flows(con: duckdb.DuckDBPyConnection, path: Path, summary: LoadSummary, header: list[str],
                 sum_parts: bool = False) -> None:
    """The common tail of a flow loader, from a temp table `parsed` holding row_no, the FLOW_COLUMNS
    but source and load_id, reject_reason and hs_fixed: set rejects aside, write flows, record reporting.

    `sum_parts`: valid rows sharing a flows key are parts of one flow (a breakdown the source gives
    and flows does not keep) and are summed; otherwise the second one is a duplicate.
    """
    summary.rows_read = con.execute("SELECT count(*) FROM parsed").fetchone()[0] + con.execute(
        "SELECT count(*) FROM staged_broken").fetchone()[0]
    cols = ", ".join(c for c in FLOW_COLUMNS if c not in ("source", "load_id"))
    rows = f"({SUMMED_CANDIDATES_SQL})" if sum_parts else "(SELECT * FROM parsed WHERE reject_reason IS NULL)"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE candidates AS
            SELECT CAST(? AS VARCHAR) AS source, {cols}, CAST(? AS VARCHAR) AS load_id, row_no
            FROM {rows} valid""",
        [summary.source, summary.load_id],
    )
    con.execute("INSERT INTO staged_rejects SELECT row_no, reject_reason FROM parsed WHERE reject_reason IS NOT NULL")
    summary.aggregates = con.execute(
        "SELECT count(*) FROM parsed WHERE reject_reason LIKE 'partner is %aggregate%'").fetchone()[0]
    summary.fixed_codes = con.execute(
        "SELECT count(*) FROM parsed WHERE reject_reason IS NULL AND hs_fixed").fetchone()[0]
    write_flows(con, summary, "candidates")
    record_reporting(con, summary.source, summary.load_id)
    record_rejects(con, summary, path, raw_row_sql(header))


def record_load(con: duckdb.DuckDBPyConnection, summary: LoadSummary, path: Path, digest: str) -> None:
    con.execute(
        "INSERT INTO loads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [summary.load_id, summary.source, str(path), digest, summary.rows_read, summary.rows_loaded,
         summary.rows_replaced, summary.rows_rejected, datetime.now(UTC).replace(tzinfo=None)],
    )


def load_files(wh: Warehouse, paths, source: str, load_one) -> list[LoadSummary]:
    """Load each file in its own transaction; `load_one(con, path, summary)` does the source's part."""
    summaries = []
    for raw_path in paths:
        path = Path(raw_path)
        if not path.is_file():
            raise InputError(path, "no such file")
        started = time.perf_counter()
        digest = file_digest(path)
        summary = LoadSummary(file=str(path), source=source, load_id=make_load_id(source, digest))
        previous = already_loaded(wh.con, digest)
        if previous:
            summary.status, summary.load_id = "skipped", previous
            summaries.append(summary)
            continue
        with wh.transaction() as con:
            con.execute("CREATE OR REPLACE TEMP TABLE staged_rejects (row_no BIGINT, reason VARCHAR)")
            sync_source_precedence(con)
            try:
                load_one(con, path, summary)
                record_load(con, summary, path, digest)
            except duckdb.Error as exc:  # a case the loader's checks missed: still one line, nothing kept
                raise InputError(path, f"internal error while loading, nothing was kept; please report "
                                       f"it ({_first_line(exc)})") from None
        for t in ("staged_raw", "staged_broken", "staged_rejects", "ranked", "candidates", "parsed"):
            wh.con.execute(f"DROP TABLE IF EXISTS {t}")
        summary.seconds = time.perf_counter() - started
        summaries.append(summary)
    return summaries
