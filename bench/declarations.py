"""Declaration-scoring benchmark: one month of new (uninspected) customs lines scored with a model
trained on twelve months of labelled history, each step in its own process with its peak RSS.

    python bench/declarations.py [--lines 1000000] [--history-months 12] [--history-lines 100000]
                                 [--out bench/results.md] [--data bench/data] [--work DIR]

The lines are generated in the KCS layout (loaded with the shipped KCS mapping): Zipf-like importers,
declarants, sellers and HS6 codes, prices and masses around each code's own level, and frauds
(about 20 %) more likely for some importers, routes and undervalued lines, so the model has
something to learn. The history holds the inspected lines of each past month (`--history-lines`, a
customs service inspecting about a tenth of its lines); the scored month holds `--lines` new lines
without labels. Steps: ingest of the history, ingest of the month, and `detector run --detector
declaration_risk` for that month (features over every line, LightGBM trained on the history, scores,
reasons, roll-up alerts and the per-line scores stored), then the same scoring again with its steps
timed one by one in one process (`--profile DB`: lines exported, features month by month, the
unsupervised model, LightGBM training, scoring in batches, ranking and roll-up, storing), each with
the process's peak RSS so far. The results go into their own section of the results file.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from detector.reference import reference_path  # noqa: E402

SCORED_MONTH = date(2025, 1, 1)
SECTION = "## Declaration scoring"


def _zipf(n: int, size: int, s: float, rng: np.random.Generator) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return rng.choice(n, size=size, p=w / w.sum())


def lines_frame(n: int, month: date, labelled: bool, seed: int) -> pl.DataFrame:
    """`n` KCS-layout lines dated in `month`, with Fraud / Critical Fraud when `labelled`."""
    rng = np.random.default_rng(seed)
    iso2 = pl.read_csv(reference_path("countries.csv"), comment_prefix="#").drop_nulls("iso2")["iso2"].to_numpy()
    iso2 = np.sort(iso2[iso2 != "KR"])
    base_rng = np.random.default_rng(0)  # the same codes, parties and price levels in every month
    hs_pool = np.array([f"{c:02d}{h:02d}{s:02d}" for c in range(1, 98) for h in (1, 2, 5, 11)
                        for s in (10, 90)])
    hs_level = base_rng.normal(3.0, 1.5, len(hs_pool))          # log USD/kg of each code
    risky_importer = base_rng.random(20_000) < 0.15
    hs = _zipf(len(hs_pool), n, 0.8, rng)
    importer = _zipf(20_000, n, 0.9, rng)
    declarant = _zipf(3_000, n, 0.9, rng)
    seller = _zipf(60_000, n, 0.7, rng)
    origin = iso2[_zipf(len(iso2), n, 1.2, rng)]
    via_hub = rng.random(n) < 0.12
    departure = np.where(via_hub, np.array(["HK", "SG", "AE", "MY"])[rng.integers(0, 4, n)], origin)
    mass = np.round(np.exp(rng.normal(5, 2, n)), 1)
    undervalued = rng.random(n) < 0.1
    log_uv = hs_level[hs] + rng.normal(0, 0.5, n) - np.where(undervalued, 1.2, 0.0)
    price = np.round(np.exp(log_uv) * mass / 0.000847, 1)        # KRW (the mapping's rate)
    logit = -1.8 + 1.5 * risky_importer[importer] + 0.8 * via_hub + 1.2 * undervalued
    fraud = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[month.month - 1]
    dates = np.datetime64(month) + rng.integers(0, days, n).astype("timedelta64[D]")
    frame = pl.DataFrame({
        "Declaration ID": pl.int_range(n, eager=True),
        "Date": np.datetime_as_string(dates, unit="D"),
        "Office ID": rng.integers(10, 60, n).astype(str),
        "Process Type": np.array(["A", "B", "C"])[rng.integers(0, 3, n)],
        "Import Type": rng.integers(11, 30, n).astype(str),
        "Import Use": rng.integers(21, 24, n).astype(str),
        "Payment Type": rng.integers(11, 45, n).astype(str),
        "Mode of Transport": np.array(["10", "40", "50"])[rng.integers(0, 3, n)],
        "Declarant ID": declarant,
        "Importer ID": importer,
        "Seller ID": seller,
        "Courier ID": "",
        "HS6 Code": hs_pool[hs],
        "Country of Departure": departure,
        "Country of Origin": origin,
        "Tax Rate": np.round(rng.choice([0.0, 3.0, 6.5, 8.0], n), 1),
        "Tax Type": np.array(["A", "C", "FCN1", "FEU1", "FUS1"])[rng.integers(0, 5, n)],
        "Country of Origin Indicator": np.array(["Y", "G", "B", "E"])[rng.integers(0, 4, n)],
        "Net Mass": mass,
        "Item Price": price,
    })
    frame = frame.with_columns(  # identifiers as text, as a customs extract has them
        pl.format("{}-{}", pl.lit(f"{month:%y%m}"), pl.col("Declaration ID").cast(pl.String).str.zfill(8))
        .alias("Declaration ID"),
        pl.format("D{}", pl.col("Declarant ID").cast(pl.String).str.zfill(5)).alias("Declarant ID"),
        pl.format("I{}", pl.col("Importer ID").cast(pl.String).str.zfill(6)).alias("Importer ID"),
        pl.format("S{}", pl.col("Seller ID").cast(pl.String).str.zfill(6)).alias("Seller ID"),
    )
    if labelled:
        frame = frame.with_columns(pl.Series("Fraud", fraud), pl.Series("Critical Fraud", fraud * 2))
    return frame


def generate(folder: Path, lines: int, history_months: int, history_lines: int) -> tuple[Path, Path]:
    """history.csv (labelled lines of the months before the scored one) and month.csv (new lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    history = folder / f"declarations_history_{history_months}x{history_lines}.csv"
    month = folder / f"declarations_month_{lines}.csv"
    if not history.exists():
        parts = []
        for k in range(history_months, 0, -1):
            m = SCORED_MONTH.month - k
            start = date(SCORED_MONTH.year + (m - 1) // 12, (m - 1) % 12 + 1, 1)
            parts.append(lines_frame(history_lines, start, labelled=True, seed=k))
        pl.concat(parts).write_csv(history)
    if not month.exists():
        lines_frame(lines, SCORED_MONTH, labelled=False, seed=0).write_csv(month)
    return history, month


def run_step(cmd: list[str], env: dict) -> tuple[float, int, str | None]:
    """(seconds, peak RSS in bytes of the child alone, None or the failure's last line)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode(errors="replace").strip()
    failed = None if os.waitstatus_to_exitcode(status) == 0 else (text.splitlines() or ["(no output)"])[-1]
    return seconds, usage.ru_maxrss * 1024, failed


def profile(db: Path) -> None:
    """The scoring of the bench month step by step in this process: one line per step, seconds and the
    peak RSS so far (DuckDB's memory is in the process too)."""
    import resource

    from detector.declarations.models import rank_lines, score_months
    from detector.declarations.monthly_features import MonthlyFeatures
    from detector.detectors import declaration_risk
    from detector.months import Window
    from detector.runner import open_baselines
    from detector.warehouse import Warehouse

    clock = time.perf_counter()

    def step(name: str, seconds: float | None = None) -> None:
        nonlocal clock
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(f"STEP|{name}|{seconds if seconds is not None else time.perf_counter() - clock:.1f}|{peak}", flush=True)
        clock = time.perf_counter()

    wh = Warehouse.open(db)
    window = Window(SCORED_MONTH, SCORED_MONTH)
    settings = declaration_risk.Settings()
    fopts, mopts = declaration_risk._options(settings)
    with open_baselines(wh, window, partitioned=False) as lines, wh.lend_memory():
        step("declaration lines exported to Parquet")
        feats = MonthlyFeatures.build(lines.connection(), fopts, lines.folder / "features",
                                      f"period <= DATE '{SCORED_MONTH.isoformat()}'")
        step(f"feature build ({len(feats.months)} months, one query each)")
        timings: dict[str, float] = {}
        scored = score_months(feats, [SCORED_MONTH], mopts, batch_lines=settings.batch_lines, timings=timings,
                              explain_share=max(settings.explain_share, settings.budget_share))
        explained = max(settings.explain_share, settings.budget_share)
        for name, label in (("unsupervised", "unsupervised model (ECOD, exploration ranking)"),
                            ("training", "LightGBM training on the labelled history"),
                            ("scoring", f"scoring, {settings.batch_lines:,} lines a batch"),
                            ("reasons", f"reasons (TreeSHAP) for the top {explained:.0%} of the order")):
            step(label, timings.get(name, 0.0))
        clock = time.perf_counter()
        ranked = rank_lines(scored, mopts, by="period")
        alerts = declaration_risk._alerts(feats, ranked, settings)
        step(f"ranking and roll-up ({alerts.height} alerts)")
        per_line = declaration_risk._lines(ranked).with_columns(run_id=pl.lit("bench"))
        with wh.transaction() as con:
            con.execute("DELETE FROM declaration_scores WHERE period = ?", [SCORED_MONTH])
            con.register("per_line", per_line)
            con.execute("INSERT INTO declaration_scores BY NAME SELECT * FROM per_line")
            con.unregister("per_line")
        step(f"storing the {per_line.height:,} per-line scores")
    wh.close()


def machine() -> str:
    import duckdb
    import lightgbm

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    ram = next((int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    return (f"CPU {cpu}, cores {os.cpu_count()}, RAM {ram / 2**30:.0f} GiB, python {platform.python_version()}, "
            f"duckdb {duckdb.__version__}, polars {pl.__version__}, lightgbm {lightgbm.__version__}")


def write_section(path: Path, text: str) -> None:
    """Replace (or append) the declaration-scoring section of the results file."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    if SECTION in old:
        head, rest = old.split(SECTION, 1)
        after = rest.find("\n## ")
        old = head.rstrip("\n") + "\n\n" + (rest[after + 1:] if after >= 0 else "")
    path.write_text(old.rstrip("\n") + "\n\n" + text)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000, help="new lines in the scored month")
    ap.add_argument("--history-months", type=int, default=12, help="labelled months before it")
    ap.add_argument("--history-lines", type=int, default=100_000, help="labelled lines per history month")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results.md")
    ap.add_argument("--data", type=Path, default=ROOT / "bench" / "data")
    ap.add_argument("--work", type=Path, default=None, help="folder for the warehouse (default: a temporary one)")
    ap.add_argument("--profile", type=Path, default=None, help=argparse.SUPPRESS)  # the timed steps, on this warehouse
    args = ap.parse_args(argv)
    if args.profile:
        profile(args.profile)
        return
    history, month = generate(args.data, args.lines, args.history_months, args.history_lines)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        db = Path(work) / "declarations.duckdb"
        cli = [sys.executable, "-m", "detector", "--db", str(db)]
        steps = [
            (f"ingest declarations: history ({args.history_months} x {args.history_lines:,} labelled lines)",
             [*cli, "ingest", "declarations", str(history)], args.history_months * args.history_lines),
            (f"ingest declarations: the month ({args.lines:,} new lines)",
             [*cli, "ingest", "declarations", str(month)], args.lines),
            (f"run --detector declaration_risk for {SCORED_MONTH:%Y-%m}",
             [*cli, "run", "--detector", "declaration_risk", "--from", f"{SCORED_MONTH:%Y-%m}",
              "--to", f"{SCORED_MONTH:%Y-%m}"], args.lines),
        ]
        rows, detail = [], []
        for label, cmd, n in steps:
            seconds, peak, failed = run_step(cmd, env)
            print(f"{label}: {seconds:.1f} s, peak RSS {peak / 2**20:,.0f} MiB{' FAILED: ' + failed if failed else ''}",
                  flush=True)
            rate = f"{n / seconds:,.0f}" if not failed else "failed: " + failed.replace("|", "/")[:200]
            rows.append(f"| {label} | {seconds:.1f} s | {rate} | {peak / 2**20:,.0f} MiB |")
            if failed:
                break
        else:
            text = subprocess.run([sys.executable, __file__, "--profile", str(db)], env=env, capture_output=True,
                                  text=True).stdout
            for line in text.splitlines():
                if line.startswith("STEP|"):
                    _, name, seconds, peak = line.split("|")
                    print(f"  {name}: {seconds} s, peak RSS so far {int(peak) / 2**20:,.0f} MiB", flush=True)
                    detail.append(f"| {name} | {seconds} s | {int(peak) / 2**20:,.0f} MiB |")
    text = "\n".join([
        SECTION, "",
        f"Generated by `make bench-declarations` (`bench/declarations.py`): {args.lines:,} new customs lines of "
        f"one month in the KCS layout, scored with LightGBM trained on {args.history_months} months of "
        f"{args.history_lines:,} labelled lines each (the inspected lines of a service inspecting about a tenth); "
        "each step in its own process, timed whole, with that process's peak RSS.", "",
        f"Machine: {machine()}.", "",
        "| Step | Time | Lines/s | Peak RSS |", "|---|---:|---:|---:|", *rows, "",
        *(["The run's scoring again, step by step in one process (`bench/declarations.py --profile DB`), with the "
           "process's peak RSS so far after each step:", "",
           "| Step of the scoring | Time | Peak RSS so far |", "|---|---:|---:|", *detail, ""] if detail else [])])
    write_section(args.out, text)


if __name__ == "__main__":
    main()
