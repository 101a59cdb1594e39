"""Thin click commands: parse, call the library, format. Errors become one-line messages."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

import detector
from detector.errors import DetectorError
from detector.ingest.console import IngestProgress, print_file_lines, print_summaries
from detector.ingest.sources import SOURCES, Source
from detector.options import db_option, debug_option, detector_option, monthly_options, window_options


class Context:
    def __init__(self, db: str, debug: bool, config: str | None):
        self.db, self.debug, self.config = db, debug, config

    def open(self, read_only: bool = False):
        return detector.open(self.db, read_only=read_only)


def friendly_errors(func):
    """Library errors become `Error: <message>` and exit 1; a traceback only with --debug."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        debug = bool(getattr(ctx.find_object(Context), "debug", False))
        try:
            return func(*args, **kwargs)
        except DetectorError as exc:
            if debug:
                raise
            raise click.ClickException(str(exc)) from None
        except click.ClickException:  # usage errors: click prints them as they are
            raise
        except BrokenPipeError:  # output piped into `head` and closed early: not an error
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (nothing more may be written)
            ctx.exit(0)
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; nothing of the unfinished step was kept") from None
        except Exception as exc:  # an unexpected failure: still one line unless --debug
            if debug:
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise click.ClickException(
                f"unexpected {exc.__class__.__name__}: {first} (rerun with --debug for details)") from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@db_option
@click.option("--config", type=click.Path(dir_okay=False), default=None,
              help="Settings file (TOML) overriding detector defaults.")
@debug_option
@click.version_option(package_name="detector")
@click.pass_context
def main(ctx, db, config, debug):
    """Detect strategic minerals crossing borders by a detour or under a false declaration."""
    ctx.obj = Context(db, debug, config)


# ---------------------------------------------------------------- ingest
@main.group()
def ingest():
    """Load trade tables into the warehouse (idempotent; bad rows go to `rejects`)."""




def _ingest_command(source: Source) -> None:
    """`detector ingest NAME PATH...` for a declared source, with its loader's options."""

    @click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
    @click.option("--quiet", is_flag=True, help="No progress and no line per file: the refused files and one "
                                                "total line (for logs).")
    @click.pass_obj
    @friendly_errors
    def command(obj: Context, paths, quiet, **options):
        import time

        from detector.ingest.common import FilesRefused, reporting_progress

        started, error = time.perf_counter(), None
        with obj.open() as wh, IngestProgress(len(paths), not quiet and len(paths) > 1
                                               and sys.stderr.isatty()) as progress, reporting_progress(progress):
            try:
                summaries = detector.load(wh, source.name, paths, **options)
            except FilesRefused as exc:
                summaries, error = exc.summaries, exc
        print_summaries(summaries, quiet, time.perf_counter() - started)
        if error is not None:
            raise error

    for option in reversed(source.options):
        command = click.option(option.flag, option.keyword, required=option.required, help=option.help,
                               type=click.Path(dir_okay=False, path_type=Path))(command)
    ingest.command(source.name, help=source.description)(command)


for _source in SOURCES:
    _ingest_command(_source)


@ingest.command("declarations")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--mapping", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML mapping of the customs extract's columns (default: the shipped KCS mapping).")
@click.pass_obj
@friendly_errors
def ingest_declarations(obj: Context, paths, mapping):
    """Load declaration-level customs lines (CSV or Parquet)."""
    from detector.ingest.declarations import load_declarations

    with obj.open() as wh:
        result = load_declarations(wh, paths, mapping)
    print_file_lines(result)


@ingest.command("results")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--mapping", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML mapping of the results file's columns (default: the shipped KCS results mapping).")
@click.pass_obj
@friendly_errors
def ingest_results(obj: Context, paths, mapping):
    """Attach inspection results (declaration id, date, outcome) to declarations loaded earlier."""
    from detector.ingest.results import load_results

    with obj.open() as wh:
        print_file_lines(load_results(wh, paths, mapping))


# ---------------------------------------------------------------- detectors
def _settings(obj: Context):
    return detector.read_settings(obj.config)


