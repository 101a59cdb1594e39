"""World-scale benchmark: ingest, detector run over every HS code, report and export of a
generated world's monthly HS6 trade, against the same baseline statistics in plain pandas.

    python bench/run.py [--rows 20000000] [--scales 5000000,20000000] [--repeat 3] [--out bench/results.md]

The Comtrade-format CSV (about 5,000 HS6 codes with the watchlist's, about 200 economies, 36
months, sparse Zipf-like corridors reported by both sides, plus the World total of each reporter,
flow, code and month, about a fifth of the rows) is generated once per size into bench/data/ and
reused. Each step runs the CLI in a child process, timed as a whole, with that child's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from statistics import median

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.memory_load import run_child  # noqa: E402
from detector.reference import reference_path  # noqa: E402

MONTHS = 36
FIRST_MONTH = date(2022, 1, 1)
N_CODES = 5_000
N_ECONOMIES = 200
WORLD_SHARE = 0.2  # of the file's rows: World totals, rejected by the loader as aggregates
DATA = ROOT / "bench" / "data"


# ----------------------------------------------------------------------------- the generated world
def hs_codes(n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` distinct, realistic HS6 codes: chapters 01-97 (no 77), headings and subheadings as the
    nomenclature spells them, and every watched or code-shift code."""
    watched = pl.read_csv(reference_path("watchlist.csv"), schema_overrides={"hs_prefix": pl.String})["hs_prefix"]
    pairs = pl.read_csv(reference_path("code_shift_pairs.csv"), infer_schema=False)
    must = set()
    for prefix in watched.to_list() + pairs["from_code"].to_list() + pairs["to_code"].to_list():
        must |= {prefix[:6]} if len(prefix) >= 6 else {prefix + "10", prefix + "90"}
    chapters = np.array([c for c in range(1, 98) if c != 77])
    subs = np.array([10, 11, 12, 19, 20, 21, 29, 30, 31, 39, 40, 50, 60, 90, 91, 99])
    pool = {f"{c:02d}{h:02d}{s:02d}" for c in chapters for h in range(1, 31) for s in subs}
    rest = sorted(pool - must)
    picked = rng.choice(len(rest), size=n - len(must), replace=False)
    return np.array(sorted(must | {rest[i] for i in picked}))


