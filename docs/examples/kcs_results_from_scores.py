"""A results file for the README's inspection cycle: the KCS outcome of the lines a run put in the
inspection budget (the top 10 % of the month), as if inspected three days after declaration.

Run: python docs/examples/kcs_results_from_scores.py SCORES_DIR YYYY-MM KCS_CSV OUT_CSV
"""

import sys

import polars as pl

scores_dir, month, kcs_csv, out_csv = sys.argv[1:5]
scores = pl.read_parquet(scores_dir, hive_partitioning=True).filter(
    pl.col("period").dt.strftime("%Y-%m") == month)
inspected = scores.filter(pl.col("rank") <= pl.len() * 0.10)
kcs = pl.read_csv(kcs_csv, infer_schema=False)
kcs.join(inspected.select(pl.col("declaration_id").alias("Declaration ID")), on="Declaration ID").select(
    "Declaration ID",
    (pl.col("Date").str.to_date() + pl.duration(days=3)).dt.strftime("%Y-%m-%d").alias("Inspected Date"),
    "Fraud", "Critical Fraud",
).write_csv(out_csv)
