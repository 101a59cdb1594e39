"""The conformance suite every registered detector passes: output schema, score range, valid
evidence and explanations, determinism, empty input, a window without data, and no look-ahead."""

import json
import shutil
from datetime import date

import pytest

from detector.detectors import registry
from detector.detectors.base import DETECTOR_OUTPUT_SCHEMA
from detector.ingest.comtrade import load_comtrade
from detector.months import Window
from detector.runner import detect_one
from detector.sample import generate_world
from detector.warehouse import Warehouse

DETECTORS = sorted(registry.all_detectors())
WINDOW = Window(date(2023, 1, 1), date(2024, 12, 1))
CUT = date(2024, 6, 1)


@pytest.fixture(scope="module")
def world_db(tmp_path_factory):
    """A three-and-a-half-year sample world, loaded once per test process."""
    folder = tmp_path_factory.mktemp("world")
    generate_world(folder, seed=5, start="2022-01", end="2025-06")
    db = folder / "w.duckdb"
    with Warehouse.open(db) as wh:
        load_comtrade(wh, [folder / "comtrade_monthly.csv"])
    return db


@pytest.fixture
def wh(world_db, tmp_path):
    copy = tmp_path / "w.duckdb"
    shutil.copy(world_db, copy)
    with Warehouse.open(copy) as w:
        yield w


def detect(wh, name, window=WINDOW):
    """A detector's output from baselines built afresh from the warehouse (nothing cached)."""
    return detect_one(wh, name, window)


def test_the_registry_lists_the_documented_detectors():
    assert {"third_country_surge", "transshipment", "mirror_gap", "unit_value", "code_shift",
            "new_corridor", "multivariate", "declaration_risk"} <= set(DETECTORS)
    for spec in registry.all_detectors().values():
        assert spec.description and spec.version
        assert all(doc for _, _, doc in spec.settings_docs()), f"{spec.name}: undocumented setting"


@pytest.mark.parametrize("name", DETECTORS)
def test_output_schema_scores_evidence_and_explanations(wh, name):
    df = detect(wh, name)
    assert dict(df.schema) == DETECTOR_OUTPUT_SCHEMA
    if df.height == 0:
        return
    assert df["detector"].unique().to_list() == [name]
    assert df["score"].is_between(0.0, 1.0).all() and df["score"].is_not_null().all()
    assert df["period"].is_between(WINDOW.start, WINDOW.end).all()
    assert (df["period"].dt.day() == 1).all()
    assert df["hs_code"].str.contains(r"^\d{6,10}$").all()
    for col in ("origin", "via", "destination", "reporter", "partner"):
        assert df[col].drop_nulls().str.contains(r"^[A-Z]{3}$").all(), col
    assert df["explanation"].str.len_chars().min() > 20
    for evidence in df["evidence"]:
        assert isinstance(json.loads(evidence), dict)


@pytest.mark.parametrize("name", DETECTORS)
def test_deterministic(wh, name):
    first, second = detect(wh, name), detect(wh, name)
    key = ["period", "hs_code", "reporter", "partner", "via", "destination"]
    assert first.sort(key, nulls_last=True).equals(second.sort(key, nulls_last=True))


@pytest.mark.parametrize("name", DETECTORS)
def test_empty_warehouse_and_window_without_data(tmp_path, wh, name):
    with Warehouse.open(tmp_path / "empty.duckdb") as empty:
        assert detect(empty, name).height == 0
    assert detect(wh, name, Window(date(2031, 1, 1), date(2031, 6, 1))).height == 0


@pytest.mark.parametrize("name", DETECTORS)
def test_no_look_ahead(wh, tmp_path, name):
    """Alerts up to a month are the same whether or not later months are in the warehouse."""
    window = Window(WINDOW.start, CUT)
    full = detect(wh, name, window)
    shutil.copy(wh.path, tmp_path / "cut.duckdb")
    with Warehouse.open(tmp_path / "cut.duckdb") as cut:
        for table in ("flows", "reporting"):
            cut.con.execute(f"DELETE FROM {table} WHERE period > ?", [CUT])
        cut.con.execute("DELETE FROM declarations WHERE period > ?", [CUT])
        truncated = detect(cut, name, window)
    key = ["period", "hs_code", "reporter", "partner", "via", "destination"]
    assert full.sort(key, nulls_last=True).equals(truncated.sort(key, nulls_last=True))
