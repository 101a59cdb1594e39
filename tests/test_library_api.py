"""The library as a notebook uses it: the README's example, run as written on the sample world."""

import re
from datetime import date
from pathlib import Path

import polars as pl
import pytest

import detector
from detector.errors import DetectorError

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def readme_example() -> str:
    found = re.search(r"<!-- library example[^>]*-->\n```python\n(.*?)```", README, re.S)
    assert found, "README lost its library example"
    return found.group(1)


@pytest.mark.slow
def test_the_readme_example_runs_and_gives_ranked_leads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), scope)  # noqa: S102 (the documented example)
    leads = scope["leads"]
    assert isinstance(leads, pl.DataFrame) and leads.height == 10
    assert leads["rank"].to_list() == list(range(1, 11))
    assert leads["score"].is_sorted(descending=True)
    with detector.open("trade.duckdb", read_only=True) as wh:
        # the same list as the report's, and the library's filters narrow it
        assert leads["lead_id"].to_list() == detector.leads(wh)["lead_id"].head(10).to_list()
        march = detector.leads(wh, period="2025-03", commodity="antimony")
    assert march.height > 0 and set(march["commodity"]) == {"antimony"}
    assert (march["period"] == date(2025, 3, 1)).all()


def test_load_refuses_an_unknown_source_and_a_foreign_option(tmp_path):
    with detector.open(tmp_path / "w.duckdb") as wh:
        with pytest.raises(DetectorError, match="unknown source 'eurostat'"):
            detector.load(wh, "eurostat", [tmp_path / "x.csv"])
        with pytest.raises(DetectorError, match="no option rates"):
            detector.load(wh, "comtrade", tmp_path / "x.csv", rates="r.csv")
