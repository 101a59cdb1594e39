"""Analysts' verdicts on leads, on the sample world scored month by month: lead ids that survive
monthly runs, recording verdicts, and what they do to the next run's report."""

from __future__ import annotations

import datetime as dt
import shutil

import polars as pl
import pytest

from detector.months import Window
from detector.runner import run_detectors
from detector.sample import generate_world
from detector.warehouse import Warehouse

# Rule-based detectors keep each run to a few seconds.
DETECTORS = ["third_country_surge", "transshipment", "mirror_gap", "unit_value", "code_shift", "new_corridor"]
# Three monthly runs, each re-scoring the three months ending at its month.
WINDOWS = [Window(dt.date(2024, 11, 1), dt.date(2025, 1, 1)), Window(dt.date(2024, 12, 1), dt.date(2025, 2, 1)),
           Window(dt.date(2025, 1, 1), dt.date(2025, 3, 1))]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """The sample world loaded into a warehouse (no alerts yet), copied by each test."""
    root = tmp_path_factory.mktemp("verdicts")
    paths = generate_world(root / "sample", start="2022-01", end="2025-04")["paths"]
    from detector.ingest.comtrade import load_comtrade

    base = root / "base.duckdb"
    with Warehouse.open(base) as wh:
        load_comtrade(wh, [root / "sample" / "comtrade_monthly.csv"])
    return {"base": base, "root": root, "paths": paths}


def _copy(world, tmp_path) -> str:
    db = tmp_path / "wh.duckdb"
    shutil.copyfile(world["base"], db)
    return str(db)


def _stored(wh) -> pl.DataFrame:
    return wh.frame("SELECT alert_id, period, lead_id FROM alerts ORDER BY alert_id")


@pytest.fixture(scope="module")
def monthly(world, tmp_path_factory) -> dict:
    """Three successive monthly runs, the alerts after each; and one run over the whole span."""
    tmp = tmp_path_factory.mktemp("monthly")
    db = _copy(world, tmp)
    after = []
    with Warehouse.open(db) as wh:
        for window in WINDOWS:
            run_detectors(wh, window, DETECTORS)
            after.append(_stored(wh))
    once = _copy(world, tmp_path_factory.mktemp("once"))
    with Warehouse.open(once) as wh:
        run_detectors(wh, Window(WINDOWS[0].start, WINDOWS[-1].end), DETECTORS)
        whole = _stored(wh)
    return {"db": db, "after": after, "whole": whole}


def test_a_continuing_lead_keeps_its_id_across_monthly_runs(monthly):
    first, second, third = monthly["after"]
    # Episodes that began before the last run's window (January) and go on inside it: their
    # alerts of February or March were scored by a run that did not see December, yet carry
    # the id that hashes the December start, found among the alerts the earlier runs stored.
    start = WINDOWS[-1].start
    inside = set(third.filter(pl.col("period") >= start)["lead_id"])
    before = set(third.filter(pl.col("period") < start)["lead_id"])
    lasting = inside & before
    assert lasting, "the sample world has a lead flagged before and inside the last window"
    assert lasting <= set(second["lead_id"])  # the id the second run gave it
    for before, after in ((first, second), (second, third)):
        shared = before.join(after, on="alert_id", suffix="_after")
        assert shared.height and (shared["lead_id"] == shared["lead_id_after"]).all()
    # Month by month the runs give the alerts the lead ids that one run over the whole span gives them.
    both = third.join(monthly["whole"], on="alert_id", suffix="_whole")
    assert both.height >= 0.9 * monthly["whole"].height
    assert (both["lead_id"] == both["lead_id_whole"]).all()


# ---------------------------------------------------------------- recording verdicts
def _cli(db, *args):
    from click.testing import CliRunner

    from detector.cli import main

    return CliRunner().invoke(main, ["--db", db, *args])


def _verdicts(db) -> pl.DataFrame:
    with Warehouse.open(db, read_only=True) as wh:
        return wh.frame("SELECT * FROM verdicts ORDER BY reviewed_at, verdict_id")


def _top_leads(db, n: int) -> list[str]:
    from detector import verdicts

    with Warehouse.open(db, read_only=True) as wh:
        awaiting, _ = verdicts.review_list(wh)
    return awaiting["lead_id"].head(n).to_list()


