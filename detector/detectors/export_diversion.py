"""Diversion seen from the controlling country's books alone: after a dated export control on a
commodity, its exports of a watched code to a third country (above all a known re-export or
processing hub, detector/reference/hubs.csv) rise far above that route's own level before the
control and above what the trend of its exports to everyone else explains, while its exports to
the controlled destinations fall. Two of the three months must each be that far up.

This is the signal left when only the controlling country reports (China Customs, or Comtrade
with China as reporter): the hub's onward leg, which third_country_surge and transshipment need,
is not there. Each control is judged against the year before it, leaving out the months just
before it (exporters rush shipments out before a licence starts). The route's level is a
three-month average, so a single lumpy shipment is not a diversion.

The alert names the hub as `via` and, as `destination`, where the goods are suspected to go: the
control's named target (a ban on one country); else, where the hub reports its own exports, the
destination they rose to most that month; else the largest buyer before the control whose
imports fell. So where the hub and the destination also report, it joins the transshipment or
surge lead on the same corridor (leads group by commodity, shipper and destination). It shares transshipment's evidence family: its origin -> hub rise and origin ->
destination fall are two of the triangle's three legs, and a lead counts them once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from detector import scoring
from detector.baselines import Baselines
from detector.detectors._common import evidence_json, month, name_of, pct, reporter_partner, times, usd
from detector.detectors.base import DetectorSpec, Window, conform, empty_output, z_tail
from detector.robust import MAD_TO_SIGMA

SQL = """
WITH controls AS (   -- export restrictions per commodity and date, with the destinations named (NULL: all)
    SELECT commodity, date AS control_date, CAST(date_trunc('month', date) AS DATE) AS control_month,
           string_agg(DISTINCT CASE WHEN target <> 'ALL' THEN target END, ';' ORDER BY
                      CASE WHEN target <> 'ALL' THEN target END) AS targets,
           min(kind || ' (' || instrument || ')') AS control
    FROM control_events
    GROUP BY commodity, date
),
routes AS (   -- the controlling country's exports of each watched code, by destination
    SELECT s.hs_code, sc.commodity, s.exporter AS origin, s.importer AS dest, s.period, s.side, s.usd,
           avg(s.usd) OVER w3 AS usd_now,
           -- the three months one by one (the grid has every month): a single lumpy shipment lifts the
           -- average, not the months
           lag(s.usd, 1) OVER w1 AS usd_1, lag(s.usd, 2) OVER w1 AS usd_2
    FROM corridor_stats s JOIN scope_codes sc USING (hs_code)
    WHERE sc.commodity IS NOT NULL AND s.exporter = sc.controlling_country AND s.period <= $end
    WINDOW w3 AS (PARTITION BY s.hs_code, s.exporter, s.importer ORDER BY s.period
                  ROWS BETWEEN 2 PRECEDING AND CURRENT ROW),
           w1 AS (PARTITION BY s.hs_code, s.exporter, s.importer ORDER BY s.period)
),
after_control AS (   -- each month within the horizon after a control, with the latest control before it
    SELECT r.*, c.control_date, c.control_month, c.targets, c.control,
           datediff('month', c.control_month, r.period) AS months_after
    FROM routes r JOIN controls c ON c.commodity = r.commodity
     AND c.control_date <= r.period + INTERVAL 1 MONTH - INTERVAL 1 DAY
     AND r.period < c.control_month + INTERVAL ($horizon_months) MONTH
    QUALIFY row_number() OVER (PARTITION BY r.hs_code, r.dest, r.period ORDER BY c.control_date DESC) = 1
),
before AS (   -- each route in the year before a control, the rush months just before it left out
    SELECT r.hs_code, r.dest, c.control_date,
           avg(r.usd) AS usd_pre, mad(ln(1 + r.usd)) AS lv_mad_pre, count(r.usd) AS n_pre
    FROM routes r JOIN controls c ON c.commodity = r.commodity
    WHERE r.period >= c.control_month - INTERVAL ($pre_months + $rush_months) MONTH
      AND r.period < c.control_month - INTERVAL ($rush_months) MONTH
    GROUP BY ALL
),
judged AS (
    SELECT a.*, b.usd_pre, b.lv_mad_pre, b.n_pre,
           sum(a.usd_now) OVER code_month AS world_now,
           sum(b.usd_pre) OVER code_month AS world_pre
    FROM after_control a JOIN before b USING (hs_code, dest, control_date)
    WINDOW code_month AS (PARTITION BY a.hs_code, a.period, a.control_date)
),
trends AS (
    SELECT *,
           -- every other destination together: the world-wide trend of the code's exports
           (world_now - usd_now) / nullif(world_pre - usd_pre, 0) AS others_trend,
           -- the named targets together (a ban on one destination)
           sum(usd_now) FILTER (WHERE list_contains(string_split(targets, ';'), dest)) OVER code_month
               / nullif(sum(usd_pre) FILTER (WHERE list_contains(string_split(targets, ';'), dest)) OVER code_month, 0)
               AS targets_trend,
           -- the largest buyer before the control whose imports fell (where the control names none)
           first(CASE WHEN coalesce(usd_now, 0) < usd_pre THEN dest END ORDER BY usd_pre DESC, dest) OVER code_month
               AS top_loser
    FROM judged
    WINDOW code_month AS (PARTITION BY hs_code, period, control_date)
),
onward AS (   -- where the third country reports its own exports: the destination they rose to most
    SELECT s.hs_code, s.exporter AS dest, s.period,
           first(s.importer ORDER BY s.usd - s.usd_expected DESC, s.importer) AS onward_to
    FROM corridor_stats s JOIN scope_codes sc USING (hs_code)
    WHERE sc.commodity IS NOT NULL AND s.exporter <> sc.controlling_country AND s.importer <> sc.controlling_country
      AND s.usd > s.usd_expected AND s.period BETWEEN $start AND $end
    GROUP BY ALL
)
SELECT t.*, o.onward_to, h.kind AS hub_kind
FROM trends t LEFT JOIN hubs h ON h.iso3 = t.dest
LEFT JOIN onward o USING (hs_code, dest, period)
WHERE t.period BETWEEN $start AND $end
  AND t.months_after >= 0 AND t.n_pre >= $min_pre_months
  AND t.dest <> t.origin
  AND NOT coalesce(list_contains(string_split(t.targets, ';'), t.dest), false)
  AND t.usd_now >= $min_ratio * greatest(t.usd_pre, $floor_usd) * greatest(coalesce(t.others_trend, 1), 1)
  AND t.usd_now - greatest(t.usd_pre, $floor_usd) * greatest(coalesce(t.others_trend, 1), 1) >= $min_excess_usd
