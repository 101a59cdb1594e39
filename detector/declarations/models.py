"""Score declaration lines: LightGBM when labels exist, PyOD (ECOD / IForest) otherwise, with an
exploration share of the inspection budget, and reasons in words for every line.

Supervised: for each scored month t, a model is trained on the labelled lines of months < t only
and scores the lines of month t. A novel line (HS6 code and net mass never declared in an earlier month)
is scored by a second model trained the way it is tested: on the labelled past lines that were novel
in their own month, so it learns what transfers to unseen lines instead of leaning on repeat shipments. Exploration: every k-th slot of the inspection order (k = 1 /
share, 10 % by default) goes to the next line of a second ranking, the unsupervised one or a seeded
random permutation, so that any budget n % is ~90 % exploitation and ~10 % exploration (the
customs-selection literature found pure exploitation decays under drift).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from detector import robust
from detector.declarations.features import CATEGORICAL, FAMILIES
from detector.declarations.monthly_features import BATCH_LINES, MonthlyFeatures
from detector.outliers import check_model, fitted_scores, tail_share

# Numeric model inputs.
NUMERIC = (
    "te_importer", "te_importer_n", "te_declarant", "te_declarant_n", "te_seller", "te_seller_n",
    "te_hs6", "te_hs6_n", "te_hs4", "te_hs2", "te_origin", "te_route", "te_route_n", "te_hs6_origin",
    "te_hs6_origin_n", "te_importer_hs6", "te_declarant_importer", "te_port", "te_tax_type",
    "cnt_importer", "cnt_declarant", "cnt_seller", "cnt_importer_hs6", "cnt_seller_importer",
    "luv", "lmass", "lvalue", "uv_z", "uv_log_ratio", "mass_log_ratio", "value_log_ratio", "uv_norm_lines",
    "hs6_past_lines", "tax_rate", "tax_rate_dev", "tax_type_share", "origin_indicator_share",
    "origin_ne_consignment", "hub_route", "preference_claimed", "preference_mismatch", "controlled",
    "new_importer", "new_declarant", "new_seller", "new_hs_for_importer", "importer_hs6_share",
) + tuple(f for family in FAMILIES.values() for f in family)
# Inputs of the unsupervised model, each with the direction that is suspicious
# (+1 high, -1 low, 0 both tails) for the robust-z reasons.
UNSUPERVISED = {
    "uv_z": 0, "mass_log_ratio": 0, "value_log_ratio": 0, "new_importer": 1, "new_seller": 1,
    "new_declarant": 1, "new_hs_for_importer": 1, "importer_hs6_share": -1, "te_importer": 1,
    "te_seller": 1, "te_declarant": 1, "origin_ne_consignment": 1, "hub_route": 1, "preference_mismatch": 1,
    "tax_rate_dev": 0, "tax_type_share": -1, "origin_indicator_share": -1, "controlled": 1,
}

# Feature -> reason group; contributions are summed per group before picking the top reasons.
GROUP_OF = {
    **{f: "unit_value" for f in ("luv", "uv_z", "uv_log_ratio", "uv_norm_lines")},
    **{f: "mass" for f in ("lmass", "mass_log_ratio")},
    **{f: "value" for f in ("lvalue", "value_log_ratio")},
    **{f: "importer_rate" for f in ("te_importer", "te_importer_n")},
    **{f: "declarant_rate" for f in ("te_declarant", "te_declarant_n", "te_declarant_importer")},
    **{f: "seller_rate" for f in ("te_seller", "te_seller_n")},
    **{f: "hs_rate" for f in ("te_hs6", "te_hs6_n", "te_hs4", "te_hs2", "hs6_past_lines", "hs2", "hs4")},
    **{f: "hs_origin_rate" for f in ("te_hs6_origin", "te_hs6_origin_n", "te_origin", "origin")},
    **{f: "route" for f in ("te_route", "te_route_n", "origin_ne_consignment", "consignment")},
    "hub_route": "hub_route",
    **{f: "importer_hs" for f in ("te_importer_hs6", "cnt_importer_hs6", "new_hs_for_importer",
                                  "importer_hs6_share")},
    **{f: "new_importer" for f in ("cnt_importer", "new_importer")},
    **{f: "new_declarant" for f in ("cnt_declarant", "new_declarant")},
    **{f: "new_seller" for f in ("cnt_seller", "new_seller", "cnt_seller_importer")},
    **{f: "tax" for f in ("tax_rate", "tax_rate_dev", "te_tax_type", "tax_type_share", "tax_type",
                          "preference_claimed")},
    "preference_mismatch": "preference_mismatch",
    **{f: "origin_indicator" for f in ("origin_indicator_share", "x_origin_indicator")},
    "controlled": "controlled",
    **{f: "port" for f in ("te_port", "port", "x_office")},
    **{f: "network" for f in FAMILIES["network"]},
    **{f: "plausibility" for f in FAMILIES["plausibility"]},
    **{f: "preference_use" for f in FAMILIES["preference"]},
    **{f: "route_rarity" for f in FAMILIES["route"]},
    **{f: "repeat" for f in FAMILIES["repeat"]},
    **{f: "heading_rate" for f in FAMILIES["transfer"]},
}


def _fmt(expr: pl.Expr, digits: int = 2) -> pl.Expr:
    return expr.round(digits).cast(pl.String)


def _pct(expr: pl.Expr) -> pl.Expr:
    return (expr * 100).round(0).cast(pl.Int64).cast(pl.String) + pl.lit("%")


def _country(c: str) -> pl.Expr:
    return pl.col(c).fill_null("unknown")


# Reason group -> sentence fragment with the line's numbers.
REASON_TEXT: dict[str, pl.Expr] = {
    "unit_value": pl.when(pl.col("uv_log_ratio").is_not_null()).then(
        pl.lit("unit value ") + _fmt(pl.col("uv_log_ratio").exp()) + pl.lit("x the HS ") + pl.col("hs6")
        + pl.when(pl.col("uv_norm_level") == "hs6_origin").then(pl.lit(" x ") + _country("origin"))
        .otherwise(pl.lit("")) + pl.lit(" norm")
    ).otherwise(pl.lit("unit value ") + _fmt(pl.col("luv").exp()) + pl.lit(" USD/kg with no HS ") + pl.col("hs6")
                + pl.lit(" norm yet")),
    "mass": pl.lit("net mass ") + _fmt(pl.col("mass_log_ratio").exp()) + pl.lit("x the HS ") + pl.col("hs6")
    + pl.lit(" median"),
    "value": pl.lit("value ") + _fmt(pl.col("value_log_ratio").exp()) + pl.lit("x the HS ") + pl.col("hs6")
    + pl.lit(" median"),
    "importer_rate": pl.lit("importer's past fraud rate ") + _pct(pl.col("te_importer")) + pl.lit(" (")
    + pl.col("te_importer_n").cast(pl.Int64).cast(pl.String) + pl.lit(" inspected lines)"),
    "declarant_rate": pl.lit("declarant's past fraud rate ") + _pct(pl.col("te_declarant")) + pl.lit(" (")
    + pl.col("te_declarant_n").cast(pl.Int64).cast(pl.String) + pl.lit(" inspected lines)"),
    "seller_rate": pl.lit("seller's past fraud rate ") + _pct(pl.col("te_seller")) + pl.lit(" (")
    + pl.col("te_seller_n").cast(pl.Int64).cast(pl.String) + pl.lit(" inspected lines)"),
    "hs_rate": pl.lit("HS ") + pl.col("hs6") + pl.lit(" past fraud rate ") + _pct(pl.col("te_hs6")),
    "hs_origin_rate": pl.lit("HS ") + pl.col("hs6") + pl.lit(" x ") + _country("origin")
    + pl.lit(" past fraud rate ") + _pct(pl.col("te_hs6_origin")),
    "route": pl.when(pl.col("origin_ne_consignment") == 1).then(
        pl.lit("origin ") + _country("origin") + pl.lit(" shipped from ") + _country("consignment")
        + pl.lit(" (route past fraud rate ") + _pct(pl.col("te_route")) + pl.lit(")")
    ).otherwise(pl.lit("route ") + _country("consignment") + pl.lit(" past fraud rate ") + _pct(pl.col("te_route"))),
    "hub_route": pl.lit("routed via hub ") + _country("consignment") + pl.lit(" (origin ") + _country("origin")
    + pl.lit(")"),
    "importer_hs": pl.when(pl.col("new_hs_for_importer") == 1).then(
        pl.lit("HS ") + pl.col("hs6") + pl.lit(" never declared before by this importer (")
        + pl.col("cnt_importer").cast(pl.String) + pl.lit(" past lines)")
    ).otherwise(pl.lit("importer's past fraud rate on HS ") + pl.col("hs6") + pl.lit(" ")
                + _pct(pl.col("te_importer_hs6"))),
    "new_importer": pl.when(pl.col("new_importer") == 1).then(pl.lit("importer never seen before"))
    .otherwise(pl.lit("importer seen ") + pl.col("cnt_importer").cast(pl.String) + pl.lit(" times before")),
    "new_declarant": pl.when(pl.col("new_declarant") == 1).then(pl.lit("declarant never seen before"))
    .otherwise(pl.lit("declarant seen ") + pl.col("cnt_declarant").cast(pl.String) + pl.lit(" times before")),
    "new_seller": pl.when(pl.col("new_seller") == 1).then(pl.lit("seller never seen before"))
    .otherwise(pl.lit("seller seen ") + pl.col("cnt_seller").cast(pl.String) + pl.lit(" times before")),
    "tax": pl.lit("tax ") + pl.col("tax_type").fill_null("?") + pl.lit(" at ")
    + pl.col("tax_rate").cast(pl.String).fill_null("?") + pl.lit("% (usual for HS ") + pl.col("hs6")
    + pl.lit(": ") + pl.col("tax_rate_norm").cast(pl.String).fill_null("?") + pl.lit("%, this tax type on ")
    + _pct(pl.col("tax_type_share").fill_null(0)) + pl.lit(" of its lines)"),
    "preference_mismatch": pl.lit("preference ") + pl.col("tax_type").fill_null("?") + pl.lit(" claimed for origin ")
    + _country("origin") + pl.lit(", outside the agreement's partners"),
    "origin_indicator": pl.lit("origin indicator ") + pl.col("x_origin_indicator").fill_null("?")
    + pl.lit(" used on ") + _pct(pl.col("origin_indicator_share").fill_null(0))
    + pl.lit(" of past HS ") + pl.col("hs6") + pl.lit(" x ") + _country("origin") + pl.lit(" lines"),
    "controlled": pl.lit("controlled-mineral code (") + pl.col("controlled_commodity").fill_null("?") + pl.lit(")"),
    "port": pl.lit("office ") + pl.col("port").fill_null("?") + pl.lit(" past fraud rate ") + _pct(pl.col("te_port")),
    "network": pl.lit("trader network: past fraud rate ") + _pct(pl.col("net_importer_via_declarant"))
    + pl.lit(" among the other clients of the importer's declarants, ")
    + _pct(pl.col("net_seller_via_importer")) + pl.lit(" among the seller's importers' other suppliers"),
    "plausibility": pl.lit("unit value at percentile ") + _pct(pl.col("uv_pct").fill_null(0.5))
    + pl.lit(", net mass at ") + _pct(pl.col("mass_pct").fill_null(0.5)) + pl.lit(" of past HS ") + pl.col("hs6")
    + pl.lit(" lines"),
    "preference_use": pl.lit("tax type ") + pl.col("tax_type").fill_null("?") + pl.lit(" on ")
    + _pct(pl.col("origin_tax_share").fill_null(0)) + pl.lit(" of past lines from ") + _country("origin")
    + pl.lit(" (past fraud rate ") + _pct(pl.col("te_origin_tax")) + pl.lit(")"),
    "route_rarity": pl.lit("route ") + _country("origin") + pl.lit(" -> ") + _country("consignment")
    + pl.lit(" carries ") + _pct(pl.col("route_share").fill_null(0)) + pl.lit(" of past lines from ")
    + _country("origin") + pl.lit(" and ") + _pct(pl.col("route_hs_share").fill_null(0)) + pl.lit(" of HS ")
    + pl.col("hs6"),
    "repeat": pl.when(pl.col("te_hs6_mass_n") > 0).then(
        pl.lit("same HS ") + pl.col("hs6") + pl.lit(" and net mass as ")
        + pl.col("te_hs6_mass_n").cast(pl.Int64).cast(pl.String) + pl.lit(" inspected past lines (fraud rate ")
        + _pct(pl.col("te_hs6_mass")) + pl.lit(")")
    ).otherwise(pl.lit("no inspected past line of HS ") + pl.col("hs6") + pl.lit(" with this net mass")),
    "heading_rate": pl.lit("HS ") + pl.col("hs4") + pl.lit(" x ") + _country("origin") + pl.lit(" past fraud rate ")
    + _pct(pl.col("te_hs4_origin")) + pl.lit(", office route ") + _pct(pl.col("te_office_route"))
    + pl.lit(", seller on HS ") + pl.col("hs4") + pl.lit(" ") + _pct(pl.col("te_seller_hs4")),
    "other": pl.lit("declaration profile (") + pl.col("mode").fill_null("?") + pl.lit(" transport mode, import type ")
    + pl.col("x_import_type").fill_null("?") + pl.lit(")"),
}
GROUPS = list(REASON_TEXT)


UNSUPERVISED_MODEL_SETTING = "declaration_risk.unsupervised_model"


@dataclass(frozen=True)
class ModelOptions:
    mode: str = "auto"                 # auto | supervised | unsupervised
    unsupervised_model: str = "ecod"   # ecod | iforest
    explore_share: float = 0.10
    explore_with: str = "unsupervised"  # unsupervised | random
    seed: int = 7
    min_train_labels: int = 200
    n_reasons: int = 3
    lgbm_params: dict = field(default_factory=dict)
    drop_features: tuple[str, ...] = ()  # model inputs left out (feature ablations)
    novel_model: bool = True           # score novel lines with the model trained on past novel lines
    novel_lgbm_params: dict = field(default_factory=dict)

    def __post_init__(self):
        check_model(self.unsupervised_model, UNSUPERVISED_MODEL_SETTING)


DEFAULT_LGBM = dict(objective="binary", num_leaves=63, learning_rate=0.03, n_estimators=600,
                    min_child_samples=30, subsample=0.8, subsample_freq=1, colsample_bytree=0.7,
                    reg_lambda=1.0, cat_smooth=10, min_data_per_group=50)


# The novel-line model learns from fewer lines (about a third of the past ones): smaller trees.
NOVEL_LGBM = dict(DEFAULT_LGBM, num_leaves=15, n_estimators=400, min_child_samples=50)
NOVEL_REASON = "novel line (HS6 code and net mass never declared before); "


# The novel-line model's training lines: labelled lines that were novel in their month and had
# labelled months before them, shaped like the lines it scores (fraud rates known, no repeat).
NOVEL_TRAINING = (pl.col("novel") == 1) & (pl.col("base_labels") > 0)


def novel_training_lines(labelled: pl.DataFrame) -> pl.DataFrame:
    """The novel-line model's training set among labelled lines (`NOVEL_TRAINING`)."""
    return labelled.filter(NOVEL_TRAINING)


