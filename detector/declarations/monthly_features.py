"""The feature table month by month, so that declaration scoring stays bounded in memory.

One feature query per month (that month's lines against the lines before it) is written by DuckDB
straight to Parquet: no query holds every month's history at once, and the Python side never holds
every month's features at once. The models read them back by month, by column and in row batches;
the same reader wraps an in-memory feature table, so both paths run the same scoring code.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from detector.declarations.features import FeatureOptions, features_sql

# Lines per batch when scoring a month: a batch's features, model inputs and contributions stay in the
# tens of MB however large the month.
BATCH_LINES = 50_000


class MonthlyFeatures:
    """The feature table as one part per month (a Polars frame or a Parquet file), months in order,
    rows of a month in the feature table's order (date, source, declaration id)."""

    def __init__(self, parts: dict[date, pl.DataFrame | str]):
        self.parts = dict(sorted(parts.items()))
        self._heights: dict[date, int] = {}

    @classmethod
    def from_frame(cls, feats: pl.DataFrame) -> MonthlyFeatures:
        if feats.height == 0:
            return cls({})
        return cls({m: part for (m,), part in feats.partition_by("period", as_dict=True, maintain_order=True).items()})

    @classmethod
    def build(cls, con: duckdb.DuckDBPyConnection, opts: FeatureOptions, folder: str | Path,
              where: str = "TRUE") -> MonthlyFeatures:
        """Write the features of each month of `declarations` rows matching `where` to `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        months = [m for (m,) in con.execute(
            f"SELECT DISTINCT period FROM declarations WHERE {where} ORDER BY period").fetchall()]
        shown, disabled = con.execute("SELECT current_setting('enable_progress_bar'), "
                                      "current_setting('disabled_optimizers')").fetchall()[0]
        con.execute("SET enable_progress_bar = false")  # a long query would draw a bar on the terminal
        # DuckDB would build hash tables on the month's wide lines rather than on the small norms and rates
        # joined to them (one per LEFT JOIN): a month of 100,000 lines then failed at a 1 GB limit; without
        # that flip the bench's month of 1M lines against 1.2M past lines passes at 1 GB
        con.execute(f"SET disabled_optimizers = '{','.join(filter(None, [disabled, 'build_side_probe_side']))}'")
        parts = {}
        try:
            for month in months:
                day = f"DATE '{month.isoformat()}'"
                sql = features_sql(opts, f"({where}) AND period <= {day}", f"period = {day}")
                path = str(folder / f"features-{month:%Y-%m}.parquet")
                con.execute(f"COPY ({sql}) TO '{path.replace(chr(39), chr(39) * 2)}' (FORMAT parquet)")
                parts[month] = path
        finally:
            con.execute(f"SET enable_progress_bar = {'true' if shown else 'false'}")
            con.execute(f"SET disabled_optimizers = '{disabled}'")
        return cls(parts)

    @property
    def months(self) -> list[date]:
        return list(self.parts)

    def _lazy(self, month: date) -> pl.LazyFrame:
        part = self.parts[month]
        return part.lazy() if isinstance(part, pl.DataFrame) else pl.scan_parquet(part)

    def height(self, month: date) -> int:
        if month not in self.parts:
            return 0
        if month not in self._heights:
            self._heights[month] = self._lazy(month).select(pl.len()).collect().item()
        return self._heights[month]

    def read(self, months, columns: list[str] | None = None, labelled: bool = False) -> pl.DataFrame:
        """The lines of `months` (in order), only `columns` if given, only labelled lines if asked."""
        frames = []
        for month in months:
            lf = self._lazy(month)
            if labelled:
                lf = lf.filter(pl.col("label").is_not_null())
            frames.append((lf.select(columns) if columns else lf).collect())
        return pl.concat(frames) if frames else pl.DataFrame()

    def batches(self, month: date, size: int = BATCH_LINES) -> Iterator[pl.DataFrame]:
        """The lines of `month` in batches of `size` rows, in order."""
        for offset in range(0, self.height(month), max(1, size)):
            yield self._lazy(month).slice(offset, size).collect()
