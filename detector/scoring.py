"""Scores comparable across detectors, severities, and leads (alerts that tell one story).

Every detector turns its statistic into a score with the same two parts (all in 0..1):

    score = evidence(strength) * size(excess USD) * context

- evidence(s) = 1 - exp(-max(s - s0, 0) / scale): how far beyond the detector's noise level the
  statistic is (for a robust z, s0 = 2.5 and scale = 2.5: z = 5 gives 0.63, z = 10 gives 0.95);
- size(usd) = 0.25 + 0.75 * clip(log10(usd / 10k) / 3, 0, 1): USD 10k or less counts a quarter,
  USD 10M or more counts fully, so that a large diversion outranks a rounding error;
- context in 0..1 is the detector's corroboration (e.g. the origin leg of a triangle rose, the
  direct route lost trade after a control) and is spelt out in its evidence JSON.

Severity: high >= 0.6, medium >= 0.35, else low (`SEVERITIES`).

A lead is one corridor (commodity, shipping country, destination) over consecutive months
(gaps up to two months): alerts of several detectors, months apart or not, on one story.
Its score is the noisy-OR of the best score of each evidence family in it, 1 - prod(1 - s_f):
independent views agreeing (a hub surge, a triangle, a mirror gap, a price) make a stronger lead
than any of them alone; detectors of one family (the volume jump seen by the surge rule and by
the multivariate model) count once. Analysts' verdicts can weight the families: min(1, w_f * s_f)
in place of s_f, with w_f learnt by the damped rule in `detector.verdicts` (1 without verdicts). Leads rank by that score, highest first, ties by lead_id.

Each of these rules is written once here, for both Polars and SQL callers (`*_sql` functions and
constants), so that the runner, the reports, the monthly lifecycle and the evaluation agree.
"""

from __future__ import annotations

import duckdb
import polars as pl

HIGH, MEDIUM = 0.6, 0.35
# Severity names with the lowest score they start at, most severe first; below the last: "low".
SEVERITIES = (("high", HIGH), ("medium", MEDIUM))
LEAD_GAP_MONTHS = 2  # quiet months a lead bridges: flagged months further apart start a new lead

# The story of an alert: its watchlist commodity, else its HS6 code.
STORY_SQL = "coalesce(commodity, substr(hs_code, 1, 6))"
# The country the flow left, as the reporting side books it.
FLOW_SENDER_SQL = "CASE WHEN reporter = destination THEN partner ELSE reporter END"
# The country the goods were shipped from towards the destination: the suspected intermediary,
# else a suspected origin other than the destination, else the flow's sending country.
SHIPPER_SQL = f"coalesce(via, CASE WHEN origin <> destination THEN origin END, {FLOW_SENDER_SQL})"


# A lead's strength: its lead score, else (an alert stored without one) the alert's own score.
LEAD_STRENGTH_SQL = "coalesce(lead_score, score)"


def severity_sql(score: str) -> str:
    """SQL naming the severity of the score expression `score`."""
    whens = " ".join(f"WHEN {score} >= {floor!r} THEN '{name}'" for name, floor in SEVERITIES)
    return f"CASE {whens} ELSE 'low' END"


def lead_order_sql(score: str = "lead_score", key: str = "lead_id") -> str:
    """SQL ORDER BY terms that rank leads: strongest first, ties by key."""
    return f"{score} DESC NULLS LAST, {key}"


def rank_leads(leads: pl.DataFrame, score: str = "lead_score", key: str = "lead_id",
               name: str = "lead_rank") -> pl.DataFrame:
    """`leads` (one row per lead) sorted and numbered 1.. by `lead_order_sql`'s rule."""
    return (leads.sort([score, key], descending=[True, False], nulls_last=True)
            .with_row_index(name, offset=1).with_columns(pl.col(name).cast(pl.Int32)))


def shipper() -> pl.Expr:
    """SHIPPER_SQL as a Polars expression over the alert columns."""
    return pl.sql_expr(SHIPPER_SQL)


def story() -> pl.Expr:
    """STORY_SQL as a Polars expression over the alert columns."""
    return pl.sql_expr(STORY_SQL)


def evidence(strength: pl.Expr, s0: float = 2.5, scale: float = 2.5) -> pl.Expr:
    return 1.0 - (-((strength - s0).clip(lower_bound=0.0) / scale)).exp()


