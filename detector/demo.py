"""The whole job on the bundled sample world: generate, load, detect, report, export, evaluate."""

from __future__ import annotations

import json
import time
from pathlib import Path

import detector
from detector.evaluate import evaluate, format_evaluation, load_cases
from detector.export import export_parquet
from detector.reports import render_report
from detector.sample import generate_world


def _world(out: Path, seed: int, echo) -> Path:
    """The sample world for this seed, generated once and reused by later demos."""
    folder = out / f"sample-seed{seed}"
    marker = folder / "cases.json"
    if not marker.exists():
        started = time.perf_counter()
        result = generate_world(folder, seed=seed)
        echo(f"sample world: {result['rows']:,} Comtrade rows, {result['cases']} cases, {result['decoys']} decoys "
             f"written to {folder} in {time.perf_counter() - started:.1f}s")
    return folder


def run_demo(db: str | Path, out: str | Path, seed: int = 7, settings=None, echo=print) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    world = _world(out, seed, echo)
    with detector.open(db) as wh:
        for summary in detector.load(wh, "comtrade", [world / "comtrade_monthly.csv"]):
            echo(summary.line())
        result = detector.run(wh, config=settings)
        for line in result.lines():
            echo(line)
        echo("")
        echo(render_report(wh, "text", top=10))
        html = out / "report.html"
        render_report(wh, "html", output=html, top=50)
        parquet = out / "parquet"
        export_parquet(wh, parquet)
        alerts = wh.frame("SELECT * FROM alerts")
    scores = evaluate(alerts, load_cases(world / "cases.json"), top_k=25)
    echo(format_evaluation(scores, "text"))
    (out / "evaluation.json").write_text(json.dumps(scores, indent=2, default=str))
    echo(f"HTML report: {html}")
    echo(f"Parquet:     {parquet}/ (alerts/, flows/, series/ by period=YYYY-MM-01)")
    return {"report": html, "parquet": parquet, "evaluation": scores}
