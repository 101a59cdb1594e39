"""A small real warehouse for the report and export tests.

Flows: the CHN -> THA -> USA antimony-oxide triangle 2023-01..2025-06 reported by both sides
(China's exports to the US collapse after the 2024 controls while Thailand's imports from China
and its exports to the US surge), plus gallium, graphite and tungsten corridors. Alerts: the
leads the detectors would raise on them, with numeric evidence and plain explanations.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import types
from pathlib import Path

from detector.reports.leads import ALERT_COLUMNS
from detector.warehouse import Warehouse

RUN_ID = "run-2025-07-01T00:00:00"

COUNTRIES = [
    ("CHN", "CN", 156, 156, "China"), ("THA", "TH", 764, 764, "Thailand"),
    ("USA", "US", 840, 842, "United States"), ("VNM", "VN", 704, 704, "Viet Nam"),
    ("KOR", "KR", 410, 410, "Rep. of Korea"), ("DEU", "DE", 276, 276, "Germany"),
    ("MYS", "MY", 458, 458, "Malaysia"), ("BEL", "BE", 56, 56, "Belgium"),
    ("JPN", "JP", 392, 392, "Japan"), ("IND", "IN", 356, 356, "India"),
]

CONTROLS = [
    ("2023-08-01", "CHN", "MOFCOM Ann. 23/2023", "gallium;germanium", None, "licence", None,
     "Export licence for gallium and germanium items"),
    ("2023-12-01", "CHN", "MOFCOM Ann. 39/2023", "graphite", None, "licence", None,
     "Licence for high-purity graphite"),
    ("2024-09-15", "CHN", "MOFCOM Ann. 33/2024", "antimony", None, "licence", None,
     "Licence for antimony ores, metal and oxides > 99.99% ($ values unaffected)"),
    ("2024-12-03", "CHN", "MOFCOM Ann. 46/2024", "antimony;gallium;germanium", "USA", "ban", None,
     "Ban on exports of dual-use items to the United States"),
]

# Legs: (origin, destination, hs_code, base monthly USD, multiplier after 2024-09 / 2024-12).
# Each leg is reported twice: by the importer (flow M, partner = origin) and by the
# exporter (flow X, partner = destination), the export side about 6 % lower (CIF/FOB).
LEGS = [
    ("CHN", "THA", "282580", 400_000.0, 1.0, 6.0),
    ("THA", "USA", "282580", 150_000.0, 1.0, 9.0),
    ("CHN", "USA", "282580", 1_800_000.0, 0.6, 0.02),
    ("CHN", "DEU", "811292", 900_000.0, 1.0, 0.8),
    ("CHN", "MYS", "811292", 120_000.0, 1.0, 3.0),
    ("MYS", "USA", "811292", 60_000.0, 1.0, 4.0),
    ("CHN", "KOR", "250410", 2_000_000.0, 1.0, 1.1),
    ("CHN", "VNM", "810194", 300_000.0, 1.0, 1.4),
    ("VNM", "USA", "810194", 90_000.0, 1.0, 2.5),
    ("CHN", "BEL", "811292", 200_000.0, 1.0, 1.0),
    ("BEL", "USA", "811292", 80_000.0, 1.0, 1.6),
]


def _alert(i, detector, period, hs, commodity, origin, via, dest, reporter, partner, score,
           observed, expected, evidence, explanation, lead_id, lead_rank):
    severity = "high" if score >= 0.8 else "medium" if score >= 0.5 else "low"
    return (f"a{i:04d}-{detector}", RUN_ID, detector, period, hs, commodity, origin, via, dest,
            reporter, partner, score, severity, observed, expected, json.dumps(evidence),
            explanation, lead_id, lead_rank)


def _alerts() -> list[tuple]:
    tri = dict(hs="282580", commodity="antimony", origin="CHN", via="THA", dest="USA")
    rows = [
        _alert(1, "third_country_surge", "2025-01-01", *tri.values(), "USA", "THA", 0.94,
               1_350_000.0, 150_000.0,
               {"z": 6.2, "ratio": 9.0, "baseline_months": 12, "control": "2024-09-15",
                "legs": {"origin_via": {"before": 400_000, "after": 2_400_000},
                         "via_destination": {"before": 150_000, "after": 1_350_000}}},
               "US imports of antimony oxides from Thailand rose to $1.35m in 2025-01, 9.0 times "
               "the 12-month median, while China's exports to Thailand rose 6-fold after the "
               "2024-09-15 controls.", "L-2025-01-282580-CHN-THA-USA", 1),
        _alert(2, "transshipment", "2025-01-01", *tri.values(), "THA", "CHN", 0.88,
               2_400_000.0, 400_000.0,
               {"c2": True, "c3": True, "c4": True, "excess_flow_usd": 1_180_000.0},
               "Thailand imports from China and exports to the US rose together after the "
               "control date, with little domestic production to explain it.",
               "L-2025-01-282580-CHN-THA-USA", 1),
        _alert(3, "mirror_gap", "2025-01-01", *tri.values(), "USA", "THA", 0.71,
               1_350_000.0, 1_269_000.0, {"mirror_ratio": 1.06, "importer": "USA", "exporter": "THA"},
               "US-reported imports from Thailand exceed Thailand's reported exports by 6 %.",
               "L-2025-01-282580-CHN-THA-USA", 1),
        _alert(4, "third_country_surge", "2024-12-01", *tri.values(), "USA", "THA", 0.82,
               1_100_000.0, 150_000.0, {"z": 5.1, "ratio": 7.3, "baseline_months": 12},
               "US imports of antimony oxides from Thailand reached 7.3 times their 12-month median "
               "in 2024-12.", "L-2024-12-282580-CHN-THA-USA", 1),
        _alert(5, "unit_value", "2025-02-01", "811292", "gallium", "CHN", "MYS", "USA", "USA", "MYS",
               0.66, 41.0, 310.0, {"unit_value_usd_kg": 41.0, "median_usd_kg": 310.0, "z": -3.9},
               "Unit value of 811292 imports from Malaysia ($41/kg) is far below the gallium "
               "price band.", "L-2025-02-811292-CHN-MYS-USA", 1),
        _alert(6, "code_shift", "2025-01-01", "250410", "graphite", "CHN", None, "KOR", "KOR", "CHN",
               0.55, 2_600_000.0, 2_000_000.0, {"from_code": "250410", "to_code": "380110", "share": 0.4},
               "Korea's imports from China moved from 250410 to 380110 after the control | check "
               "<declarations> & \"descriptions\".", "L-2025-01-250410-CHN-KOR", 2),
        _alert(7, "new_corridor", "2025-03-01", "810194", "tungsten", "CHN", "VNM", "USA", "USA", "VNM",
               0.45, 225_000.0, 0.0, {"first_month": "2025-03", "months_without": 24},
               "A new corridor: US imports of tungsten from Viet Nam appear for the first time.",
               "L-2025-03-810194-CHN-VNM-USA", 1),
        _alert(8, "multivariate", "2025-02-01", "811292", "germanium", "CHN", "BEL", "USA", "USA", "BEL",
               0.61, 128_000.0, 80_000.0, {"iforest": 0.61, "features": {"growth": 1.6, "share": 0.2}},
               "Belgium's exports of 811292 to the US are an outlier on growth and share.",
               None, None),
    ]
    # A tail of weaker leads on other months, so that top-N limits matter.
    for k in range(12):
        month = f"2024-{(k % 12) + 1:02d}-01"
        rows.append(_alert(100 + k, "new_corridor", month, "811292", "gallium", "CHN", "MYS", "USA",
                           "USA", "MYS", round(0.20 + 0.01 * k, 2), 10_000.0 * (k + 1), 0.0,
                           {"months_without": 6 + k}, f"Small new flow number {k + 1} from Malaysia.",
                           f"L-{month[:7]}-811292-CHN-MYS-USA", 2))
    return rows


@contextlib.contextmanager
def _stub_reference_loader():
    """A no-op stand-in for the package's reference loader."""
    saved = sys.modules.get("detector.reference")
    stub = types.ModuleType("detector.reference")
    stub.load_reference = lambda con: None
    sys.modules["detector.reference"] = stub
    try:
        yield
    finally:
        if saved is not None:
            sys.modules["detector.reference"] = saved
        else:
            sys.modules.pop("detector.reference", None)


