"""Scoring alerts against cases: the matching rule, ranking by lead, recall/precision/decoys."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest

from detector.errors import InputError
from detector.evaluate import evaluate, format_evaluation, load_cases

CASES = [
    {"id": "sb-tha", "label": "case", "kind": "transshipment", "origin": "CHN", "via": "THA", "destination": "USA",
     "hs_codes": ["282580"], "start": "2024-12", "end": "2025-04", "description": ""},
    {"id": "ga-bel", "label": "case", "kind": "origin_misdeclaration", "origin": "CHN", "via": "BEL",
     "destination": "USA", "hs_codes": ["811292"], "start": "2025-01", "end": "2025-03", "description": ""},
    {"id": "uv", "label": "case", "kind": "unit_value", "origin": "DEU", "via": None, "destination": "JPN",
     "hs_codes": ["850511"], "start": "2025-02", "end": "2025-04", "description": ""},
    {"id": "season", "label": "decoy", "kind": "seasonality", "origin": "KOR", "via": None, "destination": "IND",
     "hs_codes": ["810194"], "start": "2023-01", "end": "2025-12", "description": ""},
    {"id": "spike", "label": "decoy", "kind": "one_month_spike", "origin": "BEL", "via": None, "destination": "USA",
     "hs_codes": ["811090"], "start": "2024-06", "end": "2024-06", "description": ""},
]


def _alert(lead, detector, period, hs, score, origin=None, via=None, dest=None, reporter=None, partner=None):
    return {"alert_id": f"{lead}-{detector}", "run_id": "r", "detector": detector, "period": date.fromisoformat(period),
            "hs_code": hs, "commodity": None, "origin": origin, "via": via, "destination": dest,
            "reporter": reporter, "partner": partner, "score": score, "severity": "high", "observed": 1.0,
            "expected": 1.0, "evidence": "{}", "explanation": "", "lead_id": lead}


@pytest.fixture
def cases(tmp_path):
    p = tmp_path / "cases.json"
    p.write_text(json.dumps(CASES))
    return load_cases(p)


@pytest.fixture
def alerts():
    rows = [
        # L1 rank 1: a decoy (seasonal corridor), reporter/partner only
        _alert("L1", "third_country_surge", "2024-07-01", "810194", 0.99, reporter="IND", partner="KOR"),
        # L2 rank 2: two detectors on the Thai triangle, 8-digit code, two months after the case end (grace)
        _alert("L2", "transshipment", "2025-06-01", "28258000", 0.95, "CHN", "THA", "USA", "USA", "THA"),
        _alert("L2", "third_country_surge", "2025-06-01", "28258000", 0.7, None, None, "USA", "USA", "THA"),
        # L3 rank 3: unrelated lead
        _alert("L3", "mirror_gap", "2025-02-01", "261100", 0.9, None, None, "CHN", "CHN", "RUS"),
        # L4 rank 4: right code and countries but four months after the case end: no match
        _alert("L4", "mirror_gap", "2025-07-01", "811292", 0.85, "CHN", "BEL", "USA", "USA", "BEL"),
        # L5 rank 5: matches ga-bel with a 4-digit alert code (prefix the other way round)
        _alert("L5", "mirror_gap", "2025-02-01", "8112", 0.8, None, None, "USA", "USA", "BEL"),
        # L6 rank 6: unit value case, but the alert lacks the case's origin: no match
        _alert("L6", "unit_value", "2025-03-01", "850511", 0.75, None, None, "JPN", "JPN", "CHN"),
        # L7 rank 7: matches the unit value case
        _alert("L7", "unit_value", "2025-03-01", "850511", 0.6, None, None, "JPN", "JPN", "DEU"),
        # L8 tie with L7 on score: ranked after it by lead_id; matches the Thai case again (worse rank)
        _alert("L8", "new_corridor", "2024-12-01", "282580", 0.6, "CHN", "THA", "USA", "THA", "CHN"),
    ]
    return pl.DataFrame(rows)


def test_ranks_recall_precision_and_decoys(alerts, cases):
    res = evaluate(alerts, cases, top_k=5)
    by = {c["id"]: c for c in res["cases"]}
    assert by["sb-tha"]["rank"] == 2 and by["sb-tha"]["found"]
    assert by["sb-tha"]["detectors"] == ["third_country_surge", "transshipment"]
    assert by["ga-bel"]["rank"] == 5 and by["ga-bel"]["found"] and by["ga-bel"]["detectors"] == ["mirror_gap"]
    assert by["uv"]["rank"] == 7 and not by["uv"]["found"]
    assert by["season"]["rank"] == 1 and by["spike"]["rank"] is None
    assert res["leads"] == 8
    assert res["recall_at_k"] == pytest.approx(2 / 3)
    assert res["precision_at_k"] == pytest.approx(2 / 5)   # L2 and L5 in the top 5 match cases
    assert res["decoys_in_top_k"] == {"count": 1, "ids": ["season"]}
    assert res["highest_decoy_rank"] == 1
    res10 = evaluate(alerts, cases, top_k=10)
    assert res10["recall_at_k"] == 1.0
    assert res10["precision_at_k"] == pytest.approx(4 / 8)   # L2, L5, L7, L8 over min(10, 8)


def test_empty_alerts_and_string_periods(alerts, cases):
    empty = evaluate(alerts.clear(), cases, top_k=5)
    assert empty["recall_at_k"] == 0.0 and empty["precision_at_k"] is None and empty["leads"] == 0
    as_text = alerts.with_columns(pl.col("period").cast(pl.String))
    assert evaluate(as_text, cases, 5)["recall_at_k"] == pytest.approx(2 / 3)


def test_csv_cases_and_errors(tmp_path, alerts):
    p = tmp_path / "cases.csv"
    p.write_text("origin,via,destination,hs_prefix,start,end,label\n"
                 "CHN,THA,USA,2825;8110,2024-12,2025-04,\n"
                 "KOR,,IND,810194,2023-01,2025-12,decoy\n")
    cases = load_cases(p)
    assert cases["hs_codes"].to_list()[0] == ["2825", "8110"]
    assert cases["label"].to_list() == ["case", "decoy"]
    assert cases["start"].to_list()[0] == date(2024, 12, 1)
    res = evaluate(alerts, cases, 5)
    assert res["recall_at_k"] == 1.0 and res["decoys_in_top_k"]["count"] == 1

    bad = tmp_path / "bad.csv"
    bad.write_text("origin,via,destination,hs_prefix,start,end\nCHN,THA,USA,282580,2024-13x,2025-04\n")
    with pytest.raises(InputError, match=r"bad.csv:2: bad start month"):
        load_cases(bad)
    missing = tmp_path / "missing.csv"
    missing.write_text("origin,destination,hs_prefix,start,end\nCHN,USA,282580,2024-12,2025-04\n")
    with pytest.raises(InputError, match="missing column"):
        load_cases(missing)


def test_format(alerts, cases):
    res = evaluate(alerts, cases, 5)
    text = format_evaluation(res, "text")
    assert "sb-tha" in text and "recall@5: 67%" in text
    assert json.loads(format_evaluation(res, "json"))["cases_found"] == 2


def test_sample_world_cases_load(tmp_path):
    from detector.sample import plan_cases

    p = tmp_path / "c.json"
    p.write_text(json.dumps(plan_cases(3)))
    cases = load_cases(p)
    assert set(cases["label"]) == {"case", "decoy"} and cases.height >= 12


def test_by_detector_scores_each_detector_alone(alerts, cases):
    from detector.evaluate import evaluate_by_detector, format_by_detector

    per = evaluate_by_detector(alerts, cases, top_k=2)
    assert set(per) == {"third_country_surge", "transshipment", "mirror_gap", "unit_value", "new_corridor"}
    # mirror_gap alone: L3 (0.9) then L4 (0.85) in its top 2, neither matches a case; L5 is third
    assert per["mirror_gap"]["cases_found"] == 0
    assert per["transshipment"]["cases_found"] == 1 and per["transshipment"]["precision_at_k"] == 1.0
    # unit_value alone: L6 then L7 (the unit value case) make its top 2
    assert [c["id"] for c in per["unit_value"]["cases"] if c["found"]] == ["uv"]
    text = format_by_detector(per, evaluate(alerts, cases, top_k=2))
    assert text.splitlines()[-1].split()[0] == "combined" and "recall@2" in text.splitlines()[0]
