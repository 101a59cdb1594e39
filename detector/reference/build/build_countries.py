"""Rebuild ../countries.csv from ISO 3166 plus the Comtrade and Census code tables in this folder.

A one-off generator, not part of the package: run it in a scratch environment with pycountry
installed (``pip install pycountry``), then review the diff of countries.csv.

    python detector/reference/build/build_countries.py

Inputs next to this script:
- comtrade_overrides.csv: countries whose UN Comtrade / BACI code differs from the ISO numeric
  code (empty comtrade_code = no Comtrade code of its own). Everything else uses the ISO code.
- census_schedule_c.csv: US Census Schedule C country codes (census.gov/foreign-trade/schedules/c/country.txt).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pycountry

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "countries.csv"


def _read(name: str, key: str) -> dict[str, dict[str, str]]:
    with open(HERE / name, newline="", encoding="utf-8") as f:
        return {row[key]: row for row in csv.DictReader(f)}


def main() -> None:
    overrides = _read("comtrade_overrides.csv", "iso3")
    census = _read("census_schedule_c.csv", "iso3")
    rows = []
    for c in pycountry.countries:
        m49 = int(c.numeric)
        comtrade = overrides[c.alpha_3]["comtrade_code"] if c.alpha_3 in overrides else str(m49)
        rows.append({
            "iso3": c.alpha_3,
            "iso2": c.alpha_2,
            "m49": m49,
            "comtrade_code": comtrade,
            "census_code": census[c.alpha_3]["census_code"] if c.alpha_3 in census else "",
            "name": getattr(c, "common_name", None) or c.name,
        })
    unknown = (set(overrides) | set(census)) - {r["iso3"] for r in rows}
    if unknown:
        raise SystemExit(f"codes for ISO3 not in ISO 3166: {sorted(unknown)}")
    rows.sort(key=lambda r: r["iso3"])
    with open(OUT, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"{OUT}: {len(rows)} countries, pycountry {pycountry.__version__}")


if __name__ == "__main__":
    main()
