"""Exchange rates for sources that publish in another currency than USD."""

from __future__ import annotations

from pathlib import Path

import duckdb

from detector.errors import InputError
from detector.ingest.files import first_line


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
        raise InputError(path, f"not a month,usd_per_eur rate table ({first_line(exc)})") from None
    if repeated or not_positive:
        raise InputError(path, "rate table has a repeated month or a rate that is not positive")
