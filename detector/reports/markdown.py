"""Markdown report: the ranked leads as a table plus one explanation bullet per lead (for a ticket)."""

from __future__ import annotations

import polars as pl

from detector.reports.leads import with_verdict


def cell(value) -> str:
    """Text safe inside a Markdown table cell: no pipes or line breaks, no raw HTML."""
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    for raw, escaped in (("\\", "\\\\"), ("|", "\\|"), ("<", "&lt;"), (">", "&gt;"),
                         ("*", "\\*"), ("_", "\\_"), ("`", "\\`")):
        text = text.replace(raw, escaped)
    return text


def route(row: dict) -> str:
    return row["route"].replace(" -> ", " → ")


def render_markdown(leads: pl.DataFrame, window: str) -> str:
    lines = [f"# Leads for {cell(window)}", ""]
    if leads.height == 0:
        return "\n".join(lines + ["No alerts in this window.", ""])
    lines += [
        f"{leads.height} leads, {int(leads['n_alerts'].sum())} alerts, ranked by score (0..1, "
        "higher is more suspicious).",
        "",
        "| # | month | commodity | HS | route | score | severity | detectors | lead |",
        "| ---: | --- | --- | --- | --- | ---: | --- | --- | --- |",
    ]
    rows = list(leads.iter_rows(named=True))
    for row in rows:
        lines.append("| " + " | ".join([
            str(row["rank"]), f"{row['period']:%Y-%m}", cell(row["commodity"] or "-"),
            cell(row["hs_code"]), cell(route(row)), f"{row['score']:.2f}", cell(row["severity"]),
            cell(", ".join(row["detectors"])), cell(row["lead_id"]),
        ]) + " |")
    lines += ["", "## Explanations", ""]
    for row in rows:
        lines.append(
            f"- **{row['rank']}. {cell(row['commodity'] or row['hs_code'])} {cell(route(row))}, "
            f"{row['period']:%Y-%m}** ({cell(row['severity'])}, {row['score']:.2f}): "
            f"{cell(with_verdict(row))}")
        for alert in row["alerts"][1:]:
            lines.append(f"  - {cell(alert['detector'])} ({alert['score']:.2f}): "
                         f"{cell(alert['explanation'])}")
    return "\n".join(lines) + "\n"