def _window(start: str | None, end: str | None, wh):
    return detector.window(wh, start, end)


def _verdict_shares(obj: Context) -> dict[str, str]:
    """detector -> 'c/n confirmed (share), family F: c/n, weight w' from the warehouse's verdicts, if any."""
    from detector.detectors import registry
    from detector.verdicts import verdict_shares

    if not Path(obj.db).exists():
        return {}
    try:
        with obj.open(read_only=True) as wh:
            by_detector, by_family = verdict_shares(wh.con, "detector"), verdict_shares(wh.con, "family")
    except DetectorError:  # an empty or older warehouse: no verdicts to show
        return {}
    fam = {r["name"]: r for r in by_family.iter_rows(named=True)}
    out = {}
    for r in by_detector.iter_rows(named=True):
        family = registry.get(r["name"]).evidence_family
        f = fam.get(family)
        out[r["name"]] = (f"{r['confirmed']}/{r['reviewed']} reviewed leads confirmed ({r['confirmed_share']:.0%}); "
                          f"family {family}: {f['confirmed']}/{f['reviewed']}, lead-score weight {f['weight']:.3f}")
    return out


@main.command()
@click.pass_obj
@friendly_errors
def detectors(obj: Context):
    """List the detectors with their description and settings (defaults)."""
    from detector.detectors import registry

    settings = _settings(obj)
    shares = _verdict_shares(obj)
    for spec in registry.all_detectors().values():
        click.echo(f"{spec.name} (v{spec.version}): {spec.description}")
        click.echo(f"    verdicts: {shares.get(spec.name, 'none yet')}")
        current = settings.for_detector(spec)
        for name, default, doc in spec.settings_docs():
            value = getattr(current, name)
            shown = f"{value!r}" + ("" if value == default else f" (default {default!r})")
            click.echo(f"    {name} = {shown}  # {doc}")


@main.command("run")
@window_options("First month to score (default: first with a year of history).",
                "Last month to score (default: latest loaded).")
@detector_option()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Also write Parquet here.")
@click.option("--all-codes", is_flag=True,
              help="Every HS code in scope, not only the watchlist's: mirror gaps, unit values, new corridors "
                   "and multivariate outliers on all codes (slower).")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Run the corridor detectors on N local processes, a partition of HS codes at a time "
                   "(0: in this process).")
@click.option("--engine", type=click.Choice(["duckdb", "spark"]), default="duckdb", show_default=True,
              help="spark: run the partitions on Apache Spark (pip install 'detector[spark]').")
@click.option("--spark-master", metavar="URL", help="Spark master (default: local[*], or spark-submit's).")
@click.option("--flows", "flows_path", metavar="PATH",
              help="With --engine spark: Hive-partitioned Parquet of the flows (default: the warehouse's, "
                   "exported first).")
@click.option("--no-learning", is_flag=True,
              help="Keep the lead score's family weights at their defaults (do not learn from analysts' verdicts).")
@click.pass_obj
@friendly_errors
def run_cmd(obj: Context, start, end, names, out, all_codes, workers, engine, spark_master, flows_path, no_learning):
    """Run the detectors over a window of months and store their alerts."""
    settings = _settings(obj)
    with obj.open() as wh:
        result = detector.run(wh, start, end, list(names) or None, settings, all_codes=all_codes,
                              workers=workers, engine=engine, spark_master=spark_master, flows_path=flows_path,
                              learning=not no_learning)
        for line in result.lines():
            click.echo(line)
        if out:
            from detector.export import export_parquet

            months = wh.frame("SELECT CAST(m AS DATE) AS period FROM range($a, $b + INTERVAL 1 MONTH, "
                              "INTERVAL 1 MONTH) t(m)", {"a": result.window.start, "b": result.window.end})["period"]
            click.echo(_export_line(out, export_parquet(wh, out, periods=months.to_list())))  # the run's months only


# ---------------------------------------------------------------- reports and exports
def _export_line(out: Path, result: dict) -> str:
    from detector.export import DATASETS

    counts = ", ".join(f"{name}/ {result[name]['rows']:,} rows in {result[name]['partitions']} partitions"
                       for name in DATASETS if name in result)
    return f"Parquet under {out} for {len(result['periods'])} months: {counts}"

