"""Rows not loaded go to `rejects` with the file's own line number and a reason."""

from __future__ import annotations

from pathlib import Path

import duckdb

from detector.ingest.common import LoadSummary

# Lines the parser rejected, as steps: a staged row after `valid_before` valid rows has
# `n_before` broken lines before it (one row per run of adjacent broken lines).
BROKEN_STEPS_SQL = """
SELECT valid_before, max(k) AS n_before
FROM (SELECT line - row_number() OVER (ORDER BY line) - 1 AS valid_before,
             row_number() OVER (ORDER BY line) AS k
      FROM staged_broken)
GROUP BY valid_before
"""


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
