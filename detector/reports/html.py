"""Self-contained HTML report: summary, ranked leads, and for the top leads a chart of the flows.

One file that opens offline: styles inline, charts as inline SVG drawn by matplotlib, no
scripts, fonts or images fetched from anywhere. Every text from the warehouse is escaped.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from html import escape

import matplotlib
import polars as pl
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from detector.export import trailing_baseline_sql
from detector.reports.leads import with_verdict

CHART_MONTHS_BEFORE = 24
CHART_MONTHS_AFTER = 6
MIN_BAND_MONTHS = 3
SEVERITIES = {"high": 0, "medium": 1, "low": 2}
LEG_STYLE = {"origin_via": "#1f77b4", "via_destination": "#d62728", "origin_destination": "#7f7f7f"}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:1.5rem auto;
max-width:70rem;padding:0 1rem;color:#222;line-height:1.4}
h1{font-size:1.5rem}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.sev-high{color:#b00020;font-weight:bold}.sev-medium{color:#a65e00}.sev-low{color:#555}
.counts{display:flex;gap:2rem;flex-wrap:wrap}
article.lead{border-top:2px solid #888;margin-top:2rem;padding-top:.5rem}
figure.chart{margin:.5rem 0}figure.chart svg{max-width:100%;height:auto}
.explanation{font-size:1.05rem;background:#f9f9f0;border-left:4px solid #c9b458;padding:.4rem .8rem}
.muted{color:#666}code{font-size:.85rem}
table.leads td:nth-child(2),table.leads td:nth-child(5){white-space:nowrap}
"""


def _month(value) -> str:
    return f"{value:%Y-%m}" if value else ""


