"""Detection on the real-shaped test worlds (tests/real_worlds.py): planted cases in the top 10
leads, decoy-only leads in the top 25, alerts per month (found, and kept at a 5% false discovery
rate). Run: PYTHONPATH=. python bench/real_worlds.py"""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

import polars as pl

from detector.detectors import registry
from detector.months import Window
from detector.runner import run_detectors
from detector.settings import FdrSettings, Settings
from tests.handmade_world import load_world
from tests.real_worlds import basket_world, market_jump, noisy, one_sided

WINDOW = Window(date(2023, 1, 1), date(2025, 6, 1))
MONTHS = 30

# world -> (corridors, planted leads as (commodity, shipper), decoy shippers)
WORLDS = {
    "market jump on 282580, value only": (market_jump("282580", weights=False), [], {"CHN", "THA", "MYS", "KOR"}),
    "market jump on partner 282590, value only": (market_jump("282590", weights=False), [], {"CHN", "THA", "MYS"}),
    "one-sided (China reports alone)": (one_sided(), [("gallium_germanium", "HKG"), ("antimony", "THA")],
                                         {"VNM", "IND", "KOR"}),
    "basket 811292, drifting mixes": (basket_world(), [("gallium_germanium", "KAZ")], set()),
    "large noisy world, 2 planted": (noisy(), [("antimony", "THA"), ("gallium_germanium", "KAZ")], set()),
}


def measure(name, corridors, planted, decoys, rate):
    with tempfile.TemporaryDirectory() as folder, load_world(Path(folder), corridors) as wh:
        settings = Settings(detectors={}, fdr=FdrSettings(rate=rate))
        result = run_detectors(wh, WINDOW, settings=settings)
        alerts = result.alerts
    leads = (alerts.group_by("lead_id").agg(pl.col("lead_rank").first(), pl.col("commodity").first(),
                                           pl.coalesce(pl.col("via"), pl.col("partner")).first().alias("shipper"))
             .sort("lead_rank"))
    top10 = {(r["commodity"], r["shipper"]) for r in leads.head(10).iter_rows(named=True)}
    found = sum(1 for p in planted if p in top10)
    decoy_leads = sum(1 for r in leads.head(25).iter_rows(named=True) if r["shipper"] in decoys)
    return found, decoy_leads, sum(result.found.values()) / MONTHS, alerts.height / MONTHS


def main():
    print("| world | planted in top 10 | decoy leads in top 25 | alerts a month found | kept at FDR 5% |")
    print("| --- | --- | --- | ---: | ---: |")
    for name, (corridors, planted, decoys) in WORLDS.items():
        found, decoy_leads, per_month, _ = measure(name, corridors, planted, decoys, 0.0)
        found5, decoys5, _, kept5 = measure(name, corridors, planted, decoys, 0.05)
        print(f"| {name} | {found}/{len(planted)} (FDR 5%: {found5}/{len(planted)}) | {decoy_leads} ({decoys5}) "
              f"| {per_month:.1f} | {kept5:.1f} |")


if __name__ == "__main__":
    registry.all_detectors()
    main()
