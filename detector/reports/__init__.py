"""Reports over one ranked list of leads: text, markdown, html for people; json, csv for machines."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from detector.errors import DetectorError
from detector.reports.leads import describe_window, ranked_leads

FORMATS = ("text", "markdown", "html", "json", "csv")


def render_report(wh, fmt: str = "text", output=None, charts: int = 10, color: bool | None = None,
                  **filters) -> str:
    """Render the report and return it; with `output`, also write it to that file.

    filters: period, start, end, top, commodity, destination (see `ranked_leads`).
    charts: how many top leads get a chart in the HTML report. color: ANSI colour in the text
    report (default: only when printing to a terminal, never when writing a file).
    """
    fmt = (fmt or "text").lower()
    if fmt == "md":
        fmt = "markdown"
    if fmt not in FORMATS:
        raise DetectorError(f"report format {fmt!r}: choose one of {', '.join(FORMATS)}")
    leads = ranked_leads(wh, **filters)
    window = describe_window(leads, filters.get("period"), filters.get("start"), filters.get("end"))
    if fmt == "text":
        from detector.reports.text import render_text

        if color is None:
            color = output is None and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        text = render_text(leads, window, color=color)
    elif fmt == "markdown":
        from detector.reports.markdown import render_markdown

        text = render_markdown(leads, window)
    elif fmt == "html":
        from detector.reports.html import render_html

        text = render_html(wh, leads, window, charts=charts)
    elif fmt == "json":
        from detector.reports.machine import render_json

        text = render_json(leads)
    else:
        from detector.reports.machine import render_csv

        text = render_csv(leads)
    if output is not None:
        path = Path(output)
        if path.is_dir():
            raise DetectorError(f"{path}: is a folder; give a file name for the report")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8", newline="")
        tmp.replace(path)
    return text


__all__ = ["FORMATS", "ranked_leads", "render_report"]
