"""The chart under test and its value sets (helm's chart-testing convention)."""

from __future__ import annotations

import os
from pathlib import Path

from k8s_schemas import REPO

HELM = Path(os.environ.get("ANOMALYOPS_HELM", REPO / ".tools" / "helm"))
CHART = REPO / "charts" / "anomalyops"
# Helm's convention (chart-testing): one value set per ci/*-values.yaml; plus the defaults
# and the example release platform/README.md installs.
VALUE_FILES = {
    "default": None,
    **{
        p.name.removesuffix("-values.yaml"): p for p in sorted((CHART / "ci").glob("*-values.yaml"))
    },
    "platform-example": REPO / "platform" / "values" / "anomalyops-example.yaml",
}
VALUE_SETS = list(VALUE_FILES)


def values_args(value_set: str) -> list[str]:
    path = VALUE_FILES[value_set]
    return [] if path is None else ["-f", str(path)]
