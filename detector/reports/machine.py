"""JSON and CSV: every alert row of the ranked leads, public columns plus lead_id and lead_rank,
and the analysts' verdict that applies to the lead (empty where none)."""

from __future__ import annotations

import json

import polars as pl

from detector.reports.leads import lead_alerts

# The verdict columns a machine reader needs to route a lead: what was said, by whom, when, until when.
VERDICT_COLUMNS = {"verdict": pl.String, "verdict_by": pl.String, "verdict_at": pl.Datetime("us"),
                   "verdict_until": pl.Date, "verdict_note": pl.String}


def _rows(leads: pl.DataFrame) -> pl.DataFrame:
    verdicts = (leads.select("lead_id", *VERDICT_COLUMNS) if "verdict" in leads.columns
                else pl.DataFrame(schema={"lead_id": pl.String, **VERDICT_COLUMNS}))
    rows = lead_alerts(leads).join(verdicts, on="lead_id", how="left", maintain_order="left")
    return rows.with_columns(pl.col("period").dt.strftime("%Y-%m-%d"),
                             pl.col("verdict_at").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                             pl.col("verdict_until").dt.strftime("%Y-%m"))


def render_json(leads: pl.DataFrame) -> str:
    """A JSON array of alert objects in rank order; `evidence` stays a JSON string as in the table."""
    return json.dumps(_rows(leads).to_dicts(), ensure_ascii=False, indent=1) + "\n"


def render_csv(leads: pl.DataFrame) -> str:
    """CSV with a header row; always quotes text so JSON evidence survives spreadsheets."""
    return _rows(leads).write_csv(quote_style="non_numeric")
