"""Importer-reported imports against exporter-reported exports for the same pair, code and month.

Compared over three-month sums (an importer often books a shipment a month after the exporter),
only where both sides published every one of those months (a reporter that did not report is
missing, not zero), CIF/FOB-adjusted, and judged against the corridor's own usual gap (trailing
median and MAD of the log ratio), so a pair that always differs by 20% is not news.

Imports far above the partner's exports suggest goods of another origin declared as the partner's
(the suspected true origin is the commodity's controlling country when it is not the partner);
exports far above the importer's imports suggest goods declared for one destination and diverted.

Where the importer also reports the country of consignment (`partner2`), the origin it records is
checked against it: goods consigned from the controlling country but declared as of another origin
(a false origin on the importer's own books), and goods of the controlling country's origin
consigned from a third country in amounts far above the route's usual level (rerouting).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from detector import scoring
from detector.baselines import months_back
from detector.detectors._common import (
    commodity,
    country_names,
    evidence_json,
    month,
    name_of,
    query,
    times,
    usd,
)
from detector.detectors.base import DetectorSpec, Window, conform, empty_output

SQL = """
WITH candidates AS (   -- a three-month gap of min_gap_usd a month needs one month with a gap that large
    SELECT DISTINCT hs_code, exporter, importer
    FROM corridor_months JOIN scope_codes sc USING (hs_code)
    WHERE sc.scored AND period BETWEEN $start - INTERVAL 2 MONTH AND $end
      AND abs(m_usd / $cif_factor - x_usd) >= $min_gap_usd
),
both_sides AS (   -- whole series of the candidates: the windows see the same months
    SELECT hs_code, exporter, importer, period, m_usd, x_usd,
           sum(m_usd) OVER w3 AS m3, sum(x_usd) OVER w3 AS x3, sum(x_usd) OVER w3_before AS x3_before,
           count(m_usd) OVER w3 AS m_months, count(x_usd) OVER w3 AS x_months,
           count(x_usd) OVER w3_before AS x_months_before
    FROM corridor_months SEMI JOIN candidates USING (hs_code, exporter, importer)
    WINDOW w3 AS (PARTITION BY hs_code, exporter, importer ORDER BY period ROWS BETWEEN 2 PRECEDING AND CURRENT ROW),
           w3_before AS (PARTITION BY hs_code, exporter, importer ORDER BY period ROWS BETWEEN 3 PRECEDING AND 1 PRECEDING)
),
aligned AS (   -- the importer's months against the exporter's same months, and against one month earlier
    SELECT *,
           ln((m3 / $cif_factor + $floor_usd) / (x3 + $floor_usd)) AS gap_same,
           ln((m3 / $cif_factor + $floor_usd) / (coalesce(x3_before, x3) + $floor_usd)) AS gap_lagged
    FROM both_sides WHERE m_months = 3 AND x_months = 3
),
gaps AS (   -- a gap only counts when it shows in both alignments (a booking a month late is no gap)
    SELECT *,
           CASE WHEN sign(gap_same) = sign(gap_lagged) AND abs(gap_lagged) < abs(gap_same) THEN gap_lagged
                WHEN sign(gap_same) = sign(gap_lagged) THEN gap_same ELSE 0 END AS log_gap,
           m3 > 0 AND x3 > 0 AS both_traded
    FROM aligned
),
judged AS (   -- the usual gap, from months in which both books show trade
    SELECT *,
           median(log_gap) FILTER (WHERE both_traded) OVER w AS gap_med,
           mad(log_gap) FILTER (WHERE both_traded) OVER w AS gap_mad,
           count(*) FILTER (WHERE both_traded) OVER w AS n_hist
    FROM gaps
    WINDOW w AS (PARTITION BY hs_code, exporter, importer ORDER BY period
                 ROWS BETWEEN 15 PRECEDING AND 3 PRECEDING)
)
SELECT j.*, sc.commodity, sc.controlling_country,
       (j.log_gap - j.gap_med) / (1.4826 * greatest(j.gap_mad, 0.1)) AS z_gap
FROM judged j JOIN scope_codes sc USING (hs_code)
WHERE j.period BETWEEN $start AND $end AND j.n_hist >= $min_history AND sc.scored
  AND abs(j.log_gap - j.gap_med) >= ln($min_ratio)
  AND abs(j.m3 / $cif_factor - j.x3) / 3 >= $min_gap_usd
