"""The full triangle: origin -> hub up, hub -> destination up, origin -> destination down.

Legs are whole-commodity series (a hub may turn ore into oxide), compared month by month with
their usual level (the highest of trailing-year median, same month last year and the year
before). The origin leg may lead the hub leg by up to `max_lag` months, so it is read over the
last `max_lag + 1` months. Freund et al.'s criteria decide what counts: the hub's imports from
the origin must cover a share of its exports to the destination (pass-through) and the excess
flow is the smaller of the two legs' excesses. A hub whose imports from the origin did not rise
is growing from its own production and is not reported here. Both legs' usual levels are raised
by the product's market-wide move that month (baselines.MARKET_SQL): a world-wide price jump
lifts every route and is no triangle.
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
    pct,
    reporter_partner,
    times,
    usd,
)
from detector.detectors.base import DetectorSpec, Window, conform, empty_output, z_tail

# The triangle over one kind of series: the same HS code through the hub, or the whole commodity
# (a hub may turn ore into oxide). `{series}` yields product, commodity and the baseline columns.
TRIANGLE_SQL = """
WITH latest_control AS (""" + LATEST_CONTROL_SQL + """),
controllers AS (
    SELECT DISTINCT commodity, controlling_country AS origin FROM scope_codes WHERE commodity IS NOT NULL
),
series AS ({series}),
market AS (""" + market_sql(series="series", key="product") + """),
hub_leg AS (
    SELECT s.product, s.commodity, s.exporter AS via, s.importer AS destination, s.period, s.side,
           coalesce(m.market_lv, 0) AS market_lv, coalesce(m.market_lw, 0) AS market_lw,
           s.usd AS hub_now, s.usd_expected AS hub_usual, s.z_value AS hub_z, s.kg_row AS hub_kg,
           s.kg_expected AS hub_kg_usual, s.n_hist,
           count(*) FILTER (WHERE s.usd > 2 * greatest(s.usd_expected, 10000)) OVER (
               PARTITION BY s.product, s.exporter, s.importer ORDER BY s.period
               ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS months_elevated
    FROM series s JOIN controllers c ON c.commodity = s.commodity
    LEFT JOIN market m ON m.product = s.product AND m.period = s.period
    WHERE s.exporter <> c.origin AND s.importer <> c.origin
),
origin_leg AS (
    SELECT product, exporter AS origin, importer AS via, period,
           avg(usd) OVER w AS feed_now, usd_expected AS feed_usual,
           avg(kg_row) OVER w AS feed_kg_now, kg_expected AS feed_kg_usual
    FROM series
    WINDOW w AS (PARTITION BY product, exporter, importer ORDER BY period
                 ROWS BETWEEN $max_lag PRECEDING AND CURRENT ROW)
),
direct_leg AS (
    SELECT product, exporter AS origin, importer AS destination, period,
           avg(usd) OVER w AS direct_now, usd_expected AS direct_usual
    FROM series
    WINDOW w AS (PARTITION BY product, exporter, importer ORDER BY period
                 ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)
),
hs AS (   -- the hub leg's main code that month, for the alert's hs_code
    SELECT sc.commodity, cs.exporter AS via, cs.importer AS destination, cs.period,
           arg_max(cs.hs_code, cs.usd) AS main_code
    FROM corridor_stats cs JOIN scope_codes sc USING (hs_code)
    WHERE sc.commodity IS NOT NULL
    GROUP BY ALL
)
SELECT h.*, c.origin, o.feed_now, o.feed_usual, o.feed_kg_now, o.feed_kg_usual, d.direct_now, d.direct_usual,
       {hs_code} AS hs_code, '{level}' AS level, lc.control_date, lc.control
FROM hub_leg h
JOIN controllers c USING (commodity)
JOIN origin_leg o ON o.product = h.product AND o.origin = c.origin AND o.via = h.via AND o.period = h.period
LEFT JOIN direct_leg d ON d.product = h.product AND d.origin = c.origin AND d.destination = h.destination
                      AND d.period = h.period
LEFT JOIN hs ON hs.commodity = h.commodity AND hs.via = h.via AND hs.destination = h.destination AND hs.period = h.period
LEFT JOIN latest_control lc ON lc.commodity = h.commodity AND lc.importer = h.destination AND lc.period = h.period
WHERE h.period BETWEEN $start AND $end
  AND h.n_hist >= $min_history
  AND h.hub_now - h.hub_usual * exp(h.market_lv) >= $min_excess_usd
  AND o.feed_now - o.feed_usual * exp(h.market_lv) > 0
"""

LEVELS = {
    "hs_code": ("SELECT s.hs_code AS product, sc.commodity, s.* EXCLUDE (hs_code) "
                "FROM corridor_stats s JOIN scope_codes sc USING (hs_code) WHERE sc.commodity IS NOT NULL",
                "h.product"),
    "commodity": ("SELECT commodity AS product, * FROM commodity_stats", "hs.main_code"),
}


@dataclass(frozen=True)
class Settings:
    max_lag: int = field(default=3, metadata={"doc": "months the origin leg may lead the hub leg"})
    min_hub_ratio: float = field(default=2.0, metadata={"doc": "hub -> destination / its usual level"})
    min_origin_ratio: float = field(default=1.5, metadata={"doc": "origin -> hub (lagged average) / its usual level"})
    min_excess_usd: float = field(default=50_000.0, metadata={"doc": "USD above the hub leg's usual level"})
    min_pass_through: float = field(default=0.75, metadata={"doc": "origin->hub excess / hub->destination excess for full context"})
    min_history: int = field(default=6, metadata={"doc": "reported months in the trailing year"})


def growth(amount: str, usual: str, usd_amount: str, usd_usual: str, floor_usd: float = 10_000.0) -> pl.Expr:
    """Amount over its usual level raised by the market-wide move of the product that month:
    tonnes when both are known, else USD (usual floored)."""
    in_kg = pl.col(amount).is_not_null() & (pl.col(usual) > 0)
    return (pl.when(in_kg).then(pl.col(amount) / (pl.col(usual) * pl.col("market_lw").exp()))
            .otherwise(pl.col(usd_amount) / (pl.col(usd_usual).clip(lower_bound=floor_usd) * pl.col("market_lv").exp())))


def detect(baselines: Baselines, window: Window, settings: Settings) -> pl.DataFrame:
    params = {"max_lag": settings.max_lag, "min_excess_usd": settings.min_excess_usd,
              "min_history": settings.min_history}
    df = pl.concat([
        baselines.sql(TRIANGLE_SQL.format(series=series, hs_code=hs_code, level=level), params)
        for level, (series, hs_code) in LEVELS.items()
    ], how="diagonal_relaxed")
    if df.height == 0:
        return empty_output()
    names = baselines.country_names()
    # Growth in tonnes where both periods have them (a price rise is not a surge), else in USD.
    df = df.with_columns(
        growth("hub_kg", "hub_kg_usual", "hub_now", "hub_usual").alias("hub_growth"),
        growth("feed_kg_now", "feed_kg_usual", "feed_now", "feed_usual").alias("origin_growth"),
        (pl.col("hub_now") - pl.col("hub_usual") * pl.col("market_lv").exp()).alias("hub_excess"),
        (pl.col("feed_now") - pl.col("feed_usual") * pl.col("market_lv").exp()).alias("origin_excess"),
        (1 - pl.col("direct_now") / pl.col("direct_usual")).clip(0, 1).fill_nan(None).alias("direct_loss"),
    ).filter(
        (pl.col("hub_growth") >= settings.min_hub_ratio) & (pl.col("origin_growth") >= settings.min_origin_ratio)
    ).with_columns(
        (pl.col("origin_excess") / pl.col("hub_excess")).alias("pass_through"),
        pl.min_horizontal("origin_excess", "hub_excess").alias("excess_flow"),
    )
    if df.height == 0:
        return empty_output()
    # Strength: how far the hub leg rose, in doublings, on a z-like scale (4x -> 4, 16x -> 8).
    strength = 2 * pl.col("hub_growth").clip(lower_bound=1).log(2) + pl.col("hub_z").clip(0, 8) / 2
    context = (0.4 + 0.3 * (pl.col("pass_through") / settings.min_pass_through).clip(0, 1)
               + 0.2 * pl.col("direct_loss").fill_null(0.0)
               + 0.1 * pl.col("control_date").is_not_null().cast(pl.Float64))
    persistence = 0.7 + 0.15 * (pl.col("months_elevated") - 1).clip(0, 2)
    df = df.with_columns(
        (scoring.evidence(strength) * scoring.size(pl.col("excess_flow")) * context * persistence)
        .clip(0, 1).alias("score"), z_tail(strength, pl.col("n_hist") - 1).alias("p_value"))
    # One alert per hub, destination, commodity and month: the level (code or commodity) that scores higher.
    df = df.sort("score", "level", descending=[True, False]).unique(
        ["commodity", "via", "destination", "period"], keep="first", maintain_order=True)
    hub, dest, origin = (name_of(pl.col(c), names) for c in ("via", "destination", "origin"))
    direct_part = (pl.when(pl.col("direct_loss").is_not_null())
                   .then(pl.format(", while {}'s direct exports to {} fell {}", origin, dest, pct(pl.col("direct_loss"))))
                   .otherwise(pl.format(", while {} had no usual direct trade with {}", origin, dest)))
    control_part = (pl.when(pl.col("control_date").is_not_null())
                    .then(pl.format(" after the {} {}", pl.col("control_date").dt.strftime("%Y-%m-%d"), pl.col("control")))
                    .otherwise(pl.lit("")))
    df = df.with_columns(
        pl.lit("transshipment").alias("detector"),
        pl.format("{}'s {} exports to {} were {} in {}, {} their usual level{}{}; {}'s exports to {} ran at {} "
                  "their usual level (pass-through {}, excess flow {}).",
                  hub, pl.col("commodity"), dest, usd(pl.col("hub_now")), month(pl.col("period")),
                  times(pl.col("hub_growth")), direct_part, control_part, origin, hub,
                  times(pl.col("origin_growth")), pct(pl.col("pass_through")), usd(pl.col("excess_flow")))
        .alias("explanation"),
        evidence_json("hub_now", "hub_usual", "hub_growth", "hub_z", "months_elevated", "feed_now", "feed_usual",
                      "origin_growth", "market_lv", "market_lw", "direct_now", "direct_usual", "direct_loss", "pass_through",
                      "excess_flow",
                      "control_date").alias("evidence"),
        *reporter_partner("via", "destination"),
        pl.col("hub_now").alias("observed"), pl.col("hub_usual").alias("expected"),
    )
    return conform(df)


SPEC = DetectorSpec(
    name="transshipment",
    description="Origin -> hub up, hub -> destination up, origin -> destination down (Freund et al. criteria).",
    version="1.0",
    settings_class=Settings,
    detect=detect,
    tests="watched",
)