"""


@dataclass(frozen=True)
class Settings:
    min_ratio: float = field(default=2.5, metadata={
        "doc": "three-month average / the route's level before the control (raised by the others' trend when it rose)"})
    min_z: float = field(default=3.0, metadata={"doc": "that rise in units of the route's spread before the control"})
    min_excess_usd: float = field(default=100_000.0, metadata={"doc": "monthly USD above the expected level"})
    min_fall: float = field(default=0.2, metadata={
        "doc": "fall of the exports to the controlled destinations (named targets, else all others)"})
    floor_usd: float = field(default=20_000.0, metadata={"doc": "smallest monthly level a route is compared with"})
    pre_months: int = field(default=12, metadata={"doc": "months before the control that set the route's level"})
    rush_months: int = field(default=2, metadata={"doc": "months just before the control left out (pre-deadline rush)"})
    min_pre_months: int = field(default=6, metadata={"doc": "reported months among those"})
    horizon_months: int = field(default=24, metadata={"doc": "months after a control that are judged against it"})


def detect(baselines: Baselines, window: Window, settings: Settings) -> pl.DataFrame:
    df = baselines.sql(SQL, {k: getattr(settings, k) for k in (
        "min_ratio", "min_excess_usd", "floor_usd", "pre_months", "rush_months", "min_pre_months", "horizon_months")})
    if df.height == 0:
        return empty_output()
    expected = pl.max_horizontal(pl.col("usd_pre"), pl.lit(settings.floor_usd)) * pl.max_horizontal(
        pl.col("others_trend").fill_null(1.0), pl.lit(1.0))
    lost_trend = pl.coalesce(pl.col("targets_trend"), pl.col("others_trend")).clip(0, None)
    df = df.with_columns(
        expected.alias("usd_expected"),
        lost_trend.alias("lost_trend"),
        pl.coalesce(pl.col("targets").str.split(";").list.first(), pl.col("onward_to"), pl.col("top_loser"))
        .alias("lost_to"),
        (pl.col("usd_now") / pl.col("world_now")).alias("share_now"),
        (pl.col("usd_pre") / pl.col("world_pre")).alias("share_pre"),
        pl.col("hub_kind").is_not_null().alias("hub"),
    ).with_columns(
        (pl.col("usd_now") / pl.col("usd_expected")).alias("ratio"),
        (pl.col("usd_now") - pl.col("usd_expected")).alias("excess_usd"),
        ((pl.col("usd_now") / pl.col("usd_expected")).log()
         / (MAD_TO_SIGMA * pl.col("lv_mad_pre").fill_null(0.15).clip(lower_bound=0.15))).alias("z"),
        pl.sum_horizontal((pl.col(c).fill_null(0.0) >= settings.min_ratio * pl.col("usd_expected")).cast(pl.Int32)
                          for c in ("usd", "usd_1", "usd_2")).alias("months_elevated"),
    ).filter((pl.col("z") >= settings.min_z) & (pl.col("lost_trend") <= 1 - settings.min_fall)
             & (pl.col("share_now") > pl.col("share_pre")) & (pl.col("months_elevated") >= 2))
    if df.height == 0:
        return empty_output()
    names = baselines.country_names()
    # Context: soon after the control, a known hub, a large share of the code's exports, the
    # controlled destinations' loss.
    timing = 1 - 0.5 * ((pl.col("months_after") - 12) / 12).clip(0, 1)
    hub = pl.when(pl.col("hub")).then(1.0).otherwise(0.7)
    share = 0.6 + 0.4 * (pl.col("share_now") / 0.25).clip(0, 1)
    loss = 0.7 + 0.3 * (1 - pl.col("lost_trend")).clip(0, 1)
    df = df.with_columns(
        (scoring.evidence(pl.col("z")) * scoring.size(pl.col("excess_usd")) * timing * hub * share * loss)
        .clip(0, 1).alias("score"),
        z_tail(pl.col("z"), pl.col("n_pre") - 1).alias("p_value"),
        pl.lit("export_diversion").alias("detector"),
        pl.col("dest").alias("via"),
        pl.col("lost_to").alias("destination"),
        pl.col("usd_now").alias("observed"), pl.col("usd_expected").alias("expected"),
    )
    origin, hub_name, lost = (name_of(pl.col(c), names) for c in ("origin", "dest", "lost_to"))
    hub_part = pl.when(pl.col("hub")).then(pl.format(", a known {} hub", pl.col("hub_kind"))).otherwise(pl.lit(""))
    df = df.with_columns(
        pl.format("{}'s {} (HS {}) exports to {}{} averaged {} a month in the three months to {}, {} their level "
                  "before the {} {} and {} of the code's exports (before: {}), while its exports to {} ran at {} of "
                  "their level before; the goods may be diverted to controlled buyers.",
                  origin, pl.col("commodity"), pl.col("hs_code"), hub_name, hub_part, usd(pl.col("usd_now")),
                  month(pl.col("period")), times(pl.col("ratio")), pl.col("control_date").dt.strftime("%Y-%m-%d"),
                  pl.col("control"), pct(pl.col("share_now")), pct(pl.col("share_pre")),
                  pl.when(pl.col("targets").is_not_null()).then(lost).otherwise(pl.lit("its other destinations")),
                  pct(pl.col("lost_trend"))).alias("explanation"),
        evidence_json("usd_now", "usd_pre", "usd_expected", "ratio", "z", "lv_mad_pre", "others_trend",
                      "targets_trend", "lost_trend", "lost_to", "onward_to", "share_now", "share_pre", "hub",
                      "months_elevated", "months_after", "control_date").alias("evidence"),
        *reporter_partner("origin", "dest"),
    )
    return conform(df)


SPEC = DetectorSpec(
    name="export_diversion",
    description="After a control, the controlling country's exports to a third country (a hub) jump while those "
                "to the controlled destinations fall.",
    version="1.0",
    settings_class=Settings,
    detect=detect,
    family="transshipment",
    tests="watched",
)
