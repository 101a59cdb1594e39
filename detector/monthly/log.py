"""One log line (text) or JSON object per step of the run."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable

from detector.errors import DetectorError

Log = Callable[[dict], None]


def make_log(fmt: str = "text", stream=None) -> Log:
    """One line per step: `HH:MM:SS step  seconds  key=value ...` or one JSON object (json)."""
    stream = stream or sys.stdout

    def text(event: dict) -> None:
        fields = {k: v for k, v in event.items() if k not in ("step", "seconds", "message", "level")}
        level = "WARNING " if event.get("level") == "warning" else ""
        kv = " ".join(f"{k}={v}" for k, v in fields.items())
        msg = f"  {event['message']}" if event.get("message") else ""
        print(f"{dt.datetime.now():%H:%M:%S} {level}{event['step']:<11} {event.get('seconds', 0):7.2f}s  {kv}{msg}",
              file=stream, flush=True)

    def as_json(event: dict) -> None:
        record = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **event}
        print(json.dumps(record, default=str), file=stream, flush=True)

    if fmt not in ("text", "json"):
        raise DetectorError(f"log format {fmt!r}: choose text or json")
    return as_json if fmt == "json" else text
