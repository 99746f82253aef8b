"""One reader for every JSON file a model carries (model.json, reference.json,
detector.json, thresholds.json): the same refusals, each naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_file(
    path: Path, error: type[Exception], missing: str = "missing", finite: bool = False
) -> Any:
    """PATH's parsed JSON, or ERROR naming PATH: absent (MISSING says what it means), not
    a regular file (a folder, a link to /dev/zero), not JSON, nesting too deep, or an
    integer past Python's digit limit; with FINITE also a NaN or Infinity literal. Files
    whose own checks name the field (thresholds, statistics) leave FINITE off."""
    if not path.exists():
        raise error(f"{path}: {missing}")
    if not path.is_file():  # never read a folder or a device
        raise error(f"{path}: not a regular file")
    try:
        return json.loads(path.read_text(), parse_constant=_non_finite if finite else None)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as caught:
        raise error(f"{path}: not readable JSON ({type(caught).__name__}: "
                    f"{str(caught)[:200]})") from None  # fmt: skip


def _non_finite(name: str) -> None:
    raise ValueError(f"non-finite number {name}")
