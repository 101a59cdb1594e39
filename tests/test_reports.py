"""Ranked leads and the report formats, the HTML one opened in a real headless browser."""

import csv
import datetime as dt
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from detector.errors import DetectorError
from detector.reports import FORMATS, render_report
from detector.reports.leads import ALERT_COLUMNS, LEAD_COLUMNS, ranked_leads
from detector.reports.machine import VERDICT_COLUMNS
from tests.conftest_reports import make_warehouse

ROOT = Path(__file__).resolve().parents[1]
TRIANGLE = "L-2025-01-282580-CHN-THA-USA"
ALL_COLUMNS = ALERT_COLUMNS + LEAD_COLUMNS + list(VERDICT_COLUMNS)


@pytest.fixture(scope="module")
def wh(tmp_path_factory):
    warehouse = make_warehouse(tmp_path_factory.mktemp("reports") / "w.duckdb")
    yield warehouse
    warehouse.close()


@pytest.fixture(scope="module")
def html_report(wh, tmp_path_factory):
    path = tmp_path_factory.mktemp("html") / "report.html"
    render_report(wh, "html", output=path)
    return path


def test_one_row_per_lead_best_alert_first(wh):
    leads = ranked_leads(wh)
    assert leads.height == 18  # 20 alerts, three of them on one corridor-month
    assert leads["lead_id"].n_unique() == leads.height
    assert leads["score"].to_list() == sorted(leads["score"].to_list(), reverse=True)
    assert leads["rank"].to_list() == list(range(1, 19))
    top = leads.row(0, named=True)
    assert top["lead_id"] == TRIANGLE and top["route"] == "CHN -> THA -> USA"
    assert top["score"] == 0.94 and top["best_detector"] == "third_country_surge"
    assert top["detectors"] == ["third_country_surge", "transshipment", "mirror_gap"]
    assert [a["detector"] for a in top["alerts"]] == top["detectors"] and top["n_alerts"] == 3
    assert top["explanation"].startswith("US imports of antimony oxides from Thailand")
    # An alert without a lead id is a lead of its own.
    assert "a0008-multivariate" in leads["lead_id"].to_list()


def test_filters(wh):
    jan = ranked_leads(wh, period="2025-01")
    assert jan["lead_id"].to_list() == [TRIANGLE, "L-2025-01-250410-CHN-KOR"]
    assert ranked_leads(wh, start="2025-01", end="2025-03").height == 5
    assert ranked_leads(wh, commodity="Antimony")["period"].to_list() == [dt.date(2025, 1, 1),
                                                                         dt.date(2024, 12, 1)]
    assert set(ranked_leads(wh, destination="kor")["destination"]) == {"KOR"}
    assert ranked_leads(wh, top=3).height == 3
    assert ranked_leads(wh, period="2019-01").height == 0
    with pytest.raises(DetectorError, match="YYYY-MM"):
        ranked_leads(wh, period="Jan 2025")
    with pytest.raises(DetectorError, match="not both"):
        ranked_leads(wh, period="2025-01", start="2024-01")


def test_text_fits_80_columns_without_colour(wh, tmp_path):
    out = tmp_path / "r.txt"
    text = render_report(wh, "text", output=out)
    assert out.read_text() == text
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "\x1b[" not in text
    assert lines[0] == "Leads for 2024-01..2025-03: 18 leads, 20 alerts"
    assert re.search(r"^ ?1 2025-01 antimony +0\.94", text, flags=re.M)
    assert "CHN>THA>USA" in text and "surge=third_country_surge" in text
    # The explanation is wrapped inside its column, not cut.
    header = next(i for i, line in enumerate(lines) if line.rstrip().endswith("explanation"))
    column = lines[header].index("explanation")
    first_row = lines[header + 2:lines.index("", header + 2)]
    wrapped = " ".join(line[column:].strip() for line in first_row)
    assert wrapped == ranked_leads(wh, top=1)["explanation"].item()
    coloured = render_report(wh, "text", color=True, top=2)
    assert "\x1b[" in coloured


