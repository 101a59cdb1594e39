"""Real-shaped test worlds: rougher statistics than the sample world, built from the handmade
world's parts (tests/handmade_world.py).

- `market_jump`: a world-wide price jump on a code or on its code-shift partner, every corridor at
  once, with and without net weights;
- `one_sided`: only the controlling country reports (its exports by destination), as with China
  Customs or Comtrade with China as reporter;
- `basket`: a basket code (811292) whose product mix, and so unit value, shifts by destination;
- `noisy`: many ordinary noisy corridors on many codes with a few planted cases.
"""

from __future__ import annotations

import numpy as np

from tests.handmade_world import MONTHS, Corridor, background, level, month_index, ramp

ANTIMONY_OXIDE, OTHER_OXIDES = "282580", "282590"   # a code_shift pair (detector/reference/code_shift_pairs.csv)
JUMP = month_index("2024-10")


def _priced(corridors: list[Corridor], jumped: str, factor: float, weights: bool) -> list[Corridor]:
    price = np.full(MONTHS, 40.0)
    price[JUMP:] *= factor
    out = []
    for c in corridors:
        uv = price if c.hs == jumped else np.full(MONTHS, 40.0)
        out.append(Corridor(c.exporter, c.importer, c.hs, c.usd * uv / 40.0, usd_per_kg=uv, weights=weights))
    return out


def market_jump(jumped: str, weights: bool = True, factor: float = 2.5) -> list[Corridor]:
    """Two codes of a code_shift pair, each with China's routes, a hub's routes and ordinary
    corridors; from October 2024 the price of `jumped` is `factor` times higher on every route
    (tonnes unchanged). China's controlled code also loses half its tonnage on every route
    after the September 2024 licence (a market-wide fall, not a shift). Nothing here is evasion."""
    corridors = []
    for k, hs in enumerate((ANTIMONY_OXIDE, OTHER_OXIDES)):
        china = [("CHN", "USA", 2_000_000), ("CHN", "THA", 400_000), ("CHN", "DEU", 900_000),
                 ("CHN", "MYS", 300_000), ("THA", "USA", 250_000), ("MYS", "USA", 200_000)]
        for j, (e, i, base) in enumerate(china):
            usd = level(base, seed=500 + 10 * k + j)
            if hs == ANTIMONY_OXIDE and e == "CHN":
                usd[month_index("2024-09"):] *= 0.5
            corridors.append(Corridor(e, i, hs, usd))
        corridors += background(hs, seed=7 + k)
    return _priced(corridors, jumped, factor, weights)

