"""The monthly batch job on the sample world, fed month by month: reruns, revisions, crashes, leads."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from detector.cli import main as cli_main
from detector.monthly import lifecycle, publish, run_monthly
from detector.sample import generate_world
from detector.scoring import HIGH
from detector.warehouse import Warehouse

# Rule-based detectors only and a 3-month window keep each run to a few seconds.
DETECTORS = ["third_country_surge", "transshipment", "mirror_gap", "unit_value", "code_shift", "new_corridor"]
WINDOW = 3
FEED = ["202502", "202503"]
REPO = Path(__file__).resolve().parents[1]


def _drop(inbox: Path, src: Path, name: str | None = None) -> Path:
    """Put a file in the inbox as arriving now (later than everything there)."""
    inbox.mkdir(parents=True, exist_ok=True)
    target = inbox / (name or src.name)
    shutil.copyfile(src, target)
    newest = max((p.stat().st_mtime for p in inbox.iterdir() if p != target), default=time.time())
    os.utime(target, (newest + 1, newest + 1))
    return target


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """The sample world split by month: one backfill file up to 2025-01, then one file per month."""
    root = tmp_path_factory.mktemp("world")
    generate_world(root / "sample", start="2022-01", end="2025-04")
    table = pl.read_csv(root / "sample" / "comtrade_monthly.csv", infer_schema=False)
    months = root / "months"
    months.mkdir()
    table.filter(pl.col("period") < FEED[0]).write_csv(months / "comtrade-backfill.csv")
    for (period,), rows in table.filter(pl.col("period") >= FEED[0]).group_by("period"):
        rows.write_csv(months / f"comtrade-{period}.csv")
    # A base warehouse with the backfill loaded, copied by each test.
    base = root / "base.duckdb"
    from detector.ingest.comtrade import load_comtrade

    with Warehouse.open(base) as wh:
        load_comtrade(wh, [months / "comtrade-backfill.csv"])
    return {"months": months, "base": base, "root": root}


def _setup(world, tmp_path) -> tuple[Path, Path, Path]:
    db, inbox, out = tmp_path / "wh.duckdb", tmp_path / "inbox", tmp_path / "out"
    shutil.copyfile(world["base"], db)
    _drop(inbox, world["months"] / "comtrade-backfill.csv")
    return db, inbox, out


def _run(db, inbox, out, **kw) -> dict:
    return run_monthly(db, inbox, out, detectors=DETECTORS, window_months=WINDOW, charts=1, **kw)


def _alerts(db, where: str = "TRUE") -> pl.DataFrame:
    with Warehouse.open(db, read_only=True) as wh:
        return wh.con.sql(f"SELECT alert_id, period, detector, score, lead_id FROM alerts WHERE {where} "
                          "ORDER BY alert_id").pl()


def _runs(db) -> list[tuple]:
    with Warehouse.open(db, read_only=True) as wh:
        return wh.con.execute("SELECT run_id, status FROM runs ORDER BY started").fetchall()


def _tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def clean(world, tmp_path_factory) -> dict:
    """Two clean monthly runs (2025-02, then 2025-03 arriving); snapshots after each."""
    tmp = tmp_path_factory.mktemp("clean")
    db, inbox, out = _setup(world, tmp)
    _drop(inbox, world["months"] / "comtrade-202502.csv")
    first = _run(db, inbox, out)
    after_first = tmp / "after-first"
    after_first.mkdir()
    shutil.copyfile(db, after_first / "wh.duckdb")
    shutil.copytree(out, after_first / "out")
    _drop(inbox, world["months"] / "comtrade-202503.csv")
    second = _run(db, inbox, out)
    return {"db": db, "inbox": inbox, "out": out, "first": first, "second": second,
            "after_first": after_first, "alerts": _alerts(db)}


def test_two_months_in_a_row_pick_the_month_and_publish(clean):
    first, second, out = clean["first"], clean["second"], clean["out"]
    assert (first["month"], second["month"]) == ("2025-02", "2025-03")  # chosen from `reporting`
    assert second["window"] == ["2025-01", "2025-03"]
    assert [f["status"] for f in second["files"]] == ["skipped", "skipped", "loaded"]
    for month in ("2025-02", "2025-03"):
        assert (out / "reports" / f"report-{month}.md").exists()
        assert (out / "reports" / f"report-{month}.html").exists()
    parts = sorted(p.name for p in (out / "alerts").iterdir())
    assert parts == ["period=2024-12-01", "period=2025-01-01", "period=2025-02-01", "period=2025-03-01"]
    assert not list(out.glob(".monthly-staging-*"))
    # The Parquet of the window's months holds exactly the stored alerts.
    back = pl.read_parquet(out / "alerts", hive_partitioning=True)
    stored = clean["alerts"].filter(pl.col("period") >= dt.date(2025, 1, 1))
    assert sorted(back.filter(pl.col("period") >= dt.date(2025, 1, 1))["alert_id"]) == sorted(stored["alert_id"])
    assert back["run_id"].filter(back["period"] >= dt.date(2025, 1, 1)).unique().to_list() == [second["run_id"]]
    status = pl.read_parquet(out / "lead_status", hive_partitioning=True)
    assert status["period"].unique().sort().to_list() == [dt.date(2025, 2, 1), dt.date(2025, 3, 1)]
    assert [r[1] for r in _runs(clean["db"])] == ["complete", "complete"]


def test_rerun_of_the_same_month_gives_the_same_alerts(clean, tmp_path):
    db = tmp_path / "wh.duckdb"
    shutil.copyfile(clean["db"], db)
    out = tmp_path / "out"
    shutil.copytree(clean["out"], out)
    again = _run(db, clean["inbox"], out, month="2025-03")
    assert all(f["status"] == "skipped" for f in again["files"])
    now = _alerts(db)
    assert now["alert_id"].is_unique().all()
    assert now.select("alert_id", "score").equals(clean["alerts"].select("alert_id", "score"))
    runs = _runs(db)
    assert [r[1] for r in runs] == ["complete"] * 3  # the two months, then the rerun
    with Warehouse.open(db, read_only=True) as wh:
        assert wh.con.execute("SELECT count(*) - count(DISTINCT (period, lead_id)) FROM lead_status").fetchone()[0] == 0


def test_lead_lifecycle_new_continuing_closed(clean):
    with Warehouse.open(clean["db"], read_only=True) as wh:
        status = lifecycle.lifecycle(wh, "2025-03")
        alerts = wh.con.sql("SELECT lead_id, period FROM alerts").pl()
    seen = {m: set(alerts.filter(pl.col("period") == dt.date(2025, m, 1))["lead_id"]) for m in (1, 2, 3)}
    dec = set(alerts.filter(pl.col("period") == dt.date(2024, 12, 1))["lead_id"])
    by = {s: set(status.filter(pl.col("status") == s)["lead_id"]) for s in ("new", "continuing", "closed")}
    assert by["new"] and by["continuing"]
    assert by["new"] | by["continuing"] == seen[3]
    # Within one run (January to March) a corridor flagged again within the lead gap keeps its
    # lead_id, and the lifecycle calls it continuing, quiet months or not.
    assert seen[3] & (seen[1] | seen[2]) <= by["continuing"]
    new = status.filter(pl.col("status") == "new")
    assert (new["first_seen"] == dt.date(2025, 3, 1)).all()
    cont = status.filter(pl.col("status") == "continuing")
    assert (cont["first_seen"] < dt.date(2025, 3, 1)).all() and (cont["last_seen"] == dt.date(2025, 3, 1)).all()
    # Closed: last flagged in December, quiet for longer than a lead bridges.
    assert by["closed"] <= dec
    assert (status.filter(pl.col("status") == "closed")["last_seen"] == dt.date(2024, 12, 1)).all()
    # In February's run every lead was new or continuing from January, judged the same way.
    with Warehouse.open(clean["db"], read_only=True) as wh:
        assert wh.con.execute("SELECT count(*) FROM lead_status WHERE period = DATE '2025-02-01'").fetchone()[0]
    md = (clean["out"] / "reports" / "report-2025-03.md").read_text()
    order = [md.index(h) for h in ("## New this month", "## Continuing", "## Closed", "# Leads for 2025-03")]
    assert order == sorted(order)
    html = (clean["out"] / "reports" / "report-2025-03.html").read_text()
    assert html.index('id="lifecycle-new"') < html.index('id="lifecycle-continuing"') \
        < html.index('id="lifecycle-closed"') < html.index('<section id="leads">')


def test_revision_of_a_past_month_replaces_rows_and_rescores(clean, world, tmp_path):
    db, out = tmp_path / "wh.duckdb", tmp_path / "out"
    shutil.copyfile(clean["db"], db)
    shutil.copytree(clean["out"], out)
    inbox = tmp_path / "inbox"
    shutil.copytree(clean["inbox"], inbox)
    before = _alerts(db, "period = DATE '2025-02-01'")
    # Comtrade republishes February: one importer's antimony oxide imports from one partner, x40.
    feb = pl.read_csv(world["months"] / "comtrade-202502.csv", infer_schema=False)
    target = (feb.filter((pl.col("flowCode") == "M") & (pl.col("cmdCode") == "282580")
                         & (pl.col("partnerISO") != "W00") & (pl.col("partnerISO") != "CHN"))
              .sort(pl.col("primaryValue").cast(pl.Float64), descending=True).row(0, named=True))
    hit = ((pl.col("reporterISO") == target["reporterISO"]) & (pl.col("partnerISO") == target["partnerISO"])
           & (pl.col("cmdCode") == "282580") & (pl.col("flowCode") == "M"))
    revised = feb.filter(hit).with_columns(
        [(pl.col(c).cast(pl.Float64) * 40).cast(pl.String).alias(c) for c in ("primaryValue", "cifvalue")])
    revised.write_csv(tmp_path / "comtrade-202502-revised.csv")
    _drop(inbox, tmp_path / "comtrade-202502-revised.csv")
    result = _run(db, inbox, out, month="2025-03")
    loaded = [f for f in result["files"] if f["status"] == "loaded"]
    assert len(loaded) == 1 and loaded[0]["rows_replaced"] == revised.height > 0
    assert loaded[0]["rows_loaded"] == 0
    after = _alerts(db, "period = DATE '2025-02-01'")
    assert not after.select("alert_id", "score").equals(before.select("alert_id", "score"))
    with Warehouse.open(db, read_only=True) as wh:
        flagged = wh.con.execute(
            """SELECT count(*) FROM alerts WHERE period = DATE '2025-02-01' AND hs_code LIKE '2825%'
               AND (? IN (reporter, partner, via, destination)) AND (? IN (reporter, partner, via, origin))""",
            [target["reporterISO"], target["partnerISO"]]).fetchone()[0]
    assert flagged >= 1


def test_crash_between_steps_and_sigkill_leave_the_last_complete_run(clean, tmp_path, monkeypatch):
    db, out = tmp_path / "wh.duckdb", tmp_path / "out"
    shutil.copyfile(clean["after_first"] / "wh.duckdb", db)
    shutil.copytree(clean["after_first"] / "out", out)
    inbox = tmp_path / "inbox"
    shutil.copytree(clean["inbox"], inbox)  # March has arrived since February's run
    alerts_before, runs_before, tree_before = _alerts(db), _runs(db), _tree(out)

    def unchanged() -> None:
        assert _alerts(db).equals(alerts_before)
        assert _runs(db) == runs_before
        assert {k: v for k, v in _tree(out).items() if not k.startswith(".monthly-staging-")} == tree_before

    # 1. A step fails after scoring, before the commit: nothing of the run is kept.
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(publish, "write_reports", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        _run(db, inbox, out)
    monkeypatch.undo()
    unchanged()

    # 2. The process is killed (SIGKILL) while it writes its Parquet and report.
    cmd = [sys.executable, "-m", "pipelines.monthly", "--db", str(db), "--inbox", str(inbox), "--out", str(out),
           "--window-months", str(WINDOW), "--log-format", "json", *sum((["--detector", d] for d in DETECTORS), [])]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".monthly-staging-*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    unchanged()

    # 3. The next run (command line, JSON logs) cleans up, completes, and matches the clean run.
    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    events = [json.loads(line) for line in rerun.stdout.splitlines()]
    assert [e["step"] for e in events if e["step"] != "load"] == [
        "scan", "ingest", "month", "lead_status", "stage", "score", "publish", "done"]
    assert all(isinstance(e["seconds"], float | int) for e in events)
    assert events[-1]["month"] == "2025-03" and "leads_new" in events[-1]
    assert not list(out.glob(".monthly-staging-*"))
    assert _alerts(db).select("alert_id", "score").equals(clean["alerts"].select("alert_id", "score"))
    assert [r[1] for r in _runs(db)] == ["complete", "complete"]
    published = pl.read_parquet(out / "alerts", hive_partitioning=True)
    assert sorted(published.filter(pl.col("period") >= dt.date(2025, 1, 1))["alert_id"]) == sorted(
        clean["alerts"].filter(pl.col("period") >= dt.date(2025, 1, 1))["alert_id"])


def test_command_line_exit_codes_and_unknown_files(clean, tmp_path):
    db, out = tmp_path / "wh.duckdb", tmp_path / "out"
    shutil.copyfile(clean["db"], db)
    inbox = tmp_path / "inbox"
    shutil.copytree(clean["inbox"], inbox)
    (inbox / "readme.txt").write_text("not a trade table\n")
    # Comext-like, but without the product code: refused, not loaded as Comext (or anything else)
    (inbox / "eu-trade.csv").write_text("REPORTER,PARTNER,FLOW,PERIOD,VALUE_EUR\nBE,CN,1,202503,100\n")
    detectors = sum((["--detector", d] for d in DETECTORS), [])
    args = ["--db", str(db), "monthly", "--inbox", str(inbox), "--out", str(out), "--month", "2025-03",
            "--window-months", str(WINDOW), *detectors]
    flagged = CliRunner().invoke(cli_main, [*args, "--fail-on-high", "--log-format", "json"])
    lines = [json.loads(line) for line in flagged.output.splitlines()]
    refused = {Path(e["file"]).name: e["message"] for e in lines if e["step"] == "scan" and e.get("level") == "warning"}
    assert set(refused) == {"readme.txt", "eu-trade.csv"}
    assert refused["eu-trade.csv"].startswith("refused, not loaded: columns not recognised (REPORTER, PARTNER")
    assert not [e for e in lines if e["step"] == "load" and "eu-trade" in e["file"]]
    high_new = json.loads((out / "last_run.json").read_text())["high_new"]
    with Warehouse.open(db, read_only=True) as wh:
        assert wh.con.execute("SELECT count(*) FROM loads WHERE file LIKE '%eu-trade%'").fetchone()[0] == 0
        assert high_new == lines[-1]["high_new"] == wh.con.execute(
            "SELECT count(*) FROM lead_status WHERE period = DATE '2025-03-01' AND status = 'new' "
            f"AND lead_score >= {HIGH}").fetchone()[0]
    assert flagged.exit_code == (3 if high_new else 0)
    bad = CliRunner().invoke(cli_main, ["--db", str(db), "monthly", "--inbox", str(inbox), "--out", str(out),
                                        "--month", "2030-01", "--log-format", "json"])
    assert bad.exit_code == 1
    error = json.loads(bad.output.splitlines()[-1])
    assert error["step"] == "error" and "2030-01" in error["message"]


def _stored_alerts(wh, rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    """Alerts (period, via, destination) on antimony oxide, given ids and leads by the scoring rule
    and stored as a run would store them."""
    from detector.detectors.base import ALERT_SCHEMA, DETECTOR_OUTPUT_SCHEMA
    from detector.scoring import with_ids_and_leads

    found = pl.DataFrame(
        [{"detector": "transshipment", "period": dt.date.fromisoformat(f"{p}-01"), "hs_code": "282580",
          "commodity": "antimony", "origin": "CHN", "via": via, "destination": dest, "reporter": dest,
          "partner": via, "score": 0.5, "observed": 1e6, "expected": 1e5, "evidence": "{}",
          "explanation": "test"} for p, via, dest in rows],
        schema=DETECTOR_OUTPUT_SCHEMA).with_columns(pl.lit("run-test").alias("run_id"))
    alerts = with_ids_and_leads(found).select(list(ALERT_SCHEMA))
    wh.con.register("stored", alerts)
    wh.con.execute(f"INSERT INTO alerts ({', '.join(ALERT_SCHEMA)}) SELECT * FROM stored")
    wh.con.unregister("stored")
    return alerts


def test_a_lead_with_one_quiet_month_is_continuing_not_new(tmp_path):
    with Warehouse.open(tmp_path / "w.duckdb") as wh:
        alerts = _stored_alerts(wh, [
            ("2025-01", "THA", "USA"), ("2025-03", "THA", "USA"),  # quiet in February
            ("2025-03", "VNM", "USA"),                             # first flagged in March
            ("2024-12", "MYS", "USA"),                             # quiet since: three months
            ("2025-01", "KOR", "USA"),                             # quiet for two months: still open
        ])
        counts = lifecycle.write_lead_status(wh.con, dt.date(2025, 3, 1), "run-test")
        status = lifecycle.lifecycle(wh, "2025-03")
    lead = {r["shipper"]: r for r in status.iter_rows(named=True)}
    thai = alerts.filter(pl.col("via") == "THA")["lead_id"].unique()
    assert thai.len() == 1  # the scoring rule bridges the quiet month: one lead
    assert lead["THA"]["status"] == "continuing" and lead["THA"]["lead_id"] == thai[0]
    assert lead["THA"]["first_seen"] == dt.date(2025, 1, 1)
    assert lead["VNM"]["status"] == "new"
    assert lead["MYS"]["status"] == "closed" and lead["MYS"]["last_seen"] == dt.date(2024, 12, 1)
    assert "KOR" not in lead
    assert counts == {"new": 1, "continuing": 1, "closed": 1, "dismissed": 0, "watched": 0, "awaiting_review": 2}
