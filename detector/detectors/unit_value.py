"""Declared USD/kg far from the commodity's world price that month and from the corridor's history.

The world price is the median unit value over every corridor of the code that month, so a
world-wide price move shifts the reference with it and is not an anomaly. A corridor is flagged
when its unit value relative to that world price leaves both the cross-section (far from the
world price) and its own usual relative level (robust z against its trailing year).

A basket code (watchlist column `basket`: 811292 holds gallium, germanium, indium, niobium and
vanadium) changes unit value whenever its product mix changes, with no fraud. There the deviation
must hold against both references in the same direction in the route's last `basket_months`
priced months (a route that ships every other month is judged on its shipments), leave the range
of relative prices the route showed in the two years before (a mix it has shipped before is no
news), and be material in USD (the gap to the value at the world price summed over those months).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from detector import scoring
from detector.baselines import Baselines
from detector.detectors._common import (
    commodity,
    evidence_json,
    month,
    name_of,
    pct,
    reporter_partner,
    usd,
)
from detector.detectors.base import DetectorSpec, Window, conform, empty_output, z_tail
from detector.robust import robust_z_sql

SQL = """
WITH priced AS (
    SELECT hs_code, exporter, importer, period, side, usd, kg_row AS kg, usd / kg_row AS unit_value
    FROM corridor_months
    WHERE usd >= $min_row_usd AND kg_row > 0
),
world AS (
    SELECT hs_code, period, median(unit_value) AS world_uv, count(*) AS n_corridors
    FROM priced GROUP BY ALL
),
relative AS (
    SELECT p.*, w.world_uv, w.n_corridors, ln(p.unit_value / w.world_uv) AS rel
    FROM priced p JOIN world w USING (hs_code, period)
),
judged AS (
    SELECT *,
           median(rel) OVER w AS rel_med, mad(rel) OVER w AS rel_mad, count(rel) OVER w AS n_hist
    FROM relative
    WINDOW w AS (PARTITION BY hs_code, exporter, importer ORDER BY period ROWS BETWEEN 12 PRECEDING AND 1 PRECEDING)
),
far AS (   -- each priced month: how far from the world price and from the route's own usual relative level
    SELECT j.*, sc.commodity, sc.controlling_country, sc.basket,
           """ + robust_z_sql("j.rel", "j.rel_med", "j.rel_mad", 0.1) + """ AS z_hist,
           abs(j.world_uv * j.kg - j.usd) AS value_gap
    FROM judged j JOIN scope_codes sc USING (hs_code)
    WHERE sc.scored AND j.period <= $end
),
persisted AS (   -- a basket code's unit value moves with its product mix: its deviation must last
    SELECT *,
           count(*) FILTER (WHERE n_hist >= $min_history AND n_corridors >= $min_corridors AND rel <= -ln($min_world_ratio)
                              AND z_hist <= -$min_z) OVER p AS months_under,
           count(*) FILTER (WHERE n_hist >= $min_history AND n_corridors >= $min_corridors AND rel >= ln($min_world_ratio)
                              AND z_hist >= $min_z) OVER p AS months_over,
           sum(value_gap) OVER p AS value_gap_total,
           -- the range of relative prices the route showed in its ordinary months of the two years before
           min(rel) FILTER (WHERE NOT is_far) OVER r AS rel_min_before,
           max(rel) FILTER (WHERE NOT is_far) OVER r AS rel_max_before
    FROM (SELECT *, coalesce(abs(rel) >= ln($min_world_ratio) AND abs(z_hist) >= $min_z, false) AS is_far FROM far)
    WINDOW p AS (PARTITION BY hs_code, exporter, importer ORDER BY period
                 ROWS BETWEEN $basket_months - 1 PRECEDING AND CURRENT ROW),
           r AS (PARTITION BY hs_code, exporter, importer ORDER BY period ROWS BETWEEN 24 PRECEDING AND 1 PRECEDING)
)
SELECT *, CASE WHEN rel < 0 THEN months_under ELSE months_over END AS months_far
FROM persisted
WHERE period BETWEEN $start AND $end
  AND n_hist >= $min_history AND n_corridors >= $min_corridors
  AND abs(rel) >= ln($min_world_ratio)
  AND (NOT basket OR (CASE WHEN rel < 0 THEN months_under ELSE months_over END >= $basket_months
                      AND value_gap_total >= $basket_min_gap_usd
                      AND (rel < rel_min_before OR rel > rel_max_before)))
