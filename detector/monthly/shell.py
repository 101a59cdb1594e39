"""What both command lines (`detector monthly`, `python -m pipelines.monthly`) do: run, log, and
turn the outcome into the documented exit code."""

from __future__ import annotations

import sys
import time

from detector.errors import DetectorError
from detector.monthly.job import run_monthly
from detector.monthly.log import make_log
from detector.monthly.readiness import WINDOW_MONTHS

EXIT_OK, EXIT_ERROR, EXIT_HIGH = 0, 1, 3


def run_and_exit_code(db, inbox, out, month=None, settings=None, log_format: str = "text",
                      fail_on_high: bool = False, window_months: int = WINDOW_MONTHS,
                      detectors: list[str] | None = None, debug: bool = False, stream=None,
                      learning: bool = True) -> int:
    """What both command lines do: run, log, and turn the outcome into the documented exit code."""
    stream = stream or sys.stdout
    log = make_log(log_format, stream)
    progress = log_format == "text" and sys.stderr.isatty()
    t0 = time.perf_counter()
    try:
        summary = run_monthly(db, inbox, out, month=month, settings=settings, log=log,
                              window_months=window_months, detectors=detectors, progress=progress,
                              learning=learning)
    except KeyboardInterrupt:
        log({"step": "error", "seconds": round(time.perf_counter() - t0, 3), "level": "error",
             "message": "interrupted; the warehouse and OUT are as the last complete run left them"})
        return EXIT_ERROR
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, DetectorError):
            message = str(exc)
        else:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            message = f"unexpected {exc.__class__.__name__}: {first} (rerun with --debug for details)"
        log({"step": "error", "seconds": round(time.perf_counter() - t0, 3), "level": "error", "message": message})
        if log_format == "text":
            print(f"Error: {message}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    if fail_on_high and summary["high_new"]:
        return EXIT_HIGH
    return EXIT_OK
