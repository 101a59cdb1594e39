"""The month's reports: the lead lifecycle (Markdown and HTML) in front of the ranked leads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from detector.monthly.lifecycle import lifecycle
from detector.months import months_back
from detector.reports import render_report
from detector.reports.leads import ranked_leads
from detector.scoring import LEAD_GAP_MONTHS
from detector.warehouse import Warehouse

SECTIONS = (("new", "New this month"), ("continuing", "Continuing"), ("watched", "Watched"),
            ("dismissed", "Dismissed (left out of the ranked leads)"), ("closed", "Closed"))


def _lifecycle_rows(wh: Warehouse, month: dt.date) -> pl.DataFrame:
    """lead_status joined with the ranked leads of each lead's last flagged month."""
    status = lifecycle(wh, month)
    keep = ["lead_id", "rank", "period", "hs_code", "origin", "via", "detectors", "explanation"]
    shown = pl.concat([ranked_leads(wh, period=seen, verdicts=False).select(keep)
                       for seen in (month, months_back(month, LEAD_GAP_MONTHS + 1))])
    return status.join(shown.rename({"period": "last_seen"}), on=["lead_id", "last_seen"], how="left",
                       maintain_order="left")


def _route(r: dict) -> str:
    if r["origin"] is None and r["via"] is None:
        return f"{r['shipper'] or '?'} → {r['destination'] or '?'}"
    return " → ".join(c for c in (r["origin"] or "?", r["via"], r["destination"] or "?") if c)


def lifecycle_markdown(rows: pl.DataFrame, month: dt.date) -> str:
    from detector.reports.markdown import cell

    lines = [f"# Monthly run {month:%Y-%m}: lead lifecycle", ""]
    for status, title in SECTIONS:
        part = rows.filter(pl.col("status") == status)
        lines += [f"## {title} ({part.height})", ""]
        if part.height == 0:
            lines += ["None.", ""]
            continue
        lines += ["| commodity | route | score | severity | first seen | last seen | detectors | lead |",
                  "| --- | --- | ---: | --- | --- | --- | --- | --- |"]
        for r in part.iter_rows(named=True):
            route = _route(r)
            lines.append("| " + " | ".join([
                cell(r["commodity"]), cell(route), f"{r['lead_score']:.2f}", cell(r["severity"]),
                f"{r['first_seen']:%Y-%m}", f"{r['last_seen']:%Y-%m}",
                cell(", ".join(r["detectors"] or [])), cell(r["lead_id"])]) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def lifecycle_html(rows: pl.DataFrame, month: dt.date) -> str:
    from html import escape as e

    parts = [f'<section id="lifecycle"><h2>Lead lifecycle, {month:%Y-%m}</h2>']
    for status, title in SECTIONS:
        part = rows.filter(pl.col("status") == status)
        parts.append(f'<h3 id="lifecycle-{status}">{e(title)} ({part.height})</h3>')
        if part.height == 0:
            parts.append("<p>None.</p>")
            continue
        body = []
        for r in part.iter_rows(named=True):
            route = _route(r)
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in [
                e(r["commodity"] or ""), e(route), f"{r['lead_score']:.2f}",
                f'<span class="sev-{e(r["severity"])}">{e(r["severity"])}</span>',
                f"{r['first_seen']:%Y-%m}", f"{r['last_seen']:%Y-%m}",
                e(", ".join(r["detectors"] or [])), e(r["explanation"] or "")]) + "</tr>")
        head = "".join(f"<th>{h}</th>" for h in ["commodity", "route", "score", "severity", "first seen",
                                                 "last seen", "detectors", "explanation"])
        parts.append(f'<table class="lifecycle"><thead><tr>{head}</tr></thead><tbody>'
                     + "".join(body) + "</tbody></table>")
    parts.append("</section>")
    return "\n".join(parts)


def write_reports(wh: Warehouse, month: dt.date, folder: Path, charts: int = 10) -> dict[str, Path]:
    """report-YYYY-MM.md and .html: the lifecycle (new, continuing, closed), then the ranked leads."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = _lifecycle_rows(wh, month)
    stem = f"report-{month:%Y-%m}"
    md = lifecycle_markdown(rows, month) + "\n" + render_report(wh, "markdown", period=month)
    html = render_report(wh, "html", period=month, charts=charts)
    marker = '<section id="leads">'
    html = html.replace(marker, lifecycle_html(rows, month) + "\n" + marker, 1) if marker in html \
        else html.replace("</body>", lifecycle_html(rows, month) + "\n</body>", 1)
    paths = {"markdown": folder / f"{stem}.md", "html": folder / f"{stem}.html"}
    paths["markdown"].write_text(md, encoding="utf-8")
    paths["html"].write_text(html, encoding="utf-8")
    return paths