def category_codes(train: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Per categorical column, its integer codes fixed by the training lines (sorted values)."""
    out = {}
    for c in CATEGORICAL:
        values = train.get_column(c).drop_nulls().unique().sort()
        out[c] = pl.DataFrame({c: values, f"{c}__code": pl.int_range(len(values), eager=True).cast(pl.Int32)})
    return out


def _category_columns(codes: dict[str, pl.DataFrame], df: pl.DataFrame) -> pl.DataFrame:
    """The categorical columns of `df` as their training codes (unseen = null)."""
    return pl.DataFrame([df.select(c).join(mapping, on=c, how="left", maintain_order="left")[f"{c}__code"].alias(c)
                         for c, mapping in codes.items()])


def input_names(drop: tuple[str, ...] = ()) -> list[str]:
    """The model's input columns, in order: numeric, then categorical."""
    return [c for c in NUMERIC if c not in drop] + [c for c in CATEGORICAL if c not in drop]


def _inputs(codes: dict[str, pl.DataFrame], df: pl.DataFrame, drop: tuple[str, ...] = ()
            ) -> tuple[np.ndarray, list[str]]:
    cats = _category_columns(codes, df).drop([c for c in drop if c in CATEGORICAL])
    nums = df.select([pl.col(c).cast(pl.Float64) for c in NUMERIC if c not in drop])
    X = pl.concat([nums, cats], how="horizontal")
    return X.to_numpy().astype(np.float64, copy=False), list(X.columns)


def _fit(X: np.ndarray, y: np.ndarray, names: list[str], opts: ModelOptions, params: dict | None = None):
    """LightGBM on a training matrix (deterministic: fixed seed, threads and column order); `params`
    default to the main model's."""
    import lightgbm as lgb  # imported when a model is trained: every command would pay its import

    params = params or {**DEFAULT_LGBM, **opts.lgbm_params}
    model = lgb.LGBMClassifier(**params, random_state=opts.seed, n_jobs=1, deterministic=True,
                               force_row_wise=True, verbose=-1)
    model.fit(X, y, feature_name=names, categorical_feature=[c for c in CATEGORICAL if c in names])
    return model


def fit_supervised(train: pl.DataFrame, opts: ModelOptions, params: dict | None = None):
    """LightGBM on the labelled training lines of a frame; returns (model, category codes)."""
    codes = category_codes(train)
    X, names = _inputs(codes, train, opts.drop_features)
    return _fit(X, train.get_column("label").to_numpy(), names, opts, params), codes


def fit_from_months(store: MonthlyFeatures, months: list, opts: ModelOptions, only: pl.Expr | None = None,
                    params: dict | None = None):
    """LightGBM on the labelled lines of `months` (those matching `only`, when given), read one month at
    a time into one preallocated matrix (the training set's features are never all held as a frame);
    returns (model, codes)."""
    keep = pl.lit(True) if only is None else only
    needs = [] if only is None else only.meta.root_names()

    def read(months_read: list, columns: list[str]) -> pl.DataFrame:
        wanted = list(dict.fromkeys([*columns, *needs]))
        return store.read(months_read, wanted, labelled=True).filter(keep).select(columns)

    codes = category_codes(read(months, list(CATEGORICAL)))
    names = input_names(opts.drop_features)
    wanted = list(dict.fromkeys([*names, "label"]))
    n = sum(read([m], ["label"]).height for m in months)
    X = np.empty((n, len(names)))
    labels, row = [], 0
    for month in months:
        part = read([month], wanted)
        X[row:row + part.height], _ = _inputs(codes, part, opts.drop_features)
        labels.append(part.get_column("label").to_numpy())
        row += part.height
        del part
    return _fit(X, np.concatenate(labels), names, opts, params), codes


def fit_both(store: MonthlyFeatures, months: list, opts: ModelOptions) -> dict:
    """The main model and, when past novel lines hold both classes, the novel-line model."""
    models = {"main": fit_from_months(store, months, opts)}
    if opts.novel_model:
        novel = store.read(months, ["label", "novel", "base_labels"], labelled=True).filter(NOVEL_TRAINING)
        n_pos = int(novel.get_column("label").sum() or 0) if novel.height else 0
        if novel.height >= opts.min_train_labels and 0 < n_pos < novel.height:
            models["novel"] = fit_from_months(store, months, opts, only=NOVEL_TRAINING,
                                              params={**NOVEL_LGBM, **opts.novel_lgbm_params})
    return models


def _novel_rows(models: dict, lines: pl.DataFrame) -> np.ndarray:
    """True for the lines the novel-line model scores (none when it was not trained)."""
    if "novel" not in models:
        return np.zeros(lines.height, dtype=bool)
    return lines.get_column("novel").to_numpy() == 1


def predict_both(models: dict, lines: pl.DataFrame, opts: ModelOptions) -> np.ndarray:
    """Main-model probabilities, replaced on the novel lines by the novel-line model's."""
    proba = predict_supervised(models["main"], lines, opts.drop_features, contributions=False)[0]
    is_novel = _novel_rows(models, lines)
    if is_novel.any():
        proba = proba.copy()
        proba[is_novel] = predict_supervised(models["novel"], lines.filter(pl.Series(is_novel)),
                                             opts.drop_features, contributions=False)[0]
    return proba


def explain_both(models: dict, lines: pl.DataFrame, opts: ModelOptions) -> pl.Series:
    """Reasons from the model that scored each line (novel lines: the novel-line model's, so marked)."""
    _, contrib, names = predict_supervised(models["main"], lines, opts.drop_features)
    reasons = reasons_from(lines, contrib, names, opts.n_reasons)
    is_novel = _novel_rows(models, lines)
    if not is_novel.any():
        return reasons
    novel = lines.filter(pl.Series(is_novel))
    _, n_contrib, n_names = predict_supervised(models["novel"], novel, opts.drop_features)
    return reasons.scatter(np.flatnonzero(is_novel),
                           NOVEL_REASON + reasons_from(novel, n_contrib, n_names, opts.n_reasons))


def predict_supervised(fitted, df: pl.DataFrame, drop: tuple[str, ...] = (), contributions: bool = True
                       ) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Probabilities and per-feature contributions (log-odds, SHAP-style; None unless asked) for `df`;
    `fitted` is (model, category codes) as the fit functions return it. The contributions cost far more
    than the probabilities (TreeSHAP: about 20 ms a line with 600 trees of 63 leaves, against 0.2 ms)."""
    model, codes = fitted
    X, names = _inputs(codes, df, drop)
    proba = model.booster_.predict(X)
    contrib = model.booster_.predict(X, pred_contrib=True)[:, :-1] if contributions else None
    return proba, contrib, names


def _top_of_order(ids: pl.DataFrame, score: np.ndarray, explore_score: np.ndarray, opts: ModelOptions,
                  share: float) -> np.ndarray:
    """True for the lines within the first `share` of the month's inspection order (as rank_lines)."""
    part = ids.with_columns(score=pl.Series(score, dtype=pl.Float64),
                            explore_score=pl.Series(explore_score, dtype=pl.Float64),
                            method=pl.lit("lightgbm"), reasons=pl.lit(""))
    rank = rank_lines(part, opts, by=None).get_column("rank").to_numpy()
    return rank <= np.ceil(len(rank) * share)


FLAT = 1e-9  # a feature's spread below this counts as none


def _robust(fit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's median and spread: the MAD as a standard deviation, or for binary and
    near-constant features (MAD 0) the standard deviation itself, so that rare flags still stand out."""
    med, mad = robust.median_mad(fit)
    spread = robust.sigma(mad, floor=0.0)
    std = np.nanstd(fit, axis=0)
    scale = np.where(spread > FLAT, spread, np.where(std > FLAT, std, 1.0))
    return np.nan_to_num(med), scale


def unsupervised_scores(fit_df: pl.DataFrame, df: pl.DataFrame, opts: ModelOptions
                        ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """PyOD score of `df` against `fit_df`, calibrated to 0..1 as one minus its tail share among the
    fit lines' scores (`detector.outliers.tail_share`), and the oriented robust z of each feature (for
    the reasons)."""
    names = list(UNSUPERVISED)
    fit = fit_df.select([pl.col(c).cast(pl.Float64) for c in names]).to_numpy()
    cur = df.select([pl.col(c).cast(pl.Float64) for c in names]).to_numpy()
    med, scale = _robust(fit)
    fit_f = np.where(np.isnan(fit), med, fit)
    cur_f = np.where(np.isnan(cur), med, cur)
    fit_scores, cur_scores = fitted_scores(opts.unsupervised_model, opts.seed, UNSUPERVISED_MODEL_SETTING,
                                           fit_f, fit_f, cur_f)
    calibrated = 1.0 - tail_share(fit_scores, cur_scores)
    z = (cur_f - med) / scale
    direction = np.array([UNSUPERVISED[n] for n in names], dtype=float)
    oriented = np.where(direction == 0, np.abs(z), z * direction)
    return calibrated, oriented, names


def reasons_from(df: pl.DataFrame, weights: np.ndarray, names: list[str], n_reasons: int) -> pl.Series:
    """Top `n_reasons` groups by summed weight (positive only), rendered as one '; '-joined string."""
    groups = [GROUP_OF.get(n, "other") for n in names]
    G = np.zeros((weights.shape[0], len(GROUPS)))
    for j, g in enumerate(groups):
        G[:, GROUPS.index(g)] += np.nan_to_num(weights[:, j])
    order = np.argsort(-G, axis=1, kind="stable")[:, :n_reasons]
    top_w = np.take_along_axis(G, order, axis=1)
    parts = []
    for k in range(order.shape[1]):
        idx = pl.Series(f"r{k}", order[:, k])
        pos = pl.Series(f"p{k}", top_w[:, k] > 0)
        expr = pl.lit(None, dtype=pl.String)
        for gi, g in enumerate(GROUPS):
            expr = pl.when(pl.col(f"r{k}") == gi).then(REASON_TEXT[g]).otherwise(expr)
        parts.append(pl.when(pl.col(f"p{k}")).then(expr).alias(f"t{k}"))
        df = df.with_columns(idx, pos)
    texts = df.select(parts)
    return texts.select(pl.concat_str(pl.all(), separator="; ", ignore_nulls=True).alias("reasons"))["reasons"]


def inspection_order(score: np.ndarray, explore_rank: np.ndarray | None, share: float,
                     tiebreak: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank (1 = inspect first) merging the model order with an exploration order.

    Model stream item j (0-based) sits at slot j + floor(j * share / (1 - share)); exploration stream
    item j at slot ceil((j + 1) / share) - 1 (every 1/share-th slot). A line takes the earlier of its two
    slots, so any prefix of the order holds about `share` exploration picks. Returns (rank, explored).
    """
    n = len(score)
    model_pos = np.empty(n, dtype=np.int64)
    model_pos[np.lexsort((tiebreak, -score))] = np.arange(n)
    if explore_rank is None or share <= 0:
        slot = model_pos.astype(float)
        explored = np.zeros(n, dtype=bool)
    else:
        slot_model = model_pos + np.floor(model_pos * share / (1 - share))
        slot_explore = np.ceil((explore_rank + 1) / share) - 1
        explored = slot_explore - 0.5 < slot_model  # exploration wins an exact tie of slots
        slot = np.where(explored, slot_explore - 0.5, slot_model)
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((tiebreak, slot))] = np.arange(1, n + 1)
    return rank, explored