def test_review_records_a_verdict_and_refuses_bad_input_whole(monthly, tmp_path):
    db = str(tmp_path / "wh.duckdb")
    shutil.copyfile(monthly["db"], db)
    first, second = _top_leads(db, 2)
    ok = _cli(db, "review", first, "--verdict", "dismissed", "--note", "smelter expansion, known", "--by", "ana",
              "--until", "2025-06")
    assert ok.exit_code == 0, ok.output
    assert first in ok.output and "dismissed until 2025-06 by ana" in ok.output
    for args, message in [
        (["nosuchlead", "--verdict", "watch", "--note", "x"], "unknown lead nosuchlead"),
        ([second, "--verdict", "maybe", "--note", "x"], "verdict 'maybe': choose confirmed, dismissed, watch"),
        ([second, "--verdict", "watch", "--note", "x", "--until", "2025-13"], "bad until month '2025-13'"),
        ([second, "--verdict", "watch"], "a note is required"),
    ]:
        bad = _cli(db, "review", *args)
        assert bad.exit_code == 1 and message in bad.output and "Traceback" not in bad.output
        assert len(bad.output.strip().splitlines()) == 1
    # A file with one bad line writes nothing; the same file corrected writes every line.
    csv = tmp_path / "verdicts.csv"
    csv.write_text(f"lead_id,verdict,note,by,until\n{second},watch,odd timing,bo,\n{first},confirmed,seized,,2025-1\n")
    bad = _cli(db, "review", "--file", str(csv))
    assert bad.exit_code == 1 and f"{csv}:3: bad until month '2025-1'" in bad.output
    assert _verdicts(db).height == 1
    csv.write_text(f"lead_id,verdict,note,by,until\n{second},watch,odd timing,bo,\n{first},confirmed,seized,,\n")
    good = _cli(db, "review", "--file", str(csv), "--by", "cy")
    assert good.exit_code == 0, good.output
    stored = _verdicts(db)
    assert stored.height == 3
    given = {(r["lead_id"], r["verdict"], r["reviewed_by"], r["until"]) for r in stored.iter_rows(named=True)}
    assert given == {(first, "dismissed", "ana", dt.date(2025, 6, 1)), (second, "watch", "bo", None),
                     (first, "confirmed", "cy", None)}
    twice = tmp_path / "twice.csv"
    twice.write_text(f"lead_id,verdict,note\n{second},watch,a\n{second},confirmed,b\n")
    bad = _cli(db, "review", "--file", str(twice))
    assert bad.exit_code == 1 and "appears more than once" in bad.output and _verdicts(db).height == 3
    # Each verdict carries its lead as it stood: corridor, episode, score and run.
    with Warehouse.open(db, read_only=True) as wh:
        lead = wh.frame("SELECT lead_id, max(lead_score) AS s, max(period) AS last, any_value(run_id) AS run "
                        "FROM alerts WHERE lead_id = $l GROUP BY lead_id", {"l": first}).row(0, named=True)
    row = stored.row(0, named=True)
    assert row["lead_score"] == pytest.approx(lead["s"]) and row["last_seen"] == lead["last"]
    assert row["run_id"] == lead["run"] and row["destination"] and row["families"]
    listing = _cli(db, "review", "--list")
    assert listing.exit_code == 0
    assert "Verdicts given: 3" in listing.output and "seized" in listing.output
    awaiting = listing.output.split("Verdicts given")[0]
    assert first not in awaiting and second not in awaiting


def test_verdicts_survive_a_rerun_a_revision_and_a_failed_run(monthly, tmp_path):
    from detector import verdicts

    db = str(tmp_path / "wh.duckdb")
    shutil.copyfile(monthly["db"], db)
    leads = _top_leads(db, 3)
    with Warehouse.open(db) as wh:
        verdicts.record(wh, pl.DataFrame({"lead_id": leads, "verdict": ["confirmed", "dismissed", "watch"],
                                          "note": ["a", "b", "c"]}), analyst="ana")
    before = _verdicts(db)

    def judged(wh) -> dict[str, str]:
        verdicts.register_families(wh.con)
        got = wh.frame(verdicts.open_leads_sql()).filter(pl.col("v_verdict").is_not_null())
        return dict(zip(got["lead_id"], got["v_verdict"], strict=True))

    with Warehouse.open(db) as wh:
        assert judged(wh) == dict(zip(leads, ["confirmed", "dismissed", "watch"], strict=True))
        run_detectors(wh, WINDOWS[-1], DETECTORS)  # rerun
        assert judged(wh) == dict(zip(leads, ["confirmed", "dismissed", "watch"], strict=True))
        # A revision of the window's months (every value 5 % higher), re-scored.
        wh.con.execute("UPDATE flows SET value_usd = value_usd * 1.05 WHERE period >= ?", [WINDOWS[-1].start])
        run_detectors(wh, WINDOWS[-1], DETECTORS)
        assert set(judged(wh).values()) == {"confirmed", "dismissed", "watch"}

        def broken(con, result):
            raise RuntimeError("killed before the commit")

        with pytest.raises(RuntimeError):
            run_detectors(wh, WINDOWS[-1], DETECTORS, before_commit=broken)
    assert _verdicts(db).equals(before)


