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

import numpy as np
import polars as pl

from detector import scoring, trailing
from detector.baselines import Baselines
from detector.detectors._common import (
    commodity,
    evidence_json,
    month,
    name_of,
    times,
    usd,
)
from detector.detectors.base import DetectorSpec, Window, conform, empty_output, z_tail
from detector.grid import BLOCK_CELLS, GridBlock
from detector.months import months_back
from detector.robust import robust_z


@dataclass(frozen=True)
class Settings:
    cif_factor: float = field(default=1.06, metadata={"doc": "CIF/FOB margin removed from imports (IMF DOTS)"})
    min_z: float = field(default=4.0, metadata={"doc": "robust z of the gap against the corridor's usual gap"})
    min_ratio: float = field(default=1.8, metadata={"doc": "gap beyond the usual one, as a ratio"})
    min_gap_usd: float = field(default=50_000.0, metadata={"doc": "monthly USD difference between the two books"})
    floor_usd: float = field(default=10_000.0, metadata={"doc": "added to both sides so tiny flows do not make huge ratios"})
    min_history: int = field(default=6, metadata={"doc": "earlier months with both books"})


def _block_gaps(block: GridBlock, window: Window, settings: Settings) -> dict[str, np.ndarray] | None:
    """The corridor-months of a block whose books disagree beyond the pair's usual gap.

    Windows run over the calendar months of each series: three-month sums, compared only where
    both sides published all three months; the usual gap is the median and MAD of the months
    t-15 .. t-3 (those whose sums do not overlap month t's) in which both books show trade."""
    m_usd, x_usd = block["m_usd"], block["x_usd"]
    in_window = (block.months >= np.datetime64(window.start)) & (block.months <= np.datetime64(window.end))
    # a three-month gap of min_gap_usd a month needs one month with a gap that large
    near = (block.months >= np.datetime64(months_back(window.start, 2))) & (block.months <= np.datetime64(window.end))
    with np.errstate(invalid="ignore"):
        candidate = (np.abs(m_usd / settings.cif_factor - x_usd) >= settings.min_gap_usd)[:, near].any(axis=1)
    if not candidate.any():
        return None
    series = np.flatnonzero(candidate)
    m_usd, x_usd = m_usd[series], x_usd[series]
    m3, x3 = trailing.window_sum(m_usd, 2, 0), trailing.window_sum(x_usd, 2, 0)
    x3_before = trailing.window_sum(x_usd, 3, 1)
    published = (trailing.window_count(m_usd, 2, 0) == 3) & (trailing.window_count(x_usd, 2, 0) == 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        imports = m3 / settings.cif_factor + settings.floor_usd
        gap_same = np.log(imports / (x3 + settings.floor_usd))
        # against the exporter's months one earlier too: a gap only counts when it shows in both
        gap_lagged = np.log(imports / (np.where(np.isnan(x3_before), x3, x3_before) + settings.floor_usd))
        agree = np.sign(gap_same) == np.sign(gap_lagged)
        log_gap = np.where(agree & (np.abs(gap_lagged) < np.abs(gap_same)), gap_lagged,
                           np.where(agree, gap_same, 0.0))
        usual = np.where(published & (m3 > 0) & (x3 > 0), log_gap, np.nan)
        gap_med, gap_mad = trailing.rolling_median(usual, 15, 3, True)
        n_hist = trailing.window_count(usual, 15, 3)
        z_gap = robust_z(log_gap, gap_med, gap_mad, 0.1)
        keep = (published & in_window & (n_hist >= settings.min_history)
                & (np.abs(log_gap - gap_med) >= np.log(settings.min_ratio))
                & (np.abs(m3 / settings.cif_factor - x3) / 3 >= settings.min_gap_usd)
                & (np.abs(z_gap) >= settings.min_z))
    row, month_no = np.nonzero(keep)
    return {"series_no": block.keys["series_no"].to_numpy()[series[row]], "period": block.months[month_no],
            "m3": m3[keep], "x3": x3[keep], "log_gap": log_gap[keep], "gap_med": gap_med[keep],
            "gap_mad": gap_mad[keep], "n_hist": n_hist[keep], "z_gap": z_gap[keep]}


def mirror_gaps(baselines: Baselines, window: Window, settings: Settings, block_cells: int = BLOCK_CELLS) -> pl.DataFrame:
    """Every scored corridor-month of the window whose two books disagree beyond the pair's usual
    gap, with the corridor's keys, commodity and controlling country."""
    parts = [gaps for gaps in baselines.map_blocks(["m_usd", "x_usd"], lambda block: _block_gaps(block, window, settings),
                                                   block_cells)
             if gaps is not None]
    if not parts:
        return pl.DataFrame()
    gaps = pl.DataFrame({name: np.concatenate([p[name] for p in parts]) for name in parts[0]})
    codes = baselines.scope.table("scope_codes").select("hs_code", "commodity", "controlling_country")
    return (gaps.with_columns(pl.col("period").cast(pl.Date), pl.col("series_no").cast(baselines.keys["series_no"].dtype))
            .join(baselines.keys, on="series_no").join(codes, on="hs_code"))


# Imports whose recorded origin differs from the consignment country (the baselines' consignments),
# judged against the route's usual level.
CONSIGNMENT_SQL = """
WITH judged AS (   -- the route's usual monthly value over the year before (months without a row count as 0)
    SELECT c.*, sc.commodity, sc.controlling_country,
           coalesce(sum(c.usd) OVER w, 0) / 12 AS usual
    FROM consignments c JOIN scope_codes sc USING (hs_code)
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


def _consignment(baselines: Baselines, window: Window, settings: Settings) -> pl.DataFrame:
    df = baselines.sql(CONSIGNMENT_SQL, {
        "min_gap_usd": settings.min_gap_usd,
        "min_ratio": settings.min_ratio, "floor_usd": settings.floor_usd})
    if df.height == 0:
        return empty_output()
    names = baselines.country_names()
    imp, declared, consigned = (name_of(pl.col(c), names) for c in ("importer", "declared_origin", "consignment"))
    growth = pl.col("usd") / pl.col("usual").clip(lower_bound=settings.floor_usd)
    # A false origin on the importer's own books is strong evidence; rerouting grows with the jump.
    strength = pl.when(pl.col("false_origin")).then(8.0).otherwise(2.0 + 2.0 * growth.log(2))
    df = df.with_columns(
        (scoring.evidence(strength) * scoring.size(pl.col("usd"))
         * pl.when(pl.col("false_origin")).then(1.0).otherwise(0.7)).clip(0, 1).alias("score"),
        z_tail(strength, 11).alias("p_value"),
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


def detect(baselines: Baselines, window: Window, settings: Settings) -> pl.DataFrame:
    consignment = _consignment(baselines, window, settings)
    df = mirror_gaps(baselines, window, settings)
    if df.height == 0:
        return consignment
    names = baselines.country_names()
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
        (2 * z_tail(pl.col("z_gap").abs(), pl.col("n_hist") - 1)).clip(0, 1).alias("p_value"),
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