def size(usd: pl.Expr) -> pl.Expr:
    return 0.25 + 0.75 * ((usd.clip(lower_bound=1.0) / 1e4).log10() / 3.0).clip(0.0, 1.0)


def severity(score: pl.Expr) -> pl.Expr:
    """The severity of a score (SEVERITIES)."""
    named = pl.lit("low")
    for name, floor in reversed(SEVERITIES):
        named = pl.when(score >= floor).then(pl.lit(name)).otherwise(named)
    return named


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


def corridor_months_sql(where: str = "TRUE") -> str:
    """SQL over `alerts`: the distinct flagged months of each corridor (the columns `earlier` of
    `with_ids_and_leads` takes), for alerts matching `where`."""
    return (f"SELECT DISTINCT {STORY_SQL} AS _story, {SHIPPER_SQL} AS _from, destination, "
            f"CAST(year(period) * 12 + month(period) AS INTEGER) AS _month FROM alerts WHERE {where}")


def with_ids_and_leads(alerts: pl.DataFrame, families: dict[str, str] | None = None,
                       earlier: pl.DataFrame | None = None, weights: dict[str, float] | None = None) -> pl.DataFrame:
    """Add alert_id, severity, lead_id, lead_score and lead_rank (1 = the most suspicious lead).

    A lead's id hashes its corridor and the first month of its episode (flagged months no more
    than LEAD_GAP_MONTHS quiet months apart). `earlier`: the corridor-months flagged before these
    alerts (`corridor_months_sql` over the stored alerts before a run's window), so that an
    episode that began before the window keeps the id it was given then: a lead keeps its id
    from one monthly run to the next, which is what analysts' verdicts are recorded against.
    `weights`: family -> weight of its best score in the noisy-OR (min(1, w * s); default 1),
    learnt from analysts' verdicts (`detector.verdicts.family_weights`).
    """
    if alerts.height == 0:
        return alerts.with_columns(
            pl.lit(None, pl.String).alias("alert_id"), pl.lit(None, pl.String).alias("severity"),
            pl.lit(None, pl.String).alias("lead_id"), pl.lit(None, pl.Int32).alias("lead_rank"),
            pl.lit(None, pl.Float64).alias("lead_score"))
    month_no = pl.col("period").dt.year().cast(pl.Int32) * 12 + pl.col("period").dt.month().cast(pl.Int32)
    df = alerts.with_columns(
        alert_id(pl.col("detector"), pl.col("period"), pl.col("hs_code"), pl.col("origin"), pl.col("via"),
                 pl.col("destination"), pl.col("reporter"), pl.col("partner"), pl.col("evidence")),
        severity(pl.col("score")).alias("severity"),
        story().alias("_story"),
        shipper().alias("_from"),
        month_no.alias("_month"),
    )
    corridor = ["_story", "_from", "destination"]
    flagged = df.select(*corridor, "_month")
    if earlier is not None and earlier.height:
        flagged = pl.concat([flagged, earlier.select(*corridor, pl.col("_month").cast(pl.Int32))],
                            how="vertical_relaxed")
    months = (flagged.unique()
              .sort(*corridor, "_month")
              .with_columns((pl.col("_month") - pl.col("_month").shift(1).over(corridor)).alias("_gap"))
              .with_columns((pl.col("_gap").is_null() | (pl.col("_gap") > LEAD_GAP_MONTHS + 1))
                            .cast(pl.Int32).cum_sum().over(corridor).alias("_episode"))
              .with_columns(pl.col("_month").min().over([*corridor, "_episode"]).alias("_first")))
    df = df.join(months.drop("_gap"), on=[*corridor, "_month"], how="left", nulls_equal=True)
    df = df.with_columns(
        stable_id(pl.col("_story"), pl.col("_from"), pl.col("destination"), pl.col("_first")).alias("lead_id"))
    family = pl.col("detector").replace_strict(families or {}, default=pl.col("detector"), return_dtype=pl.String)
    weight = pl.col("_family").replace_strict(weights or {}, default=1.0, return_dtype=pl.Float64)
    lead_scores = (df.with_columns(family.alias("_family"))
                   .group_by("lead_id", "_family").agg(pl.col("score").max())
                   .with_columns((pl.col("score") * weight).clip(upper_bound=1.0).alias("score"))
                   .group_by("lead_id").agg((1.0 - (1.0 - pl.col("score")).product()).alias("lead_score")))
    lead_scores = rank_leads(lead_scores)
    df = df.join(lead_scores, on="lead_id", how="left")
    return df.drop("_story", "_from", "_month", "_episode", "_first")