def _num(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def _route(row: dict) -> str:
    return row["route"].replace(" -> ", " → ")


def flatten_evidence(evidence: str | None) -> list[tuple[str, str]]:
    """The evidence JSON as (dotted key, value) pairs; text that is not JSON is kept as is."""
    if not evidence:
        return []
    try:
        data = json.loads(evidence)
    except (TypeError, ValueError):
        return [("evidence", str(evidence))]
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
            for i, item in enumerate(value):
                walk(f"{prefix}[{i}]", item)
        elif isinstance(value, list):
            pairs.append((prefix, ", ".join(_num(v) for v in value)))
        else:
            pairs.append((prefix or "value", _num(value)))

    walk("", data)
    return pairs


def _legs(row: dict) -> list[tuple[str, str, str, str]]:
    """(key, label, exporter, importer) for the legs of the lead's route that are known."""
    o, v, d = row["origin"], row["via"], row["destination"]
    legs = []
    if o and v:
        legs.append(("origin_via", f"{o} → {v}", o, v))
    if v and d:
        legs.append(("via_destination", f"{v} → {d}", v, d))
    if o and d:
        legs.append(("origin_destination", f"{o} → {d}", o, d))
    if not legs and row["reporter"] and row["partner"]:
        legs.append(("via_destination", f"{row['partner']} ↔ {row['reporter']}", row["partner"],
                     row["reporter"]))
    return legs


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def chart_data(con, row: dict) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Monthly value per leg (importer's M report preferred, else exporter's X), the main leg's
    trailing baseline band, and the control events for the lead's commodity in the window."""
    legs = _legs(row)
    main = "via_destination" if any(k == "via_destination" for k, *_ in legs) else legs[0][0] if legs else None
    start = _add_months(row["period"], -CHART_MONTHS_BEFORE)
    end = _add_months(row["period"], CHART_MONTHS_AFTER)
    history_start = _add_months(start, -12)
    empty = pl.DataFrame(schema={"leg": pl.String, "period": pl.Date, "value": pl.Float64})
    if not legs:
        return empty, pl.DataFrame(), _controls(con, row, start, end)
    values = ", ".join("(?, ?, ?)" for _ in legs)
    params: list = [p for key, _, exporter, importer in legs for p in (key, exporter, importer)]
    sql = f"""
    WITH legs(leg, exporter, importer) AS (VALUES {values}),
    matched AS (
        SELECT l.leg, f.period, f.flow, f.source, length(f.hs_code) AS hs_len,
               sum(f.value_usd) AS value
        FROM flows f
        JOIN legs l
          ON (f.flow = 'M' AND f.reporter = l.importer AND f.partner = l.exporter)
          OR (f.flow = 'X' AND f.reporter = l.exporter AND f.partner = l.importer)
        WHERE f.freq = 'M' AND f.value_usd IS NOT NULL
          AND (starts_with(f.hs_code, ?) OR starts_with(?, f.hs_code))
          AND f.period BETWEEN ? AND ?
        GROUP BY l.leg, f.period, f.flow, f.source, length(f.hs_code)
    ),
    picked AS (
        SELECT leg, period, value, flow FROM (
            SELECT *, row_number() OVER (
                PARTITION BY leg, period
                ORDER BY (flow = 'M') DESC, abs(hs_len - ?), source) AS pick
            FROM matched)
        WHERE pick = 1
    )
    SELECT leg, period, value, flow,
           CASE WHEN value > 0 THEN ln(value) END AS log_value
    FROM picked ORDER BY leg, period
    """
    hs = row["hs_code"]
    params += [hs, hs, history_start, end, len(hs)]
    series = con.sql(sql, params=params).pl()
    band = pl.DataFrame()
    if main is not None and series.height:
        con.register("_chart_series", series.filter(pl.col("leg") == main).to_arrow())
        try:
            band = con.sql(
                f"SELECT period, exp(median_log_value - mad_log_value) AS low, "
                f"exp(median_log_value) AS median, exp(median_log_value + mad_log_value) AS high "
                f"FROM ({trailing_baseline_sql('_chart_series', ['leg'])}) "
                f"WHERE baseline_months >= {MIN_BAND_MONTHS} ORDER BY period").pl()
        finally:
            con.unregister("_chart_series")
        band = band.filter(pl.col("period") >= start)
    series = series.filter(pl.col("period") >= start)
    return series, band, _controls(con, row, start, end)


def _controls(con, row: dict, start: dt.date, end: dt.date) -> pl.DataFrame:
    return con.sql(
        """
        SELECT date, country, instrument, kind, targets, note FROM controls
        WHERE date BETWEEN ? AND ?
          AND (? IS NULL OR commodities IS NULL OR trim(commodities) = ''
               OR list_contains(list_transform(string_split(lower(commodities), ';'),
                                               lambda c: trim(c)), lower(?)))
        ORDER BY date
        """, params=[start, end, row["commodity"], row["commodity"]]).pl()


def _plain(text: str) -> str:
    """Text for matplotlib: a '$' would start mathtext."""
    return str(text).replace("\\", "/").replace("$", r"\$")


def _usd(value, _pos=None) -> str:
    for div, suffix in ((1e9, "bn"), (1e6, "m"), (1e3, "k")):
        if abs(value) >= div:
            return f"\\${value / div:g}{suffix}"
    return f"\\${value:g}"


def chart_svg(row: dict, series: pl.DataFrame, band: pl.DataFrame, controls: pl.DataFrame,
              salt: str) -> str:
    """The legs over time with the main leg's baseline band and control dates, as inline SVG."""
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt,
                                "font.size": 8, "axes.spines.top": False, "axes.spines.right": False}):
        fig = Figure(figsize=(8.0, 3.4))
        fig.subplots_adjust(left=0.11, right=0.98, top=0.9, bottom=0.1)
        ax = fig.add_subplot()
        if band.height:
            ax.fill_between(band["period"].to_list(), band["low"].to_list(), band["high"].to_list(),
                            color="#d62728", alpha=0.12, linewidth=0,
                            label="baseline: trailing 12-month median ± MAD")
            ax.plot(band["period"].to_list(), band["median"].to_list(), color="#d62728",
                    linewidth=0.8, linestyle=":")
        labels = {key: label for key, label, *_ in _legs(row)}
        for key in labels:
            leg = series.filter(pl.col("leg") == key)
            if leg.height:
                ax.plot(leg["period"].to_list(), leg["value"].to_list(), marker="o", markersize=2.5,
                        linewidth=1.4, color=LEG_STYLE.get(key, "#333"), label=_plain(labels[key]))
        lead_start = row["period"]
        ax.axvspan(lead_start, _add_months(lead_start, 1), color="#ffd54f", alpha=0.5,
                   label=_plain(f"flagged month {lead_start:%Y-%m}"))
        for event in controls.iter_rows(named=True):
            ax.axvline(event["date"], color="#444", linestyle="--", linewidth=0.9)
            text = " ".join(str(x) for x in (event["date"], event["country"], event["kind"]) if x)
            ax.annotate(_plain(text), xy=(event["date"], 1.0), xycoords=("data", "axes fraction"),
                        rotation=90, va="top", ha="right", fontsize=7, color="#444")
        ax.yaxis.set_major_formatter(FuncFormatter(_usd))
        ax.set_ylabel("USD per month")
        ax.set_ylim(bottom=0)
        ax.set_title(_plain(f"{row['commodity'] or ''} {row['hs_code']}: {_route(row)}").strip(),
                     loc="left", fontsize=9)
        ax.legend(loc="upper left", fontsize=7, frameon=False)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    alt = escape(f"Chart of monthly flows for {_route(row)}, {row['hs_code']}", quote=True)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{alt}" ', 1)


