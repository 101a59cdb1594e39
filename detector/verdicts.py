"""Analysts' verdicts on leads: confirmed, dismissed or watch, kept in the append-only `verdicts` table.

A verdict is about a lead: its corridor (commodity, shipper, destination) and its episode (the
flagged months, quiet gaps of up to `LEAD_GAP_MONTHS` bridged; `detector.scoring`). It is recorded
with who gave it, when, why, on which run and at which lead score, and with the corridor and
episode as they stood, so that it finds its lead again after a rerun or a revision
(`verdict_of_leads_sql`): by lead id, else by corridor and an overlapping episode.

Rows are only ever inserted, each batch in its own transaction, all lines of a batch or none:
no run, revision or killed process can lose a verdict. The latest verdict on a lead is the one
that holds.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
from pathlib import Path

import polars as pl

from detector.errors import DetectorError, InputError
from detector.scoring import LEAD_GAP_MONTHS, LEAD_STRENGTH_SQL, SHIPPER_SQL, STORY_SQL
from detector.userfiles import read_small_csv

VERDICTS = ("confirmed", "dismissed", "watch")
FILE_COLUMNS = ("lead_id", "verdict", "note")  # required; `by` and `until` optional
COLUMNS = ["verdict_id", "lead_id", "verdict", "note", "reviewed_by", "reviewed_at", "until", "run_id",
           "lead_score", "commodity", "shipper", "destination", "first_seen", "last_seen", "detectors",
           "families"]


def families_frame() -> pl.DataFrame:
    """detector -> evidence family, from the registry."""
    from detector.detectors import registry

    specs = registry.all_detectors()
    return pl.DataFrame({"detector": list(specs), "family": [s.evidence_family for s in specs.values()]})


def register_families(con) -> None:
    """Make `detector_families` (detector, family) readable by the SQL of this module."""
    con.register("detector_families", families_frame())


# One row per stored lead: its corridor, episode so far, latest score and run, detectors and families.
LEADS_SQL = f"""
SELECT a.lead_id,
       any_value({STORY_SQL}) AS commodity, any_value({SHIPPER_SQL}) AS shipper,
       any_value(a.destination) AS destination,
       min(a.period) AS first_seen, max(a.period) AS last_seen,
       arg_max({LEAD_STRENGTH_SQL}, a.period) AS lead_score,
       arg_max(a.run_id, a.period) AS run_id,
       string_agg(DISTINCT a.detector, ',' ORDER BY a.detector) AS detectors,
       string_agg(DISTINCT coalesce(f.family, a.detector), ',' ORDER BY coalesce(f.family, a.detector)) AS families
FROM alerts a LEFT JOIN detector_families f ON f.detector = a.detector
WHERE a.lead_id IS NOT NULL
GROUP BY a.lead_id
"""


def verdict_of_leads_sql(leads: str = f"({LEADS_SQL})") -> str:
    """SQL: each lead of `leads` (columns of LEADS_SQL) that has a verdict, with the latest one that
    applies to it: given on its lead id, or on its corridor for an episode its months overlap or
    continue (within the lead gap). Columns: lead_id, then the verdict's columns prefixed `v_`."""
    cols = ", ".join(f"v.{c} AS v_{c}" for c in COLUMNS)
    return f"""
    SELECT * EXCLUDE (pick) FROM (
        SELECT l.lead_id, {cols},
               row_number() OVER (PARTITION BY l.lead_id ORDER BY v.reviewed_at DESC, v.verdict_id DESC) AS pick
        FROM {leads} l
        JOIN verdicts v
          ON v.lead_id = l.lead_id
          OR (v.commodity IS NOT DISTINCT FROM l.commodity AND v.shipper IS NOT DISTINCT FROM l.shipper
              AND v.destination IS NOT DISTINCT FROM l.destination
              AND l.first_seen <= v.last_seen + INTERVAL {LEAD_GAP_MONTHS + 1} MONTH
              AND l.last_seen >= v.first_seen))
    WHERE pick = 1
    """


def has_table(con) -> bool:
    """Whether the warehouse has the verdicts table (a warehouse opened read-only before any writing
    command of this version has not)."""
    con.complete()
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'verdicts'"
                            ).fetchall()[0][0])


def default_analyst() -> str:
    """Who gives a verdict when --by is not given: $DETECTOR_ANALYST, else the login name."""
    try:
        return os.environ.get("DETECTOR_ANALYST") or getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (some containers): say so rather than fail
        return "unknown"


