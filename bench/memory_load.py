"""Peak memory and speed of `detector ingest comtrade` on a generated Comtrade CSV of N rows.

    python bench/memory_load.py --rows 5000000 [--memory-limit 1GB] [--keep DIR]

Generates the file with vectorised NumPy/Polars code (distinct flows keys, real Comtrade country
codes, some World and unknown-partner rows so the reject path runs too), then runs the CLI in a
child process and reports its peak resident set size (ru_maxrss of the child). The warehouse's
DuckDB connection caps its own memory at --memory-limit (DETECTOR_MEMORY_LIMIT) and spills the
rest next to the warehouse file; the figure to compare with is peak RSS / memory_limit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from detector.reference import reference_path
from detector.warehouse import DEFAULT_MEMORY_LIMIT

MONTHS = 60  # 2020-01 .. 2024-12
HS_CODES = 400


def generate(path: Path, rows: int, seed: int = 1) -> int:
    """Write `rows` Comtrade rows with distinct (reporter, partner, flow, hs, month) keys; returns bytes."""
    rng = np.random.default_rng(seed)
    codes = pl.read_csv(reference_path("countries.csv"), comment_prefix="#").drop_nulls("comtrade_code")
    countries = codes["comtrade_code"].cast(pl.Int64).unique().sort().to_numpy()
    n_c = len(countries)
    space = n_c * n_c * 2 * HS_CODES * MONTHS
    if rows > space:
        raise SystemExit(f"--rows at most {space:,} (distinct keys)")
    step = 2_654_435_761 % space  # i -> (i * step) mod space visits distinct keys when step is coprime
    while np.gcd(step, space) != 1:
        step += 1
    key = (np.arange(rows, dtype=np.int64) * step) % space
    key, month = np.divmod(key, MONTHS)
    key, hs = np.divmod(key, HS_CODES)
    key, flow = np.divmod(key, 2)
    rep, par = np.divmod(key, n_c)
    reporter, partner = countries[rep], countries[par]
    partner = np.where(rng.random(rows) < 0.02, 0, partner)       # World totals, rejected
    partner = np.where(rng.random(rows) < 0.005, 9999, partner)   # unknown code, rejected
    year, mon = 2020 + month // 12, month % 12 + 1
    period = year * 100 + mon
    value = np.round(rng.lognormal(10, 2, rows), 2)
    weight = np.round(value / rng.uniform(2, 50, rows), 1)
    is_import = flow == 0
    df = pl.DataFrame({
        "typeCode": "C", "freqCode": "M",
        "refPeriodId": period * 100 + 1, "refYear": year, "refMonth": mon, "period": period,
        "reporterCode": reporter, "flowCode": np.where(is_import, "M", "X"), "partnerCode": partner,
        "partner2Code": 0, "classificationCode": "H5",
        "cmdCode": (280000 + hs * 37).astype(str), "customsCode": "C00", "motCode": 0,
        "qtyUnitAbbr": "kg", "qty": weight, "netWgt": weight,
        "cifvalue": np.where(is_import, value, np.nan), "fobvalue": np.where(is_import, np.nan, value),
        "primaryValue": value, "isReported": "True", "isAggregate": "False",
    }).with_columns(pl.col("cifvalue", "fobvalue").fill_nan(None))
    df.write_csv(path)
    return path.stat().st_size


def run_child(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """Run a command; (seconds, peak RSS in bytes of that child alone, its output).

    wait4 gives the child's own resource usage (RUSAGE_CHILDREN would be the maximum over every
    child waited for so far).
    """
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[2:])} failed ({proc.returncode}): {stderr.strip() or stdout.strip()}")
    return seconds, usage.ru_maxrss * 1024, stdout.strip()  # ru_maxrss is in kilobytes on Linux


def run_ingest(csv_path: Path, db: Path, memory_limit: str) -> tuple[float, int, str]:
    """Run the CLI on the file; (seconds, peak RSS in bytes of the child, its output)."""
    env = {**os.environ, "DETECTOR_MEMORY_LIMIT": memory_limit}
    return run_child([sys.executable, "-m", "detector", "--db", str(db), "ingest", "comtrade", str(csv_path)], env)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5_000_000, help="rows to generate (default 5,000,000)")
    ap.add_argument("--memory-limit", default=os.environ.get("DETECTOR_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT),
                    help=f"DuckDB memory_limit for the load (default $DETECTOR_MEMORY_LIMIT or {DEFAULT_MEMORY_LIMIT})")
    ap.add_argument("--keep", type=Path, help="write the CSV and warehouse here and keep them")
    args = ap.parse_args(argv)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="detector-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        csv_path, db = folder / "comtrade_bench.csv", folder / "bench.duckdb"
        t0 = time.perf_counter()
        size = generate(csv_path, args.rows)
        gen_seconds = time.perf_counter() - t0
        seconds, peak, output = run_ingest(csv_path, db, args.memory_limit)
        print(output.splitlines()[0] if output else "")
        print(f"rows {args.rows:,}  file {size / 1e6:,.1f} MB (generated in {gen_seconds:.1f}s)")
        print(f"seconds {seconds:.1f}  rows/s {args.rows / seconds:,.0f}")
        print(f"peak RSS {peak / 2**20:,.0f} MiB  memory_limit {args.memory_limit}")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
