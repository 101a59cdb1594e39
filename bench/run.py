"""World-scale benchmark: ingest, detector run over every HS code, report and export of a
generated world's monthly HS6 trade, against the same baseline statistics in plain pandas.

    python bench/run.py [--rows 20000000] [--scales 5000000,20000000] [--repeat 3] [--out bench/results.md]

The Comtrade-format CSV (about 5,000 HS6 codes with the watchlist's, about 200 economies, 36
months, sparse Zipf-like corridors reported by both sides, plus the World total of each reporter,
flow, code and month, about a fifth of the rows) is generated once per size into bench/data/ and
reused. Each step runs the CLI in a child process, timed as a whole, with that child's peak RSS.
After the ingest, the floor under it is measured too (see ingest_floor); the run alternates with
the floor under it, a plain DuckDB query of the same statistic (see run_floor).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
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
    corridor_months = int(rows * (1 - WORLD_SHARE) / 1.8 * 1.7)  # more than needed: repeats drop out
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
    """The world file of about `rows` rows, generated on first use (in a child process) and reused.

    A child's peak RSS as the kernel reports it starts at its parent's: generating a large world in
    this process would inflate every step measured after it.
    """
    path = folder / f"comtrade_world_{rows}.csv"
    if not path.exists():
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--generate", str(rows), "--data", str(folder)],
                       check=True)
    return path


def generate(rows: int, folder: Path) -> None:
    path = folder / f"comtrade_world_{rows}.csv"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    partial = path.with_suffix(".csv.part")
    world_frame(rows).write_csv(partial)
    partial.rename(path)
    print(f"generated {path} ({path.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - t0:.0f}s", flush=True)

# ----------------------------------------------------------------------------- the pandas peer
def pandas_peer(csv_path: Path) -> None:
    """The 12-month trailing median/MAD robust z of log value per series, as a pandas user writes it.

    Series: (code, reporter, partner, flow), World rows left out; each month against the twelve
    before it (rolling over the sorted months, shifted by one), MAD floored as the detectors do.
    """
    import pandas as pd

    df = pd.read_csv(csv_path, usecols=["period", "reporterCode", "partnerCode", "flowCode", "cmdCode",
                                        "primaryValue"], dtype={"cmdCode": str})
    df = df[df["partnerCode"] != 0]
    df["lv"] = np.log1p(df["primaryValue"])
    df = df.sort_values(["cmdCode", "reporterCode", "partnerCode", "flowCode", "period"])
    series = df.groupby(["cmdCode", "reporterCode", "partnerCode", "flowCode"], sort=False)["lv"]
    before = series.shift(1)
    keys = [df["cmdCode"], df["reporterCode"], df["partnerCode"], df["flowCode"]]
    rolling = before.groupby(keys, sort=False).rolling(12, min_periods=1)
    med = rolling.median().reset_index(level=[0, 1, 2, 3], drop=True)
    mad = rolling.apply(lambda w: np.median(np.abs(w - np.median(w))), raw=True).reset_index(
        level=[0, 1, 2, 3], drop=True)
    df["z"] = (df["lv"] - med) / (1.4826 * np.maximum(mad, 0.15))
    print(f"pandas peer: {len(df):,} series rows, {int((df['z'].abs() >= 3).sum()):,} with |z| >= 3")


# ----------------------------------------------------------------------------- the ingest floor
FLOOR_READ = "floor: Polars read of the loader's columns"
FLOOR_STORE = "floor: insert of the valid rows into flows"
INGEST_ONE = "ingest comtrade, the one big file"
INGEST_MANY = "ingest comtrade, one file per reporter-year"
FLOOR_ONE = "floor: DuckDB typed read_csv into a table, one file"
FLOOR_MANY = "floor: DuckDB typed read_csv into a table, file list"


def ingest_floor(csv_path: Path, db: Path) -> None:
    """What any loader of this file pays before validating anything, each part timed alone: the
    fastest CSV reader here (Polars, every core) reading the columns the loader reads, as text;
    and DuckDB storing the rows the load kept (from memory, typed) in an empty warehouse's
    `flows` in one transaction. Prints `name=seconds` lines for the parent."""
    import duckdb

    from detector.ingest.comtrade import USED_COLUMNS
    from detector.ingest.writing import FLOW_COLUMNS
    from detector.warehouse import Warehouse

    header = pl.read_csv(csv_path, n_rows=0).columns
    started = time.perf_counter()
    text = pl.read_csv(csv_path, columns=[c for c in header if c in USED_COLUMNS], infer_schema=False)
    print(f"read={time.perf_counter() - started:.3f} rows={text.height}")
    del text
    with duckdb.connect(str(db), read_only=True) as source:
        valid = source.sql(f"SELECT {', '.join(FLOW_COLUMNS)} FROM flows").to_arrow_table()
    target = db.with_name(f"{db.stem}_floor.duckdb")
    with Warehouse.open(target) as wh:
        wh.con.register("valid", valid)
        started = time.perf_counter()
        with wh.transaction() as con:
            con.execute(f"INSERT INTO flows ({', '.join(FLOW_COLUMNS)}) SELECT * FROM valid")
        print(f"store={time.perf_counter() - started:.3f} rows={valid.num_rows}")
    for leftover in (target, Path(f"{target}.wal")):
        leftover.unlink(missing_ok=True)
    shutil.rmtree(f"{target}.tmp", ignore_errors=True)


# ----------------------------------------------------------------------------- the run floor
RUN_STEP = "run --all-codes"
FLOOR_RUN = "floor: DuckDB 12-month trailing median/MAD z per series"
FLOOR_RUN_ROWS = "floor: the same over the last 12 reported months (ROWS frame)"

# The least a run over every code pays: the robust z of each month's log value against the 12
# months before it, per (reporter, partner, flow, code) series of the flows the run reads (the
# preferred source's monthly rows), as one plain DuckDB query. {frame}: calendar months (the
# run's own statistic) or the last 12 reported rows (cheaper, not the same months on gappy series).
RUN_FLOOR_SQL = """
WITH series AS (
    SELECT reporter, partner, flow, hs_code, period, ln(1 + value_usd) AS lv
    FROM flows_preferred
    WHERE freq = 'M' AND flow IN ('M', 'X')
),
stats AS (
    SELECT lv, median(lv) OVER w12 AS lv_med, mad(lv) OVER w12 AS lv_mad
    FROM series
    WINDOW w12 AS (PARTITION BY reporter, partner, flow, hs_code ORDER BY period {frame})
)
SELECT count(*) AS months, count(lv_med) AS scored,
       count(*) FILTER (WHERE abs((lv - lv_med) / (1.4826 * greatest(lv_mad, 0.15))) >= 3) AS flagged
