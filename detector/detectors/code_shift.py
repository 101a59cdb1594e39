"""On one route, a controlled code falls while the code it is misdeclared under rises by a
comparable tonnage in the same months (pairs in detector/reference/code_shift_pairs.csv,
extendable in the settings). The other code's rise is measured beyond its market-wide move
(baselines.MARKET_SQL): a world-wide price or demand jump on it lifts every route and is no shift.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from detector import scoring
from detector.baselines import Baselines, market_sql
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

SQL = """
WITH pairs AS (
    SELECT from_code, to_code FROM code_shift_pairs
    UNION
    SELECT split_part(p, ':', 1), split_part(p, ':', 2) FROM unnest($extra_pairs::VARCHAR[]) t(p)
),
market AS (""" + market_sql(where="AND hs_code IN (SELECT to_code FROM pairs)") + """),
smoothed AS (   -- three-month averages smooth an importer's lumpy bookings; weight where known, else value
    SELECT s.hs_code, s.exporter, s.importer, s.period, s.side, s.n_hist,
           avg(s.usd) OVER w3 AS usd_now,
           avg(coalesce(s.kg_row, s.usd)) OVER w3 AS amount_now,
           bool_and(s.kg_row IS NOT NULL OR s.usd = 0) OVER w3 AS in_kg,
           -- the code's market-wide move over the same months (a world-wide price jump is no shift)
           avg(exp(coalesce(m.market_lv, 0))) OVER w3 AS market_usd,
           avg(exp(coalesce(m.market_lw, 0))) OVER w3 AS market_kg
    FROM corridor_stats s LEFT JOIN market m USING (hs_code, period)
    WHERE s.hs_code IN (SELECT from_code FROM pairs UNION ALL SELECT to_code FROM pairs)   -- whole series: same windows
    WINDOW w3 AS (PARTITION BY s.hs_code, s.exporter, s.importer ORDER BY s.period ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)
),
legs AS (   -- the usual level: median of the three-month averages of the half-year before them (a shift
            -- is a change against the recent past, not against levels before an earlier control)
    SELECT *,
           median(amount_now) OVER w AS amount_usual,
           median(usd_now) OVER w AS usd_expected
    FROM (SELECT *, CASE WHEN in_kg THEN market_kg ELSE market_usd END AS market FROM smoothed)
    WINDOW w AS (PARTITION BY hs_code, exporter, importer ORDER BY period ROWS BETWEEN 8 PRECEDING AND 3 PRECEDING)
)
SELECT p.from_code, p.to_code, sc.commodity, sc.controlling_country, f.exporter, f.importer, f.period, t.side,
       f.amount_now AS from_now, f.amount_usual AS from_usual, f.usd_now AS from_usd, f.usd_expected AS from_usd_usual,
       t.amount_now AS to_now, t.amount_usual * t.market AS to_usual, t.usd_now AS to_usd,
       t.usd_expected * t.market_usd AS to_usd_usual, t.market AS to_market,
       f.in_kg AND t.in_kg AS in_kg
FROM pairs p
JOIN legs f ON f.hs_code = p.from_code
JOIN legs t ON t.hs_code = p.to_code AND t.exporter = f.exporter AND t.importer = f.importer AND t.period = f.period
JOIN scope_codes sc ON sc.hs_code = p.from_code
WHERE f.period BETWEEN $start AND $end
  AND f.n_hist >= $min_history AND t.n_hist >= $min_history
  AND f.amount_now <= (1 - $min_drop) * f.amount_usual
  AND t.amount_now >= $min_rise_ratio * t.amount_usual * t.market
  AND t.usd_now - t.usd_expected * t.market_usd >= $min_excess_usd
"""


@dataclass(frozen=True)
class Settings:
    extra_pairs: tuple[str, ...] = field(default=(), metadata={"doc": "more 'from:to' code pairs, e.g. '282580:282590'"})
    min_drop: float = field(default=0.4, metadata={"doc": "controlled code's fall below its usual level (share)"})
    min_rise_ratio: float = field(default=1.8, metadata={"doc": "other code's rise over its usual level"})
    min_balance: float = field(default=0.3, metadata={"doc": "smaller of fall and rise over the larger (tonnes, else USD)"})
    min_excess_usd: float = field(default=50_000.0, metadata={"doc": "USD rise of the other code"})
    min_history: int = field(default=6, metadata={"doc": "reported months in the trailing year"})


def detect(baselines: Baselines, window: Window, settings: Settings) -> pl.DataFrame:
    df = baselines.sql(SQL, {"extra_pairs": list(settings.extra_pairs), "min_drop": settings.min_drop,
                                  "min_rise_ratio": settings.min_rise_ratio, "min_excess_usd": settings.min_excess_usd,
                                  "min_history": settings.min_history})
    df = df.with_columns(
        (pl.col("from_usual") - pl.col("from_now")).alias("fall"),
        (pl.col("to_now") - pl.col("to_usual")).alias("rise"),
    ).with_columns(
        (pl.min_horizontal("fall", "rise") / pl.max_horizontal("fall", "rise")).alias("balance"),
        (1 - pl.col("from_now") / pl.col("from_usual")).alias("drop_share"),
        (pl.col("to_now") / pl.col("to_usual").clip(lower_bound=1.0)).alias("rise_ratio"),
        (pl.col("to_usd") - pl.col("to_usd_usual")).alias("shifted_usd"),
    ).filter(pl.col("balance") >= settings.min_balance)
    if df.height == 0:
        return empty_output()
    names = baselines.country_names()
    strength = 2.5 + 6 * pl.col("balance") * pl.col("drop_share")
    df = df.with_columns(
        (scoring.evidence(strength) * scoring.size(pl.col("shifted_usd"))).clip(0, 1).alias("score"),
        z_tail(strength, settings.min_history - 1).alias("p_value"),
        pl.lit("code_shift").alias("detector"),
        pl.col("to_code").alias("hs_code"),
        pl.col("controlling_country").alias("origin"),
        pl.col("importer").alias("destination"),
        *reporter_partner(),
        pl.col("to_usd").alias("observed"), pl.col("to_usd_usual").alias("expected"),
    )
    exp_, imp = name_of(pl.col("exporter"), names), name_of(pl.col("importer"), names)
    unit = pl.when(pl.col("in_kg")).then(pl.lit("t")).otherwise(pl.lit("USD"))
    amount = lambda c: pl.when(pl.col("in_kg")).then((pl.col(c) / 1000).round(1)).otherwise(pl.col(c).round(0))  # noqa: E731
    df = df.with_columns(
        pl.format("On {} -> {}, {} HS {} fell {} below its usual level in the three months to {} while HS {} rose {} "
                  "({} {} down, {} {} up; {} of extra value under the uncontrolled code).",
                  exp_, imp, pl.col("commodity"), pl.col("from_code"), pct(pl.col("drop_share")), month(pl.col("period")),
                  pl.col("to_code"), times(pl.col("rise_ratio")), amount("fall"), unit, amount("rise"), unit,
                  usd(pl.col("shifted_usd"))).alias("explanation"),
        evidence_json("from_code", "to_code", "from_now", "from_usual", "to_now", "to_usual", "in_kg", "drop_share",
                      "rise_ratio", "balance", "shifted_usd", "to_market").alias("evidence"),
    )
    return conform(df)


SPEC = DetectorSpec(
    name="code_shift",
    description="A controlled code falls while its usual misdeclaration code rises on the same route.",
    version="1.0",
    settings_class=Settings,
    detect=detect,
    tests="watched",
)
