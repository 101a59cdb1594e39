"""The list of detectors. The CLI, the settings file and the tests all go through here."""

from __future__ import annotations

import importlib

from detector.detectors.base import DetectorSpec

# Module names under detector.detectors, in report order. Each module defines SPEC.
DETECTOR_MODULES = [
    "third_country_surge",
    "transshipment",
    "export_diversion",
    "mirror_gap",
    "unit_value",
    "code_shift",
    "new_corridor",
    "multivariate",
    "declaration_risk",
]


def all_detectors() -> dict[str, DetectorSpec]:
    specs = {}
    for module_name in DETECTOR_MODULES:
        module = importlib.import_module(f"detector.detectors.{module_name}")
        specs[module.SPEC.name] = module.SPEC
    return specs


def get(name: str) -> DetectorSpec:
    specs = all_detectors()
    if name not in specs:
        from detector.errors import DetectorError

        raise DetectorError(f"unknown detector '{name}'; known: {', '.join(specs)}")
    return specs[name]
