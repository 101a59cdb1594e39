"""Run detectors over a window of months and store their alerts (one transaction per run)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from detector import baselines, scoring
from detector.detectors import registry
from detector.detectors.base import ALERT_SCHEMA, DETECTOR_OUTPUT_SCHEMA, conform, empty_output
from detector.engine import local
from detector.errors import DetectorError
from detector.months import Window, months_ahead
from detector.scope import Scope, plan_warehouse
from detector.settings import Settings
from detector.verdicts import family_weights
from detector.warehouse import Warehouse

MIN_HISTORY_MONTHS = 12  # a month is scored once this many months of data precede it


@dataclass
class RunResult:
    run_id: str
    window: Window
    counts: dict[str, int] = field(default_factory=dict)    # alerts kept
    found: dict[str, int] = field(default_factory=dict)     # alerts before the false discovery rate
    seconds: dict[str, float] = field(default_factory=dict)
    alerts: pl.DataFrame | None = None
    fdr_rate: float = 0.0
    weights: dict[str, float] = field(default_factory=dict)  # learnt family weights of the lead score

    def lines(self) -> list[str]:
        out = [f"run {self.run_id}: {self.window.start:%Y-%m} .. {self.window.end:%Y-%m}"]
        for name, n in self.counts.items():
            found = self.found.get(name, n)
            kept = f" (of {found:,} found)" if found != n else ""
            out.append(f"  {name:<22} {n:>6,} alerts  {self.seconds.get(name, 0):6.2f}s{kept}")
        for step in ("scope", "baselines"):
            if step in self.seconds:
                out.append(f"  {'(shared ' + step + ')':<22} {'':>6}         {self.seconds[step]:6.2f}s")
        total = sum(self.counts.values())
        leads = 0 if self.alerts is None or self.alerts.height == 0 else self.alerts["lead_id"].n_unique()
        out.append(f"  {'total':<22} {total:>6,} alerts in {leads:,} leads, {sum(self.seconds.values()):.2f}s")
        if self.fdr_rate > 0:
            months = (self.window.end.year - self.window.start.year) * 12 + self.window.end.month - self.window.start.month + 1
            out.append(f"  false discovery rate {self.fdr_rate:.0%} a month: kept {total:,} of "
                       f"{sum(self.found.values()):,} alerts found, {total / months:,.0f} a month")
        return out


def default_window(wh: Warehouse) -> Window:
    """Every month with at least a year of data before it, up to the latest month loaded."""
    first, last = wh.con.execute(
        "SELECT min(period), max(period) FROM (SELECT period FROM flows WHERE freq = 'M' "
        "UNION ALL SELECT period FROM declarations)").fetchall()[0]
    if first is None:
        raise DetectorError(f"{wh.path}: no monthly flows or declarations loaded yet; run detector ingest first")
    start = months_ahead(first, MIN_HISTORY_MONTHS)
    if start > last:
        raise DetectorError(
            f"{wh.path}: only {first:%Y-%m}..{last:%Y-%m} loaded; detectors need {MIN_HISTORY_MONTHS} months of history")
    return Window(start, last)


ENGINES = ("duckdb", "spark")


def open_baselines(wh: Warehouse, window: Window, partitioned: bool = True, all_codes: bool = False):
    """The baselines a detector reads, for a look at one detector (tests, notebooks): the
    corridor grid for corridor detectors, the declaration lines alone for the others."""
    scope = plan_warehouse(wh.con, window, all_codes)
    return baselines.prepare(wh, window, scope=scope) if partitioned else baselines.for_declarations(wh, scope)


def detect_one(wh: Warehouse, name: str, window: Window, settings=None, all_codes: bool = False) -> pl.DataFrame:
    """One detector's own output over a warehouse (not stored, not scored into leads)."""
    spec = registry.get(name)
    with open_baselines(wh, window, spec.partitioned, all_codes) as values:
        return conform(spec.detect(values, window, settings or spec.default_settings()))