"""


@dataclass(frozen=True)
class Settings:
    min_world_ratio: float = field(default=2.0, metadata={"doc": "unit value at most 1/x or at least x times the world price"})
    min_z: float = field(default=4.0, metadata={"doc": "robust z of the relative unit value against the corridor's year"})
    min_row_usd: float = field(default=20_000.0, metadata={"doc": "ignore corridor-months smaller than this"})
    min_corridors: int = field(default=5, metadata={"doc": "corridors needed to call a median the world price"})
    min_history: int = field(default=6, metadata={"doc": "earlier priced months of the corridor"})
    basket_months: int = field(default=3, metadata={
        "doc": "basket codes (watchlist `basket`): the route's last priced months the deviation must hold, same direction"})
    basket_min_gap_usd: float = field(default=150_000.0, metadata={
        "doc": "basket codes: USD between declared value and value at the world price over those months"})


def detect(baselines: Baselines, window: Window, settings: Settings) -> pl.DataFrame:
    df = baselines.sql(SQL, {k: getattr(settings, k) for k in (
        "min_world_ratio", "min_row_usd", "min_corridors", "min_history", "min_z", "basket_months",
        "basket_min_gap_usd")})
    df = df.filter(pl.col("z_hist").abs() >= settings.min_z)
    if df.height == 0:
        return empty_output()
    names = baselines.country_names()
    under = pl.col("rel") < 0
    df = df.with_columns(
        (pl.col("world_uv") * pl.col("kg")).alias("value_at_world_price"),
        (pl.col("unit_value") / pl.col("world_uv")).alias("price_ratio"),
    ).with_columns((pl.col("value_at_world_price") - pl.col("usd")).abs().alias("value_gap"))
    # Undervaluing a controlled mineral hides it (or its duty); overvaluation is shown at lower weight.
    context = pl.when(under).then(1.0).otherwise(0.6)
    exp_, imp = name_of(pl.col("exporter"), names), name_of(pl.col("importer"), names)
    df = df.with_columns(
        (scoring.evidence(pl.col("z_hist").abs()) * scoring.size(pl.col("value_gap")) * context).clip(0, 1).alias("score"),
        (2 * z_tail(pl.col("z_hist").abs(), pl.col("n_hist") - 1)).clip(0, 1).alias("p_value"),
        pl.lit("unit_value").alias("detector"),
        pl.col("importer").alias("destination"),
        *reporter_partner(),
        pl.col("usd").alias("observed"), pl.col("value_at_world_price").alias("expected"),
        pl.format("{} (HS {}) from {} to {} in {} was declared at USD {}/kg, {} of that month's world price of "
                  "USD {}/kg (robust z {} against the route's own history); {} at the world price would be {}.",
                  commodity(), pl.col("hs_code"), exp_, imp, month(pl.col("period")),
                  pl.col("unit_value").round(2), pct(pl.col("price_ratio")), pl.col("world_uv").round(2),
                  pl.col("z_hist").round(1), pl.format("{} kg", pl.col("kg").round(0).cast(pl.Int64)),
                  usd(pl.col("value_at_world_price"))).alias("explanation"),
        evidence_json("unit_value", "world_uv", "price_ratio", "rel", "rel_med", "rel_mad", "z_hist", "kg", "usd",
                      "value_gap", "n_corridors", "basket", "months_far", "rel_min_before", "rel_max_before").alias("evidence"),
    )
    return conform(df)


SPEC = DetectorSpec(
    name="unit_value",
    description="USD/kg far from the commodity's world price that month and from the route's own history.",
    version="1.0",
    settings_class=Settings,
    detect=detect,
)