def _open_new(path) -> Warehouse:
    """Open a new warehouse with the package's reference data, or without it if that fails."""
    try:
        importlib.import_module("detector.reference").load_reference  # noqa: B018
        return Warehouse.open(path)
    except Exception:
        for leftover in (Path(path), Path(str(path) + ".wal")):
            leftover.unlink(missing_ok=True)
    with _stub_reference_loader():
        return Warehouse.open(path)


def make_warehouse(path) -> Warehouse:
    """Create and fill a warehouse file at `path`; returns it open for writing."""
    wh = _open_new(path)
    con = wh.con
    with wh.transaction():
        if not con.execute("SELECT count(*) FROM countries").fetchone()[0]:
            con.executemany("INSERT INTO countries VALUES (?, ?, ?, ?, ?)", COUNTRIES)
        con.execute("DELETE FROM controls")
        con.executemany("INSERT INTO controls VALUES (?, ?, ?, ?, ?, ?, ?, ?)", CONTROLS)
        con.execute("CREATE TEMP TABLE legs (origin VARCHAR, dest VARCHAR, hs VARCHAR, base DOUBLE,"
                    " after_sep DOUBLE, after_dec DOUBLE)")
        con.executemany("INSERT INTO legs VALUES (?, ?, ?, ?, ?, ?)", LEGS)
        con.execute("""
            INSERT INTO flows
            WITH months AS (
                SELECT CAST(m AS DATE) AS period
                FROM generate_series(DATE '2023-01-01', DATE '2025-06-01', INTERVAL 1 MONTH) g(m)
            ),
            shaped AS (
                SELECT l.*, m.period,
                       l.base
                       * CASE WHEN m.period >= DATE '2024-12-01' THEN l.after_dec
                              WHEN m.period >= DATE '2024-10-01' THEN l.after_sep ELSE 1 END
                       * (0.85 + 0.3 * ((hash(l.origin || l.dest || l.hs || m.period) % 1000) / 1000.0))
                         AS value
                FROM legs l CROSS JOIN months m
            ),
            sides AS (
                SELECT 'comtrade' AS source, period, dest AS reporter, origin AS partner,
                       'M' AS flow, hs, value, 1.0 AS side FROM shaped
                UNION ALL
                SELECT 'comtrade', period, origin, dest, 'X', hs, value * 0.94, 0.94 FROM shaped
            )
            SELECT source, period, 'M', reporter, partner, NULL, flow, hs,
                   CASE WHEN period >= DATE '2024-01-01' THEN 'HS2022' ELSE 'HS2017' END,
                   round(value, 0), round(value / 12.0, 0), round(value / 12.0, 0), 'kg', 'load-fixture'
            FROM sides
        """)
        con.executemany("INSERT INTO alerts (" + ", ".join(ALERT_COLUMNS + ["lead_id", "lead_rank"]) + ") VALUES ("
                        + ", ".join(["?"] * 19) + ")", _alerts())
    return wh
