#!/usr/bin/env python3
"""Save a PNG screenshot of an HTML report with headless Chromium, offline.

Usage: python docs/make_screenshot.py REPORT.html OUT.png [--width 1280] [--height 3000]

Chromium runs with every network path closed (a dead proxy, host names that never resolve),
so the picture shows what a reader sees with no network at all.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

OFFLINE_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(report: Path, png: Path, width: int = 1280, height: int = 3000,
               timeout: float = 120) -> Path:
    browser = find_chromium()
    if browser is None:
        raise SystemExit("chromium not found; install it (Debian: apt-get install chromium)")
    png = png.resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [browser, *OFFLINE_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--screenshot={png}", report.resolve().as_uri()]
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
    if not png.exists() or png.stat().st_size == 0:
        raise SystemExit(f"{png}: chromium wrote no screenshot")
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args(argv)
    if not args.report.is_file():
        parser.error(f"{args.report}: no such file")
    print(screenshot(args.report, args.png, args.width, args.height))
    return 0


if __name__ == "__main__":
    sys.exit(main())