# The empirical null of each detector's p-values (Efron 2004, fitted on the share of tests beyond
# reference levels rather than the centre, since only the alerts' tail leaves the engines): the
# theoretical p as a normal score z_eq, whose null is taken as N(0, scale^2). At each level a of
# NULL_LEVELS the month's share s_a of the detector's tests with p <= a gives the scale at which
# that share is right, isf(a) / isf(s_a); the scale is the largest of them (at least 1) over the
# levels at least NULL_MIN_TESTS tests reach: far more than a month's real cases, so the fit is the
# null's tail, not the discoveries. Heavy tails show as a scale rising with depth; the largest
# makes the deepest well-filled level right and the shallower ones conservative.
NULL_LEVELS = (0.05, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
NULL_MIN_TESTS = 10


def _normal_isf(p: pl.Expr) -> pl.Expr:
    """The standard normal score with upper tail p (exact for tiny p)."""
    from scipy.special import ndtri

    return p.map_batches(lambda s: pl.Series(-ndtri(s.to_numpy()), dtype=pl.Float64), return_dtype=pl.Float64)


def _normal_sf(z: pl.Expr) -> pl.Expr:
    from scipy.special import ndtr

    return z.map_batches(lambda s: pl.Series(ndtr(-s.to_numpy()), dtype=pl.Float64), return_dtype=pl.Float64)


def null_scales(alerts: pl.DataFrame, m: pl.DataFrame) -> pl.DataFrame:
    """(detector, period, null_scale): each detector's empirical null scale per month (NULL_LEVELS).
    `alerts`: detector, period, p_value (theoretical); `m`: detector, period, m (tests that month).
    An alert is a test beyond every level its p-value passes: every test of a detector with a
    p-value that small raised an alert (the detector's gates are part of its test)."""
    levels = pl.DataFrame({"level": NULL_LEVELS})
    beyond = (alerts.join(levels, how="cross").filter(pl.col("p_value") <= pl.col("level"))
              .group_by("detector", "period", "level").agg(pl.len().alias("beyond"))
              .join(m, on=["detector", "period"])
              .with_columns((pl.col("beyond") / pl.col("m")).alias("share"))
              .filter((pl.col("beyond") >= NULL_MIN_TESTS) & (pl.col("share") < 0.5)))
    return (beyond.with_columns((_normal_isf(pl.col("level")) / _normal_isf(pl.col("share"))).alias("null_scale"))
            .group_by("detector", "period").agg(pl.col("null_scale").max().clip(lower_bound=1.0)))


def control_fdr(alerts: pl.DataFrame, tests: pl.DataFrame, tested: dict[str, str], rate: float,
                watched_weight: float, keep_watched: bool = True) -> pl.DataFrame:
    """The alerts kept at a false discovery rate of `rate` per month, by weighted Benjamini-Hochberg
    over every test of the month (Genovese, Roeder & Wasserman 2006: p-values divided by weights
    that average 1 over all tests keep the FDR guarantee), on p-values calibrated to each
    detector's empirical null that month (`null_scales`). A detector whose alerts that month are
    too few to fit its own null (the rule detectors, small worlds) takes the month's heaviest fitted
    scale among the detectors of its kind (those that test the same corridor-months: the watched
    codes', or every scored one): with no null of its own, its p-values are trusted no more than
    theirs; with none of its kind fitted that month, the theory's. (Borrowing across kinds was
    measured: mirror_gap's book disagreements on every code are far heavier-tailed than the watched
    codes' volume rules, and lending them cost a planted case on the noisy real-shaped world.)

    `alerts`: detector output with `p_value` (NULL: not a test, always kept); `tests`: corridor-months
    tested per month (period, watched, n) over the whole run; `tested`: detector -> "scored" (it
    tests every scored corridor-month) or "watched" (the watched codes' ones). A month's tests are
    every detector's: watched-code tests weigh `watched_weight` times an unwatched code's, since the
    watched commodities are where evasion is expected. The calibrated p_value, the null's scale,
    where it came from (`null_from`: own, kind, theory) and the BH q-value (`fdr_q`) go into the
    evidence JSON; the column is dropped. `keep_watched`: the
    watched codes' alerts are kept whatever their q-value (the watchlist is the analysts' own list
    of suspicions; the rate governs the sweep over every other code). Rate 0: FDR off, every alert
    kept as it came (no tests counted, nothing added to the evidence)."""
    if alerts.height == 0 or rate <= 0:
        return alerts.drop("p_value", strict=False)
    per_month = tests.group_by("period", "watched").agg(pl.col("n").sum())
    kinds = pl.DataFrame({"detector": list(tested), "kind": list(tested.values())}, schema={"detector": pl.String, "kind": pl.String})
    by_detector = (kinds.join(per_month, how="cross").filter((pl.col("kind") == "scored") | pl.col("watched")))
    m_d = by_detector.group_by("detector", "period").agg(pl.col("n").sum().alias("m"))
    m = by_detector.group_by("period").agg(
        pl.col("n").filter(pl.col("watched")).sum().alias("m_watched"),
        pl.col("n").filter(~pl.col("watched")).sum().alias("m_other"))
    df = alerts.with_row_index("_row").join(m, on="period", how="left").with_columns(
        pl.col("m_watched").fill_null(0), pl.col("m_other").fill_null(0))
    tested_rows = pl.col("p_value").is_not_null() & pl.col("detector").is_in(list(tested))
    scales = null_scales(df.filter(tested_rows).select("detector", "period", "p_value"), m_d)
    # a detector too sparse for its own null takes the heaviest of its kind's that month
    borrowed = (scales.join(kinds, on="detector").group_by("period", "kind")
                .agg(pl.col("null_scale").max().alias("kind_scale")))
    # weights average 1 over the month's tests
    unit = (pl.col("m_watched") + pl.col("m_other")) / (watched_weight * pl.col("m_watched") + pl.col("m_other"))
    weight = pl.when(pl.col("commodity").is_not_null()).then(watched_weight * unit).otherwise(unit)
    judged = (df.filter(tested_rows)
              .join(scales, on=["detector", "period"], how="left")
              .join(kinds, on="detector", how="left")
              .join(borrowed, on=["period", "kind"], how="left")
              .with_columns(pl.when(pl.col("null_scale").is_not_null()).then(pl.lit("own"))
                            .when(pl.col("kind_scale").is_not_null()).then(pl.lit("kind"))
                            .otherwise(pl.lit("theory")).alias("null_from"),
                            pl.coalesce("null_scale", "kind_scale", pl.lit(1.0)).alias("null_scale"))
              .with_columns(pl.col("p_value").alias("p_theory"),
                            _normal_sf(_normal_isf(pl.col("p_value")) / pl.col("null_scale")).alias("p_value"))
              .with_columns((pl.col("p_value") / weight).alias("_q"))
              .sort("period", "_q", "_row")
              .with_columns(pl.int_range(1, pl.len() + 1).over("period").alias("_rank"),
                            pl.max_horizontal(pl.col("m_watched") + pl.col("m_other"), pl.len().over("period"))
                            .cast(pl.Float64).alias("_m"))
              .with_columns((pl.col("_q") * pl.col("_m") / pl.col("_rank")).clip(upper_bound=1.0).alias("_bh"))
              .with_columns(pl.col("_bh").reverse().cum_min().reverse().over("period").alias("fdr_q"))
              .filter((pl.col("fdr_q") <= rate) | (pl.lit(keep_watched) & pl.col("commodity").is_not_null())))
    prefix = pl.concat_str([pl.lit('{"p_value":'), pl.col("p_value").cast(pl.String),
                            pl.lit(',"p_theory":'), pl.col("p_theory").cast(pl.String),
                            pl.lit(',"null_scale":'), pl.col("null_scale").round(3).cast(pl.String),
                            pl.lit(',"null_from":"'), pl.col("null_from"), pl.lit('"'),
                            pl.lit(',"fdr_q":'), pl.col("fdr_q").cast(pl.String)])
    body = pl.col("evidence").str.strip_chars_start("{")
    evidence = (pl.when(body == "}").then(pl.concat_str([prefix, pl.lit("}")]))
                .otherwise(pl.concat_str([prefix, pl.lit(","), body])))
    kept = judged.with_columns(evidence.alias("evidence")).select(alerts.columns)
    return pl.concat([kept, df.filter(~tested_rows).select(alerts.columns)], how="vertical_relaxed").drop("p_value")
