"""Reading the JSON files of a saved model against a schema: clear errors, never KeyError.

A hand-edited or damaged detector.json / thresholds.json (a list instead of an object, a
threshold that is a string or missing) must fail at load with the file and the field,
not later inside a request or a metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema

from anomalyops.serving.contract.json_file import read_json_file

SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}


class ModelFileError(ValueError):
    """A saved-model file is missing, unreadable or malformed; the message names it."""


def read_json(path: str | Path, schema: dict[str, Any]) -> Any:
    """PATH parsed and checked against SCHEMA (JSON Schema draft 2020-12)."""
    path = Path(path)
    body = read_json_file(path, ModelFileError, finite=True)
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(body), key=lambda e: list(e.path)
    )
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        raise ModelFileError(f"{path}: {where}: {first.message}")
    return body