"""


@dataclass(frozen=True)
class Settings:
    cif_factor: float = field(default=1.06, metadata={"doc": "CIF/FOB margin removed from imports (IMF DOTS)"})
    min_z: float = field(default=4.0, metadata={"doc": "robust z of the gap against the corridor's usual gap"})
    min_ratio: float = field(default=1.8, metadata={"doc": "gap beyond the usual one, as a ratio"})
    min_gap_usd: float = field(default=50_000.0, metadata={"doc": "monthly USD difference between the two books"})
    floor_usd: float = field(default=10_000.0, metadata={"doc": "added to both sides so tiny flows do not make huge ratios"})
    min_history: int = field(default=6, metadata={"doc": "earlier months with both books"})


# Imports whose recorded origin differs from the consignment country, per route and month.
CONSIGNMENT_SQL = """
WITH consigned AS (
    SELECT f.hs_code, f.reporter AS importer, f.partner AS declared_origin, f.partner2 AS consignment, f.period,
           CAST(sum(CAST(f.value_usd AS DECIMAL(38, 3))) AS DOUBLE) AS usd
    FROM flows_preferred f
    WHERE f.freq = 'M' AND f.flow = 'M' AND f.partner2 IS NOT NULL AND f.partner2 <> f.partner
      AND f.period BETWEEN $history_start AND $end
    GROUP BY ALL
),
judged AS (   -- the route's usual monthly value over the year before (months without a row count as 0)
    SELECT c.*, sc.commodity, sc.controlling_country,
           coalesce(sum(c.usd) OVER w, 0) / 12 AS usual
    FROM consigned c JOIN scope_codes sc USING (hs_code)
    WHERE sc.commodity IS NOT NULL
    WINDOW w AS (PARTITION BY c.hs_code, c.importer, c.declared_origin, c.consignment ORDER BY c.period
                 RANGE BETWEEN INTERVAL 12 MONTH PRECEDING AND INTERVAL 1 MONTH PRECEDING)
)
SELECT *, consignment = controlling_country AS false_origin
FROM judged
WHERE period BETWEEN $start AND $end AND usd >= $min_gap_usd
  AND ((consignment = controlling_country AND declared_origin <> controlling_country)
       OR (declared_origin = controlling_country AND usd >= $min_ratio * greatest(usual, $floor_usd)))