# ---------------------------------------------------------------- what a verdict does
def _ranked(db, **kw) -> pl.DataFrame:
    from detector.reports.leads import ranked_leads

    with Warehouse.open(db, read_only=True) as wh:
        return ranked_leads(wh, **kw)


def _again(db, lead: str, **changes) -> None:
    """The lead's latest verdict once more, given a minute later, with some fields as they might have stood."""
    replace = ", ".join(f"{sql} AS {name}" for name, sql in changes.items())
    with Warehouse.open(db) as wh, wh.transaction() as con:
        con.execute(f"""INSERT INTO verdicts
                        SELECT * REPLACE (verdict_id || 'x' AS verdict_id, reviewed_at + INTERVAL 1 MINUTE AS reviewed_at,
                                          {replace})
                        FROM verdicts v WHERE lead_id = ? ORDER BY reviewed_at DESC LIMIT 1""", [lead])


def test_dismissed_leads_leave_the_report_until_they_come_back(monthly, tmp_path):
    from detector.export import export_parquet

    db = str(tmp_path / "wh.duckdb")
    shutil.copyfile(monthly["db"], db)
    before = _ranked(db)
    top, second = before["lead_id"][0], before["lead_id"][1]
    assert _cli(db, "review", top, "--verdict", "dismissed", "--note", "steady smelter demand", "--by", "ana",
                "--until", "2025-12").exit_code == 0
    after = _ranked(db)
    assert top not in after["lead_id"] and after["lead_id"][0] == second and after["rank"][0] == 1
    assert after.height == before.height - 1
    # Kept in the warehouse and the Parquet.
    with Warehouse.open(db, read_only=True) as wh:
        n = wh.con.execute("SELECT count(*) FROM alerts WHERE lead_id = ?", [top]).fetchone()[0]
        export_parquet(wh, tmp_path / "out")
    assert n and pl.read_parquet(tmp_path / "out" / "alerts").filter(pl.col("lead_id") == top).height == n
    score = before.filter(pl.col("lead_id") == top)["score"][0]
    for change, reason in [
        ({"until": "DATE '2024-12-01'"}, "dismissal ended 2024-12"),                    # --until passed
        ({"lead_score": f"{score - 0.2}"}, f"score {round(score, 2)} above {round(score - 0.2, 2)}"),  # worse
        ({"families": "'volume'"}, "new evidence: "),                                 # a family not seen then
    ]:
        _again(db, top, **change)
        back = _ranked(db).filter(pl.col("lead_id") == top).row(0, named=True)
        assert back["rank"] == 1 and back["verdict"] == "dismissed"
        assert back["verdict_text"].startswith("dismissed on ") and "by ana: steady smelter demand" in back["verdict_text"]
        assert reason in back["came_back"] and reason in back["verdict_text"]
        _again(db, top, until="DATE '2025-12-01'", lead_score=f"{score}", families="v.families")


def test_watch_is_marked_everywhere_and_confirmed_leads_are_cases(monthly, tmp_path):
    db = str(tmp_path / "wh.duckdb")
    shutil.copyfile(monthly["db"], db)
    top, second = _ranked(db)["lead_id"].head(2)
    assert _cli(db, "review", top, "--verdict", "watch", "--note", "new trader", "--by", "bo").exit_code == 0
    assert _cli(db, "review", second, "--verdict", "confirmed", "--note", "seized", "--by", "cy").exit_code == 0
    for fmt in ("text", "markdown", "html"):
        out = _cli(db, "report", "--format", fmt, "--top", "5")
        assert out.exit_code == 0 and "WATCH since" in out.output and "by bo" in out.output, fmt
        assert "CONFIRMED on" in out.output, fmt
    # The machine formats carry the verdict on every alert row of the lead, and nothing on the others.
    import io
    import json

    rows = json.loads(_cli(db, "report", "--format", "json", "--top", "5").output)
    said = {(r["lead_id"], r["verdict"], r["verdict_by"]) for r in rows if r["verdict"]}
    assert said == {(top, "watch", "bo"), (second, "confirmed", "cy")}
    assert all(r["verdict_at"].startswith("20") for r in rows if r["verdict"])
    assert any(r["verdict"] is None for r in rows)
    table = pl.read_csv(io.StringIO(_cli(db, "report", "--format", "csv", "--top", "5").output))
    assert set(table.filter(pl.col("verdict").is_not_null())
               .select("lead_id", "verdict", "verdict_note").unique().iter_rows()) == {
        (top, "watch", "new trader"), (second, "confirmed", "seized")}
    # detector evaluate takes the confirmed verdict as a case without a file.
    result = _cli(db, "evaluate", "--format", "json", "--top", "5")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    assert scores["cases_total"] == 1 and scores["cases_found"] == 1
    assert scores["cases"][0]["id"] == f"verdict-{second}" and scores["cases"][0]["rank"] == 2