def seeded_permutation(keys: pl.Series, seed: int) -> np.ndarray:
    """0-based random order of the lines, from the seed and the sorted keys (not the row order)."""
    by_key = np.argsort(keys.to_numpy(), kind="stable")
    perm = np.random.default_rng(seed).permutation(len(keys))
    pos = np.empty(len(keys), dtype=np.int64)
    pos[by_key] = perm
    return pos


def _zero_based_rank(score: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    pos = np.empty(len(score), dtype=np.int64)
    pos[np.lexsort((tiebreak, -score))] = np.arange(len(score))
    return pos


def score_months(feats: pl.DataFrame | MonthlyFeatures, months, opts: ModelOptions, label_cutoff=None,
                 batch_lines: int = BATCH_LINES, timings: dict[str, float] | None = None,
                 explain_share: float | None = None) -> pl.DataFrame:
    """Score the lines of each month in `months` from lines (and labels) of earlier months only.

    Returns source, declaration_id, period, score (0..1), model_score, explore_score, method, reasons.
    Training labels are those of months < t (and < `label_cutoff` when given, which must match the
    feature table's); a month with too few labelled past lines falls back to the unsupervised model.
    `feats` is the feature table, whole or by month; a month is scored `batch_lines` lines at a time
    (the scores do not depend on it), the unsupervised model on its 18 inputs at once. `timings`, when
    given, adds up the seconds of its steps (unsupervised, training, scoring, reasons) for the benchmark.
    With `explain_share`, LightGBM's reasons are worked out only for the lines within that share of
    the month's inspection order (rank_lines by month), the others' reasons are null: the contributions
    cost about a hundred times the scores, hours for a month of a million lines.
    """
    timings = {} if timings is None else timings
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        timings[step] = timings.get(step, 0.0) + time.perf_counter() - clock
        clock = time.perf_counter()

    store = feats if isinstance(feats, MonthlyFeatures) else MonthlyFeatures.from_frame(feats)
    out = []
    cache: dict = {}
    for month in months:
        if store.height(month) == 0:
            continue
        past = [m for m in store.months if m < month]
        train = [m for m in past if label_cutoff is None or m < label_cutoff]
        labels = store.read(train, ["period", "label"], labelled=True) if train else pl.DataFrame()
        n_pos = int(labels.get_column("label").sum() or 0) if labels.height else 0
        supervised = opts.mode == "supervised" or (
            opts.mode == "auto" and labels.height >= opts.min_train_labels and 0 < n_pos < labels.height)
        fit_months = past if sum(store.height(m) for m in past) >= 50 else [month]
        u_score, u_z, u_names = unsupervised_scores(store.read(fit_months, list(UNSUPERVISED)),
                                                    store.read([month], list(UNSUPERVISED)), opts)
        lap("unsupervised")
        if supervised:
            key = (labels.height, n_pos, str(labels.get_column("period").max() if labels.height else None))
            if key not in cache:
                cache = {}  # one model held at a time
                cache = {key: fit_both(store, train, opts)}
            lap("training")
            method = "lightgbm"
        else:
            score, method = u_score, opts.unsupervised_model
        del labels
        ids = store.read([month], ["source", "declaration_id", "period"])
        if supervised:
            score = np.concatenate([predict_both(cache[key], batch, opts)
                                    for batch in store.batches(month, batch_lines)])
            explain = (np.ones(len(score), dtype=bool) if explain_share is None
                       else _top_of_order(ids, score, u_score, opts, explain_share))
        lap("scoring")
        reasons, row = [], 0
        for batch in store.batches(month, batch_lines):
            if supervised:
                keep = explain[row:row + batch.height]
                text = pl.Series("reasons", [None] * batch.height, dtype=pl.String)
                if keep.any():
                    chosen = batch.filter(pl.Series(keep))
                    text = text.scatter(np.flatnonzero(keep), explain_both(cache[key], chosen, opts))
                reasons.append(text)
            else:
                z = u_z[row:row + batch.height]
                reasons.append(reasons_from(batch, np.where(z > 2.0, z, 0.0), u_names, opts.n_reasons))
            row += batch.height
        lap("reasons")
        out.append(ids.with_columns(
            score=pl.Series(score, dtype=pl.Float64),
            explore_score=pl.Series(u_score, dtype=pl.Float64),
            method=pl.lit(method),
            reasons=pl.concat(reasons),
        ))
    if not out:
        return pl.DataFrame(schema={"source": pl.String, "declaration_id": pl.String, "period": pl.Date,
                                    "score": pl.Float64, "explore_score": pl.Float64, "method": pl.String,
                                    "reasons": pl.String})
    return pl.concat(out)


def rank_lines(scored: pl.DataFrame, opts: ModelOptions, by: str | None = "period") -> pl.DataFrame:
    """Add `rank` (inspection order, 1 first) and `explored` within each `by` group (None: all lines)."""
    parts = scored.partition_by(by, maintain_order=True) if by else [scored]
    out = []
    for part in parts:
        score = part.get_column("score").to_numpy()
        tiebreak = part.get_column("declaration_id").rank("ordinal").to_numpy()
        supervised = (part.get_column("method") == "lightgbm").any()
        explore = None
        if opts.explore_share > 0 and supervised:
            explore = (seeded_permutation(part.get_column("declaration_id"), opts.seed)
                       if opts.explore_with == "random"
                       else _zero_based_rank(part.get_column("explore_score").to_numpy(), tiebreak))
        rank, explored = inspection_order(score, explore, opts.explore_share, tiebreak)
        out.append(part.with_columns(pl.Series("rank", rank, dtype=pl.Int64), pl.Series("explored", explored)))
    df = pl.concat(out)
    return df.with_columns(
        reasons=pl.when(pl.col("explored"))
        .then(pl.lit("exploration pick (") + pl.lit(opts.explore_with) + pl.lit(" ranking); ") + pl.col("reasons"))
        .otherwise(pl.col("reasons")))
