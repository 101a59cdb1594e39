"""Scores comparable across detectors, severities, and leads (alerts that tell one story).

Every detector turns its statistic into a score with the same two parts (all in 0..1):

    score = evidence(strength) * size(excess USD) * context

- evidence(s) = 1 - exp(-max(s - s0, 0) / scale): how far beyond the detector's noise level the
  statistic is (for a robust z, s0 = 2.5 and scale = 2.5: z = 5 gives 0.63, z = 10 gives 0.95);
- size(usd) = 0.25 + 0.75 * clip(log10(usd / 10k) / 3, 0, 1): USD 10k or less counts a quarter,
  USD 10M or more counts fully, so that a large diversion outranks a rounding error;
- context in 0..1 is the detector's corroboration (e.g. the origin leg of a triangle rose, the
  direct route lost trade after a control) and is spelt out in its evidence JSON.

Severity: high >= 0.6, medium >= 0.35, else low.

A lead is one corridor (commodity, shipping country, destination) over consecutive months
(gaps up to two months): alerts of several detectors, months apart or not, on one story.
Its score is the noisy-OR of the best score of each evidence family in it, 1 - prod(1 - s_f):
independent views agreeing (a hub surge, a triangle, a mirror gap, a price) make a stronger lead
than any of them alone; detectors of one family (the volume jump seen by the surge rule and by
the multivariate model) count once.
"""

from __future__ import annotations

import duckdb
import polars as pl

HIGH, MEDIUM = 0.6, 0.35
LEAD_GAP_MONTHS = 2


def evidence(strength: pl.Expr, s0: float = 2.5, scale: float = 2.5) -> pl.Expr:
    return 1.0 - (-((strength - s0).clip(lower_bound=0.0) / scale)).exp()


def size(usd: pl.Expr) -> pl.Expr:
    return 0.25 + 0.75 * ((usd.clip(lower_bound=1.0) / 1e4).log10() / 3.0).clip(0.0, 1.0)


def severity(score: pl.Expr) -> pl.Expr:
    return (pl.when(score >= HIGH).then(pl.lit("high"))
            .when(score >= MEDIUM).then(pl.lit("medium")).otherwise(pl.lit("low")))


def stable_id(*parts: pl.Expr, length: int = 16) -> pl.Expr:
    """A hash of the parts that is the same on every run, machine and library version."""
    joined = pl.concat_str([p.cast(pl.String).fill_null("") for p in parts], separator="|")
    return joined.map_batches(lambda s: _md5(s, length), return_dtype=pl.String)


def _md5(texts: pl.Series, length: int) -> pl.Series:
    frame = pl.DataFrame({"t": texts})  # noqa: F841 (read by DuckDB by name)
    return duckdb.sql(f"SELECT left(md5(t), {length}) AS id FROM frame").pl()["id"]


def alert_id(*parts: pl.Expr) -> pl.Expr:
    """stable_id of the alert's corridor parts; the last part is its evidence JSON.

    A roll-up alert (the declaration roll-ups: many importers or routes of one month can share HS
    code, origin and route) names what it is about in its evidence, `kind` and `key` (e.g.
    "importer", "QLRUBN9"); those are hashed too. Alerts without them keep the corridor-only id.
    """
    *corridor, evidence = parts
    kind, key = evidence.str.json_path_match("$.kind"), evidence.str.json_path_match("$.key")
    return (pl.when(kind.is_null() | key.is_null()).then(stable_id(*corridor))
            .otherwise(stable_id(*corridor, kind, key)).alias("alert_id"))


def with_ids_and_leads(alerts: pl.DataFrame, families: dict[str, str] | None = None) -> pl.DataFrame:
    """Add alert_id, severity, lead_id, lead_score and lead_rank (1 = the most suspicious lead)."""
    if alerts.height == 0:
        return alerts.with_columns(
            pl.lit(None, pl.String).alias("alert_id"), pl.lit(None, pl.String).alias("severity"),
            pl.lit(None, pl.String).alias("lead_id"), pl.lit(None, pl.Int32).alias("lead_rank"),
            pl.lit(None, pl.Float64).alias("lead_score"))
    shipper = pl.coalesce(
        pl.col("via"),
        pl.when(pl.col("origin") != pl.col("destination")).then(pl.col("origin")),
        pl.when(pl.col("reporter") == pl.col("destination")).then(pl.col("partner")).otherwise(pl.col("reporter")),
    )
    month_no = pl.col("period").dt.year().cast(pl.Int32) * 12 + pl.col("period").dt.month().cast(pl.Int32)
    df = alerts.with_columns(
        alert_id(pl.col("detector"), pl.col("period"), pl.col("hs_code"), pl.col("origin"), pl.col("via"),
                 pl.col("destination"), pl.col("reporter"), pl.col("partner"), pl.col("evidence")),
        severity(pl.col("score")).alias("severity"),
        pl.coalesce(pl.col("commodity"), pl.col("hs_code").str.slice(0, 6)).alias("_story"),
        shipper.alias("_from"),
        month_no.alias("_month"),
    )
    corridor = ["_story", "_from", "destination"]
    months = (df.select(*corridor, "_month").unique()
              .sort(*corridor, "_month")
              .with_columns((pl.col("_month") - pl.col("_month").shift(1).over(corridor)).alias("_gap"))
              .with_columns((pl.col("_gap").is_null() | (pl.col("_gap") > LEAD_GAP_MONTHS + 1))
                            .cast(pl.Int32).cum_sum().over(corridor).alias("_episode")))
    df = df.join(months.drop("_gap"), on=[*corridor, "_month"], how="left", nulls_equal=True)
    df = df.with_columns(
        stable_id(pl.col("_story"), pl.col("_from"), pl.col("destination"),
                  pl.col("_month").min().over([*corridor, "_episode"])).alias("lead_id"))
    family = pl.col("detector").replace_strict(families or {}, default=pl.col("detector"), return_dtype=pl.String)
    lead_scores = (df.with_columns(family.alias("_family"))
                   .group_by("lead_id", "_family").agg(pl.col("score").max())
                   .group_by("lead_id").agg((1.0 - (1.0 - pl.col("score")).product()).alias("lead_score")))
    lead_scores = lead_scores.sort(["lead_score", "lead_id"], descending=[True, False]).with_row_index(
        "lead_rank", offset=1).with_columns(pl.col("lead_rank").cast(pl.Int32))
    df = df.join(lead_scores, on="lead_id", how="left")
    return df.drop("_story", "_from", "_month", "_episode")
