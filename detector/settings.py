"""One validated settings object: each detector's dataclass defaults, overridden by a TOML file.

File layout (every key optional):

    [detectors.third_country_surge]
    min_z = 4.0

    [fdr]
    rate = 0.05

Unknown sections or keys, and values of the wrong type, are rejected naming the key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from detector.errors import ConfigError
from detector.userfiles import read_toml


@dataclass(frozen=True)
class FdrSettings:
    """The false discovery rate the runner keeps over each month's tests (all detectors, all codes)."""

    rate: float = field(default=0.05, metadata={"doc": "expected share of false discoveries among a month's kept alerts on codes outside the watchlist (on all codes without keep_watched), p-values calibrated to each detector's empirical null; 0: off, keep all"})
    watched_weight: float = field(default=20.0, metadata={
        "doc": "weight of a watched code's test against an unwatched code's (weighted Benjamini-Hochberg; weights average 1)"})
    keep_watched: bool = field(default=True, metadata={
        "doc": "keep every alert on a watched code whatever its q-value (the rate then governs the codes outside the watchlist)"})


@dataclass
class Settings:
    detectors: dict[str, Any] = field(default_factory=dict)  # name -> settings dataclass instance
    fdr: FdrSettings = field(default_factory=FdrSettings)

    def for_detector(self, spec):
        return self.detectors.get(spec.name) or spec.default_settings()

    def as_json(self) -> str:
        out = {k: dataclasses.asdict(v) for k, v in sorted(self.detectors.items())}
        if self.fdr != FdrSettings():
            out["fdr"] = dataclasses.asdict(self.fdr)
        return json.dumps(out, sort_keys=True, default=str)


def _check_type(key: str, value: Any, expected: Any) -> Any:
    origin = getattr(expected, "__origin__", None)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise ConfigError(f"setting '{key}' must be a list, got {type(value).__name__}")
        (inner, *_) = getattr(expected, "__args__", (Any,))
        items = [_check_type(f"{key}[]", v, inner) for v in value] if inner is not Ellipsis else value
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"setting '{key}' must be a table, got {type(value).__name__}")
        return dict(value)
    if isinstance(expected, type) and expected is not Any:
        if expected is bool and not isinstance(value, bool) or (
                expected is not bool and (isinstance(value, bool) or not isinstance(value, expected))):
            raise ConfigError(f"setting '{key}' must be {expected.__name__}, got {type(value).__name__} {value!r}")
    return value


def load_settings(path: str | Path | None, specs: dict) -> Settings:
    settings = Settings()
    if path is None:
        return settings
    path = Path(path)
    data = read_toml(path, "settings")
    unknown = set(data) - {"detectors", "fdr"}
    if unknown:
        raise ConfigError(f"{path}: unknown section '{sorted(unknown)[0]}' (known: detectors, fdr)")
    if "fdr" in data:
        hints = get_type_hints(FdrSettings)
        known = {f.name for f in dataclasses.fields(FdrSettings)}
        kwargs = {}
        for key, value in data["fdr"].items():
            if key not in known:
                raise ConfigError(f"{path}: unknown key '{key}' in [fdr] (known: {', '.join(sorted(known))})")
            kwargs[key] = _check_type(f"fdr.{key}", value, hints[key])
        settings.fdr = FdrSettings(**kwargs)
    for name, values in data.get("detectors", {}).items():
        if name not in specs:
            raise ConfigError(f"{path}: unknown detector '{name}' in [detectors.{name}]")
        cls = specs[name].settings_class
        hints = get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{path}: unknown key '{key}' in [detectors.{name}] (known: {', '.join(sorted(known))})")
            kwargs[key] = _check_type(f"detectors.{name}.{key}", value, hints[key])
        settings.detectors[name] = cls(**kwargs)
    return settings