"""


def _consignment(wh, window: Window, settings: Settings) -> pl.DataFrame:
    df = query(wh, window, CONSIGNMENT_SQL, {
        "history_start": months_back(window.start, 12), "min_gap_usd": settings.min_gap_usd,
        "min_ratio": settings.min_ratio, "floor_usd": settings.floor_usd})
    if df.height == 0:
        return empty_output()
    names = country_names(wh)
    imp, declared, consigned = (name_of(pl.col(c), names) for c in ("importer", "declared_origin", "consignment"))
    growth = pl.col("usd") / pl.col("usual").clip(lower_bound=settings.floor_usd)
    # A false origin on the importer's own books is strong evidence; rerouting grows with the jump.
    strength = pl.when(pl.col("false_origin")).then(8.0).otherwise(2.0 + 2.0 * growth.log(2))
    df = df.with_columns(
        (scoring.evidence(strength) * scoring.size(pl.col("usd"))
         * pl.when(pl.col("false_origin")).then(1.0).otherwise(0.7)).clip(0, 1).alias("score"),
        pl.lit("mirror_gap").alias("detector"),
        pl.col("controlling_country").alias("origin"),
        pl.when(pl.col("false_origin")).then(pl.col("declared_origin")).otherwise(pl.col("consignment")).alias("via"),
        pl.col("importer").alias("destination"), pl.col("importer").alias("reporter"),
        pl.col("declared_origin").alias("partner"),
        pl.col("usd").alias("observed"), pl.col("usual").alias("expected"),
        pl.when(pl.col("false_origin"))
        .then(pl.format("{} recorded {} of {} (HS {}) in {} as of {} origin, but consigned from {}: the origin may "
                        "be false.", imp, usd(pl.col("usd")), commodity(), pl.col("hs_code"),
                        month(pl.col("period")), declared, consigned))
        .otherwise(pl.format("{} recorded {} of {}-origin {} (HS {}) consigned from {} in {}, {} the route's usual "
                             "monthly level of {}: goods of the controlling country routed through a third country.",
                             imp, usd(pl.col("usd")), declared, commodity(), pl.col("hs_code"), consigned,
                             month(pl.col("period")), times(growth), usd(pl.col("usual"))))
        .alias("explanation"),
        evidence_json("declared_origin", "consignment", "usd", "usual", "false_origin").alias("evidence"),
    )
    return conform(df)


def detect(wh, window: Window, settings: Settings) -> pl.DataFrame:
    consignment = _consignment(wh, window, settings)
    df = query(wh, window, SQL, {k: getattr(settings, k) for k in (
        "cif_factor", "min_ratio", "min_gap_usd", "floor_usd", "min_history")})
    df = df.filter(pl.col("z_gap").abs() >= settings.min_z)
    if df.height == 0:
        return consignment
    names = country_names(wh)
    imports_high = pl.col("log_gap") > pl.col("gap_med")
    df = df.with_columns(
        (pl.col("m3") / 3).alias("imports_reported"), (pl.col("x3") / 3).alias("exports_reported"),
        ((pl.col("m3") / settings.cif_factor - pl.col("x3")).abs() / 3).alias("gap_usd"),
        (pl.col("log_gap") - pl.col("gap_med")).exp().alias("gap_ratio"),
    )
    # Imports above exports for a controlled mineral is the misdeclared-origin pattern: full weight.
    context = pl.when(imports_high & (pl.col("exporter") != pl.col("controlling_country"))).then(1.0).otherwise(0.6)
    df = df.with_columns(
        (scoring.evidence(pl.col("z_gap").abs()) * scoring.size(pl.col("gap_usd")) * context).clip(0, 1).alias("score"),
        pl.when(imports_high & (pl.col("exporter") != pl.col("controlling_country")))
        .then(pl.col("controlling_country")).alias("origin"),
    )
    imp, exp_ = name_of(pl.col("importer"), names), name_of(pl.col("exporter"), names)
    df = df.with_columns(
        pl.lit("mirror_gap").alias("detector"),
        pl.col("importer").alias("destination"), pl.col("importer").alias("reporter"), pl.col("exporter").alias("partner"),
        pl.when(pl.col("origin").is_not_null()).then(pl.col("exporter")).alias("via"),
        pl.col("imports_reported").alias("observed"),
        (pl.col("exports_reported") * settings.cif_factor * pl.col("gap_med").exp()).alias("expected"),
        pl.when(imports_high)
        .then(pl.format("{} reported {} a month of {} (HS {}) imports from {} in the three months to {}, but {} "
                        "reported only {} a month of exports to {}: {} the pair's usual gap (robust z {}); goods of "
                        "another origin may be declared as {}'s.",
                        imp, usd(pl.col("imports_reported")), commodity(), pl.col("hs_code"), exp_,
                        month(pl.col("period")), exp_, usd(pl.col("exports_reported")), imp, times(pl.col("gap_ratio")),
                        pl.col("z_gap").round(1), exp_))
        .otherwise(pl.format("{} reported {} a month of {} (HS {}) exports to {} in the three months to {}, but {} "
                             "reported only {} a month of imports from {}: {} below the pair's usual ratio (robust z {}); "
                             "the goods may have been diverted or declared under another destination.",
                             exp_, usd(pl.col("exports_reported")), commodity(), pl.col("hs_code"), imp,
                             month(pl.col("period")), imp, usd(pl.col("imports_reported")), exp_,
                             times(1 / pl.col("gap_ratio")), pl.col("z_gap").round(1)))
        .alias("explanation"),
        evidence_json("imports_reported", "exports_reported", "log_gap", "gap_med", "gap_mad", "z_gap", "gap_ratio",
                      "gap_usd", "n_hist").alias("evidence"),
    )
    return pl.concat([conform(df), consignment])


SPEC = DetectorSpec(
    name="mirror_gap",
    description="Importer's and exporter's books disagree far beyond the pair's usual CIF/FOB gap.",
    version="1.0",
    settings_class=Settings,
    detect=detect,
)
