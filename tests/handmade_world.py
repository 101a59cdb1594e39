"""Small handmade trade worlds for detector tests: a few corridors written as Comtrade files,
both sides reporting (importer M at CIF = FOB x 1.05, exporter X at FOB), with a quiet background
of ordinary corridors so that medians and world prices mean something.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from detector.ingest.comtrade import load_comtrade
from detector.warehouse import Warehouse
from tests.comtrade_files import row, write

START = date(2022, 1, 1)
MONTHS = 42  # 2022-01 .. 2025-06


def month_label(i: int) -> str:
    y, m = divmod((START.year * 12 + START.month - 1) + i, 12)
    return f"{y}{m + 1:02d}"


def month_index(label: str) -> int:
    """'2024-12' -> months since START."""
    y, m = int(label[:4]), int(label[5:7])
    return (y * 12 + m - 1) - (START.year * 12 + START.month - 1)


@dataclass
class Corridor:
    exporter: str
    importer: str
    hs: str
    usd: np.ndarray               # FOB value per month (0 = no trade)
    usd_per_kg: np.ndarray | float = 10.0
    importer_usd: np.ndarray | None = None   # what the importer books, if not FOB x 1.05
    skip_importer: set[int] = field(default_factory=set)   # months the importer did not report
    skip_exporter: set[int] = field(default_factory=set)
    weights: bool = True          # False: both books give value only (no net weight), as many real rows do
    reporters: str = "MX"         # which books exist: "M" importer only, "X" exporter only, "MX" both


def level(base: float, seed: int = 0, noise: float = 0.08) -> np.ndarray:
    """A steady series with a little multiplicative noise."""
    rng = np.random.default_rng(seed)
    return base * np.exp(rng.normal(0, noise, MONTHS))


def background(hs: str, seed: int = 1) -> list[Corridor]:
    """Ordinary corridors of the same code: the world price and the usual noise."""
    pairs = [("KOR", "DEU"), ("JPN", "USA"), ("DEU", "FRA"), ("BEL", "NLD"), ("CAN", "USA"),
             ("VNM", "JPN"), ("BRA", "DEU"), ("GBR", "ITA")]
    return [Corridor(e, i, hs, level(300_000 * (k + 1), seed=seed * 100 + k)) for k, (e, i) in enumerate(pairs)]


def ramp(base: float, start: int, factor: float, seed: int) -> np.ndarray:
    """`base` with noise, times `factor` from month `start` on."""
    s = level(base, seed=seed)
    s[start:] *= factor
    return s


def thai_triangle(hs: str = "282580") -> list[Corridor]:
    """China -> Thailand -> USA after the December 2024 ban: the hub leg 8x, its feeder 6x from the
    month before, the direct route down 97%."""
    ban = month_index("2024-12")
    return [Corridor("CHN", "THA", hs, ramp(300_000, ban - 1, 6.0, seed=1)),
            Corridor("THA", "USA", hs, ramp(200_000, ban, 8.0, seed=2)),
            Corridor("CHN", "USA", hs, ramp(3_000_000, ban, 0.03, seed=3))]


def write_world(folder: Path, corridors: list[Corridor]) -> Path:
    keys = [(c.exporter, c.importer, c.hs) for c in corridors]
    assert len(keys) == len(set(keys)), "a corridor is given twice"
    rows = []
    for c in corridors:
        uv = np.broadcast_to(np.asarray(c.usd_per_kg, dtype=float), (MONTHS,))
        booked = c.importer_usd if c.importer_usd is not None else c.usd * 1.05
        for t in range(MONTHS):
            weight = round(float(c.usd[t] / uv[t]), 1) if c.weights else None
            if c.usd[t] > 0 and t not in c.skip_exporter and "X" in c.reporters:
                rows.append(row(c.exporter, c.importer, "X", cmd=c.hs, period=month_label(t),
                                value=round(float(c.usd[t]), 2), weight=weight))
            if booked[t] > 0 and t not in c.skip_importer and "M" in c.reporters:
                rows.append(row(c.importer, c.exporter, "M", cmd=c.hs, period=month_label(t),
                                value=round(float(booked[t]), 2), weight=weight))
    # Every reporter publishes every month (World rows), unless a corridor says it skipped that month.
    reporters = ({(c.exporter, "X") for c in corridors if "X" in c.reporters}
                 | {(c.importer, "M") for c in corridors if "M" in c.reporters})
    skipped = {(c.importer, "M", t) for c in corridors for t in c.skip_importer} | {
        (c.exporter, "X", t) for c in corridors for t in c.skip_exporter}
    for reporter, flow in sorted(reporters):
        for t in range(MONTHS):
            if (reporter, flow, t) not in skipped:
                rows.append(row(reporter, "W00", flow, cmd="999999", period=month_label(t), value=1.0))
    folder.mkdir(parents=True, exist_ok=True)
    return write(folder / "world.csv", rows)


def load_world(tmp_path: Path, corridors: list[Corridor]) -> Warehouse:
    wh = Warehouse.open(tmp_path / "w.duckdb")
    load_comtrade(wh, [write_world(tmp_path / "files", corridors)])
    return wh
