"""Terminal report: a rich table that fits 80 columns, one row per lead."""

from __future__ import annotations

import io

import polars as pl
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from detector.reports.leads import with_verdict

WIDTH = 80

# Short labels keep the detectors column narrow; the legend under the table spells them out.
SHORT = {
    "third_country_surge": "surge",
    "transshipment": "transship",
    "mirror_gap": "mirror",
    "unit_value": "unit_value",
    "code_shift": "code_shift",
    "new_corridor": "new_corr",
    "multivariate": "multivar",
    "declaration_risk": "decl_risk",
}
SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "dim"}


def short_route(row: dict) -> str:
    return row["route"].replace(" -> ", ">")


def render_text(leads: pl.DataFrame, window: str, color: bool = False, width: int = WIDTH) -> str:
    """The ranked leads as plain text (ANSI colour only when `color`)."""
    out = io.StringIO()
    console = Console(file=out, width=width, color_system="standard" if color else None,
                      force_terminal=color, no_color=not color, highlight=False, soft_wrap=False,
                      emoji=False, markup=False)
    n = leads.height
    console.print(f"Leads for {window}: {n} lead{'s' if n != 1 else ''}, "
                  f"{int(leads['n_alerts'].sum()) if n else 0} alerts")
    if n == 0:
        console.print("No alerts in this window.")
        return out.getvalue()
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0),
                  header_style="bold" if color else "", expand=True, show_lines=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("month", no_wrap=True)
    table.add_column("commodity\nroute", overflow="fold", max_width=11)
    table.add_column("score\nsev", no_wrap=True)
    table.add_column("detectors", overflow="fold", max_width=10)
    table.add_column("explanation", overflow="fold", ratio=1)
    used = set()
    for row in leads.iter_rows(named=True):
        used.update(row["detectors"])
        sev = row["severity"]
        score_sev = Text(f"{row['score']:.2f}\n")
        score_sev.append(sev, style=SEVERITY_STYLE.get(sev, "") if color else "")
        table.add_row(
            str(row["rank"]), f"{row['period']:%Y-%m}",
            f"{row['commodity'] or '-'}\n{short_route(row)}", score_sev,
            "\n".join(SHORT.get(d, d) for d in row["detectors"]), with_verdict(row),
        )
    console.print(table)
    legend = ", ".join(f"{SHORT.get(d, d)}={d}" for d in sorted(used) if SHORT.get(d, d) != d)
    if legend:
        console.print(f"detectors: {legend}", overflow="fold")
    text = out.getvalue()
    return text if color else "\n".join(line.rstrip() for line in text.split("\n"))