def run_detectors(wh: Warehouse, window: Window | None = None, names: list[str] | None = None,
                  settings: Settings | None = None, before_commit=None, all_codes: bool = False,
                  workers: int = 0, engine: str = "duckdb", spark_master: str | None = None,
                  flows_path: str | None = None, learning: bool = True) -> RunResult:
    """Run the detectors over `window` and store their alerts, scored and grouped into leads.

    `before_commit(con, result)`, if given, runs inside the run's transaction after the alerts
    are written: what it writes commits with them, and if it raises the run leaves nothing.
    `all_codes`: every HS code in scope (baselines for all; alerts on all from the detectors that
    need no controlling country), not only the watchlist's; decided here, once for the run.
    Where the corridor detectors run: in this process (default), on `workers` local processes,
    or with `engine="spark"` on Apache Spark (`spark_master`, flows from the Parquet dataset at
    `flows_path`); all three give the same alerts.
    `learning`: weight the evidence families of the lead score by the analysts' verdicts given so
    far (`detector.verdicts.family_weights`); False keeps every weight at 1. The weights used are
    recorded with the run's settings (`runs.settings`, key "family_weights")."""
    if engine not in ENGINES:
        raise DetectorError(f"unknown engine '{engine}'; choose {' or '.join(ENGINES)}")
    specs = registry.all_detectors()
    chosen = [registry.get(n) for n in names] if names else list(specs.values())
    settings = settings or Settings()
    window = window or default_window(wh)
    started = datetime.now(UTC).replace(tzinfo=None)
    result = RunResult(run_id=f"run-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}", window=window)
    t0 = time.perf_counter()
    partitioned = engine == "spark" or workers > 0
    scope = plan_warehouse(wh.con, window, all_codes, with_source_choice=partitioned)
    result.seconds["scope"] = time.perf_counter() - t0
    found, tables, tests = _detect(wh, scope, chosen, settings, workers, engine, spark_master, flows_path, result)
    # The false discovery rate over every test of each month, all detectors and partitions together
    # (here, where every engine's alerts meet, so that all three keep the same ones).
    raw = pl.concat([found.get(spec.name, empty_output()) for spec in chosen], how="vertical_relaxed")
    tested = {spec.name: spec.tests for spec in chosen if spec.partitioned}
    kept_now = scoring.control_fdr(raw, tests, tested, settings.fdr.rate, settings.fdr.watched_weight,
                                  settings.fdr.keep_watched)
    result.fdr_rate = settings.fdr.rate
    by_name = {name: frame for (name,), frame in kept_now.partition_by("detector", as_dict=True).items()}
    frames = []
    for spec in chosen:
        result.found[spec.name] = found.get(spec.name, empty_output()).height
        df = by_name.get(spec.name, empty_output().drop("p_value"))
        result.counts[spec.name] = df.height
        frames.append(df.with_columns(pl.lit(result.run_id).alias("run_id")))
    # Leads are drawn over every alert of the window, those of detectors not run now included, so
    # that a partial rerun keeps one consistent ranking.
    stored = {k: v for k, v in DETECTOR_OUTPUT_SCHEMA.items() if k != "p_value"}
    kept = wh.frame(
        f"SELECT {', '.join(stored)}, run_id FROM alerts "
        "WHERE period BETWEEN $start AND $end AND NOT list_contains($run, detector)",
        {"start": window.start, "end": window.end, "run": [s.name for s in chosen]})
    frames.append(kept.cast(stored))
    families = {name: spec.evidence_family for name, spec in specs.items()}
    combined = pl.concat(frames, how="vertical_relaxed")
    # The corridor-months flagged before the window: an episode that began there keeps its lead id.
    earlier = wh.frame(scoring.corridor_months_sql("period < $start"), {"start": window.start})
    weights = family_weights(wh.con) if learning else {}
    alerts = (scoring.with_ids_and_leads(combined, families, earlier, weights) if combined.height
              else pl.DataFrame(schema=ALERT_SCHEMA))
    result.alerts = alerts.select(list(ALERT_SCHEMA))
    result.weights = weights
    _store(wh, result, chosen, settings, started, before_commit, tables)
    return result