def read_verdict_file(path) -> pl.DataFrame:
    """A CSV of verdicts, one lead per line: lead_id,verdict,note[,by][,until] (header required)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    df = read_small_csv(path, FILE_COLUMNS, "lead_id,verdict,note[,by][,until]")
    unknown = [c for c in df.columns if c not in (*FILE_COLUMNS, "by", "until")]
    if unknown:
        raise InputError(path, f"unknown column(s) {', '.join(unknown)}; expected lead_id,verdict,note[,by][,until]", 1)
    if df.height == 0:
        raise InputError(path, "no verdicts in the file")
    return df.with_row_index("line", offset=2).with_columns(pl.lit(str(path)).alias("source"))


def one_verdict(lead_id: str, verdict: str | None, note: str | None, by: str | None = None,
                until: str | None = None) -> pl.DataFrame:
    """The verdict of the command line as a one-line batch."""
    return pl.DataFrame({"lead_id": [lead_id], "verdict": [verdict], "note": [note], "by": [by], "until": [until],
                         "line": [None], "source": [None]},
                        schema={"lead_id": pl.String, "verdict": pl.String, "note": pl.String, "by": pl.String,
                                "until": pl.String, "line": pl.UInt32, "source": pl.String})


def _checked(batch: pl.DataFrame, leads: pl.DataFrame, analyst: str) -> pl.DataFrame:
    """The batch with its fields cleaned and checked; the first bad line raises (one line)."""
    for col, dtype in (("by", pl.String), ("until", pl.String), ("line", pl.UInt32), ("source", pl.String)):
        if col not in batch.columns:
            batch = batch.with_columns(pl.lit(None, dtype).alias(col))
    text = pl.col
    b = batch.with_columns(
        text("lead_id").str.strip_chars(), text("verdict").str.strip_chars().str.to_lowercase(),
        text("note").str.strip_chars(), text("by").str.strip_chars(), text("until").str.strip_chars(),
    ).with_columns(
        pl.when(text("by").is_null() | (text("by") == "")).then(pl.lit(analyst)).otherwise(text("by")).alias("by"),
        pl.when(text("until") == "").then(None).otherwise(text("until")).alias("until"),
    )
    month_ok = text("until").str.contains(r"^\d{4}-(0[1-9]|1[0-2])$")
    b = b.with_columns(
        pl.when(month_ok).then((text("until") + "-01").str.to_date(strict=False)).alias("until_month"))
    known = b.join(leads.select("lead_id", pl.lit(True).alias("_known")), on="lead_id", how="left")
    problem = (
        pl.when(text("lead_id").is_null() | (text("lead_id") == "")).then(pl.lit("no lead id"))
        .when(pl.col("lead_id").is_duplicated())
        .then(pl.format("lead {} appears more than once; one verdict per lead in a file", text("lead_id")))
        .when(text("_known").is_null())
        .then(pl.format("unknown lead {}; `detector review --list` shows the leads", text("lead_id")))
        .when(~text("verdict").is_in(list(VERDICTS)) | text("verdict").is_null())
        .then(pl.format("verdict '{}': choose {}", text("verdict").fill_null(""), pl.lit(", ".join(VERDICTS))))
        .when(text("note").is_null() | (text("note") == ""))
        .then(pl.lit("a note is required: say why"))
        .when(text("until").is_not_null() & ~month_ok)
        .then(pl.format("bad until month '{}': expected YYYY-MM", text("until")))
    )
    bad = (known.with_columns(problem.alias("problem")).filter(pl.col("problem").is_not_null())
           .sort("line", nulls_last=True))
    if bad.height:
        first = bad.row(0, named=True)
        more = f" ({bad.height - 1} more bad line{'s' if bad.height > 2 else ''}; nothing recorded)" \
            if bad.height > 1 else " (nothing recorded)"
        if first["source"] is not None:
            raise InputError(first["source"], first["problem"] + more, first["line"])
        raise DetectorError(first["problem"])
    return b


def record(wh, batch: pl.DataFrame, analyst: str | None = None, at: dt.datetime | None = None) -> pl.DataFrame:
    """Record a batch of verdicts (one_verdict or read_verdict_file): all of them, in one
    transaction, or none (the first bad line raises). Returns the rows written."""
    con = wh.con
    con.complete()
    with wh.transaction():
        register_families(con)
        leads = con.sql(LEADS_SQL).pl()
        checked = _checked(batch, leads, analyst or default_analyst())
        at = at or dt.datetime.now(dt.UTC).replace(tzinfo=None)
        rows = checked.join(leads, on="lead_id", how="left").select(
            "lead_id", "verdict", "note", pl.col("by").alias("reviewed_by"), pl.lit(at).alias("reviewed_at"),
            pl.col("until_month").alias("until"), "run_id", "lead_score", "commodity", "shipper", "destination",
            "first_seen", "last_seen", "detectors", "families")
        con.register("verdict_rows", rows)
        rows = con.sql("SELECT replace(CAST(uuid() AS VARCHAR), '-', '') AS verdict_id, * FROM verdict_rows").pl()
        con.unregister("verdict_rows")
        con.register("verdict_rows", rows)
        con.execute(f"INSERT INTO verdicts ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM verdict_rows")
        con.unregister("verdict_rows")
    return rows.select(COLUMNS)


def open_leads_sql(ranked: bool = True) -> str:
    """SQL: the leads still open at the latest month flagged (flagged within the lead gap before
    it), each with its latest verdict where one applies (columns v_*), strongest first."""
    return f"""
    WITH leads AS ({LEADS_SQL}),
    latest AS (SELECT max(period) AS month FROM alerts),
    open AS (SELECT l.* FROM leads l, latest
             WHERE l.last_seen > latest.month - INTERVAL {LEAD_GAP_MONTHS + 1} MONTH),
    judged AS ({verdict_of_leads_sql("open")})
    SELECT o.*, j.* EXCLUDE (lead_id) FROM open o LEFT JOIN judged j USING (lead_id)
    ORDER BY o.lead_score DESC NULLS LAST, o.lead_id
    """


def review_list(wh) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(open leads awaiting review, strongest first; every verdict given, latest first)."""
    con = wh.con
    if not has_table(con):
        raise DetectorError(f"{wh.path}: no verdicts table yet; run any writing command (e.g. detector review "
                            "LEAD_ID ...) first")
    register_families(con)
    awaiting = con.sql(open_leads_sql()).pl().filter(pl.col("v_verdict").is_null())
    given = con.sql(f"SELECT {', '.join(COLUMNS)} FROM verdicts ORDER BY reviewed_at DESC, verdict_id").pl()
    return awaiting, given


