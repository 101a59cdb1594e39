"""The three engines side by side on one generated world: `detector run --all-codes` in process
(the default), on two local worker processes (`--workers 2`) and on Spark in local mode
(`--engine spark --spark-master local[2]`), each timed as a whole with the peak RSS of its whole
process tree (the workers and Spark's JVM and Python workers included), and their alerts
compared (identical alert ids, scores within 1e-9).

    python bench/engines.py [--rows 5000000] [--out bench/engines.md]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import DATA, detector_cmd, generated, machine  # noqa: E402

ENGINES = {
    "in process (default)": [],
    "--workers 2": ["--workers", "2"],
    "--engine spark (local[2])": ["--engine", "spark", "--spark-master", "local[2]"],
}


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants now."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def run_tree(cmd: list[str]) -> tuple[float, int, str]:
    """(seconds, peak RSS of the whole process tree sampled every 0.1 s, output)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.1)
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {err.strip()[-2000:]}")
    return time.perf_counter() - started, peak, out


def alerts_of(db: Path) -> pl.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql("SELECT alert_id, score, lead_rank FROM alerts ORDER BY alert_id").pl()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "engines.md")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    csv_path = generated(args.rows, DATA)
    db = args.work / f"engines_{args.rows}.duckdb"
    if not db.exists():
        subprocess.run(detector_cmd(db, "ingest", "comtrade", str(csv_path)), check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL)
    rows = []
    reference = None
    for label, extra in ENGINES.items():
        seconds, peak, out = run_tree(detector_cmd(db, "run", "--all-codes", *extra))
        alerts = alerts_of(db)
        if reference is None:
            reference, same = alerts, "reference"
        else:
            same_ids = alerts["alert_id"].to_list() == reference["alert_id"].to_list()
            close = same_ids and (alerts["score"] - reference["score"]).abs().max() <= 1e-9
            same = "identical" if close and alerts["lead_rank"].equals(reference["lead_rank"]) else "DIFFERENT"
        print(f"{label}: {seconds:.1f}s, peak RSS {peak / 2**20:,.0f} MiB, {alerts.height:,} alerts, {same}", flush=True)
        print("\n".join("    " + line for line in out.splitlines()), flush=True)
        rows.append((label, seconds, peak, alerts.height, same, out))
    n = sum(1 for _ in open(csv_path, "rb")) - 1
    lines = [f"# Engines: `detector run --all-codes` at {n:,} rows", "",
             "Written by `python bench/engines.py` (also part of `make bench`). Peak RSS is the whole process",
             "tree's (worker processes, Spark's JVM and Python workers included), sampled every 0.1 s.", "",
             "| Engine | Time | Peak RSS | Alerts | Against in process |", "|---|---:|---:|---:|---|"]
    lines += [f"| {label} | {s:.1f} s | {p / 2**20:,.0f} MiB | {a:,} | {same} |" for label, s, p, a, same, _ in rows]
    lines += ["", "Each run's own account (seconds summed over its partitions):", ""]
    for label, *_, out in rows:
        lines += [f"**{label}**", "", "```", out.strip(), "```", ""]
    lines += ["Machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()), ""]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
