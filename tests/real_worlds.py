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

from tests.handmade_world import MONTHS, Corridor, background, level, month_index

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


BASKET = "811292"                 # Ga, Ge, In, Nb, V in one HS6 (watchlist: basket)
METAL_USD_PER_KG = np.array([350.0, 1400.0, 300.0, 45.0, 30.0])   # Ga, Ge, In, Nb, V, roughly
BASKET_BUYERS = ["USA", "JPN", "KOR", "DEU", "NLD", "BEL", "GBR", "FRA", "ITA", "CAN", "IND", "VNM"]


def mixed_unit_values(seed: int, months: int = MONTHS) -> np.ndarray:
    """USD/kg of a route whose buyer takes a drifting mix of the basket's metals: month-to-month
    noise, persistence, and a lasting change of mix at a random month."""
    rng = np.random.default_rng(seed)
    base = rng.dirichlet(np.full(len(METAL_USD_PER_KG), 0.7))
    drift = np.zeros((months, len(METAL_USD_PER_KG)))
    for t in range(1, months):
        drift[t] = 0.6 * drift[t - 1] + rng.normal(0, 0.5, len(METAL_USD_PER_KG))
    shift_at = int(rng.integers(6, months))
    drift[shift_at:] += rng.normal(0, 1.2, len(METAL_USD_PER_KG))
    mix = base * np.exp(drift)
    mix /= mix.sum(axis=1, keepdims=True)
    return mix @ METAL_USD_PER_KG


def basket_world(planted: bool = True) -> list[Corridor]:
    """China and four other producers ship the 811292 basket to a dozen buyers, each route with its
    own drifting mix (unit values moving two- to tenfold with no fraud). Planted: Kazakhstan ->
    Spain declared at a fifth of its usual value for five months from 2025-01, USD 1.5M a month
    of goods (a basket code can be undervalued too)."""
    corridors = []
    k = 0
    for exporter in ("CHN", "KAZ", "RUS", "JPN", "KOR"):
        for j, importer in enumerate(BASKET_BUYERS):
            if importer == exporter or (k % 3 == 2 and exporter != "CHN"):
                k += 1
                continue
            kg = level(2_000 + 400 * j, seed=700 + k, noise=0.15)
            uv = mixed_unit_values(seed=900 + k)
            corridors.append(Corridor(exporter, importer, BASKET, kg * uv, usd_per_kg=uv))
            k += 1
    if planted:
        cheap = np.full(MONTHS, 400.0)
        cheap[month_index("2025-01"):month_index("2025-01") + 5] *= 0.2
        kg = level(3_750, seed=777)
        corridors.append(Corridor("KAZ", "ESP", BASKET, kg * cheap, usd_per_kg=cheap))
    return corridors


CHINA_BUYERS = {"HKG": 3_000_000, "JPN": 6_000_000, "KOR": 4_000_000, "DEU": 3_500_000, "USA": 2_500_000,
                "NLD": 2_000_000, "BEL": 1_500_000, "GBR": 1_200_000, "FRA": 1_000_000, "IND": 900_000,
                "VNM": 800_000, "CAN": 600_000, "ITA": 500_000, "ESP": 400_000, "AUS": 300_000}


def one_sided(planted: bool = True) -> list[Corridor]:
    """Only China reports: its exports of the 811292 basket (drifting mixes, so drifting unit
    values) and of antimony oxides (282580) to fifteen buyers, 2022-01..2025-06.

    After the August 2023 gallium/germanium licence China's 811292 exports fall to about 40% on
    most routes (Japan 20%) and, planted, those to Hong Kong rise about sixfold within four
    months (the pattern of 2023-2024). After the December 2024 US ban on antimony, China's
    282580 exports to the US fall to 3% and, planted, those to Thailand rise fivefold.
    Decoys: Viet Nam's 811292 imports grow steadily 2% a month throughout (a trend, not a
    diversion), a single lumpy shipment to India (one month 7x), a pre-licence rush to Korea in
    June-July 2023, and a world-wide antimony price doubling in 2025 on every route."""
    licence, ban = month_index("2023-08"), month_index("2024-12")
    corridors = []
    for j, (dest, base) in enumerate(CHINA_BUYERS.items()):
        kg_basket = level(base / 300.0, seed=1000 + j, noise=0.12)
        uv = mixed_unit_values(seed=1100 + j)
        usd = kg_basket * uv
        usd[licence:] *= 0.2 if dest == "JPN" else 0.4
        if dest == "HKG" and planted:
            usd[licence + 1:] *= np.minimum(1.5 * np.arange(1, MONTHS - licence), 15.0)   # to 6x by month 4
        if dest == "VNM":
            usd *= 1.02 ** np.arange(MONTHS) / 0.4 ** (np.arange(MONTHS) >= licence)   # untouched trend
        if dest == "IND":
            usd[month_index("2024-03")] *= 7.0
        if dest == "KOR":
            usd[licence - 2:licence] *= 3.0
        corridors.append(Corridor("CHN", dest, BASKET, usd, usd_per_kg=uv, reporters="X"))
        price = np.full(MONTHS, 12.0)
        price[month_index("2025-01"):] *= 2.0
        oxide = level(base / 4, seed=1200 + j) * price / 12.0
        if dest == "USA":
            oxide[ban:] *= 0.03
        if dest == "THA" and planted:
            oxide[ban:] *= 5.0
        corridors.append(Corridor("CHN", dest, ANTIMONY_OXIDE, oxide, usd_per_kg=price, reporters="X"))
    thai = level(400_000, seed=1300) * np.where(np.arange(MONTHS) >= month_index("2025-01"), 2.0, 1.0)
    if planted:
        thai[ban:] *= 5.0
    corridors.append(Corridor("CHN", "THA", ANTIMONY_OXIDE, thai, usd_per_kg=12.0, reporters="X"))
    return corridors