FROM stats
"""
RUN_FLOOR_FRAMES = {
    "months": "RANGE BETWEEN INTERVAL 12 MONTH PRECEDING AND INTERVAL 1 MONTH PRECEDING",
    "rows": "ROWS BETWEEN 12 PRECEDING AND 1 PRECEDING",
}


def run_floor(db: Path, frame: str) -> None:
    """RUN_FLOOR_SQL over a loaded warehouse (read only), in this process: the parent times the
    whole process, as it times `detector run`. Prints `floor=seconds` (the query alone)."""
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        started = time.perf_counter()
        months, scored, flagged = con.sql(RUN_FLOOR_SQL.format(frame=RUN_FLOOR_FRAMES[frame])).fetchall()[0]
    print(f"floor={time.perf_counter() - started:.3f} months={months} scored={scored} flagged={flagged}")


def bench_run(db: Path, rows: int, repeat: int, done) -> None:
    """`detector run --all-codes` and the floors under it, alternated run by run so that the load
    of a shared machine falls on all of them alike."""
    steps = {RUN_STEP: lambda: detector_cmd(db, "run", "--all-codes"),
             FLOOR_RUN: lambda: [sys.executable, str(Path(__file__).resolve()), "--run-floor", str(db), "months"],
             FLOOR_RUN_ROWS: lambda: [sys.executable, str(Path(__file__).resolve()), "--run-floor", str(db), "rows"]}
    runs = {label: [] for label in steps}
    for _ in range(repeat):
        for label, make_cmd in steps.items():
            runs[label].append(measure(label, make_cmd, 1))
    for label, measured in runs.items():
        done({"step": label, "seconds": median(r["seconds"] for r in measured), "runs": repeat,
              "peak": max(r["peak"] for r in measured), "output": measured[-1]["output"], "rows": rows})


def split_world(csv_path: Path) -> list[Path]:
    """The world file split as a download comes, one file per reporter and year (about 600 files),
    written once into a folder beside it and reused; the files in name order.

    The split reads the whole file, so it runs in a child process, as `generated` does: in this
    process it would raise the peak RSS every later step reports (10 GB at 20M rows)."""
    folder = _split_folder(csv_path)
    if not (folder / ".complete").exists():
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--split", str(csv_path)], check=True)
    return sorted(folder.glob("comtrade_*.csv"))


def _split_folder(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.stem + "_by_reporter_year")


def split(csv_path: Path) -> None:
    folder = _split_folder(csv_path)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    df = pl.read_csv(csv_path, infer_schema=False)
    df = df.with_columns(pl.col("period").str.slice(0, 4).alias("_year"))
    for (reporter, year), part in df.group_by(["reporterCode", "_year"], maintain_order=True):
        part.drop("_year").write_csv(folder / f"comtrade_{int(reporter):03d}_{year}.csv")
    (folder / ".complete").write_text("")


def read_csv_floor(paths: list[Path], db: Path) -> None:
    """DuckDB's own typed read_csv of `paths` (one file or a file list) into a table of a new
    database file, in one transaction: the floor under any load of those files. Prints `floor=seconds`."""
    import duckdb

    for leftover in (db, Path(f"{db}.wal")):
        leftover.unlink(missing_ok=True)
    with duckdb.connect(str(db)) as con:
        started = time.perf_counter()
        con.execute("BEGIN")
        con.execute("CREATE TABLE t AS SELECT * FROM read_csv(?, header = true)", [[str(p) for p in paths]])
        con.execute("COMMIT")
        seconds = time.perf_counter() - started
        rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
    for leftover in (db, Path(f"{db}.wal")):
        leftover.unlink(missing_ok=True)
    print(f"floor={seconds:.3f} rows={rows}")


PARTS = "part of the one-file load"


def ingest_parts(csv_path: Path, db: Path) -> None:
    """The one-file Comtrade load cut into its parts, each statement timed alone in a new warehouse
    with the loader's own SQL (read and parse before the transaction, as the loader does): read (DuckDB's reader, the used columns as text,
    rows numbered), parse and validate (typing, look-ups, reject reasons into `parsed`), store (the
    valid rows into `flows`), rejects (the rejected rows, with their text, into `rejects`).
    Prints `name=seconds` lines for the parent."""
    from detector.ingest import comtrade
    from detector.ingest.staging import stage_csv
    from detector.ingest.writing import FLOW_COLUMNS
    from detector.warehouse import Warehouse

    for leftover in (db, Path(f"{db}.wal")):
        leftover.unlink(missing_ok=True)
    cols = ", ".join(FLOW_COLUMNS)
    header: list[str] = []
    steps = [
        ("read", lambda con: header.extend(stage_csv(con, csv_path, comtrade._read_columns))),
        ("parse", lambda con: con.execute(comtrade._parse_sql(header, csv_path, "CREATE OR REPLACE TEMP TABLE parsed AS"))),
        ("store", lambda con: con.execute(
            comtrade.CANDIDATES_SQL.format(load_id="'comtrade-0000000000000000'")).execute(
            f"INSERT INTO flows ({cols}) SELECT {cols} FROM candidate_flows")),
        ("rejects", lambda con: con.execute(
            """INSERT INTO rejects (load_id, file, line, raw, reason)
               SELECT 'comtrade-0000000000000000', ?, row_no + 1, raw, reject_reason
               FROM parsed WHERE reject_reason IS NOT NULL""", [str(csv_path)])),
    ]
    with Warehouse.open(db) as wh:
        for name, step in steps[:2]:  # as the loader does: read and parse before the file's transaction
            started = time.perf_counter()
            step(wh.con)
            print(f"{name}={time.perf_counter() - started:.3f}", flush=True)
        with wh.transaction() as con:
            for name, step in steps[2:]:
                started = time.perf_counter()
                step(con)
                print(f"{name}={time.perf_counter() - started:.3f}", flush=True)
    for leftover in (db, Path(f"{db}.wal")):
        leftover.unlink(missing_ok=True)


def data_rows(csv_path: Path) -> int:
    """Rows of a CSV file below its header, counted by newlines in 16 MB reads."""
    with open(csv_path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b"")) - 1


def remove_warehouse(db: Path) -> None:
    """The warehouse file, its WAL and its spill folder: each measured step starts from nothing."""
    for p in (db, Path(f"{db}.wal")):
        p.unlink(missing_ok=True)
    shutil.rmtree(f"{db}.tmp", ignore_errors=True)


def bench_ingest(rows: int, repeat: int, work: Path, data: Path, done) -> None:
    """`detector ingest comtrade` of the one big world file and of its ~600 reporter-year files,
    each against its floor: DuckDB's typed read_csv of the same file(s) into a table."""
    csv_path = generated(rows, data)
    files = split_world(csv_path)
    n = data_rows(csv_path)
    db = work / f"bench_ingest_{rows}.duckdb"

    def fresh():
        remove_warehouse(db)

    list_file = work / "files.txt"
    list_file.write_text("\n".join(str(f) for f in files))
    print(f"{n:,} rows in one file and in {len(files)} files", flush=True)
    cases = [(INGEST_ONE, [csv_path], FLOOR_ONE), (f"{INGEST_MANY} ({len(files)} files)", files,
                                                   f"{FLOOR_MANY} ({len(files)} files)")]
    for label, paths, floor_label in cases:
        done({**measure(label, lambda paths=paths: detector_cmd(db, "ingest", "comtrade", "--quiet",
                                                                *map(str, paths)), repeat, fresh), "rows": n})
        floors, peaks = [], []
        for _ in range(repeat):
            _, peak, out = run_child([sys.executable, str(Path(__file__).resolve()), "--read-csv-floor",
                                      str(work / "floor.duckdb"), *map(str, paths)],
                                     {**os.environ, "PYTHONPATH": str(ROOT)})
            floors.append(float(out.split("floor=")[1].split()[0]))
            peaks.append(peak)
            print(f"  {floor_label}: {floors[-1]:.1f}s", flush=True)
        done({"step": floor_label, "seconds": median(floors), "runs": repeat, "peak": max(peaks), "rows": n})
        if len(paths) == 1:  # where the one-file load's time goes, measured beside its floor
            parts: dict[str, list[float]] = {}
            for _ in range(repeat):
                _, peak, out = run_child([sys.executable, str(Path(__file__).resolve()), "--ingest-parts",
                                          str(paths[0]), str(work / "parts.duckdb")],
                                         {**os.environ, "PYTHONPATH": str(ROOT)})
                for line in out.split():
                    if "=" in line:
                        name, value = line.split("=", 1)
                        parts.setdefault(name, []).append(float(value))
            for name, values in parts.items():
                print(f"  {PARTS}, {name}: {median(values):.1f}s", flush=True)
                done({"step": f"{PARTS}, {name}", "seconds": median(values), "runs": repeat, "peak": peak, "rows": n})
    fresh()


