"""A third country's shipments of a watched commodity to a destination jump far above its own
usual level, weighted by whether the third country's own imports from the controlling country
rose (else it is likely growing from its own production) and by the destination's loss on the
direct route from that country after a control.

The jump is measured on weight where the series has it (a world-wide price rise moves value, not
tonnes) and against the highest of three usual levels (trailing-year median, same month last
year, the year before), so seasonal peaks and rebounds to earlier levels are not jumps. The
usual level is raised by the code's market-wide move that month (baselines.MARKET_SQL), so a
world-wide price or demand jump, which lifts every route at once, is not a surge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from detector import scoring
from detector.baselines import LATEST_CONTROL_SQL, Baselines, market_sql
from detector.detectors._common import (
    evidence_json,
    month,
    name_of,
    reporter_partner,
    times,
    usd,
    weight,
)
from detector.detectors.base import DetectorSpec, Window, conform, empty_output, z_tail
from detector.robust import sigma_sql

SQL = f"""
WITH latest_control AS ({LATEST_CONTROL_SQL}),
market AS ({market_sql(where="AND hs_code IN (SELECT hs_code FROM scope_codes WHERE commodity IS NOT NULL)")}),
hub_leg AS (   -- the route against its usual level and beyond the code's market-wide move that month
    SELECT s.hs_code, sc.commodity, sc.controlling_country AS origin, s.exporter AS via,
           s.importer AS destination, s.period, s.side, s.usd, s.n_hist, s.kg_row, s.kg_expected,
           s.usd_expected * exp(coalesce(m.market_lv, 0)) AS usd_expected,
           coalesce(m.market_lv, 0) AS market_lv, coalesce(m.market_lw, 0) AS market_lw,
           coalesce(s.kg_row / nullif(s.kg_expected * exp(coalesce(m.market_lw, 0)), 0),
                    s.usd / nullif(s.usd_expected * exp(coalesce(m.market_lv, 0)), 0)) AS ratio,
           -- the same gap in units of the trailing spread: against the usual level the ratio uses,
           -- not the trailing median (which for a route that trades some months only is 0)
           coalesce(CASE WHEN s.kg_row IS NOT NULL AND s.kg_expected > 0
                         THEN (s.lw - coalesce(m.market_lw, 0) - ln(1 + s.kg_expected)) / {sigma_sql("s.lw_mad", 0.15)} END,
                    (s.lv - ln(1 + s.usd_expected * exp(coalesce(m.market_lv, 0)))) / {sigma_sql("s.lv_mad", 0.15)}) AS z,
           -- months among the last three that were also far above the usual level (data <= t only)
           count(*) FILTER (WHERE s.usd > $min_ratio * s.usd_expected * exp(coalesce(m.market_lv, 0))) OVER (
               PARTITION BY s.hs_code, s.exporter, s.importer ORDER BY s.period
               ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS months_elevated
    FROM corridor_stats s JOIN scope_codes sc USING (hs_code)
    LEFT JOIN market m USING (hs_code, period)
    WHERE sc.commodity IS NOT NULL
      AND s.exporter <> sc.controlling_country AND s.importer <> sc.controlling_country
),
direct AS (   -- controlling country -> destination, whole commodity
    SELECT commodity, exporter AS origin, importer AS destination, period,
           usd_avg3 AS direct_now, usd_expected AS direct_usual
    FROM commodity_stats
),
feeder AS (   -- controlling country -> third country, whole commodity, last four months
    SELECT commodity, exporter AS origin, importer AS via, period,
           avg(usd) OVER w AS feeder_now, usd_expected AS feeder_usual
    FROM commodity_stats
    WINDOW w AS (PARTITION BY commodity, exporter, importer ORDER BY period ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)
)
SELECT h.*, d.direct_now, d.direct_usual, f.feeder_now, f.feeder_usual, lc.control_date, lc.control
FROM hub_leg h
LEFT JOIN direct d USING (commodity, origin, destination, period)
LEFT JOIN feeder f USING (commodity, origin, via, period)
LEFT JOIN latest_control lc ON lc.commodity = h.commodity AND lc.importer = h.destination AND lc.period = h.period
WHERE h.period BETWEEN $start AND $end
  AND h.n_hist >= $min_history
  AND h.usd - h.usd_expected >= $min_excess_usd
  AND h.ratio >= $min_ratio
  AND h.z >= $min_z
"""


@dataclass(frozen=True)
class Settings:
    min_z: float = field(default=3.0, metadata={"doc": "the month against its usual level, in trailing-year spreads (robust z)"})
    min_ratio: float = field(default=2.0, metadata={"doc": "month / highest usual level (weight, else value)"})
    min_excess_usd: float = field(default=50_000.0, metadata={"doc": "USD above the usual level"})
    min_history: int = field(default=6, metadata={"doc": "reported months in the trailing year"})


def detect(baselines: Baselines, window: Window, settings: Settings) -> pl.DataFrame:
    df = baselines.sql(SQL, {"min_z": settings.min_z, "min_ratio": settings.min_ratio,
                                  "min_excess_usd": settings.min_excess_usd,
                                  "min_history": settings.min_history})
    if df.height == 0:
        return empty_output()
    names = baselines.country_names()
    direct_loss = (1 - pl.col("direct_now") / pl.col("direct_usual")).clip(0, 1).fill_null(0.0).fill_nan(0.0)
    feeder_growth = (pl.col("feeder_now") / pl.col("feeder_usual")).fill_nan(None)
    feeder_up = ((feeder_growth.log(2)) / 2).clip(0, 1).fill_null(0.0)
    df = df.with_columns(
        direct_loss.alias("direct_loss"), feeder_growth.alias("feeder_growth"), feeder_up.alias("feeder_up"),
        (pl.col("usd") - pl.col("usd_expected")).alias("excess_usd"),
        pl.col("control_date").is_not_null().alias("after_control"),
    )
    # A hub whose own imports from the controlling country did not rise is likely growing from its
    # own production: the feeder leg weighs most; the direct route's loss and a control add to it.
    context = ((0.25 + 0.75 * pl.col("feeder_up"))
               * (0.6 + 0.3 * pl.col("direct_loss") + 0.1 * pl.col("after_control").cast(pl.Float64)))
    persistence = 0.7 + 0.15 * (pl.col("months_elevated") - 1).clip(0, 2)
    df = df.with_columns(
        (scoring.evidence(pl.col("z")) * scoring.size(pl.col("excess_usd")) * context * persistence)
        .clip(0, 1).alias("score"), z_tail(pl.col("z"), pl.col("n_hist") - 1).alias("p_value"))
    hub, dest, origin = (name_of(pl.col(c), names) for c in ("via", "destination", "origin"))
    direct_part = (pl.when(pl.col("direct_usual") > 0)
                   .then(pl.format(", while {}'s direct {} exports to {} were {} of their usual level",
                                   origin, pl.col("commodity"), dest,
                                   pl.format("{}%", (100 * (1 - pl.col("direct_loss"))).round(0).cast(pl.Int64))))
                   .otherwise(pl.lit("")))
    feeder_part = (pl.when(pl.col("feeder_growth").is_not_null())
                   .then(pl.format(" and {}'s {} exports to {} ran at {} their usual level", origin,
                                   pl.col("commodity"), hub, times(pl.col("feeder_growth"))))
                   .otherwise(pl.lit("")))
    # the ratio is in tonnes where both months have them (as in SQL), else in USD: name the level it used
    in_tonnes = pl.col("kg_row").is_not_null() & ((pl.col("kg_expected") * pl.col("market_lw").exp()) > 0)
    usual_part = (pl.when(in_tonnes)
                  .then(pl.format("the usual tonnage of {} ({} this month)",
                                  weight(pl.col("kg_expected") * pl.col("market_lw").exp()), weight(pl.col("kg_row"))))
                  .otherwise(pl.format("the usual level of {}", usd(pl.col("usd_expected")))))
    control_part = (pl.when(pl.col("after_control"))
                    .then(pl.format(" (after the {} {})", pl.col("control_date").dt.strftime("%Y-%m-%d"),
                                    pl.col("control")))
                    .otherwise(pl.lit("")))
    df = df.with_columns(
        pl.lit("third_country_surge").alias("detector"),
        pl.format("{}'s {} (HS {}) shipments to {} were {} in {}, {} {}{}{}{}.",
                  hub, pl.col("commodity"), pl.col("hs_code"), dest, usd(pl.col("usd")), month(pl.col("period")),
                  times(pl.col("ratio")), usual_part, direct_part, feeder_part,
                  control_part).alias("explanation"),
        evidence_json("side", "usd", "usd_expected", "kg_row", "kg_expected", "ratio", "z", "market_lv", "market_lw",
                      "months_elevated", "direct_now",
                      "direct_usual", "direct_loss", "feeder_now", "feeder_usual", "feeder_growth",
                      "control_date").alias("evidence"),
    )
    df = df.with_columns(
        *reporter_partner("via", "destination"),
        pl.col("usd").alias("observed"), pl.col("usd_expected").alias("expected"),
    )
    return conform(df)


SPEC = DetectorSpec(
    name="third_country_surge",
    description="A third country's shipments of a watched mineral to a destination jump far above its usual level.",
    version="1.0",
    settings_class=Settings,
    detect=detect,
    family="volume",
    tests="watched",
)