def format_review_list(awaiting: pl.DataFrame, given: pl.DataFrame, top: int = 20) -> str:
    lines = [f"Leads awaiting review (open: flagged in the last {LEAD_GAP_MONTHS + 1} months, no verdict): "
             f"{awaiting.height}"]
    shown = awaiting.head(top)
    for r in shown.iter_rows(named=True):
        lines.append(f"  {r['lead_id']}  {r['lead_score']:.2f}  {r['commodity'] or '-'}  "
                     f"{r['shipper'] or '?'} -> {r['destination'] or '?'}  "
                     f"{r['first_seen']:%Y-%m}..{r['last_seen']:%Y-%m}  {r['detectors']}")
    if awaiting.height > shown.height:
        lines.append(f"  ... and {awaiting.height - shown.height} more")
    lines.append(f"Verdicts given: {given.height}")
    for r in given.iter_rows(named=True):
        until = f" until {r['until']:%Y-%m}" if r["until"] else ""
        lines.append(f"  {r['reviewed_at']:%Y-%m-%d %H:%M}  {r['lead_id']}  {r['verdict']}{until}  "
                     f"by {r['reviewed_by']}  (score {r['lead_score']:.2f}, run {r['run_id']}): {r['note']}")
    return "\n".join(lines) + "\n"


# A dismissed lead comes back into the ranked report, before its --until month is over, when it
# gets materially worse: its lead score rises more than this above the score it had when it was
# dismissed, or an evidence family it did not have then fires on it.
DISMISSED_MARGIN = 0.10