@main.command()
@click.option("--period", metavar="YYYY-MM", help="One month.")
@window_options("First month.", "Last month.")
@click.option("--format", "fmt", default="text", show_default=True,
              type=click.Choice(["text", "markdown", "html", "json", "csv"]))
@click.option("--top", type=int, default=20, show_default=True, help="Leads to show (0 = all).")
@click.option("--commodity", help="Only this commodity (e.g. antimony).")
@click.option("--destination", metavar="ISO3", help="Only leads towards this country.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file.")
@click.pass_obj
@friendly_errors
def report(obj: Context, period, start, end, fmt, top, commodity, destination, output):
    """The compliance report: ranked leads with their explanation (and charts in HTML)."""
    from detector.reports import render_report

    if period and (start or end):
        raise click.UsageError("give either --period or --from/--to")
    with obj.open(read_only=True) as wh:
        text = render_report(wh, fmt, output=output, period=period, start=start, end=end,
                             top=top or None, commodity=commodity, destination=destination)
    if output:
        click.echo(f"report written to {output}")
    else:
        click.echo(text, nl=not text.endswith("\n"))


@main.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (alerts/, flows/, series/ partitioned by period).")
@click.pass_obj
@friendly_errors
def export(obj: Context, out):
    """Write Hive-partitioned Parquet for BI tools."""
    from detector.export import export_parquet

    with obj.open(read_only=True) as wh:
        result = export_parquet(wh, out)
    click.echo(_export_line(out, result))


@main.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to write.")
@click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same bytes).")
@click.option("--from", "start", default="2021-01", show_default=True, metavar="YYYY-MM")
@click.option("--to", "end", default="2025-12", show_default=True, metavar="YYYY-MM")
@friendly_errors
def sample(out, seed, start, end):
    """Write the synthetic sample world (Comtrade CSV) and its labelled cases.json."""
    from detector.sample import generate_world

    result = generate_world(out, seed=seed, start=start, end=end)
    for name, path in result["paths"].items():
        click.echo(f"{name}: {path}")
    click.echo(f"{result['rows']:,} rows, {result['reporters']} reporters, {result['corridors']:,} corridors, "
               f"{result['months']} months, {result['cases']} cases, {result['decoys']} decoys (seed {seed})")


@main.command()
@click.option("--cases", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="cases.json from `detector sample`, or a CSV origin,via,destination,hs_prefix,start,end "
                   "(the analysts' confirmed and dismissed verdicts count as cases and decoys too).")
@click.option("--top", "top_k", default=25, show_default=True, help="K of recall@K and precision@K.")
@click.option("--format", "fmt", default="text", type=click.Choice(["text", "json"]), show_default=True)
@click.option("--by-detector", is_flag=True, help="Also score each detector's alerts alone.")
@click.pass_obj
@friendly_errors
def evaluate(obj: Context, cases, top_k, fmt, by_detector):
    """Score the stored alerts against known cases: recall@K, precision@K, decoys in the top K."""
    import polars as pl

    from detector.evaluate import evaluate as score_cases
    from detector.evaluate import evaluate_by_detector, format_by_detector, format_evaluation, load_cases
    from detector.verdicts import cases_from_verdicts

    with obj.open(read_only=True) as wh:
        alerts = wh.frame("SELECT * FROM alerts")
        judged = cases_from_verdicts(wh)
    known = pl.concat([load_cases(cases), judged], how="vertical_relaxed") if cases else judged
    if known.height == 0:
        raise DetectorError("no cases: give --cases FILE, or confirm leads first (detector review LEAD_ID "
                            "--verdict confirmed --note ...)")
    combined = score_cases(alerts, known, top_k=top_k)
    click.echo(format_evaluation(combined, fmt))
    if by_detector and fmt == "text":
        click.echo(format_by_detector(evaluate_by_detector(alerts, known, top_k), combined))


