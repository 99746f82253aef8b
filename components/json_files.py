"""Reading the JSON files of a saved model against a schema: clear errors, never KeyError.

A hand-edited or damaged detector.json / thresholds.json (a list instead of an object, a
threshold that is a string or missing) must fail at load with the file and the field,
not later inside a request or a metric.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}


class ModelFileError(ValueError):
    """A saved-model file is missing, unreadable or malformed; the message names it."""


def read_json(path: str | Path, schema: dict[str, Any]) -> Any:
    """PATH parsed and checked against SCHEMA (JSON Schema draft 2020-12)."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, or a link to /dev/zero: never read
        raise ModelFileError(f"{path}: not a regular file")
    try:
        body = json.loads(path.read_text(), parse_constant=_non_finite)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        # ValueError: bad JSON, or an integer past Python's digit limit; RecursionError:
        # nesting deeper than the parser can follow.
        raise ModelFileError(f"{path}: not readable JSON ({type(error).__name__}: "
                             f"{str(error)[:200]})") from None  # fmt: skip
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(body), key=lambda e: list(e.path)
    )
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        raise ModelFileError(f"{path}: {where}: {first.message}")
    return body


def _non_finite(name: str) -> None:
    raise json.JSONDecodeError(f"non-finite number {name}", name, 0)
