"""The detector contract: every detector is a module with the same shape.

A detector has a `name`, a one-line `description`, a `version`, a frozen `Settings` dataclass
whose field defaults are documented with `field(metadata={"doc": ...})`, and a pure function
`detect(baselines, window, settings) -> polars.DataFrame` returning rows in `DETECTOR_OUTPUT_SCHEMA`
(the runner adds `alert_id`, `run_id`, `severity`, `lead_id`, `lead_rank`, `lead_score`). It reads
only the `Baselines` value it is given: no warehouse, no temporary tables, no module state.

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
    # the alert's evidence as a tail probability under the detector's own null (one test among the
    # month's tests): the runner controls the false discovery rate over all of them, then folds
    # p_value and its q-value into the evidence JSON (the alerts table has no column for it)
    "p_value": pl.Float64,
}

ALERT_SCHEMA: dict[str, pl.DataType] = {
    "alert_id": pl.String,
    "run_id": pl.String,
    **{k: v for k, v in DETECTOR_OUTPUT_SCHEMA.items() if k != "p_value"},
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
    # Corridor detectors read the corridor grid and run per partition of HS codes; the others
    # (declaration lines) run once over all their input.
    partitioned: bool = True
    # A detector whose work spans partitions (one model fitted over all codes) splits `detect` into
    # map_partition(baselines, window, settings) -> part, run on every partition, and
    # reduce([part, ...], window, settings, country_names) -> alerts, run once over all parts.
    map_partition: Callable[..., object] | None = None
    reduce: Callable[..., pl.DataFrame] | None = None
    # Optional: (baselines, window, settings) -> (alerts, {table: frame}) for a detector with per-row
    # outputs beside its alerts (per-declaration scores), stored by the runner in the same
    # transaction for the window's months.
    detect_with_tables: Callable[..., tuple[pl.DataFrame, dict[str, pl.DataFrame]]] | None = None
    # What one alert was tested among, for the false discovery rate: "scored" (every scored
    # corridor-month with trade: the detector reads every code) or "watched" (the watched codes'
    # corridor-months only). Detectors that are not partitioned (declaration lines) are not tested.
    tests: str = "scored"

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


def z_tail(z: pl.Expr, df: pl.Expr | float) -> pl.Expr:
    """One-sided tail probability of a robust z (or a strength on the z scale): the p-value the
    detectors give for their statistic. A location and spread estimated from `df + 1` months of
    the series' own history make the null heavier-tailed than the normal: Student's t with `df`
    degrees of freedom (at least 2). The spread's floor (MAD >= 0.1-0.15 in log units) errs the
    other way on steady series."""
    from scipy.special import stdtr

    df = df if isinstance(df, pl.Expr) else pl.lit(float(df))
    both = pl.struct(z.cast(pl.Float64).fill_nan(0.0).fill_null(0.0).alias("z"),
                     df.cast(pl.Float64).fill_null(2.0).clip(lower_bound=2.0).alias("df"))
    return both.map_batches(
        lambda s: pl.Series(stdtr(s.struct.field("df").to_numpy(), -s.struct.field("z").to_numpy()), dtype=pl.Float64),
        return_dtype=pl.Float64).clip(1e-300, 1.0)


def conform(df: pl.DataFrame) -> pl.DataFrame:
    """Select and cast a detector's result to the output schema (missing columns become null)."""
    cols = []
    for name, dtype in DETECTOR_OUTPUT_SCHEMA.items():
        col = (pl.col(name) if name in df.columns else pl.lit(None)).cast(dtype)
        if name in ROUNDING:
            col = col.round(ROUNDING[name])
        cols.append(col.alias(name))
    return df.select(cols) if df.height else empty_output()