def _detect(wh: Warehouse, scope: Scope, chosen: list, settings: Settings, workers: int, engine: str,
            spark_master: str | None, flows_path: str | None,
            result: RunResult) -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame], pl.DataFrame]:
    """Each chosen detector's alerts in the window (and the tables some write beside them)."""
    window = scope.window
    corridor = [s.name for s in chosen if s.partitioned]
    extra_pairs = tuple(settings.for_detector(registry.get("code_shift")).extra_pairs)
    if not corridor:
        parts = []
    elif engine == "spark":
        from detector.engine.spark import detect_on_spark

        path = flows_path or local.write_flows(wh, scope, wh.scratch() / "flows")
        parts = detect_on_spark(scope, corridor, settings, spark_master, path, extra_pairs)
    elif workers > 0:
        parts = local.detect_with_workers(wh, scope, corridor, settings, workers, extra_pairs)
    else:
        parts = [local.detect_in_process(wh, scope, corridor, settings)]
    for part in parts:
        for name, seconds in part.seconds.items():
            result.seconds[name] = result.seconds.get(name, 0.0) + seconds
    alerts = pl.concat([part.alerts for part in parts]) if parts else empty_output()
    tests = [part.tests for part in parts if part.tests is not None]
    tests = (pl.concat(tests).group_by("period", "watched").agg(pl.col("n").sum()) if tests
             else pl.DataFrame(schema={"period": pl.Date, "watched": pl.Boolean, "n": pl.Int64}))
    found = {name: frame for (name,), frame in alerts.partition_by("detector", as_dict=True).items()}
    for name in corridor:  # reduce steps over every partition's map parts
        spec = registry.get(name)
        if spec.reduce is None or not any(name in part.parts for part in parts):
            continue
        t0 = time.perf_counter()
        reduced = conform(spec.reduce([part.parts[name] for part in parts], window, settings.for_detector(spec),
                                      scope.country_names()))
        found[name] = reduced.filter(pl.col("period").is_between(window.start, window.end))
        result.seconds[name] = result.seconds.get(name, 0.0) + time.perf_counter() - t0
    tables: dict[str, pl.DataFrame] = {}
    others = [s for s in chosen if not s.partitioned]
    if others:  # declaration lines: not cut by HS code, scored here (their arrays live on the Python side)
        with baselines.for_declarations(wh, scope) as lines, wh.lend_memory():
            for spec in others:
                t0 = time.perf_counter()
                if spec.detect_with_tables is not None:
                    df, written = spec.detect_with_tables(lines, window, settings.for_detector(spec))
                    tables.update(written)
                else:
                    df = spec.detect(lines, window, settings.for_detector(spec))
                found[spec.name] = conform(df).filter(pl.col("period").is_between(window.start, window.end))
                result.seconds[spec.name] = time.perf_counter() - t0
    return found, tables, tests


def _settings_json(settings: Settings, weights: dict[str, float]) -> str:
    """The run's settings, with the learnt family weights where any differ from 1."""
    if not weights:
        return settings.as_json()
    return json.dumps({**json.loads(settings.as_json()), "family_weights": dict(sorted(weights.items()))},
                      sort_keys=True)


def _store(wh: Warehouse, result: RunResult, chosen, settings: Settings, started: datetime,
           before_commit=None, extras: dict[str, pl.DataFrame] | None = None) -> None:
    """Replace the window's alerts (and the detectors' extra tables), and record the run."""
    bounds = [result.window.start, result.window.end]
    with wh.transaction() as con:
        con.execute("DELETE FROM alerts WHERE period BETWEEN ? AND ?", bounds)
        con.register("alerts_frame", result.alerts)
        con.execute(f"INSERT INTO alerts ({', '.join(ALERT_SCHEMA)}) SELECT {', '.join(ALERT_SCHEMA)} FROM alerts_frame")
        con.unregister("alerts_frame")
        for table, frame in (extras or {}).items():
            con.execute(f"DELETE FROM {table} WHERE period BETWEEN ? AND ?", bounds)
            con.register("extra_frame", frame.with_columns(pl.lit(result.run_id).alias("run_id")))
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM extra_frame")
            con.unregister("extra_frame")
        if before_commit is not None:
            before_commit(con, result)
        con.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'complete')",
            [result.run_id, started, datetime.now(UTC).replace(tzinfo=None), result.window.start,
             result.window.end, _settings_json(settings, result.weights),
             json.dumps({s.name: s.version for s in chosen}), json.dumps(result.counts)],
        )