def test_markdown_table_is_well_formed(wh):
    text = render_report(wh, "markdown")
    rows = [line for line in text.splitlines() if line.startswith("|")]
    cells = [len(re.findall(r"(?<!\\)\|", row)) - 1 for row in rows]
    assert len(rows) == 2 + 18 and set(cells) == {9}
    assert re.fullmatch(r"\| ---: \| (--- \| |---: \| )+", rows[1] + " ")
    assert rows[2].startswith("| 1 | 2025-01 | antimony | 282580 | CHN → THA → USA | 0.94 | high |")
    assert "\\| check &lt;declarations&gt;" in text  # a pipe in an explanation cannot break the table
    bullets = [line for line in text.splitlines() if line.startswith("- **")]
    assert len(bullets) == 18 and bullets[0].startswith("- **1. antimony CHN → THA → USA, 2025-01**")


def test_json_has_every_column_in_rank_order(wh):
    rows = json.loads(render_report(wh, "json"))
    assert len(rows) == 20
    assert all(list(r) == ALL_COLUMNS for r in rows)
    assert [r["alert_id"] for r in rows[:3]] == ["a0001-third_country_surge", "a0002-transshipment",
                                                 "a0003-mirror_gap"]
    assert rows[0]["period"] == "2025-01-01" and rows[0]["lead_id"] == TRIANGLE
    assert json.loads(rows[0]["evidence"])["legs"]["via_destination"]["after"] == 1_350_000
    assert json.loads(render_report(wh, "json", period="2019-01")) == []


def test_csv_has_header_and_all_rows(wh):
    text = render_report(wh, "csv", top=2)
    records = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0].replace('"', "").split(",") == ALL_COLUMNS
    assert [r["lead_id"] for r in records] == [TRIANGLE] * 3 + ["L-2024-12-282580-CHN-THA-USA"]
    assert float(records[0]["score"]) == 0.94 and json.loads(records[0]["evidence"])["z"] == 6.2


def test_unknown_format_is_refused(wh):
    assert set(FORMATS) == {"text", "markdown", "html", "json", "csv"}
    with pytest.raises(DetectorError, match="choose one of"):
        render_report(wh, "pdf")


def test_html_is_self_contained_and_escaped(html_report):
    html = html_report.read_text()
    assert html.startswith("<!DOCTYPE html>")
    # No external resource: no src/href/url() pointing anywhere but inside the page.
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']|url\(\s*["']?([^"')]*)""", html)
    targets = [a or b for a, b in refs]
    assert targets and all(t.startswith("#") for t in targets), [t for t in targets if not t.startswith("#")]
    assert not re.search(r"<(script|link|iframe|object|embed)\b", html, flags=re.I)
    assert not re.search(r"@import|@font-face", html)
    # Text from the warehouse is escaped.
    assert "<declarations>" not in html and "&lt;declarations&gt;" in html
    assert html.count("<svg") == 10
    assert html.count('<article class="lead"') == 10
    for section in ('id="summary"', 'id="leads"', 'id="details"'):
        assert section in html
    # The evidence JSON is flattened into a table.
    assert "<code>legs.via_destination.after</code>" in html and "1,350,000" in html
    # Control events of the lead's commodity are drawn and listed.
    assert "2024-09-15 CHN licence" in html


def test_html_chart_count_follows_option(wh):
    html = render_report(wh, "html", top=4, charts=2)
    assert html.count("<svg") == 2 and html.count('<a href="#lead-') == 2


CHROMIUM = shutil.which("chromium")
OFFLINE = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make browser installs it)")
def test_html_renders_offline_in_headless_chromium(html_report, tmp_path):
    done = subprocess.run(
        [CHROMIUM, *OFFLINE, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", html_report.as_uri()],
        capture_output=True, text=True, timeout=120)
    dom = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    assert '<section id="summary">' in dom and '<section id="details">' in dom
    assert len(re.findall(r'<article class="lead" id="lead-\d+">', dom)) == 10
    svgs = re.findall(r"<svg\b.*?</svg>", dom, flags=re.S)
    assert len(svgs) == 10
    assert all(s.count("<path") > 10 and "CHN" in s for s in svgs)
    # The documentation script takes the screenshot under the same offline settings.
    png = tmp_path / "report.png"
    shot = subprocess.run([sys.executable, str(ROOT / "docs" / "make_screenshot.py"), str(html_report),
                           str(png), "--width", "1200", "--height", "2400"],
                          capture_output=True, text=True, timeout=180)
    assert shot.returncode == 0, shot.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    from PIL import Image  # matplotlib depends on Pillow

    with Image.open(png) as image:
        assert image.size == (1200, 2400)
        colours = image.convert("RGB").resize((120, 240)).getcolors(maxcolors=1_000_000)
        assert len(colours) > 50  # text, tables and charts, not a blank page
