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

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from detector import scoring, trailing
from detector.baselines import (
    MARKET_MIN_CORRIDORS,
    MARKET_MIN_SE,
    MARKET_USUAL_MIN,
    MARKET_USUAL_MONTHS,
    MEDIAN_SE_PER_MAD,
    Baselines,
)
from detector.detectors._common import commodity, month, name_of, reporter_partner, usd
from detector.detectors.base import DetectorSpec, Window, conform, empty_output
from detector.grid import BLOCK_CELLS, GridBlock
from detector.months import months_back
from detector.outliers import pyod_model, tail_share
from detector.robust import median_mad, robust_z, sigma

FEATURES = {
    "growth": "log growth over the usual level",
    "z_value": "value against its usual level (robust z)",
    "z_weight": "weight against its usual level (robust z)",
    "price": "unit value against the world price",
    "mirror": "importer's vs exporter's books",
    "share": "change of share in the importer's supply",
}

# The world price of each scored code and month: the median unit value over its corridors.
WORLD_SQL = """
SELECT hs_code, datediff('month', CAST($lo AS DATE), period) AS month_no,
       median(usd / kg_row) AS world_uv
FROM corridor_months SEMI JOIN scope_codes sc ON sc.hs_code = corridor_months.hs_code AND sc.scored
WHERE usd > 0 AND kg_row > 0
GROUP BY ALL
"""

FIT_THREADS = 2

GRID_COLUMNS = ["usd", "m_usd", "x_usd", "kg_row", "usd_expected", "kg_expected", "lv", "lv_mad", "lw", "lw_mad",
                "n_hist", "z_value", "z_weight"]


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


