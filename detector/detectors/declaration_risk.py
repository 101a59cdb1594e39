"""Declaration-level false-declaration risk: score each customs line of the window, then roll the
riskiest importers and routes (origin -> consignment -> importing country) of each month up into alerts.

Lines of month t are scored from lines and labels of months < t only (LightGBM when enough labelled
past lines exist, else PyOD); see detector/declarations/models.py and docs/declarations.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from detector.baselines import Baselines
from detector.declarations.features import FeatureOptions
from detector.declarations.models import ModelOptions, rank_lines, score_months
from detector.declarations.monthly_features import BATCH_LINES, MonthlyFeatures
from detector.detectors.base import DetectorSpec, Window, conform, empty_output

NAME = "declaration_risk"
VERSION = "1.0"


@dataclass(frozen=True)
class Settings:
    mode: str = field(default="auto", metadata={"doc": "auto (LightGBM when labelled past lines exist, else "
                                                       "unsupervised), supervised or unsupervised"})
    unsupervised_model: str = field(default="ecod", metadata={"doc": "PyOD model: ecod or iforest"})
    budget_share: float = field(default=0.10, metadata={"doc": "share of a month's lines that can be inspected"})
    explore_share: float = field(default=0.10, metadata={"doc": "share of the inspection order given to "
                                                                "exploration picks (supervised mode)"})
    explore_with: str = field(default="unsupervised", metadata={"doc": "exploration ranking: unsupervised "
                                                                       "or random (seeded)"})
    seed: int = field(default=7, metadata={"doc": "seed for the models and random exploration"})
    min_train_labels: int = field(default=200, metadata={"doc": "labelled past lines needed for supervised mode"})
    smoothing: float = field(default=10.0, metadata={"doc": "weight of the base rate in past fraud rates"})
    min_norm_lines: int = field(default=5, metadata={"doc": "past lines needed for an HS6 x origin unit-value norm"})
    hubs: tuple[str, ...] = field(default=("HKG", "SGP", "ARE", "MYS", "THA", "VNM", "TUR", "KAZ", "MEX"),
                                  metadata={"doc": "consignment countries treated as transit hubs (ISO3)"})
    min_flagged: int = field(default=2, metadata={"doc": "flagged lines an importer or route needs for an alert"})
    max_alerts: int = field(default=20, metadata={"doc": "alerts per month and kind (importer, route)"})
    trees: int = field(default=600, metadata={"doc": "LightGBM trees (learning rate 0.03, 63 leaves)"})
    novel_model: bool = field(default=True, metadata={"doc": "score lines whose HS6 code and net mass were never "
                                                             "declared before with a model trained on such lines"})
    source: str = field(default="", metadata={"doc": "score only this declarations source (empty: all)"})
    batch_lines: int = field(default=BATCH_LINES, metadata={"doc": "lines scored at a time (bounds memory; "
                                                                   "the scores do not depend on it)"})
    explain_share: float = field(default=0.10, metadata={"doc": "share of a month's lines, from the top of the "
                                                                "inspection order, given LightGBM reasons (at least "
                                                                "budget_share; 1: all lines, about 20 ms a line)"})


def _options(settings: Settings) -> tuple[FeatureOptions, ModelOptions]:
    return (FeatureOptions(hubs=tuple(settings.hubs), smoothing=settings.smoothing,
                           min_norm_lines=settings.min_norm_lines),
            ModelOptions(mode=settings.mode, unsupervised_model=settings.unsupervised_model,
                         explore_share=settings.explore_share, explore_with=settings.explore_with,
                         seed=settings.seed, min_train_labels=settings.min_train_labels,
                         lgbm_params={"n_estimators": settings.trees}, novel_model=settings.novel_model))


SCORED_SCHEMA = {"source": pl.String, "declaration_id": pl.String, "period": pl.Date,
                 "score": pl.Float64, "rank": pl.Int64, "reasons": pl.String}


def _scored(baselines: Baselines, window: Window, settings: Settings) -> tuple[MonthlyFeatures, pl.DataFrame]:
    """The features month by month (Parquet in the baselines' folder) and the ranked lines of the window."""
    if baselines.declarations is None:  # no declarations loaded (a warehouse of trade flows only)
        return MonthlyFeatures({}), pl.DataFrame(schema=SCORED_SCHEMA)
    fopts, mopts = _options(settings)
    where = f"period <= DATE '{window.end.isoformat()}'"
    if settings.source:
        where += " AND source = '" + settings.source.replace("'", "''") + "'"
    feats = MonthlyFeatures.build(baselines.connection(), fopts, baselines.folder / "features", where)
    months = [m for m in feats.months if m >= window.start]
    if not months:  # no declarations in the window
        return feats, pl.DataFrame(schema=SCORED_SCHEMA)
    explain = max(settings.explain_share, settings.budget_share)  # the flagged lines' reasons go into the alerts
    scored = rank_lines(score_months(feats, months, mopts, batch_lines=settings.batch_lines,
                                     explain_share=None if explain >= 1 else explain), mopts, by="period")
    return feats, scored


def _lines(scored: pl.DataFrame) -> pl.DataFrame:
    return scored.select("source", "declaration_id", "period", "score", "rank", "reasons").sort("period", "rank")


def score_declarations(baselines: Baselines, window: Window, settings: Settings | None = None) -> pl.DataFrame:
    """One row per declaration line of the window: declaration_id, period, score (0..1), rank, reasons."""
    _, scored = _scored(baselines, window, settings or Settings())
    return _lines(scored)


def _roll_up(lines: pl.DataFrame, keys: list[str], kind: str, settings: Settings) -> pl.DataFrame:
    grouped = (
        lines.sort("rank")
        .group_by(["period", *keys], maintain_order=True)
        .agg(
            lines=pl.len(),
            flagged=pl.col("flagged").sum(),
            risk=pl.col("score").sum(),
            top_score=pl.col("score").head(3).mean(),
            hs_code=pl.col("hs6").filter(pl.col("flagged")).first(),
            origin=pl.col("origin").filter(pl.col("flagged")).first(),
            consignment=pl.col("consignment").filter(pl.col("flagged")).first(),
            destination=pl.col("destination").first(),
            commodity=pl.col("controlled_commodity").drop_nulls().first(),
            top_ids=pl.col("declaration_id").head(5),
            top_reason=pl.col("reasons").filter(pl.col("flagged")).first(),
            base=pl.col("month_rate").first(),
        )
        .filter(pl.col("flagged") >= settings.min_flagged)
        .with_columns(expected=pl.col("lines") * pl.col("base"))
        .sort(["period", "top_score", "flagged"], descending=[False, True, True])
        .group_by("period", maintain_order=True).head(settings.max_alerts)
    )
    return grouped.with_columns(kind=pl.lit(kind))


def detect_with_tables(baselines: Baselines, window: Window,
                       settings: Settings) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """The alerts and the per-line scores (table declaration_scores) of one scoring."""
    feats, scored = _scored(baselines, window, settings)
    return _alerts(feats, scored, settings), {"declaration_scores": _lines(scored)}


def detect(baselines: Baselines, window: Window, settings: Settings) -> pl.DataFrame:
    return detect_with_tables(baselines, window, settings)[0]


# The feature columns the roll-ups read.
ROLL_UP_COLUMNS = ["source", "declaration_id", "period", "importer_id", "hs6", "origin", "consignment",
                   "destination", "controlled_commodity"]


def _alerts(feats: MonthlyFeatures, scored: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    if scored.height == 0:
        return empty_output()
    months = scored.get_column("period").unique().sort().to_list()
    lines = scored.join(feats.read(months, ROLL_UP_COLUMNS), on=["source", "declaration_id", "period"],
                        how="left").with_columns(
        flagged=pl.col("rank") <= (pl.len().over("period") * settings.budget_share).ceil(),
        month_rate=pl.col("score").mean().over("period"),
        destination=pl.col("destination").fill_null(""),
    )
    importers = _roll_up(lines.filter(pl.col("importer_id").is_not_null()), ["importer_id"], "importer", settings)
    routes = _roll_up(
        lines.with_columns(route=pl.concat_str([pl.col("origin").fill_null("?"), pl.col("consignment").fill_null("?")],
                                               separator="->")), ["route"], "route", settings)
    out = []
    for df in (importers, routes):
        if df.height == 0:
            continue
        who = (pl.lit("Importer ") + pl.col("importer_id")) if "importer_id" in df.columns else (
            pl.lit("Route ") + pl.col("route") + pl.lit("->") + pl.col("destination"))
        evidence = pl.struct(
            kind=pl.col("kind"), key=(pl.col("importer_id") if "importer_id" in df.columns else pl.col("route")),
            lines=pl.col("lines"), flagged=pl.col("flagged"), model_expected_frauds=pl.col("risk").round(2),
            baseline_expected=pl.col("expected").round(2), top_declarations=pl.col("top_ids"),
            top_reasons=pl.col("top_reason"),
        ).struct.json_encode()
        out.append(df.with_columns(
            detector=pl.lit(NAME),
            score=pl.col("top_score").clip(0.0, 1.0),
            observed=pl.col("risk"),
            via=pl.when(pl.col("consignment") != pl.col("origin")).then(pl.col("consignment")),
            reporter=pl.col("destination"),
            partner=pl.col("origin"),
            hs_code=pl.col("hs_code").fill_null("000000"),
            evidence=evidence,
            explanation=who + pl.lit(": ") + pl.col("flagged").cast(pl.String) + pl.lit(" of its ")
            + pl.col("lines").cast(pl.String) + pl.lit(" lines in ") + pl.col("period").dt.strftime("%Y-%m")
            + pl.lit(" fall in the inspection budget; the model expects ") + pl.col("risk").round(1).cast(pl.String)
            + pl.lit(" false declarations against ") + pl.col("expected").round(1).cast(pl.String)
            + pl.lit(" for average lines; riskiest line: ") + pl.col("top_reason").fill_null("") + pl.lit("."),
        ).with_columns(destination=pl.col("destination").replace("", None),
                       reporter=pl.col("reporter").replace("", None)))
    return conform(pl.concat(out, how="diagonal")) if out else empty_output()


SPEC = DetectorSpec(
    name=NAME,
    description="Declaration lines scored for false-declaration risk (LightGBM on past labels or PyOD), "
                "rolled up to the riskiest importers and routes per month",
    version=VERSION,
    settings_class=Settings,
    detect=detect,
    partitioned=False,
    detect_with_tables=detect_with_tables,
)