def judge_leads(con, leads: pl.DataFrame) -> pl.DataFrame:
    """The ranked leads (`detector.reports.leads`) with the verdict that applies to each:

    verdict (confirmed, dismissed, watch or null), verdict_by, verdict_at, verdict_note,
    verdict_until, verdict_score (the lead score at the verdict), hidden (a dismissed lead still
    dismissed: left out of the ranked report), came_back (why a dismissed lead is shown again) and
    verdict_text (one line for the reports). A watch verdict past its --until month no longer
    applies; a dismissal past it lets the lead come back."""
    extra = {"verdict": pl.String, "verdict_by": pl.String, "verdict_at": pl.Datetime("us"),
             "verdict_note": pl.String, "verdict_until": pl.Date, "verdict_score": pl.Float64,
             "hidden": pl.Boolean, "came_back": pl.String, "verdict_text": pl.String}
    con.complete()
    has_table = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'verdicts'"
                            ).fetchall()[0][0]
    if leads.height == 0 or not has_table or not con.execute("SELECT count(*) FROM verdicts").fetchall()[0][0]:
        return leads.with_columns([pl.lit(None, t).alias(c) for c, t in extra.items()]
                                  ).with_columns(pl.lit(False).alias("hidden"))
    con.complete()
    families = families_frame()
    con.register("detector_families", families)
    judged = con.sql(f"WITH leads AS ({LEADS_SQL}) {verdict_of_leads_sql('leads')}").pl()
    family_of = dict(zip(families["detector"], families["family"], strict=True))
    lead_families = (leads.select("lead_id", "detectors").explode("detectors")
                     .with_columns(pl.col("detectors").replace_strict(family_of, default=pl.col("detectors"))
                                   .alias("family"))
                     .group_by("lead_id").agg(pl.col("family").unique().sort().alias("_families")))
    last = leads.select("lead_id", pl.col("alerts").list.eval(pl.element().struct.field("period").max())
                        .list.first().alias("_last"))
    df = (leads.join(judged, on="lead_id", how="left").join(lead_families, on="lead_id", how="left")
          .join(last, on="lead_id", how="left"))
    new_families = pl.col("_families").list.set_difference(pl.col("v_families").str.split(",")).list.sort()
    in_force = pl.col("v_until").is_null() | (pl.col("_last") <= pl.col("v_until"))
    worse = pl.col("score") > pl.col("v_lead_score") + DISMISSED_MARGIN
    dismissed = pl.col("v_verdict") == "dismissed"
    came_back = (
        pl.when(dismissed & ~in_force).then(pl.format("dismissal ended {}", pl.col("v_until").dt.strftime("%Y-%m")))
        .when(dismissed & (new_families.list.len() > 0))
        .then(pl.format("new evidence: {}", new_families.list.join(", ")))
        .when(dismissed & worse)
        .then(pl.format("score {} above {} at dismissal + {}", pl.col("score").round(2),
                        pl.col("v_lead_score").round(2), pl.lit(DISMISSED_MARGIN)))
    )
    df = df.with_columns(came_back.alias("came_back")).with_columns(
        (dismissed & pl.col("came_back").is_null()).fill_null(False).alias("hidden"),
        pl.when((pl.col("v_verdict") == "watch") & ~in_force).then(None).otherwise(pl.col("v_verdict"))
        .alias("verdict"))
    said = pl.format("{} by {}: {}", pl.col("v_reviewed_at").dt.strftime("%Y-%m-%d"), pl.col("v_reviewed_by"),
                     pl.col("v_note"))
    until = pl.when(pl.col("v_until").is_not_null()).then(
        pl.format(" (until {})", pl.col("v_until").dt.strftime("%Y-%m"))).otherwise(pl.lit(""))
    text = (pl.when(pl.col("verdict") == "watch").then(pl.concat_str([pl.lit("WATCH since "), said, until]))
            .when(pl.col("verdict") == "confirmed").then(pl.concat_str([pl.lit("CONFIRMED on "), said]))
            .when(pl.col("came_back").is_not_null())
            .then(pl.concat_str([pl.lit("dismissed on "), said, pl.lit("; back: "), pl.col("came_back")])))
    df = df.with_columns(
        pl.col("v_reviewed_by").alias("verdict_by"), pl.col("v_reviewed_at").alias("verdict_at"),
        pl.col("v_note").alias("verdict_note"), pl.col("v_until").alias("verdict_until"),
        pl.col("v_lead_score").alias("verdict_score"), text.alias("verdict_text"))
    return df.select(*leads.columns, *extra)


