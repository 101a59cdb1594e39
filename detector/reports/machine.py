"""JSON and CSV: every alert row of the ranked leads, public columns plus lead_id and lead_rank."""

from __future__ import annotations

import json

import polars as pl

from detector.reports.leads import lead_alerts


def _rows(leads: pl.DataFrame) -> pl.DataFrame:
    return lead_alerts(leads).with_columns(pl.col("period").dt.strftime("%Y-%m-%d"))


def render_json(leads: pl.DataFrame) -> str:
    """A JSON array of alert objects in rank order; `evidence` stays a JSON string as in the table."""
    return json.dumps(_rows(leads).to_dicts(), ensure_ascii=False, indent=1) + "\n"


def render_csv(leads: pl.DataFrame) -> str:
    """CSV with a header row; always quotes text so JSON evidence survives spreadsheets."""
    return _rows(leads).write_csv(quote_style="non_numeric")
