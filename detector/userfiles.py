"""Reading the small files users write by hand (settings and mappings in TOML, case and verdict
lists in CSV), with one-line errors naming the file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import polars as pl

from detector.errors import ConfigError, InputError


def read_toml(path: str | Path, kind: str) -> dict:
    """The parsed file; a missing file or invalid TOML is a ConfigError ('no such {kind} file')."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {kind} file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def read_small_csv(path: str | Path, required: list[str], expected: str) -> pl.DataFrame:
    """A hand-written CSV as text columns with lower-case, trimmed names; InputError when it cannot
    be read or lacks a `required` column (`expected` spells the header for the message)."""
    try:
        df = pl.read_csv(path, infer_schema=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad input file
        raise InputError(path, f"cannot read as CSV: {str(exc).splitlines()[0]}") from None
    df = df.rename({c: c.strip().lower() for c in df.columns})
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}; expected {expected}", 1)
    return df