# ----------------------------------------------------------------------------- the bench
def machine() -> dict[str, str]:
    import duckdb
    import pandas

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    ram = next((int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    return {"CPU": cpu, "cores": str(os.cpu_count()), "RAM": f"{ram / 2**30:.0f} GiB",
            "python": platform.python_version(), "duckdb": duckdb.__version__, "polars": pl.__version__,
            "pandas": pandas.__version__, "numpy": np.__version__}


def detector_cmd(db: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "detector", "--db", str(db), *args]


def measure(label: str, make_cmd, repeat: int, before=None) -> dict:
    """Median seconds and the largest peak RSS over `repeat` runs of one step."""
    seconds, peaks = [], []
    for _ in range(repeat):
        if before:
            before()
        s, peak, out = run_child(make_cmd(), {**os.environ, "PYTHONPATH": str(ROOT)})
        seconds.append(s)
        peaks.append(peak)
        print(f"  {label}: {s:.1f}s, peak RSS {peak / 2**20:,.0f} MiB", flush=True)
    return {"step": label, "seconds": median(seconds), "runs": repeat, "peak": max(peaks), "output": out}


def bench_scale(rows: int, repeat: int, work: Path, data: Path, pandas: bool, done) -> None:
    """Every step on the file of about `rows` rows; `done(result)` after each step."""
    csv_path = generated(rows, data)
    n = data_rows(csv_path)
    db = work / f"bench_{rows}.duckdb"

    def fresh():
        remove_warehouse(db)

    print(f"{n:,} rows ({csv_path.stat().st_size / 1e6:,.0f} MB)", flush=True)
    steps = [("ingest comtrade", lambda: detector_cmd(db, "ingest", "comtrade", str(csv_path)), repeat, fresh),
             (RUN_STEP, None, repeat, None),
             ("report (html)", lambda: detector_cmd(db, "report", "--format", "html", "--output",
                                                    str(work / "report.html")), repeat, None),
             ("export", lambda: detector_cmd(db, "export", "--out", str(work / "export")), repeat, None)]
    if pandas:
        steps.append(("pandas peer (median/MAD z)", lambda: [
            sys.executable, str(Path(__file__).resolve()), "--pandas-peer", str(csv_path)], 1, None))
    for label, make_cmd, runs, before in steps:
        if label == RUN_STEP:
            bench_run(db, n, runs, done)
            continue
        done({**measure(label, make_cmd, runs, before), "rows": n})
        if label == "ingest comtrade":  # the warehouse now holds the load's valid rows
            _, peak, out = run_child([sys.executable, str(Path(__file__).resolve()), "--ingest-floor", str(csv_path),
                                      str(db)], {**os.environ, "PYTHONPATH": str(ROOT)})
            seconds = dict(part.split("=") for part in out.split() if part.startswith(("read=", "store=")))
            print(f"  ingest floor: read {seconds['read']}s, store {seconds['store']}s", flush=True)
            done({"step": FLOOR_READ, "seconds": float(seconds["read"]), "runs": 1, "peak": peak, "rows": n})
            done({"step": FLOOR_STORE, "seconds": float(seconds["store"]), "runs": 1, "peak": peak, "rows": n})


def table(results: list[dict]) -> list[str]:
    lines = ["| Rows | Step | Time (median) | Runs | Rows/s | Peak RSS |", "|---:|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['rows']:,} | {r['step']} | {r['seconds']:.1f} s | {r['runs']} | "
                     f"{r['rows'] / r['seconds']:,.0f} | {r['peak'] / 2**20:,.0f} MiB |")
    return lines


def summary(results: list[dict]) -> list[str]:
    by = {(r["rows"], r["step"]): r for r in results}
    sizes = sorted({r["rows"] for r in results})
    out = []
    for n in sizes:
        ingest, run = by.get((n, "ingest comtrade")), by.get((n, "run --all-codes"))
        peer = by.get((n, "pandas peer (median/MAD z)"))
        if not run:
            continue
        parts = [f"{n:,} rows: ingest {ingest['seconds']:.1f} s ({n / ingest['seconds'] / 1e6:.2f}M rows/s)"
                 if ingest else f"{n:,} rows",
                 f"run of every detector over every code {run['seconds']:.1f} s (peak RSS "
                 f"{run['peak'] / 2**30:.1f} GiB)"]
        for floor_step in (FLOOR_RUN, FLOOR_RUN_ROWS):
            floor = by.get((n, floor_step))
            if floor:
                parts.append(f"run --all-codes / {floor_step.removeprefix('floor: ')} {floor['seconds']:.1f} s = "
                             f"{run['seconds'] / floor['seconds']:.2f}x")
        if peer:
            parts.append(f"plain pandas median/MAD baseline alone {peer['seconds']:.0f} s "
                         f"({peer['seconds'] / run['seconds']:.1f}x the whole run)")
        out.append("- " + "; ".join(parts) + ".")
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        ratios = ", ".join(f"{step} {by[(hi, step)]['seconds'] / by[(lo, step)]['seconds']:.1f}x"
                           for step in ("ingest comtrade", "run --all-codes", "report (html)", "export")
                           if (hi, step) in by and (lo, step) in by)
        out.append(f"- Growth from {lo:,} to {hi:,} rows ({hi / lo:.1f}x the data): {ratios}.")
    return out


# The targets on the 2-core, 24 GiB reference machine.
TARGET_INGEST_ROWS_S = 1_500_000
TARGET_RUN_SECONDS_20M = 45.0
TARGET_PEAK_BYTES = 4 * 10**9
TARGET_GROWTH = 4.5
TARGET_PEER_SPEEDUP = 10.0
TARGET_FLOOR_SHARE = 0.8  # ingest speed as a share of DuckDB's typed read_csv of the same files
TARGET_RUN_FLOOR = 1.5  # run --all-codes seconds / the floor's (a plain DuckDB median/MAD z per series)


def floor_ratios(results: list[dict]) -> list[str]:
    """Each ingest case against its floor: floor seconds / ingest seconds (1.0 = as fast as the floor)."""
    rows = []
    for n in sorted({r["rows"] for r in results}):
        for ingest_step, floor_step in ((INGEST_ONE, FLOOR_ONE), (INGEST_MANY, FLOOR_MANY)):
            ingest = next((r for r in results if r["rows"] == n and r["step"].startswith(ingest_step)), None)
            floor = next((r for r in results if r["rows"] == n and r["step"].startswith(floor_step)), None)
            if not (ingest and floor):
                continue
            share = floor["seconds"] / ingest["seconds"]
            status = "met" if share >= TARGET_FLOOR_SHARE else f"missed: {TARGET_FLOOR_SHARE / share:.2f}x too slow"
            rows.append(f"| {ingest['step']} >= {TARGET_FLOOR_SHARE}x its floor ({n:,} rows) | "
                        f"{ingest['seconds']:.1f} s vs {floor['seconds']:.1f} s = {share:.2f}x | {status} |")
        run = next((r for r in results if r["rows"] == n and r["step"] == RUN_STEP), None)
        for floor_step in (FLOOR_RUN, FLOOR_RUN_ROWS):
            floor = next((r for r in results if r["rows"] == n and r["step"] == floor_step), None)
            if not (run and floor):
                continue
            ratio = run["seconds"] / floor["seconds"]
            status = "met" if ratio <= TARGET_RUN_FLOOR else f"missed: {ratio / TARGET_RUN_FLOOR:.2f}x too slow"
            rows.append(f"| run --all-codes / {floor_step} <= {TARGET_RUN_FLOOR}x ({n:,} rows) | "
                        f"{run['seconds']:.1f} s vs {floor['seconds']:.1f} s = {ratio:.2f}x | {status} |")
    return rows


def targets(results: list[dict]) -> list[str]:
    """Each target against this run's figures, met or by how much it is missed."""
    by = {(r["rows"], r["step"]): r for r in results}
    sizes = sorted({r["rows"] for r in results})
    if not sizes:
        return []
    big, small = sizes[-1], sizes[0]
    rows = ["| Target | Measured | Status |", "|---|---|---|"]

    def verdict(ok: bool, short: str) -> str:
        return "met" if ok else f"missed: {short}"

    ingest = by.get((big, "ingest comtrade"))
    if ingest:
        rate = big / ingest["seconds"]
        rows.append(f"| ingest >= {TARGET_INGEST_ROWS_S / 1e6:.1f}M rows/s | {rate / 1e6:.2f}M rows/s ({big:,} rows) | "
                    f"{verdict(rate >= TARGET_INGEST_ROWS_S, f'{TARGET_INGEST_ROWS_S / rate:.1f}x too slow')} |")
    read, store = by.get((big, FLOOR_READ)), by.get((big, FLOOR_STORE))
    if ingest and read and store:
        floor = read["seconds"] + store["seconds"]
        rows.append(f"| (the floor under it: reading the file alone + storing its valid rows alone) | "
                    f"{read['seconds']:.1f} s + {store['seconds']:.1f} s = {big / floor / 1e6:.2f}M rows/s before any "
                    f"validation | {'below the target' if big / floor < TARGET_INGEST_ROWS_S else 'above the target'} |")
    run = by.get((big, "run --all-codes"))
    if run:
        limit, took = TARGET_RUN_SECONDS_20M * big / 20_000_000, run["seconds"]
        rows.append(f"| run, every detector, every code <= {limit:.0f} s at {big / 1e6:.1f}M rows "
                    f"({TARGET_RUN_SECONDS_20M:.0f} s per 20M) | {took:.1f} s | "
                    f"{verdict(took <= limit, f'{took / limit:.1f}x too slow')} |")
    steps = [r for r in results if r["rows"] == big and not r["step"].startswith(("pandas", "floor"))]
    if steps:
        worst = max(steps, key=lambda r: r["peak"])
        peak = worst["peak"]
        rows.append(f"| peak RSS <= {TARGET_PEAK_BYTES / 1e9:.0f} GB | {peak / 1e9:.2f} GB ({worst['step']}) | "
                    f"{verdict(peak <= TARGET_PEAK_BYTES, f'{peak / TARGET_PEAK_BYTES:.2f}x the budget')} |")
    if big != small:
        for step in ("ingest comtrade", "run --all-codes"):
            if (big, step) in by and (small, step) in by:
                growth = by[(big, step)]["seconds"] / by[(small, step)]["seconds"]
                allowed = TARGET_GROWTH * (big / small) / 4  # 4.5 for 4x the rows
                rows.append(f"| {step}: cost ratio <= {allowed:.2f} for {big / small:.2f}x the rows | {growth:.2f} | "
                            f"{verdict(growth <= allowed, f'{growth / allowed:.2f}x the allowed growth')} |")
    rows += floor_ratios(results)
    peer = by.get((big, "pandas peer (median/MAD z)"))
    if peer and run:
        speedup = peer["seconds"] / run["seconds"]
        rows.append(f"| whole run >= {TARGET_PEER_SPEEDUP:.0f}x faster than the pandas baseline alone | "
                    f"{speedup:.1f}x ({peer['seconds']:.0f} s vs {run['seconds']:.0f} s) | "
                    f"{verdict(speedup >= TARGET_PEER_SPEEDUP, f'{TARGET_PEER_SPEEDUP / speedup:.1f}x short')} |")
    return rows


INGEST_INTRO = [
    "Generated by `python bench/run.py --ingest-only`: the generated world's Comtrade-format CSV loaded",
    "by `detector ingest comtrade` as one big file, and the same rows as one file per reporter and",
    "year (as a download comes), each in its own process into a new warehouse, timed whole. Each",
    "`floor` row is DuckDB's own typed `read_csv` of the same file or file list into a table of a",
    "new database file, in one transaction: no validation, no rejects, no de-duplication.",
    "The `part of the one-file load` rows cut the one-file load into its statements, each timed alone",
    "in a new warehouse with the loader's own SQL (DuckDB's reader staging the",
    "used columns as text; the parse and validation into `parsed`; the valid rows into `flows`; the",
    "rejected rows with their text into `rejects`), measured in the same run as the floor.", ""]


def ingest_parts_rows(results: list[dict]) -> list[str]:
    """What the one-file load pays besides validating, against its floor: its read, store and rejects
    alone, and the parse and validation alone."""
    rows = []
    for n in sorted({r["rows"] for r in results}):
        parts = {r["step"].removeprefix(f"{PARTS}, "): r["seconds"] for r in results
                 if r["rows"] == n and r["step"].startswith(PARTS)}
        floor = next((r["seconds"] for r in results if r["rows"] == n and r["step"] == FLOOR_ONE), None)
        if floor is None or not {"read", "parse", "store", "rejects"} <= set(parts):
            continue
        io = parts["read"] + parts["store"] + parts["rejects"]
        rows.append(f"| one file, read + store + rejects alone, no validation ({n:,} rows) | "
                    f"{parts['read']:.1f} + {parts['store']:.1f} + {parts['rejects']:.1f} = {io:.1f} s vs floor "
                    f"{floor:.1f} s = {floor / io:.2f}x | the least a load that keeps its rejects pays |")
        rows.append(f"| one file, parse and validation alone ({n:,} rows) | {parts['parse']:.1f} s = "
                    f"{parts['parse'] / floor:.2f}x the floor | left for it under 0.8x: "
                    f"{max(floor / TARGET_FLOOR_SHARE - io, 0):.1f} s |")
    return rows


def write_results(path: Path, results: list[dict], repeat: int) -> None:
    info = machine()
    if all(r["step"].startswith(("ingest comtrade,", "floor: DuckDB", PARTS)) for r in results):
        lines = ["# Benchmark results: ingest of one file and of many", "", *INGEST_INTRO,
                 "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + ".",
                 f"Runs per step: {repeat} (median).", "", *table(results), "",
                 "## Against the targets", "", *targets(results), *ingest_parts_rows(results), ""]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines))
        return
    if all(r["step"] in (RUN_STEP, FLOOR_RUN, FLOOR_RUN_ROWS) for r in results):
        lines = ["# Benchmark results: run --all-codes against its floor", "",
                 "Generated by `python bench/run.py --run-only DB`: `detector run --all-codes` over a loaded",
                 "warehouse and the floors under it (`run_floor`: one plain DuckDB query, the robust z of each",
                 "month's log value against the 12 months before it per reporter, partner, flow and code, over",
                 "the flows the run reads), each in its own process, timed whole, alternated run by run.", "",
                 "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + ".",
                 f"Runs per step: {repeat} (median).", "", *table(results), "",
                 "## Summary", "", *summary(results), "", "## Against the targets", "", *targets(results), ""]
        for r in results:
            if r["step"] == RUN_STEP:
                lines += ["Last run's own account:", "", "```", *r["output"].splitlines(), "```", ""]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines))
        return
    lines = ["# Benchmark results", "",
             "Generated by `make bench` (`bench/run.py`): a world-scale Comtrade-format CSV (about 5,000 HS6",
             "codes, 200 economies, 36 months, Zipf-like corridors reported by both sides, a fifth of the rows",
             "World totals), then each step in its own process, timed whole, with that process's peak RSS.",
             "The two `floor` rows are not steps of the product: the file read alone by Polars (the",
             "loader's columns, as text) and the load's valid rows stored alone in an empty warehouse's",
             "`flows` (from memory), the least any validated load into DuckDB pays. The run's `floor` rows: one",
             "plain DuckDB query of the robust z of each month's log value against the 12 months before it, per",
             "reporter, partner, flow and code, over the flows the run reads (`run_floor`), alternated with the run.", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + ".",
             f"Runs per step: {repeat} (median); the pandas peer runs once.", "", *table(results), "",
             "## Summary", "", *summary(results), "",
             "## Against the targets", "", *targets(results), "",
             "## Time per detector (last run --all-codes of each size)", "",
             "Inside each step, function by function: [profile.md](profile.md) (`bench/profile.py`).", ""]
    for r in results:
        if r["step"] == "run --all-codes":
            lines += [f"{r['rows']:,} rows:", "", "```", *r["output"].splitlines(), "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def bench_run_only(db: Path, repeat: int, out: Path) -> None:
    """The run and its floors over a warehouse loaded before (a copy: the run writes its alerts)."""
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.sql("SELECT sum(rows_read) FROM loads WHERE source = 'comtrade'").fetchall()[0][0] or 0
    results = []

    def done(result: dict) -> None:
        results.append(result)
        write_results(out, results, repeat)

    bench_run(db, int(rows), repeat, done)
    print("\n".join(table(results) + [""] + summary(results) + [""] + targets(results)))
    print(f"results written to {out}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=int(os.environ.get("ROWS", 20_000_000)),
                    help="largest size (default $ROWS or 20,000,000)")
    ap.add_argument("--scales", help="comma-separated sizes (default 5,000,000 and --rows)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per step (median; default 3)")
    ap.add_argument("--no-pandas", action="store_true", help="skip the pandas peer")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--data", type=Path, default=DATA, help="folder of the generated files (reused)")
    ap.add_argument("--work", type=Path, help="folder for warehouses and outputs (default: a temp folder)")
    ap.add_argument("--pandas-peer", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--split", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--ingest-floor", nargs=2, type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--ingest-only", action="store_true",
                    help="only the ingest cases: one big file and the same rows as one file per reporter-year, "
                         "each against DuckDB's typed read_csv of the same files (writes --out, default "
                         "bench/results_ingest.md)")
    ap.add_argument("--read-csv-floor", nargs="+", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--run-floor", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--run-only", type=Path, metavar="DB",
                    help="only the run and its floors, alternated, over an already loaded warehouse "
                         "(writes --out, default bench/results_run.md)")
    ap.add_argument("--ingest-parts", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.out = args.out or ROOT / "bench" / ("results_ingest.md" if args.ingest_only else
                                             "results_run.md" if args.run_only else "results.md")
    if args.run_floor:
        return run_floor(Path(args.run_floor[0]), args.run_floor[1])
    if args.read_csv_floor:
        return read_csv_floor(args.read_csv_floor[1:], args.read_csv_floor[0])
    if args.ingest_floor:
        return ingest_floor(*args.ingest_floor)
    if args.ingest_parts:
        return ingest_parts(*args.ingest_parts)
    if args.pandas_peer:
        return pandas_peer(args.pandas_peer)
    if args.generate:
        return generate(args.generate, args.data)
    if args.split:
        return split(args.split)
    if args.run_only:
        return bench_run_only(args.run_only, args.repeat, args.out)
    scales = ([int(x) for x in args.scales.split(",")] if args.scales
              else sorted({min(5_000_000, args.rows), args.rows}))
    work = args.work or Path(tempfile.mkdtemp(prefix="detector-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        def done(result: dict) -> None:  # the results file grows step by step
            results.append(result)
            write_results(args.out, results, args.repeat)

        for rows in scales:
            if args.ingest_only:
                bench_ingest(rows, args.repeat, work, args.data, done)
            else:
                bench_scale(rows, args.repeat, work, args.data, not args.no_pandas, done)
                bench_ingest(rows, args.repeat, work, args.data, done)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\n".join(table(results) + [""] + summary(results)))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
