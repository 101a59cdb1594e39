"""The declaration-scoring benchmark on a tiny month, so that `make bench-declarations` keeps working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_declaration_bench_times_each_step_into_its_own_section(tmp_path):
    out = tmp_path / "results.md"
    out.write_text("# Benchmark results\n\nearlier figures\n\n## Declaration scoring\n\nold figures\n\n## Later\n\nkept\n")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "declarations.py"), "--lines", "3000", "--history-months", "12",
         "--history-lines", "600", "--out", str(out), "--data", str(tmp_path / "data")],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "earlier figures" in text and "## Later\n\nkept" in text and "old figures" not in text
    assert text.count("## Declaration scoring") == 1
    for step in ("ingest declarations: history (12 x 600 labelled lines)", "ingest declarations: the month (3,000",
                 "run --detector declaration_risk for 2025-01"):
        assert f"| {step}" in text, step
    for step in ("feature build (13 months, one query each)", "LightGBM training on the labelled history",
                 "scoring, 50,000 lines a batch", "reasons (TreeSHAP) for the top 10% of the order", "storing the 3,000 per-line scores"):  # the scoring's steps, timed apart
        assert f"| {step}" in text, step
    month = next((tmp_path / "data").glob("declarations_month_*.csv")).read_text().splitlines()
    assert len(month) == 3001 and "Fraud" not in month[0] and month[1].startswith("2501-00000000,2025-01-")
