"""Reading the TOML files users give (settings, mappings), with one-line errors naming the file."""

from __future__ import annotations

import tomllib
from pathlib import Path

from detector.errors import ConfigError


def read_toml(path: str | Path, kind: str) -> dict:
    """The parsed file; a missing file or invalid TOML is a ConfigError ('no such {kind} file')."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {kind} file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