# ---------------------------------------------------------------- learning from verdicts
NEXT = Window(dt.date(2025, 2, 1), dt.date(2025, 4, 1))


def test_verdicts_on_decoys_and_cases_move_next_months_ranking(monthly, world, tmp_path):
    from detector import verdicts
    from detector.evaluate import load_cases, match_alerts
    from detector.reports.leads import ranked_leads

    learnt, plain = str(tmp_path / "learnt.duckdb"), str(tmp_path / "plain.duckdb")
    shutil.copyfile(monthly["db"], learnt)
    with Warehouse.open(learnt) as wh:
        matches = match_alerts(wh.frame("SELECT * FROM alerts"), load_cases(world["root"] / "sample" / "cases.json"))
        top = matches.filter(pl.col("rank") <= 100)
        decoys = top.filter(pl.col("label") == "decoy")["lead_id"].unique().sort().to_list()
        found = top.filter(pl.col("label") == "case").group_by("case_id").agg(pl.col("lead_id").first(),
                                                                               pl.col("rank").min())
        cases = found.sort("rank")["lead_id"].head(2).to_list()
        assert decoys and len(cases) == 2 and not set(decoys) & set(cases)
        verdicts.record(wh, pl.DataFrame({"lead_id": decoys + cases,
                                          "verdict": ["dismissed"] * len(decoys) + ["confirmed"] * 2,
                                          "note": "reviewed"}), analyst="ana")
        weights = verdicts.family_weights(wh.con)
        shares = verdicts.verdict_shares(wh.con)
        # Families confirmed on fewer than half their reviewed leads lose weight, the others gain.
        assert ((shares["weight"] < 1) == (shares["confirmed_share"] < 0.5)).all()
        lower = set(shares.filter(pl.col("weight") < 1)["name"])
        higher = set(shares.filter(pl.col("weight") > 1)["name"])
        # Every dismissed decoy was raised by a family now weighted down.
        decoy_families = wh.frame("SELECT families FROM verdicts WHERE verdict = 'dismissed'")["families"]
        assert all(set(f.split(",")) & lower for f in decoy_families)
        # Damped: a handful of verdicts moves a weight by a few per cent.
        assert all(0.9 < w < 1.1 for w in weights.values())
    shutil.copyfile(learnt, plain)
    runs = {}
    for db, learning in ((learnt, True), (plain, False)):
        with Warehouse.open(db) as wh:
            runs[learning] = run_detectors(wh, NEXT, DETECTORS, learning=learning).alerts
            if learning:
                report = ranked_leads(wh, start="2025-02", end="2025-04")
                settings = wh.con.execute("SELECT settings FROM runs ORDER BY started DESC LIMIT 1").fetchone()[0]
    assert '"family_weights"' in settings
    family_of = verdicts.families_frame()
    per_lead = (runs[True].join(family_of, on="detector").group_by("lead_id")
                .agg(pl.col("family").unique().alias("families"), pl.col("lead_score").first(),
                     pl.col("lead_rank").first()))
    both = per_lead.join(runs[False].group_by("lead_id").agg(pl.col("lead_score").first().alias("default"),
                                                             pl.col("lead_rank").first().alias("default_rank")),
                         on="lead_id")
    down = both.filter(pl.col("families").list.eval(pl.element().is_in(list(lower))).list.all())
    up = both.filter(pl.col("families").list.eval(pl.element().is_in(list(higher))).list.all())
    assert down.height and up.height
    assert (down["lead_score"] < down["default"]).all() and (up["lead_score"] > up["default"]).all()
    # Ranking: no lead of the confirmed families falls behind one of the dismissed families that it led.
    pairs = up.join(down, how="cross", suffix="_down")
    assert not pairs.filter((pl.col("default_rank") < pl.col("default_rank_down"))
                            & (pl.col("lead_rank") > pl.col("lead_rank_down"))).height
    # In the next month's report the dismissed decoys that go on stay out, unless they came back.
    shown = report.filter(pl.col("lead_id").is_in(decoys))
    assert shown["came_back"].is_not_null().all()
    # --no-learning keeps every weight at 1: the lead scores of the plain run are the noisy-OR of the
    # families' best scores.
    plain_check = (runs[False].join(family_of, on="detector").group_by("lead_id", "family")
                   .agg(pl.col("score").max()).group_by("lead_id")
                   .agg((1 - (1 - pl.col("score")).product()).alias("expect"))
                   .join(runs[False].group_by("lead_id").agg(pl.col("lead_score").first()), on="lead_id"))
    assert ((plain_check["expect"] - plain_check["lead_score"]).abs() < 1e-9).all()


