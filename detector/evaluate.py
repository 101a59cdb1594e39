"""Score alerts against known cases: recall@K, precision@K and decoys in the top K.

Cases come from the sample world's `cases.json` or from a CSV a compliance team keeps, with
columns origin,via,destination,hs_prefix,start,end and optionally label,kind,id (hs_prefix may
hold several prefixes separated by ';'; an empty label means "case"; months are YYYY-MM).

Ranking. Alerts that share a `lead_id` are one lead (several detectors, or consecutive months,
on one corridor). Leads are ranked as everywhere else (`detector.scoring`): by their lead score
(stored by the run: the noisy-OR of its detectors' best scores; else the highest alert score),
descending, ties broken by lead_id ascending; rank 1 is the top.

Matching rule (the public rule). An alert matches a case when all four hold:
  1. the alert's hs_code and one of the case's HS codes/prefixes share a prefix (one starts with
     the other: alert 28258000 matches case 282580, alert 2825 matches case 282580);
  2. the alert's period lies between the case's start month and its end month + 3 months
     (inclusive: detectors may confirm a pattern a little after it ends);
  3. the case's destination is one of the alert's countries {origin, via, destination,
     reporter, partner};
  4. the case's via (its origin when via is empty) is also one of those countries.
A case is found at rank r when r is the best rank of a lead holding a matching alert; it is
"found" when r <= K. precision@K = leads in the top K that match some case (label "case")
divided by min(K, number of leads). Decoys are matched by the same rule; a decoy in the top K
is a false alarm a good tool avoids.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl

from detector import scoring
from detector.errors import InputError
from detector.userfiles import read_small_csv

CASE_COLUMNS = ["id", "label", "kind", "origin", "via", "destination", "hs_codes", "start", "end"]
CSV_REQUIRED = ["origin", "via", "destination", "hs_prefix", "start", "end"]
ALERT_COUNTRIES = ["origin", "via", "destination", "reporter", "partner"]
GRACE_MONTHS = 3


def _month(value, path, line, what: str) -> date:
    text = (value or "").strip()
    try:
        y, m = text[:7].split("-")
        if len(y) != 4 or len(m) != 2 or len(text) not in (7, 10):
            raise ValueError
        return date(int(y), int(m), 1)
    except ValueError:
        raise InputError(path, f"bad {what} month {text!r}: expected YYYY-MM", line) from None


def _blank(v) -> str | None:
    v = None if v is None else str(v).strip()
    return v or None


def load_cases(path) -> pl.DataFrame:
    """Read cases from cases.json (the sample world's) or a compliance team's CSV."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    rows = []
    if path.suffix.lower() == ".json":
        try:
            items = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(path, f"not valid JSON: {exc.msg}", exc.lineno) from None
        if not isinstance(items, list):
            raise InputError(path, "expected a JSON list of case objects")
        for k, it in enumerate(items):
            missing = [c for c in ("origin", "destination", "hs_codes", "start", "end") if c not in it]
            if missing:
                raise InputError(path, f"case #{k + 1} lacks {', '.join(missing)}")
            codes = it["hs_codes"] if isinstance(it["hs_codes"], list) else str(it["hs_codes"]).split(";")
            rows.append({
                "id": str(it.get("id") or f"case-{k + 1}"), "label": _blank(it.get("label")) or "case",
                "kind": _blank(it.get("kind")), "origin": _blank(it["origin"]), "via": _blank(it.get("via")),
                "destination": _blank(it["destination"]),
                "hs_codes": [c.strip() for c in codes if str(c).strip()],
                "start": _month(it["start"], path, None, f"case #{k + 1} start"),
                "end": _month(it["end"], path, None, f"case #{k + 1} end"),
            })
    else:
        df = read_small_csv(path, CSV_REQUIRED, f"{','.join(CSV_REQUIRED)}[,label,kind,id]")
        for k, it in enumerate(df.iter_rows(named=True)):   # a case file has a handful of rows
            line = k + 2
            codes = [c.strip() for c in (it["hs_prefix"] or "").split(";") if c.strip()]
            if not codes or not all(c.isdigit() for c in codes):
                raise InputError(path, f"bad hs_prefix {it['hs_prefix']!r}: digits, several separated by ';'", line)
            if not _blank(it["destination"]) or not (_blank(it["via"]) or _blank(it["origin"])):
                raise InputError(path, "destination and origin (or via) are required", line)
            rows.append({
                "id": _blank(it.get("id")) or f"case-{line}", "label": _blank(it.get("label")) or "case",
                "kind": _blank(it.get("kind")), "origin": _blank(it["origin"]), "via": _blank(it["via"]),
                "destination": _blank(it["destination"]), "hs_codes": codes,
                "start": _month(it["start"], path, line, "start"), "end": _month(it["end"], path, line, "end"),
            })
    for r in rows:
        if r["label"] not in ("case", "decoy"):
            raise InputError(path, f"case {r['id']}: label must be 'case' or 'decoy', not {r['label']!r}")
    schema = {"id": pl.String, "label": pl.String, "kind": pl.String, "origin": pl.String, "via": pl.String,
              "destination": pl.String, "hs_codes": pl.List(pl.String), "start": pl.Date, "end": pl.Date}
    return pl.DataFrame(rows, schema=schema)


def rank_leads(alerts: pl.DataFrame) -> pl.DataFrame:
    """lead_id -> rank (1 = top) by the lead's strength (the run's `lead_score` where stored, else its
    highest alert score), ties by lead_id."""
    strength = pl.sql_expr(scoring.LEAD_STRENGTH_SQL) if "lead_score" in alerts.columns else pl.col("score")
    leads = alerts.group_by("lead_id").agg(strength.max().alias("lead_score"))
    return scoring.rank_leads(leads, name="rank").with_columns(pl.col("rank").cast(pl.Int64))


def match_alerts(alerts: pl.DataFrame, cases: pl.DataFrame) -> pl.DataFrame:
    """Every (case, alert) pair that satisfies the matching rule, with the alert's lead rank."""
    if "lead_id" not in alerts.columns:
        alerts = alerts.with_columns(pl.col("alert_id").alias("lead_id"))
    if alerts.schema["period"] == pl.String:
        alerts = alerts.with_columns(pl.col("period").str.slice(0, 10).str.to_date())
    leads = rank_leads(alerts)
    a = alerts.select(
        "lead_id", "detector", "hs_code",
        pl.col("period").cast(pl.Date),
        pl.concat_list([pl.col(c).cast(pl.String) for c in ALERT_COUNTRIES]).list.drop_nulls().alias("countries"),
    ).join(leads, on="lead_id")
    c = cases.select(
        pl.col("id").alias("case_id"), "label", "destination",
        pl.coalesce("via", "origin").alias("leg"), "start",
        pl.col("end").dt.offset_by(f"{GRACE_MONTHS}mo").alias("until"),
        pl.col("hs_codes").alias("case_hs"),
    ).explode("case_hs")
    return (
        a.join(c, how="cross")
        .filter(
            (pl.col("hs_code").str.starts_with(pl.col("case_hs")) | pl.col("case_hs").str.starts_with(pl.col("hs_code")))
            & pl.col("period").is_between(pl.col("start"), pl.col("until"))
            & pl.col("countries").list.contains(pl.col("destination"))
            & pl.col("countries").list.contains(pl.col("leg"))
        )
        .select("case_id", "label", "lead_id", "rank", "detector")
        .unique()
    )


def evaluate(alerts: pl.DataFrame, cases: pl.DataFrame, top_k: int = 25) -> dict:
    """Recall@K, precision@K and decoys in the top K of the ranked leads (rule in the module doc)."""
    if alerts.height:
        matches = match_alerts(alerts, cases)
        n_leads = alerts.select(pl.col("lead_id" if "lead_id" in alerts.columns else "alert_id").n_unique()).item()
    else:
        matches = pl.DataFrame(schema={"case_id": pl.String, "label": pl.String, "lead_id": pl.String,
                                       "rank": pl.Int64, "detector": pl.String})
        n_leads = 0
    best = matches.group_by("case_id").agg(pl.col("rank").min().alias("best"))
    hit = (
        matches.join(best, on="case_id").filter(pl.col("rank") == pl.col("best"))
        .group_by("case_id").agg(pl.col("rank").first(), pl.col("detector").unique().sort().alias("detectors"))
    )
    per_case = cases.select("id", "label", "kind").join(hit, left_on="id", right_on="case_id", how="left",
                                                        maintain_order="left")
    out_cases = [
        {"id": r["id"], "label": r["label"], "kind": r["kind"],
         "found": r["rank"] is not None and r["rank"] <= top_k, "rank": r["rank"],
         "detectors": r["detectors"] or []}
        for r in per_case.iter_rows(named=True)
    ]
    real = [c for c in out_cases if c["label"] == "case"]
    decoys = [c for c in out_cases if c["label"] == "decoy"]
    case_leads = matches.filter((pl.col("label") == "case") & (pl.col("rank") <= top_k))["lead_id"].n_unique()
    decoy_ranks = [c["rank"] for c in decoys if c["rank"] is not None]
    in_top = [c["id"] for c in decoys if c["found"]]
    return {
        "top_k": top_k,
        "leads": n_leads,
        "cases_total": len(real),
        "cases_found": sum(c["found"] for c in real),
        "recall_at_k": (sum(c["found"] for c in real) / len(real)) if real else None,
        "precision_at_k": (case_leads / min(top_k, n_leads)) if n_leads else None,
        "decoys_total": len(decoys),
        "decoys_in_top_k": {"count": len(in_top), "ids": in_top},
        "highest_decoy_rank": min(decoy_ranks) if decoy_ranks else None,
        "cases": out_cases,
    }


def evaluate_by_detector(alerts: pl.DataFrame, cases: pl.DataFrame, top_k: int = 25) -> dict[str, dict]:
    """The same scores for each detector's alerts alone (leads ranked by that detector's best score)."""
    alone = alerts.drop("lead_score", strict=False)
    return {name: evaluate(alone.filter(pl.col("detector") == name), cases, top_k)
            for name in sorted(alerts["detector"].unique().to_list())}


def format_by_detector(results: dict[str, dict], combined: dict) -> str:
    """One line per detector (and the combined ranking): recall@K, precision@K, decoys in the top K."""
    k = combined["top_k"]
    lines = [f"{'detector':<22} {'recall@' + str(k):>10} {'precision@' + str(k):>13} {'decoys@' + str(k):>10}"]
    for name, r in [*results.items(), ("combined", combined)]:
        recall = "n/a" if r["recall_at_k"] is None else f"{r['cases_found']}/{r['cases_total']}"
        precision = "n/a" if r["precision_at_k"] is None else f"{r['precision_at_k']:.0%}"
        lines.append(f"{name:<22} {recall:>10} {precision:>13} {r['decoys_in_top_k']['count']:>10}")
    return "\n".join(lines) + "\n"


def format_evaluation(result: dict, fmt: str = "text") -> str:
    """The evaluation as JSON or as a rich table (plain text, no colour codes)."""
    if fmt == "json":
        return json.dumps(result, indent=2, default=str)
    if fmt != "text":
        raise ValueError(f"unknown format {fmt!r}: use 'text' or 'json'")
    import io

    from rich.console import Console
    from rich.table import Table

    k = result["top_k"]
    table = Table(title=f"Cases against the top {k} of {result['leads']} leads")
    for col in ("id", "label", "kind", "rank", f"in top {k}", "detectors"):
        table.add_column(col)
    for c in result["cases"]:
        table.add_row(c["id"], c["label"], c["kind"] or "", "-" if c["rank"] is None else str(c["rank"]),
                      "yes" if c["found"] else "no", ", ".join(c["detectors"]))
    pct = lambda v: "n/a" if v is None else f"{v:.0%}"  # noqa: E731
    buf = io.StringIO()
    console = Console(file=buf, width=120, color_system=None, force_terminal=False)
    console.print(table)
    console.print(
        f"recall@{k}: {pct(result['recall_at_k'])} ({result['cases_found']}/{result['cases_total']} cases)   "
        f"precision@{k}: {pct(result['precision_at_k'])}   decoys in top {k}: {result['decoys_in_top_k']['count']}"
        + (f" ({', '.join(result['decoys_in_top_k']['ids'])})" if result["decoys_in_top_k"]["ids"] else "")
        + f"   highest decoy rank: {result['highest_decoy_rank'] or '-'}"
    )
    return buf.getvalue()