NOISY_COUNTRIES = ["USA", "DEU", "FRA", "JPN", "KOR", "GBR", "ITA", "CAN", "BRA", "BEL", "NLD", "VNM", "IND", "MEX",
                   "ESP", "POL", "AUS", "IDN", "PHL", "TUR"]


# Ordinary codes outside the watchlist (iron and steel, copper, aluminium, plastics, machinery...).
UNWATCHED_CODES = ["720810", "740311", "760110", "390110", "847130", "870323", "300490", "271012",
                   "854231", "720449", "760421", "740400"]


def noisy(seed: int = 5, planted: bool = True, unwatched: int = 0) -> list[Corridor]:
    """Three watched codes, each with about 150 noisy corridors (30% month-to-month noise, a lumpy
    month now and then, sizes spread over two orders of magnitude), and two planted cases: the
    Thai antimony triangle after the US ban and a basket route undervalued to a fifth.
    `unwatched`: as many codes outside the watchlist with corridors of the same kind whose two
    books also differ (10% noise a month, and now and then a shipment booked twice by the importer),
    as a run over every code meets them."""
    rng = np.random.default_rng(seed)
    corridors = []
    for hs in UNWATCHED_CODES[:unwatched]:
        pairs = {(e, i) for e, i in rng.choice(NOISY_COUNTRIES, size=(200, 2)) if e != i}
        for e, i in sorted(pairs)[:150]:
            usd = level(float(np.exp(rng.uniform(np.log(60_000), np.log(6_000_000)))), seed=int(rng.integers(1 << 30)),
                        noise=0.3)
            lumpy = rng.random(MONTHS) < 0.03
            usd[lumpy] *= rng.uniform(2, 5, lumpy.sum())
            booked = usd * 1.05 * np.exp(rng.normal(0, 0.1, MONTHS))
            misbooked = rng.random(MONTHS) < 0.03   # a shipment the importer books twice, or under this partner
            booked[misbooked] *= rng.uniform(2.5, 5, misbooked.sum())
            corridors.append(Corridor(str(e), str(i), hs, usd, usd_per_kg=40.0, importer_usd=booked))
    for k, hs in enumerate((ANTIMONY_OXIDE, BASKET, "811010")):
        pairs = {(e, i) for e, i in rng.choice(NOISY_COUNTRIES, size=(200, 2)) if e != i}
        for j, (e, i) in enumerate(sorted(pairs)[:150]):
            usd = level(float(np.exp(rng.uniform(np.log(60_000), np.log(6_000_000)))), seed=seed * 1000 + k * 200 + j,
                        noise=0.3)
            lumpy = rng.random(MONTHS) < 0.03
            usd[lumpy] *= rng.uniform(2, 5, lumpy.sum())
            uv = mixed_unit_values(seed=seed * 1000 + k * 200 + j) if hs == BASKET else 40.0
            corridors.append(Corridor(str(e), str(i), hs, usd * (uv / 300.0 if hs == BASKET else 1.0), usd_per_kg=uv))
    if planted:
        corridors += thai_triangle_routes()
        cheap = np.full(MONTHS, 400.0)
        cheap[month_index("2025-01"):month_index("2025-01") + 5] *= 0.2
        corridors.append(Corridor("KAZ", "ESP", BASKET, level(3_750, seed=777) * cheap, usd_per_kg=cheap))
    return corridors


def thai_triangle_routes() -> list[Corridor]:
    from tests.handmade_world import thai_triangle

    return thai_triangle(ANTIMONY_OXIDE)