def test_the_damped_rule_ten_verdicts_move_a_weight_a_little_a_thousand_a_lot(tmp_path):
    from detector import verdicts

    with Warehouse.open(tmp_path / "w.duckdb") as wh:
        def dismiss(n: int, family: str) -> None:
            wh.con.execute(f"""INSERT INTO verdicts (verdict_id, lead_id, verdict, note, reviewed_by, reviewed_at,
                                                     families, detectors)
                               SELECT '{family}' || i, '{family}' || i, 'dismissed', 'n', 'a', TIMESTAMP '2025-01-01',
                                      '{family}', '{family}' FROM range({n}) t(i)""")
        dismiss(10, "ten")
        dismiss(1000, "thousand")
        weights = verdicts.family_weights(wh.con)
    assert 0.85 < weights["ten"] < 0.95  # a little
    assert weights["thousand"] < 0.15    # a lot


# ---------------------------------------------------------------- everywhere a lead appears
def test_monthly_lifecycle_report_and_parquet_show_the_verdicts(world, tmp_path):
    from detector.monthly import lifecycle, run_monthly

    table = pl.read_csv(world["root"] / "sample" / "comtrade_monthly.csv", infer_schema=False)
    inbox, out, db = tmp_path / "inbox", tmp_path / "out", str(tmp_path / "wh.duckdb")
    inbox.mkdir()
    table.filter(pl.col("period") <= "202503").write_csv(inbox / "comtrade.csv")

    def run() -> dict:
        return run_monthly(db, inbox, out, month="2025-03", detectors=DETECTORS, window_months=3, charts=1)

    first = run()
    with Warehouse.open(db, read_only=True) as wh:
        flagged = lifecycle.lifecycle(wh, "2025-03").filter(pl.col("status").is_in(["new", "continuing"]))
    assert first["leads"]["awaiting_review"] == flagged.height >= 2
    dismissed, watched = flagged["lead_id"].head(2)
    assert _cli(db, "review", dismissed, "--verdict", "dismissed", "--note", "seasonal", "--by", "ana").exit_code == 0
    assert _cli(db, "review", watched, "--verdict", "watch", "--note", "new trader", "--by", "bo",
                "--until", "2025-06").exit_code == 0
    again = run()
    assert again["leads"]["awaiting_review"] == first["leads"]["awaiting_review"] - 2
    assert again["leads"]["dismissed"] == 1 and again["leads"]["watched"] == 1
    with Warehouse.open(db, read_only=True) as wh:
        status = dict(lifecycle.lifecycle(wh, "2025-03").select("lead_id", "status").iter_rows())
    assert status[dismissed] == "dismissed" and status[watched] == "watched"
    md = (out / "reports" / "report-2025-03.md").read_text()
    assert "## Watched (1)" in md and "## Dismissed (left out of the ranked leads) (1)" in md
    ranked = md.split("# Leads for 2025-03")[1]
    assert "WATCH since" in ranked and "by bo: new trader (until 2025-06)" in ranked
    assert dismissed not in ranked
    html = (out / "reports" / "report-2025-03.html").read_text()
    assert 'id="lifecycle-watched"' in html and 'id="verdicts"' in html
    # The verdicts are published with the window's Parquet, read back with their documented columns.
    published = pl.read_parquet(out / "verdicts", hive_partitioning=True)
    assert sorted(published["lead_id"]) == sorted([dismissed, watched])
    assert set(published["verdict"]) == {"dismissed", "watch"}
    from tests.test_export import _documented

    documented = _documented()["verdicts"]
    import duckdb

    actual = dict((n, t) for n, t, *_ in duckdb.sql(
        f"DESCRIBE SELECT * FROM read_parquet('{(out / 'verdicts').as_posix()}/*/*.parquet', hive_partitioning = true)"
    ).fetchall())
    assert actual == documented