def zipf_weights(n: int, s: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf-like shares over `n` items in random order (a few big traders or codes, a long tail)."""
    w = 1.0 / np.arange(1, n + 1) ** s
    return rng.permutation(w / w.sum())


def world_frame(rows: int, seed: int = 1) -> pl.DataFrame:
    """About `rows` Comtrade rows: corridor-months reported by the importer (M, CIF) and the
    exporter (X, FOB), and each reporter's World total per flow, code and month."""
    rng = np.random.default_rng(seed)
    codes = hs_codes(N_CODES, rng)
    countries = (pl.read_csv(reference_path("countries.csv"), comment_prefix="#").drop_nulls("comtrade_code")
                 ["comtrade_code"].cast(pl.Int64).unique().sort().to_numpy())
    economies = rng.choice(countries, size=min(N_ECONOMIES, len(countries)), replace=False)
    n_e = len(economies)
    # Corridors: Zipf-like codes, exporters and importers; each active in a share of the months.
    corridor_months = int(rows * (1 - WORLD_SHARE) / 1.8 * 1.3)
    n_corr = int(corridor_months / (MONTHS * 0.45))
    hs = rng.choice(len(codes), size=n_corr, p=zipf_weights(len(codes), 0.9, rng))
    ex = rng.choice(n_e, size=n_corr, p=zipf_weights(n_e, 1.1, rng))
    im = rng.choice(n_e, size=n_corr, p=zipf_weights(n_e, 0.9, rng))
    corr = (pl.DataFrame({"hs": hs, "ex": ex, "im": im}).filter(pl.col("ex") != pl.col("im"))
            .unique(maintain_order=True))
    n_corr = corr.height
    activity = np.clip(rng.beta(0.8, 1.0, n_corr), 0.05, 1.0)
    scale = rng.lognormal(10, 2.0, n_corr)
    price = np.exp(rng.normal(1.5, 1.5, len(codes)))  # USD per kg by code
    cid = np.repeat(np.arange(n_corr), MONTHS)
    month = np.tile(np.arange(MONTHS), n_corr)
    keep = rng.random(cid.size) < activity[cid]
    cid, month = cid[keep], month[keep]
    k = cid.size
    fob = np.round(scale[cid] * rng.lognormal(0, 0.5, k), 2)
    kg = np.round(fob / (price[corr["hs"].to_numpy()[cid]] * rng.lognormal(0, 0.2, k)), 1)
    cif = np.round(fob * 1.06 * rng.lognormal(0, 0.1, k), 2)
    m_side, x_side = rng.random(k) < 0.9, rng.random(k) < 0.9
    hs_i, ex_i, im_i = (corr[c].to_numpy()[cid] for c in ("hs", "ex", "im"))
    sides = pl.concat([
        pl.DataFrame({"cid": cid, "month": month, "hs": hs_i, "reporter": im_i, "partner": ex_i,
                      "flow": "M", "value": cif, "kg": kg}).filter(pl.Series(m_side)),
        pl.DataFrame({"cid": cid, "month": month, "hs": hs_i, "reporter": ex_i, "partner": im_i,
                      "flow": "X", "value": fob, "kg": kg}).filter(pl.Series(x_side)),
    ])
    # Cut whole corridors (random order) so that the file, World rows included, is about `rows` long.
    group = ["reporter", "flow", "hs", "month"]
    order = rng.permutation(n_corr)
    per_corridor = np.bincount(sides["cid"].to_numpy(), minlength=n_corr)[order]
    n_keep = int(np.searchsorted(np.cumsum(per_corridor), rows * (1 - WORLD_SHARE)))
    sides = sides.filter(pl.col("cid").is_in(pl.Series(order[:n_keep]).implode())).drop("cid")
    # World totals of a sample of the reporter-code-months (a generated world is sparser than the
    # real one, where each total sums many partners), so that they make WORLD_SHARE of the rows.
    world = sides.group_by(group).agg(pl.col("value").sum().round(2), pl.col("kg").sum().round(1)).with_columns(
        pl.lit(-1, dtype=pl.Int64).alias("partner"))
    wanted = int(sides.height * WORLD_SHARE / (1 - WORLD_SHARE))
    world = world.sort(group).sample(n=min(wanted, world.height), seed=seed)
    df = pl.concat([sides, world.select(sides.columns)]).sort("month", "reporter", "flow", "hs", "partner")
    period = pl.Series(np.array([(FIRST_MONTH.year + (FIRST_MONTH.month - 1 + m) // 12) * 100
                                 + (FIRST_MONTH.month - 1 + m) % 12 + 1 for m in range(MONTHS)]))
    is_import = pl.col("flow") == "M"
    return df.select(
        pl.lit("M").alias("freqCode"),
        pl.col("month").replace_strict(pl.Series(range(MONTHS)), period).alias("period"),
        pl.col("reporter").replace_strict(pl.Series(range(n_e)), pl.Series(economies)).alias("reporterCode"),
        pl.col("flow").alias("flowCode"),
        pl.when(pl.col("partner") < 0).then(0)
        .otherwise(pl.col("partner").replace_strict(pl.Series(range(n_e)), pl.Series(economies), default=0))
        .alias("partnerCode"),
        pl.lit(0).alias("partner2Code"),
        pl.lit("H6").alias("classificationCode"),
        pl.col("hs").replace_strict(pl.Series(range(len(codes))), pl.Series(codes)).alias("cmdCode"),
        pl.lit("C00").alias("customsCode"),
        pl.lit(0).alias("motCode"),
        pl.col("kg").alias("netWgt"),
        pl.when(is_import).then(pl.col("value")).alias("cifvalue"),
        pl.when(is_import).then(None).otherwise(pl.col("value")).alias("fobvalue"),
        pl.col("value").alias("primaryValue"),
    )


def generated(rows: int, folder: Path = DATA) -> Path:
    """The world file of about `rows` rows, generated on first use and reused after."""
    path = folder / f"comtrade_world_{rows}.csv"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        partial = path.with_suffix(".csv.part")
        world_frame(rows).write_csv(partial)
        partial.rename(path)
        print(f"generated {path} ({path.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - t0:.0f}s",
              flush=True)
    return path


if __name__ == "__main__":
    main()
