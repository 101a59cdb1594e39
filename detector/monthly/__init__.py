"""The monthly batch job: load what arrived, score a rolling window, publish Parquet and the report.

One call, `run_monthly`, does the whole job; `detector monthly` and `python -m pipelines.monthly`
are thin shells around it (docs/monthly.md). Steps:

1. scan the inbox and tell each file's source from its columns (`detector.ingest.sources`); a file
   of no known source is refused with a warning line, never loaded;
2. load the files not loaded yet (the loaders skip a file already loaded, by content hash, and
   let a newer file's rows replace the rows with the same keys: Comtrade revises past months);
3. choose the month: the latest month for which at least half of the reporters seen over the
   previous 12 months have published (`reporting`), unless one is given;
4. score the rolling window ending at that month (re-scoring past months picks up revisions);
   in the same transaction, record each lead's lifecycle in `lead_status` and write the Parquet
   partitions and the report into a hidden staging folder inside OUT;
5. after the commit, swap the staged partitions and reports into place (renames only).

A run killed before the commit leaves the warehouse and OUT as the last complete run left them
(the hidden staging folder is removed by the next run); killed during the final renames, the
next run rewrites the same partitions. Rerunning a month gives the same alert ids.
"""

__all__ = ["run_monthly"]


def __getattr__(name: str):
    """`detector.monthly.run_monthly`, imported on first use: the command lines read the job's
    defaults from this package without loading the detectors."""
    if name == "run_monthly":
        from detector.monthly.job import run_monthly

        return run_monthly
    raise AttributeError(f"module 'detector.monthly' has no attribute '{name}'")
