"""A route with no trade for a year or more (while its reporter kept reporting) appears at a
material size above anything it carried before.

Requiring the new level to exceed the route's earlier maximum keeps a rebound to an old level
(after a control, say) from looking new; requiring reported zeros, not missing months, keeps a
reporter that stopped and resumed from looking like a new route.
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
    reporter_partner,
    usd,
)
from detector.detectors.base import DetectorSpec, Window, conform, empty_output, z_tail

SQL = """
WITH candidates AS (   -- routes with a month in the window that could qualify; only their series are scanned
    SELECT DISTINCT hs_code, exporter, importer
    FROM corridor_stats JOIN scope_codes sc USING (hs_code)
    WHERE sc.scored AND period BETWEEN $start AND $end
      AND usd >= $min_usd AND usd > coalesce(usd_max_before, 0) * $min_above_max
),
code_months AS (   -- months in which the code traded at all (a code new to the nomenclature is not a new route)
    SELECT hs_code, period, (sum(usd) > 0)::INTEGER AS code_active FROM corridor_months
    WHERE hs_code IN (SELECT hs_code FROM candidates)
    GROUP BY ALL
),
quiet AS (
    SELECT s.*,
           count(*) FILTER (WHERE s.usd = 0) OVER w_quiet AS zero_months,
           count(s.usd) OVER w_quiet AS reported_months,
           max(s.usd) OVER w_quiet AS max_in_quiet,
           sum(c.code_active) OVER w_quiet AS code_active_months
    FROM corridor_stats s SEMI JOIN candidates USING (hs_code, exporter, importer)
    JOIN code_months c USING (hs_code, period)
    WINDOW w_quiet AS (PARTITION BY hs_code, exporter, importer ORDER BY period
                       ROWS BETWEEN $quiet_months PRECEDING AND 1 PRECEDING)
),
appeared AS (   -- the first month of trade after the quiet spell, carried over the following months
    SELECT *,
           max(CASE WHEN usd > 0 AND reported_months >= $quiet_months * 0.75 AND max_in_quiet = 0
                         AND code_active_months >= $quiet_months * 0.75 THEN period END)
               OVER (PARTITION BY hs_code, exporter, importer ORDER BY period ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
               AS appeared_in
    FROM quiet
),
destination_total AS (
    SELECT hs_code, importer, period, CAST(sum(CAST(usd AS DECIMAL(38, 3))) AS DOUBLE) AS dest_usd FROM corridor_months
    WHERE (hs_code, importer) IN (SELECT (hs_code, importer) FROM candidates)
    GROUP BY ALL
)
SELECT a.hs_code, a.exporter, a.importer, a.period, a.side, a.usd, a.appeared_in, a.usd_max_before,
       a.last_trade_before, sc.commodity, sc.controlling_country, d.dest_usd,
       date_diff('month', a.appeared_in, a.period) AS months_since
FROM appeared a JOIN scope_codes sc USING (hs_code)
LEFT JOIN destination_total d USING (hs_code, importer, period)
WHERE a.period BETWEEN $start AND $end AND sc.scored
  AND a.appeared_in IS NOT NULL AND a.period <= a.appeared_in + INTERVAL ($follow_months) MONTH
  AND a.usd >= $min_usd
  AND a.usd > coalesce(a.usd_max_before, 0) * $min_above_max
"""


@dataclass(frozen=True)
class Settings:
    quiet_months: int = field(default=12, metadata={"doc": "months of reported zero trade before the route appears"})
    follow_months: int = field(default=5, metadata={"doc": "months after appearing that are still reported as new"})
    min_usd: float = field(default=100_000.0, metadata={"doc": "monthly USD for a material new route"})
    min_above_max: float = field(default=1.5, metadata={"doc": "times above the route's earlier monthly maximum"})


def detect(baselines: Baselines, window: Window, settings: Settings) -> pl.DataFrame:
    df = baselines.sql(SQL, {k: getattr(settings, k) for k in (
        "quiet_months", "follow_months", "min_usd", "min_above_max")})
    if df.height == 0:
        return empty_output()
    names = baselines.country_names()
    df = df.with_columns((pl.col("usd") / pl.col("dest_usd")).alias("share_of_destination"))
    # Strength grows with the route's share of the destination's imports of the code.
    strength = 3 + 10 * pl.col("share_of_destination").fill_null(0).clip(0, 1)
    context = pl.when(pl.col("exporter") == pl.col("controlling_country")).then(0.6).otherwise(1.0)
    exp_, imp = name_of(pl.col("exporter"), names), name_of(pl.col("importer"), names)
    df = df.with_columns(
        (scoring.evidence(strength) * scoring.size(pl.col("usd")) * context).clip(0, 1).alias("score"),
        z_tail(strength, settings.quiet_months - 1).alias("p_value"),
        pl.lit("new_corridor").alias("detector"),
        pl.when(pl.col("exporter") != pl.col("controlling_country")).then(pl.col("controlling_country")).alias("origin"),
        pl.when(pl.col("exporter") != pl.col("controlling_country")).then(pl.col("exporter")).alias("via"),
        pl.col("importer").alias("destination"),
        *reporter_partner(),
        pl.col("usd").alias("observed"), pl.col("usd_max_before").fill_null(0.0).alias("expected"),
        pl.format("{} began shipping {} (HS {}) to {} in {} after at least {} months without trade on this route; "
                  "{} in {}, {} of {}'s imports of the code that month.",
                  exp_, commodity(), pl.col("hs_code"), imp, month(pl.col("appeared_in")), settings.quiet_months,
                  usd(pl.col("usd")), month(pl.col("period")),
                  pl.format("{}%", (100 * pl.col("share_of_destination")).round(0).cast(pl.Int64)), imp)
        .alias("explanation"),
        evidence_json("appeared_in", "months_since", "usd", "usd_max_before", "last_trade_before", "dest_usd",
                      "share_of_destination").alias("evidence"),
    )
    return conform(df)


SPEC = DetectorSpec(
    name="new_corridor",
    description="A route with no trade for a year or more appears at material size.",
    version="1.0",
    settings_class=Settings,
    detect=detect,
    family="volume",
)
