"""Detection on the real-shaped test worlds (tests/real_worlds.py): planted cases in the top 10
leads, decoy-only leads in the top 25, alerts per month found and kept by the false discovery
rate: the default (5% a month on codes outside the watchlist, watched codes' alerts all kept) and
5% over every code (`keep_watched = false`). Run: PYTHONPATH=. python bench/real_worlds.py"""

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

# world -> (corridors, planted leads as (commodity, shipper), decoy shippers, every code scored)
WORLDS = {
    "market jump on 282580, value only": (market_jump("282580", weights=False), [], {"CHN", "THA", "MYS", "KOR"}, False),
    "market jump on partner 282590, value only": (market_jump("282590", weights=False), [], {"CHN", "THA", "MYS"}, False),
    "one-sided (China reports alone)": (one_sided(), [("gallium_germanium", "HKG"), ("antimony", "THA")],
                                         {"VNM", "IND", "KOR"}, False),
    "basket 811292, drifting mixes": (basket_world(), [("gallium_germanium", "KAZ")], set(), False),
    "large noisy world (450 corridors), 2 planted": (noisy(), [("antimony", "THA"), ("gallium_germanium", "KAZ")],
                                                     set(), False),
    "the same with 12 ordinary codes, every code scored": (
        noisy(unwatched=12), [("antimony", "THA"), ("gallium_germanium", "KAZ")], set(), True),
}

FDR = {"off": FdrSettings(rate=0.0), "default": FdrSettings(), "all codes": FdrSettings(keep_watched=False)}


def measure(corridors, planted, decoys, all_codes):
    """For each FDR setting: (planted in top 10, decoy leads in top 25, found a month, kept a month)."""
    out = {}
    with tempfile.TemporaryDirectory() as folder, load_world(Path(folder), corridors) as wh:
        for label, fdr in FDR.items():
            result = run_detectors(wh, WINDOW, settings=Settings(detectors={}, fdr=fdr), all_codes=all_codes)
            alerts = result.alerts
            leads = (alerts.group_by("lead_id")
                     .agg(pl.col("lead_rank").first(), pl.col("commodity").first(),
                          pl.coalesce(pl.col("via"), pl.col("partner")).first().alias("shipper"))
                     .sort("lead_rank"))
            top10 = {(r["commodity"], r["shipper"]) for r in leads.head(10).iter_rows(named=True)}
            found = sum(1 for p in planted if p in top10)
            decoy_leads = sum(1 for r in leads.head(25).iter_rows(named=True) if r["shipper"] in decoys)
            out[label] = (found, decoy_leads, sum(result.found.values()) / MONTHS, alerts.height / MONTHS)
    return out


def main():
    print("| world | planted in top 10 (FDR off / default / all codes) | decoy leads in top 25 | alerts a month found "
          "| kept, default | kept, 5% on all codes |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for name, (corridors, planted, decoys, all_codes) in WORLDS.items():
        m = measure(corridors, planted, decoys, all_codes)
        tops = " / ".join(f"{m[k][0]}/{len(planted)}" if planted else "-" for k in FDR)
        decoy = " / ".join(str(m[k][1]) for k in FDR)
        print(f"| {name} | {tops} | {decoy} | {m['off'][2]:.1f} | {m['default'][3]:.1f} | {m['all codes'][3]:.1f} |")


if __name__ == "__main__":
    registry.all_detectors()
    main()
