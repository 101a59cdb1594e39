"""Corridor-months unusual on several measures at once, by a PyOD model (ECOD by default).

Features per corridor-month of a watched code: growth against its usual level (the highest of
trailing year, last year's season and the year before), value and weight against that level in
units of the trailing spread, unit value against the world price, the three-month mirror gap and
the gain of the exporter's share in the importer's supply. Falls count as zero: a route that lost
trade is context for other leads, not a lead of its own. Each month is scored by a model fitted on the
`train_months` before and including it (never later months), and its score is calibrated as
the tail probability among those training rows: 1 in 1,000 gives strength 3. The explanation
names the features that contributed most (ECOD's per-feature tail scores; for IForest, the
features furthest from their training median).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from detector import scoring
from detector.baselines import months_back
from detector.detectors._common import commodity, country_names, month, name_of, query, reporter_partner, usd
from detector.detectors.base import DetectorSpec, Window, conform, empty_output

FEATURES = {
    "growth": "log growth over the usual level",
    "z_value": "value against its usual level (robust z)",
    "z_weight": "weight against its usual level (robust z)",
    "price": "unit value against the world price",
    "mirror": "importer's vs exporter's books",
    "share": "change of share in the importer's supply",
}

SQL = """
WITH world AS (
    SELECT hs_code, period, median(usd / kg_row) AS world_uv
    FROM corridor_months WHERE usd > 0 AND kg_row > 0 GROUP BY ALL
),
supply AS (
    SELECT hs_code, importer, period, CAST(sum(CAST(usd AS DECIMAL(38, 3))) AS DOUBLE) AS importer_total FROM corridor_months GROUP BY ALL
),
shared AS (   -- each corridor-month's share of its importer's supply of the code, and the usual share
    SELECT s.*, s.usd / nullif(t.importer_total, 0) AS share_now,
           avg(s.usd / nullif(t.importer_total, 0)) OVER (
               PARTITION BY s.hs_code, s.exporter, s.importer ORDER BY s.period
               ROWS BETWEEN 12 PRECEDING AND 1 PRECEDING) AS share_usual
    FROM corridor_stats s JOIN supply t USING (hs_code, importer, period)
    WHERE s.hs_code IN (SELECT hs_code FROM scope_codes WHERE scored)   -- whole series: same windows
)
SELECT s.hs_code, sc.commodity, s.exporter, s.importer, s.period, s.side, s.usd, s.usd_expected,
       -- rises only: a route that lost trade (after a control, say) is context, not a lead
       greatest(ln((s.usd + 1e4) / (s.usd_expected + 1e4)), 0) AS growth,
       -- against the usual level (which includes last year's season), in units of the trailing spread
       least(greatest(coalesce((s.lv - ln(1 + s.usd_expected)) / (1.4826 * greatest(s.lv_mad, 0.15)), 0), 0), 10)
           AS z_value,
       least(greatest(coalesce((s.lw - ln(1 + s.kg_expected)) / (1.4826 * greatest(s.lw_mad, 0.15)), 0), 0), 10)
           AS z_weight,
       coalesce(ln((s.usd / nullif(s.kg_row, 0)) / w.world_uv), 0) AS price,
       -- three-month sums: a shipment booked a month late by the importer is not a gap
       coalesce(ln((sum(s.m_usd) OVER w3 / 1.06 + 1e4) / (sum(s.x_usd) OVER w3 + 1e4)), 0) AS mirror,
       greatest(coalesce(s.share_now - s.share_usual, 0), 0) AS share,
       count(*) FILTER (WHERE s.usd > 2 * greatest(s.usd_expected, 1e4)) OVER w3 AS months_elevated
FROM shared s
JOIN scope_codes sc USING (hs_code)
LEFT JOIN world w USING (hs_code, period)
WHERE sc.scored AND s.usd > 0 AND s.n_hist >= $min_history
  AND s.period BETWEEN $train_start AND $end
WINDOW w3 AS (PARTITION BY s.hs_code, s.exporter, s.importer ORDER BY s.period ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)
"""


@dataclass(frozen=True)
class Settings:
    model: str = field(default="ecod", metadata={"doc": "PyOD model: ecod or iforest"})
    train_months: int = field(default=24, metadata={"doc": "months of corridor-months each fit learns from"})
    max_train_rows: int = field(default=100_000, metadata={
        "doc": "corridor-months a fit learns from at most (a seeded random sample beyond)"})
    max_tail: float = field(default=0.003, metadata={"doc": "report corridor-months rarer than this tail share"})
    min_usd: float = field(default=100_000.0, metadata={"doc": "smallest corridor-month reported"})
    min_history: int = field(default=6, metadata={"doc": "reported months in the trailing year"})
    weight: float = field(default=0.45, metadata={"doc": "multiplier: a model's view alone is weaker evidence"})
    seed: int = field(default=0, metadata={"doc": "random seed of IForest"})


def _model(settings: Settings):
    if settings.model == "ecod":
        from pyod.models.ecod import ECOD

        return ECOD()
    if settings.model == "iforest":
        from pyod.models.iforest import IForest

        return IForest(random_state=settings.seed, n_estimators=200)
    from detector.errors import ConfigError

    raise ConfigError(f"multivariate.model '{settings.model}': choose ecod or iforest")


def _score_month(train: np.ndarray, test: np.ndarray, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Tail share of each test row among training scores, and per-feature contributions."""
    model = _model(settings)
    model.fit(train)
    train_scores = np.sort(model.decision_scores_)
    test_scores = model.decision_function(test)
    above = len(train_scores) - np.searchsorted(train_scores, test_scores, side="left")
    tail = (above + 1) / (len(train_scores) + 1)
    if settings.model == "ecod":
        contrib = np.asarray(model.O)[-len(test):]
    else:
        med = np.median(train, axis=0)
        mad = np.median(np.abs(train - med), axis=0) + 1e-9
        contrib = np.abs(test - med) / mad
    return tail, contrib


def detect(wh, window: Window, settings: Settings) -> pl.DataFrame:
    train_start = months_back(window.start, settings.train_months - 1)
    data = query(wh, window, SQL, {"min_history": settings.min_history, "train_start": train_start})
    if data.height == 0:
        return empty_output()
    # the rows in a fixed order (the query's is not), so that the sample of a large month is too
    data = data.sort("period", "hs_code", "exporter", "importer")
    names = list(FEATURES)
    months = data.filter(pl.col("period") >= window.start)["period"].unique().sort()
    features = data.select(names).to_numpy()
    periods = data["period"].to_numpy()
    sample = np.random.default_rng(settings.seed)
    scored = []
    for current in months:  # one fit per month: a month never learns from later months
        in_train = (periods >= np.datetime64(months_back(current, settings.train_months - 1))) & (
            periods <= np.datetime64(current))
        test = data.filter((pl.col("period") == current) & (pl.col("usd") >= settings.min_usd))
        train = features[in_train]
        if test.height == 0 or len(train) < 50:
            continue
        if len(train) > settings.max_train_rows:  # the tails of a large sample are the same tails
            train = train[np.sort(sample.choice(len(train), settings.max_train_rows, replace=False))]
        tail, contrib = _score_month(train, test.select(names).to_numpy(), settings)
        top = np.argsort(-contrib, axis=1)[:, :2]
        scored.append(test.with_columns(
            pl.Series("tail", tail),
            pl.Series("reason_1", [names[i] for i in top[:, 0]]),
            pl.Series("reason_2", [names[i] for i in top[:, 1]]),
        ))
    if not scored:
        return empty_output()
    df = pl.concat(scored).filter(pl.col("tail") <= settings.max_tail)
    if df.height == 0:
        return empty_output()
    countries = country_names(wh)
    describe = {k: v for k, v in FEATURES.items()}
    df = df.with_columns(
        (-pl.col("tail").log10()).alias("strength"),
        (pl.col("usd") - pl.col("usd_expected")).abs().alias("excess_usd"),
    ).with_columns(
        (scoring.evidence(pl.col("strength"), s0=2.0, scale=1.5) * scoring.size(pl.col("excess_usd"))
         * settings.weight * (0.7 + 0.15 * (pl.col("months_elevated") - 1).clip(0, 2))).clip(0, 1).alias("score"),
        pl.lit("multivariate").alias("detector"),
        pl.col("importer").alias("destination"),
        *reporter_partner(),
        pl.col("usd").alias("observed"), pl.col("usd_expected").alias("expected"),
        pl.struct(names + ["tail", "reason_1", "reason_2"]).struct.json_encode().alias("evidence"),
        pl.format("{} -> {} {} (HS {}) in {} ({}) is rarer than {} of corridor-months in the last {} months "
                  "({} model), mostly for its {} and its {}.",
                  name_of(pl.col("exporter"), countries), name_of(pl.col("importer"), countries),
                  commodity(), pl.col("hs_code"), month(pl.col("period")), usd(pl.col("usd")),
                  pl.format("1 in {}", (1 / pl.col("tail")).round(0).cast(pl.Int64)), settings.train_months,
                  pl.lit(settings.model.upper()),
                  pl.col("reason_1").replace_strict(describe), pl.col("reason_2").replace_strict(describe))
        .alias("explanation"),
    )
    return conform(df)


SPEC = DetectorSpec(
    name="multivariate",
    description="Corridor-months unusual on several measures at once (PyOD ECOD or IForest).",
    version="1.0",
    settings_class=Settings,
    detect=detect,
    family="volume",
)