def _table(headers: list[str], rows: list[list[str]], num: set[int] = frozenset(),
           cls: str = "") -> str:
    """An HTML table; `rows` are already-escaped cell strings."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in num else f"<td>{c}</td>"
                         for i, c in enumerate(r)) + "</tr>"
        for r in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _counts(title: str, frame: pl.DataFrame, key: str) -> str:
    counted = frame.group_by(key).len()
    if key == "severity":
        counted = counted.sort(pl.col(key).replace_strict(SEVERITIES, default=len(SEVERITIES)))
    else:
        counted = counted.sort(["len", key], descending=[True, False], nulls_last=True)
    rows = [[escape(str(k if k is not None else "(none)")), str(n)] for k, n in counted.iter_rows()]
    return f"<div><h3>{escape(title)}</h3>{_table([key, 'count'], rows, num={1})}</div>"


def _sev(value: str) -> str:
    return f'<span class="sev-{escape(value, quote=True)}">{escape(value)}</span>'


def _lead_section(con, row: dict, names: dict[str, str]) -> str:
    e = escape
    series, band, controls = chart_data(con, row)
    if series.height:
        chart = (f'<figure class="chart">{chart_svg(row, series, band, controls, row["lead_id"])}'
                 "<figcaption class=\"muted\">Monthly value of each leg (importer's report, else "
                 "exporter's); shaded band: trailing 12-month median ± MAD of the main leg; dashed "
                 "lines: export-control events; yellow: the flagged month.</figcaption></figure>")
    else:
        chart = '<p class="muted">No monthly flows in the warehouse for this corridor.</p>'
    countries = [c for c in (row["origin"], row["via"], row["destination"]) if c]
    where = ", ".join(f"{e(c)} = {e(names[c])}" for c in countries if c in names)
    alerts = row["alerts"]
    alert_rows = [[e(a["detector"]), f"{a['score']:.2f}", _sev(a["severity"]), e(a["reporter"] or ""),
                   e(a["partner"] or ""), e(_num(a["observed"])), e(_num(a["expected"])),
                   e(a["explanation"])] for a in alerts]
    evidence_rows = [[e(a["detector"]), f"<code>{e(k)}</code>", e(v)]
                     for a in alerts for k, v in flatten_evidence(a["evidence"])]
    ctl = "".join(
        f"<li>{e(str(c['date']))} {e(c['country'])} {e(c['kind'])}"
        f"{': ' + e(c['instrument']) if c['instrument'] else ''}"
        f"{' (targets ' + e(c['targets']) + ')' if c['targets'] else ''}"
        f"{' - ' + e(c['note']) if c['note'] else ''}</li>"
        for c in controls.iter_rows(named=True))
    return f"""
<article class="lead" id="lead-{row['rank']}">
<h3>{row['rank']}. {e(row['commodity'] or '-')} {e(row['hs_code'])}: {e(_route(row))},
{_month(row['period'])} — score {row['score']:.2f}, {_sev(row['severity'])}</h3>
<p class="muted">lead <code>{e(row['lead_id'])}</code>; detectors: {e(', '.join(row['detectors']))}
{'; ' + where if where else ''}</p>
<p class="explanation">{e(with_verdict(row))}</p>
{chart}
{'<h4>Control events in the chart window</h4><ul>' + ctl + '</ul>' if ctl else ''}
<h4>Alerts</h4>
{_table(['detector', 'score', 'severity', 'reporter', 'partner', 'observed', 'expected',
         'explanation'], alert_rows, num={1, 5, 6})}