@main.command()
@click.option("--out", default="out", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the sample world, the report and the Parquet output.")
@click.option("--seed", default=7, show_default=True, help="Seed of the sample world.")
@click.pass_obj
@friendly_errors
def demo(obj: Context, out, seed):
    """Make the sample world, load it, run every detector, report, export and evaluate."""
    from detector.demo import run_demo

    run_demo(obj.db, out, seed=seed, settings=_settings(obj), echo=click.echo)


@main.command()
@monthly_options
@click.pass_obj
@friendly_errors
def monthly(obj: Context, inbox, out, month, window_months, names, log_format, fail_on_high, no_learning):
    """The monthly batch: load new files, score the rolling window, write Parquet and the report."""
    from detector.monthly.shell import run_and_exit_code

    code = run_and_exit_code(obj.db, inbox, out, month=month, settings=_settings(obj), log_format=log_format,
                             fail_on_high=fail_on_high, window_months=window_months,
                             detectors=list(names) or None, debug=obj.debug, learning=not no_learning)
    if code:
        sys.exit(code)


# ---------------------------------------------------------------- verdicts
@main.command()
@click.argument("lead_id", required=False)
@click.option("--verdict", metavar="confirmed|dismissed|watch", help="The verdict on the lead.")
@click.option("--note", metavar="TEXT", help="Why (required).")
@click.option("--by", "by", metavar="NAME", help="Who gives it (default: $DETECTOR_ANALYST, else the login name).")
@click.option("--until", metavar="YYYY-MM", help="dismissed or watch: lasts to the end of this month.")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path),
              help="CSV of verdicts, one lead per line: lead_id,verdict,note[,by][,until].")
@click.option("--list", "show", is_flag=True, help="Show the leads awaiting review and the verdicts given.")
@click.option("--top", default=20, show_default=True, help="With --list: leads awaiting review to show.")
@click.pass_obj
@friendly_errors
def review(obj: Context, lead_id, verdict, note, by, until, path, show, top):
    """Record an analyst's verdict on a lead (confirmed, dismissed, watch), or list them."""
    from detector import verdicts

    if sum(bool(x) for x in (lead_id, path, show)) != 1:
        raise click.UsageError("give a LEAD_ID with --verdict and --note, or --file CSV, or --list")
    if show:
        with obj.open(read_only=True) as wh:
            click.echo(verdicts.format_review_list(*verdicts.review_list(wh), top=top), nl=False)
        return
    if path and (verdict or note or until):
        raise click.UsageError("--file takes the verdicts from the file; drop --verdict/--note/--until")
    batch = verdicts.read_verdict_file(path) if path else verdicts.one_verdict(lead_id, verdict, note, by, until)
    with obj.open() as wh:
        rows = verdicts.record(wh, batch, analyst=by)
    for r in rows.iter_rows(named=True):
        until_text = f" until {r['until']:%Y-%m}" if r["until"] else ""
        click.echo(f"{r['lead_id']}: {r['verdict']}{until_text} by {r['reviewed_by']} "
                   f"(lead score {r['lead_score']:.2f}, run {r['run_id']})")


# ---------------------------------------------------------------- reference data
def _print_reference(table: str, columns: list[str]) -> None:
    import duckdb
    from rich.console import Console
    from rich.table import Table

    from detector.reference import reference_sql

    sql, params = reference_sql(table)
    rows = duckdb.connect().execute(f"SELECT {', '.join(columns)} FROM ({sql})", params).fetchall()
    out = Table(*columns, show_lines=False, title=f"{table} ({len(rows)} rows)")
    for r in rows:
        out.add_row(*("" if v is None else str(v) for v in r))
    Console(width=max(100, Console().width)).print(out)


@main.command()
@friendly_errors
def watchlist():
    """Print the watchlist: HS prefixes of the controlled minerals."""
    _print_reference("watchlist", ["hs_prefix", "commodity", "controlling_country", "description"])


@main.command()
@friendly_errors
def controls():
    """Print the dated export-control events."""
    _print_reference("controls", ["date", "country", "instrument", "commodities", "targets", "kind", "until"])


if __name__ == "__main__":
    sys.exit(main(prog_name="detector"))