def cases_from_verdicts(wh) -> pl.DataFrame:
    """Known cases from the verdicts, in `detector.evaluate`'s case columns: each lead's latest
    verdict, confirmed as a case and dismissed as a decoy (watch is no answer yet), with the
    lead's corridor as it stood: the shipper as `via`, the commodity's watchlist HS prefixes (or
    the HS6 code of a lead off the watchlist), its months first_seen..last_seen."""
    if not has_table(wh.con):
        return pl.DataFrame(schema={"id": pl.String, "label": pl.String, "kind": pl.String, "origin": pl.String,
                                    "via": pl.String, "destination": pl.String, "hs_codes": pl.List(pl.String),
                                    "start": pl.Date, "end": pl.Date})
    return wh.con.sql("""
        SELECT 'verdict-' || v.lead_id AS id, CASE v.verdict WHEN 'confirmed' THEN 'case' ELSE 'decoy' END AS label,
               'verdict' AS kind, CAST(NULL AS VARCHAR) AS origin, v.shipper AS via, v.destination,
               coalesce((SELECT list(w.hs_prefix ORDER BY w.hs_prefix) FROM watchlist w
                         WHERE w.commodity = v.commodity), [v.commodity]) AS hs_codes,
               v.first_seen AS start, v.last_seen AS "end"
        FROM (SELECT *, row_number() OVER (PARTITION BY lead_id ORDER BY reviewed_at DESC, verdict_id DESC) AS k
              FROM verdicts) v
        WHERE k = 1 AND v.verdict IN ('confirmed', 'dismissed')
        ORDER BY v.verdict, v.lead_id""").pl()


# ---------------------------------------------------------------- learning from verdicts
# The share confirmed among reviewed leads (confirmed or dismissed; watch is no answer yet), per
# detector and per evidence family, and the family weights of the lead score learnt from it.
#
# Rule (damped): each family's confirmed share has a Beta(PRIOR_VERDICTS * BASE_RATE,
# PRIOR_VERDICTS * (1 - BASE_RATE)) prior, worth PRIOR_VERDICTS verdicts at BASE_RATE. With c
# confirmed among n reviewed leads on which the family fired, the posterior mean is
#     p = (PRIOR_VERDICTS * BASE_RATE + c) / (PRIOR_VERDICTS + n)
# and the family's weight w = p / BASE_RATE (1 with no verdicts; between 0 and 1 / BASE_RATE). The
# lead score is then the noisy-OR of min(1, w_f * s_f) over its families. Ten verdicts all one way
# move a weight by about 9 %, a hundred by half, a thousand by 90 % of the way.
PRIOR_VERDICTS = 100.0
BASE_RATE = 0.5

_REVIEWED_SQL = """
WITH latest AS (
    SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY lead_id ORDER BY reviewed_at DESC, verdict_id DESC) AS k
                   FROM verdicts)
    WHERE k = 1 AND verdict IN ('confirmed', 'dismissed')
),
named AS (SELECT DISTINCT lead_id, verdict, unnest(string_split({column}, ',')) AS name FROM latest)
SELECT name, count(*) AS reviewed, count(*) FILTER (WHERE verdict = 'confirmed') AS confirmed,
       count(*) FILTER (WHERE verdict = 'confirmed') / count(*) AS confirmed_share,
       ({prior} * {base} + count(*) FILTER (WHERE verdict = 'confirmed')) / ({prior} + count(*)) / {base} AS weight
FROM named WHERE name <> '' GROUP BY name ORDER BY name
"""


def verdict_shares(con, by: str = "family") -> pl.DataFrame:
    """name (family or detector), reviewed, confirmed, confirmed_share, weight (the damped rule above;
    for a detector: what its family's weight would be were it the family's only detector)."""
    column = {"family": "families", "detector": "detectors"}[by]
    con.complete()
    has_table = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'verdicts'"
                            ).fetchall()[0][0]
    schema = {"name": pl.String, "reviewed": pl.Int64, "confirmed": pl.Int64, "confirmed_share": pl.Float64,
              "weight": pl.Float64}
    if not has_table:
        return pl.DataFrame(schema=schema)
    con.complete()
    sql = _REVIEWED_SQL.format(column=column, prior=float(PRIOR_VERDICTS), base=float(BASE_RATE))
    return con.sql(sql).pl().cast(schema)


def family_weights(con) -> dict[str, float]:
    """The lead score's family weights learnt from the verdicts (families without verdicts: 1)."""
    shares = verdict_shares(con, "family")
    return dict(zip(shares["name"], shares["weight"], strict=True))
