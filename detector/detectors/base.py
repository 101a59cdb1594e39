"""The detector contract: every detector is a module with the same shape.

A detector has a `name`, a one-line `description`, a `version`, a frozen `Settings` dataclass
whose field defaults are documented with `field(metadata={"doc": ...})`, and a function
`detect(wh, window, settings) -> polars.DataFrame` returning rows in `ALERT_SCHEMA` (without
`alert_id`, `run_id`, `severity`, `lead_id`, `lead_rank`, `lead_score`: the runner adds those).

No look-ahead: an alert for month t may only use flows with period <= t.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from detector.months import Window  # noqa: F401 (the detectors' window type)

# The columns a detector returns (the runner adds alert_id, run_id, severity, lead_id, lead_rank).
DETECTOR_OUTPUT_SCHEMA: dict[str, pl.DataType] = {
    "detector": pl.String,
    "period": pl.Date,
    "hs_code": pl.String,
    "commodity": pl.String,
    "origin": pl.String,
    "via": pl.String,
    "destination": pl.String,
    "reporter": pl.String,
    "partner": pl.String,
    "score": pl.Float64,
    "observed": pl.Float64,
    "expected": pl.Float64,
    "evidence": pl.String,
    "explanation": pl.String,
}

ALERT_SCHEMA: dict[str, pl.DataType] = {
    "alert_id": pl.String,
    "run_id": pl.String,
    **{k: v for k, v in DETECTOR_OUTPUT_SCHEMA.items()},
    "severity": pl.String,
    "lead_id": pl.String,
    "lead_rank": pl.Int32,
    "lead_score": pl.Float64,
}


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    description: str
    version: str
    settings_class: type
    detect: Callable[..., pl.DataFrame]
    # Detectors reading the same signal (e.g. volume growth) share a family; a lead's score adds up
    # evidence across families only, so two views of one jump do not count as two witnesses.
    family: str = ""
    # Optional: (wh, window, settings) -> {table: frame} of per-row outputs beside the alerts (e.g.
    # per-declaration scores), stored by the runner in the same transaction for the window's months.
    extra_outputs: Callable[..., dict[str, pl.DataFrame]] | None = None

    @property
    def evidence_family(self) -> str:
        return self.family or self.name

    def default_settings(self):
        return self.settings_class()

    def settings_docs(self) -> list[tuple[str, object, str]]:
        return [(f.name, f.default, f.metadata.get("doc", "")) for f in dataclasses.fields(self.settings_class)]


def empty_output() -> pl.DataFrame:
    return pl.DataFrame(schema=DETECTOR_OUTPUT_SCHEMA)


# Decimals kept: floating-point sums in parallel SQL can differ in the last bits from run to run;
# rounding far below any meaningful difference makes the output identical for identical data.
ROUNDING = {"score": 12, "observed": 6, "expected": 6}


def conform(df: pl.DataFrame) -> pl.DataFrame:
    """Select and cast a detector's result to the output schema (missing columns become null)."""
    cols = []
    for name, dtype in DETECTOR_OUTPUT_SCHEMA.items():
        col = (pl.col(name) if name in df.columns else pl.lit(None)).cast(dtype)
        if name in ROUNDING:
            col = col.round(ROUNDING[name])
        cols.append(col.alias(name))
    return df.select(cols) if df.height else empty_output()