def _score_month(train: np.ndarray, test: np.ndarray, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Tail share of each test row among training scores, and per-feature contributions."""
    model = pyod_model(settings.model, settings.seed, "multivariate.model")
    model.fit(train)
    tail = tail_share(model.decision_scores_, model.decision_function(test))
    if settings.model == "ecod":
        contrib = np.asarray(model.O)[-len(test):]
    else:
        med, mad = median_mad(train)
        contrib = np.abs(test - med) / (mad + 1e-9)
    return tail, contrib


def _world_prices(baselines: Baselines) -> tuple[dict[str, int], np.ndarray]:
    """Each scored code's world price by month of the grid, as a (code x month) matrix with a last
    row of NaN for a code that has none."""
    world = baselines.sql(WORLD_SQL, {"lo": baselines.scope.lo})
    n_months = baselines.scope.n_months
    codes = world["hs_code"].unique().sort()
    code_no = {c: i for i, c in enumerate(codes.to_list())}
    grid = np.full((len(codes) + 1, n_months), np.nan)
    if world.height:
        grid[world["hs_code"].replace_strict(code_no, return_dtype=pl.Int64).to_numpy(),
             world["month_no"].to_numpy()] = world["world_uv"].to_numpy()
    return code_no, grid


def _code_market(block: GridBlock, change: np.ndarray) -> np.ndarray:
    """Each cell's code-wide move that month beyond the code's usual move and the noise of its
    estimate (baselines.MARKET_SQL on the block's matrices)."""
    code = block.keys.select(pl.col("hs_code").rank("dense") - 1).to_series().to_numpy().astype(np.int64)
    n_months, n_codes = change.shape[1], int(code.max(initial=-1)) + 1
    ok = (block["usd"] > 0) & (block["n_hist"] >= 6) & ~np.isnan(change)
    row, month_no = np.nonzero(ok)
    cells = pl.DataFrame({"cell": code[row] * n_months + month_no, "change": change[row, month_no]})
    moved = (cells.group_by("cell")
             .agg(pl.col("change").median().alias("move"), pl.len(),
                  (pl.col("change") - pl.col("change").median()).abs().median().alias("mad"))
             .filter(pl.col("len") >= MARKET_MIN_CORRIDORS))
    moves, se = np.full(n_codes * n_months, np.nan), np.zeros(n_codes * n_months)
    moves[moved["cell"].to_numpy()] = moved["move"].to_numpy()
    se[moved["cell"].to_numpy()] = (MEDIAN_SE_PER_MAD * moved["mad"] / moved["len"].cast(pl.Float64).sqrt()).to_numpy()
    moves, se = moves.reshape(n_codes, n_months), se.reshape(n_codes, n_months)
    before = np.lib.stride_tricks.sliding_window_view(
        np.pad(moves, ((0, 0), (MARKET_USUAL_MONTHS, 0)), constant_values=np.nan), MARKET_USUAL_MONTHS, axis=1
    )[:, :n_months]   # months t-24 .. t-1 for each t
    enough = (~np.isnan(before)).sum(axis=2) >= MARKET_USUAL_MIN
    usual = np.where(enough, np.nanmedian(np.where(enough[..., None], before, 0.0), axis=2), 0.0)
    excess = np.nan_to_num(moves - usual, nan=0.0)
    market = np.where((excess > 0) & (excess >= MARKET_MIN_SE * se), excess, 0.0)
    return market[code]


def _block_features(block: GridBlock, world: np.ndarray) -> dict[str, np.ndarray]:
    """The features of every corridor-month of a block (whole codes), as (series x month) matrices.

    Windows run over calendar months of the series (the grid is dense), and an importer's supply
    of a code is the sum over all its corridors that month (NULL when none reported)."""
    usd, expected = block["usd"], block["usd_expected"]
    n_months = usd.shape[1]
    supplier = block.keys.select(pl.concat_str("hs_code", "importer", separator="|").rank("dense") - 1)
    cell = (supplier.to_series().to_numpy().astype(np.int64)[:, None] * n_months + np.arange(n_months)).ravel()
    n_cells = (int(cell.max(initial=-1)) + 1)
    supply = np.bincount(cell, np.nan_to_num(usd).ravel(), n_cells)[cell].reshape(usd.shape)
    reported = np.bincount(cell, ~np.isnan(usd).ravel(), n_cells)[cell].reshape(usd.shape)

    def against_usual(level, usual, spread):  # robust z against the usual level, clipped to 0..10
        return np.clip(_zero_if_null(robust_z(level, np.log(1 + usual), spread, 0.15)), 0, 10)

    # the code's market-wide move that month (a world-wide price jump lifts every route): taken out
    market_lv = _code_market(block, block["z_value"] * sigma(block["lv_mad"], 0.15))
    market_lw = _code_market(block, block["z_weight"] * sigma(block["lw_mad"], 0.15))
    expected = expected * np.exp(market_lv)

    with np.errstate(invalid="ignore", divide="ignore"):
        share_now = usd / np.where((reported == 0) | (supply == 0), np.nan, supply)
        share_usual = trailing.window_mean(share_now, 12, 1)[0]
        return {
            # rises only: a route that lost trade (after a control, say) is context, not a lead
            "growth": np.fmax(np.log((usd + 1e4) / (expected + 1e4)), 0),
            "z_value": against_usual(block["lv"], expected, block["lv_mad"]),
            "z_weight": against_usual(block["lw"] - market_lw, block["kg_expected"], block["lw_mad"]),
            "price": _zero_if_null(np.log(usd / np.where(block["kg_row"] == 0, np.nan, block["kg_row"]) / world)),
            # three-month sums: a shipment booked a month late by the importer is not a gap
            "mirror": _zero_if_null(np.log((trailing.window_sum(block["m_usd"], 2, 0) / 1.06 + 1e4)
                                           / (trailing.window_sum(block["x_usd"], 2, 0) + 1e4))),
            "share": np.fmax(_zero_if_null(share_now - share_usual), 0),
            "months_elevated": trailing.window_sum((usd > 2 * np.fmax(expected, 1e4)).astype(float), 2, 0),
        }


def _zero_if_null(a: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(a), 0.0, a)


def corridor_features(baselines: Baselines, window: Window, settings: Settings,
                      block_cells: int = BLOCK_CELLS) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The map step: one row per scored corridor-month that may be scored or learnt from (traded,
    with a year of history, from the first training month on), with its series number, month,
    level and features, in (month, series) order; and the series (series_no, hs_code, exporter,
    importer, commodity, side) they belong to, numbered in key order."""
    first = months_back(window.start, settings.train_months - 1)
    code_no, world = _world_prices(baselines)

    def block_rows(block: GridBlock) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The block's rows to keep, month-major (in (month, series) order), and their count per month."""
        codes = block.keys["hs_code"].replace_strict(code_no, default=len(code_no), return_dtype=pl.Int64).to_numpy()
        columns = {"usd": block["usd"], "usd_expected": block["usd_expected"]} | _block_features(block, world[codes])
        keep = ((block["usd"] > 0) & (block["n_hist"] >= settings.min_history)
                & (block.months >= np.datetime64(first)) & (block.months <= np.datetime64(window.end))).T
        month_no, row = np.nonzero(keep)
        cell = row * len(block.months) + month_no  # those cells in the (series x month) matrices
        return ({"series_no": block.keys["series_no"].to_numpy()[row], "month_no": month_no,
                 **{name: np.take(values, cell) for name, values in columns.items()}},
                np.bincount(month_no, minlength=len(block.months)))

    built = baselines.map_blocks(GRID_COLUMNS, block_rows, block_cells)
    parts, per_month = [part for part, _ in built], [counts for _, counts in built]
    del built
    months = baselines.months()
    codes = baselines.scope.table("scope_codes").select("hs_code", "commodity")
    series = baselines.scored_keys().join(codes, on="hs_code", how="left", maintain_order="left")
    if not parts:
        return pl.DataFrame(), series.clear()
    # (month, series) order without a sort: each month's slice of every block, blocks in series
    # order; a column at a time, so that the blocks' parts and the result are never both whole
    ends = np.cumsum(np.stack(per_month), axis=1)
    slices = [(b, int(ends[b, m] - per_month[b][m]), int(ends[b, m]))
              for m in range(len(months)) for b in range(len(parts)) if per_month[b][m]]
    rows = {}
    for name in list(parts[0]):
        rows[name] = np.concatenate([parts[b][name][lo:hi] for b, lo, hi in slices])
        for part in parts:
            del part[name]
    features = pl.DataFrame({"series_no": rows.pop("series_no"), "period": months[rows.pop("month_no")],
                             **rows}).with_columns(pl.col("period").cast(pl.Date),
                                                   pl.col("months_elevated").cast(pl.Int64))
    return features, series


def combine(parts: list[tuple[pl.DataFrame, pl.DataFrame]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Partitions' features as one run's: series renumbered in key order over all partitions and
    rows in (month, series) order, exactly as a run over everything builds them."""
    parts = [(rows, series) for rows, series in parts if rows.height]
    if len(parts) <= 1:
        return parts[0] if parts else (pl.DataFrame(), pl.DataFrame())
    tagged = pl.concat([series.with_columns(pl.lit(n).alias("part")) for n, (_, series) in enumerate(parts)])
    tagged = tagged.sort("hs_code", "exporter", "importer").with_row_index("run_series_no")
    renumbered = []
    for n, (rows, _) in enumerate(parts):
        numbers = tagged.filter(pl.col("part") == n).select("series_no", "run_series_no")
        renumbered.append(rows.join(numbers.with_columns(pl.col("series_no").cast(rows["series_no"].dtype)),
                                    on="series_no").drop("series_no").rename({"run_series_no": "series_no"}))
    rows = pl.concat(renumbered, how="diagonal").sort("period", "series_no")
    series = tagged.drop("series_no", "part").rename({"run_series_no": "series_no"})
    return rows.select(parts[0][0].columns), series


def _month_sample(n_rows: int, size: int, seed: int, month) -> np.ndarray:
    """A month's training sample: seeded by the run's seed and the month alone, so that it does
    not depend on the other months scored or on how the work was cut."""
    rng = np.random.default_rng([seed, month.year * 12 + month.month])
    return np.sort(rng.choice(n_rows, size, replace=False))


def _warm_up(pool: ThreadPoolExecutor, settings: Settings) -> Future:
    """PyOD's Numba kernels compile on first use (uncached, seconds): on a small sample in the
    background, rather than inside the first fits."""
    sample = np.random.default_rng(settings.seed).standard_normal((64, len(FEATURES)))
    return pool.submit(_score_month, sample, sample[:2], settings)


def reduce(parts: list[tuple[pl.DataFrame, pl.DataFrame]], window: Window, settings: Settings,
           names: dict[str, str], warm: Future | None = None) -> pl.DataFrame:
    """The reduce step: one fit per month over every partition's corridor-months, the rare ones
    reported."""
    with ThreadPoolExecutor(1) as pool:
        warm = warm or _warm_up(pool, settings)
        data, series = combine(parts)
        warm.result()
    return _fit_months(data, series, window, settings, names)


def _fit_months(data: pl.DataFrame, series: pl.DataFrame, window: Window, settings: Settings,
                names: dict[str, str]) -> pl.DataFrame:
    if data.height == 0:
        return empty_output()
    features = data.select(list(FEATURES)).to_numpy()
    periods, usd_now = data["period"].to_numpy(), data["usd"].to_numpy()
    fits = []  # (test rows, training rows) of each month, one fit per month
    for current in data.filter(pl.col("period") >= window.start)["period"].unique().sort():
        # one fit per month: a month never learns from later months
        train_from = np.searchsorted(periods, np.datetime64(months_back(current, settings.train_months - 1)))
        month_from = np.searchsorted(periods, np.datetime64(current), side="left")
        month_to = np.searchsorted(periods, np.datetime64(current), side="right")
        test = month_from + np.flatnonzero(usd_now[month_from:month_to] >= settings.min_usd)
        train = features[train_from:month_to]
        if len(test) == 0 or len(train) < 50:
            continue
        if len(train) > settings.max_train_rows:  # the tails of a large sample are the same tails
            train = train[_month_sample(len(train), settings.max_train_rows, settings.seed, current)]
        fits.append((test, train))

    def fit(test_train):  # the rows rare enough to report: (row, tail, top two features)
        test, train = test_train
        tail, contrib = _score_month(train, features[test], settings)
        rare = tail <= settings.max_tail
        return test[rare], tail[rare], np.argsort(-contrib[rare], axis=1)[:, :2]

    # months are independent and the models' NumPy work releases the GIL: two at a time
    with ThreadPoolExecutor(FIT_THREADS) as pool:
        found = list(pool.map(fit, fits))
    if not found:
        return empty_output()
    rows, tail, top = (np.concatenate(part) for part in zip(*found, strict=True))
    if len(rows) == 0:
        return empty_output()
    reasons = np.array(list(FEATURES))[top]
    df = data.select(pl.all().gather(rows)).with_columns(pl.Series("tail", tail), pl.Series("reason_1", reasons[:, 0]),
                                 pl.Series("reason_2", reasons[:, 1]))
    df = df.join(series.with_columns(pl.col("series_no").cast(df["series_no"].dtype)), on="series_no", how="left")
    return _alerts(df, settings, names)


def _alerts(df: pl.DataFrame, settings: Settings, countries: dict[str, str]) -> pl.DataFrame:
    feature_names = list(FEATURES)
    df = df.with_columns(
        (-pl.col("tail").log10()).alias("strength"),
        (pl.col("usd") - pl.col("usd_expected")).abs().alias("excess_usd"),
    ).with_columns(
        (scoring.evidence(pl.col("strength"), s0=2.0, scale=1.5) * scoring.size(pl.col("excess_usd"))
         * settings.weight * (0.7 + 0.15 * (pl.col("months_elevated") - 1).clip(0, 2))).clip(0, 1).alias("score"),
        pl.col("tail").alias("p_value"),   # the tail share among the training rows: a conformal p-value
        pl.lit("multivariate").alias("detector"),
        pl.col("importer").alias("destination"),
        *reporter_partner(),
        pl.col("usd").alias("observed"), pl.col("usd_expected").alias("expected"),
        pl.struct(feature_names + ["tail", "reason_1", "reason_2"]).struct.json_encode().alias("evidence"),
        pl.format("{} -> {} {} (HS {}) in {} ({}) is rarer than {} of corridor-months in the last {} months "
                  "({} model), mostly for its {} and its {}.",
                  name_of(pl.col("exporter"), countries), name_of(pl.col("importer"), countries),
                  commodity(), pl.col("hs_code"), month(pl.col("period")), usd(pl.col("usd")),
                  pl.format("1 in {}", (1 / pl.col("tail")).round(0).cast(pl.Int64)), settings.train_months,
                  pl.lit(settings.model.upper()),
                  pl.col("reason_1").replace_strict(FEATURES), pl.col("reason_2").replace_strict(FEATURES))
        .alias("explanation"),
    )
    return conform(df)


def detect(baselines: Baselines, window: Window, settings: Settings) -> pl.DataFrame:
    with ThreadPoolExecutor(1) as pool:
        warm = _warm_up(pool, settings)  # compiles while the features are built
        parts = [corridor_features(baselines, window, settings)]
        return reduce(parts, window, settings, baselines.country_names(), warm)


SPEC = DetectorSpec(
    name="multivariate",
    description="Corridor-months unusual on several measures at once (PyOD ECOD or IForest).",
    version="1.0",
    settings_class=Settings,
    detect=detect,
    family="volume",
    map_partition=corridor_features,
    reduce=reduce,
)