<h4>Evidence</h4>
{_table(['detector', 'field', 'value'], evidence_rows, num={2}) if evidence_rows
 else '<p class="muted">No evidence recorded.</p>'}
</article>"""


def _verdicts_section(con) -> str:
    """What the analysts' verdicts say of each evidence family and detector: the share confirmed among
    reviewed leads, and the family's lead-score weight learnt from it (`detector.verdicts`)."""
    from detector.verdicts import PRIOR_VERDICTS, verdict_shares

    parts = ['<section id="verdicts"><h2>Analysts\' verdicts</h2>']
    fams = verdict_shares(con, "family")
    if fams.height == 0:
        return parts[0] + '<p class="muted">No lead confirmed or dismissed yet.</p></section>'
    for title, frame, weight in (("evidence family", fams, True), ("detector", verdict_shares(con, "detector"), False)):
        rows = [[escape(r["name"]), str(r["reviewed"]), str(r["confirmed"]), f"{r['confirmed_share']:.0%}"]
                + ([f"{r['weight']:.3f}"] if weight else []) for r in frame.iter_rows(named=True)]
        parts.append(_table([title, "reviewed", "confirmed", "share confirmed"] + (["weight"] if weight else []),
                            rows, num={1, 2, 3, 4}))
    parts.append(f'<p class="muted">A family\'s weight multiplies its best score in the lead score: '
                 f"its share confirmed under a prior worth {PRIOR_VERDICTS:.0f} verdicts at one in two, "
                 "divided by one half (1 without verdicts).</p></section>")
    return "\n".join(parts)


def render_html(wh, leads: pl.DataFrame, window: str, charts: int = 10) -> str:
    """The whole report as one HTML document (str)."""
    e = escape
    con = wh.con
    codes = sorted({c for col in ("origin", "via", "destination") for c in leads[col].drop_nulls()}) \
        if leads.height else []
    names = dict(con.sql("SELECT iso3, name FROM countries WHERE list_contains(?, iso3)",
                         params=[codes]).fetchall()) if codes else {}
    n_alerts = int(leads["n_alerts"].sum()) if leads.height else 0
    parts = [f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Leads for {e(window)}</title><style>{CSS}</style></head><body>
<h1>Rerouting and false-declaration leads: {e(window)}</h1>
<section id="summary"><h2>Summary</h2>
<p>Window: <strong>{e(window)}</strong>. {leads.height} leads from {n_alerts} alerts; score 0..1,
higher is more suspicious. A lead is a corridor-month on which one or more detectors fired; it
is a reason to look closer, not proof.</p>"""]
    if leads.height:
        alerts = leads.select(pl.col("alerts")).explode("alerts").unnest("alerts")
        parts.append('<div class="counts">' + _counts("leads by severity", leads, "severity")
                     + _counts("alerts by detector", alerts, "detector")
                     + _counts("leads by commodity", leads, "commodity") + "</div>")
    parts.append("</section>")
    shown = min(max(int(charts), 0), leads.height)
    rows = []
    for row in leads.iter_rows(named=True):
        rank = str(row["rank"])
        link = f'<a href="#lead-{rank}">{rank}</a>' if row["rank"] <= shown else rank
        rows.append([link, _month(row["period"]), e(row["commodity"] or "-"), e(row["hs_code"]),
                     e(_route(row)), f"{row['score']:.2f}", _sev(row["severity"]),
                     e(", ".join(row["detectors"])), e(with_verdict(row))])
    parts.append('<section id="leads"><h2>Ranked leads</h2>'
                 + (_table(["#", "month", "commodity", "HS", "route", "score", "severity",
                            "detectors", "explanation"], rows, num={0, 5}, cls="leads")
                    if rows else "<p>No alerts in this window.</p>") + "</section>")
    if shown:
        parts.append(f'<section id="details"><h2>Top {shown} leads in detail</h2>')
        parts.extend(_lead_section(con, row, names) for row in leads.head(shown).iter_rows(named=True))
        parts.append("</section>")
    parts.append(_verdicts_section(con))
    parts.append('<footer class="muted"><p>Sources: the trade flows and alerts in the warehouse; '
                 "values in USD as reported.</p></footer></body></html>\n")
    return "\n".join(parts)
