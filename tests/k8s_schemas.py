"""Validate Kubernetes objects without a cluster (shared by the chart and deploy tests).

KServe kinds are checked against the real CRD schemas (shipped in tests/data/k8s/crds,
unmodified, Apache-2.0, see its README), made strict:
a CRD marks unknown fields only by their absence from `properties`, so every object schema
that lists properties and does not set x-kubernetes-preserve-unknown-fields gets
`additionalProperties: false`, and a misspelt field such as `storageURI` fails. Built-in
kinds are checked by kubernetes-validate in strict mode.

    from k8s_schemas import validate, kserve_errors
    validate(obj)            # raises K8sSchemaError listing every problem with its path
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from skip_rule import require_or_skip

REPO = Path(__file__).resolve().parents[1]
SHARED_K8S = Path(os.environ.get("ANOMALYOPS_K8S_SCHEMAS", REPO / "tests" / "data" / "k8s"))
CRD_DIR = SHARED_K8S / "crds"
# The oldest Kubernetes the chart supports that kubernetes-validate ships schemas for.
KUBERNETES_VERSION = "1.32.0"
KSERVE_GROUP = "serving.kserve.io"


class K8sSchemaError(ValueError):
    """An object does not match its kind's schema; the message lists each path."""


def require_crds() -> Path:
    require_or_skip(CRD_DIR.is_dir(), f"KServe CRD schemas not found at {CRD_DIR}")
    return CRD_DIR


def strict(schema: Any) -> Any:
    """A copy of an OpenAPI v3 schema that refuses fields it does not list."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the CRDs are ~2 MB


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator | None:
    """A strict validator for one served version of a KServe kind, None if there is none.

    CRD files are named `<group>_<plural>.yaml`; KServe's plurals are the kind + "s".
    """
    group, _, version = api_version.partition("/")
    path = require_crds() / f"{group}_{kind.lower()}s.yaml"
    if not path.is_file():
        return None
    crd = yaml.load(path.read_text(), Loader=_LOADER)
    for served in crd["spec"]["versions"]:
        if served["name"] == version and served.get("served"):
            return jsonschema.Draft7Validator(strict(served["schema"]["openAPIV3Schema"]))
    return None


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "<root>"


def kserve_errors(obj: dict) -> list[str]:
    """Every mismatch of a KServe object with its CRD, as 'path: message'."""
    api_version, kind = str(obj.get("apiVersion")), str(obj.get("kind"))
    validator = crd_validator(api_version, kind)
    if validator is None:
        return [f"no CRD schema for {api_version} {kind} in {CRD_DIR}"]
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    return [f"{_path(error)}: {error.message}" for error in errors]


def builtin_errors(obj: dict) -> list[str]:
    """kubernetes-validate's verdict on a built-in kind (strict: unknown fields fail)."""
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'.'.join(str(p) for p in error.path) or '<root>'}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"no schema for {obj.get('apiVersion')} {obj.get('kind')}: {error}"]
    return []


def errors(obj: dict) -> list[str]:
    if str(obj.get("apiVersion", "")).startswith(f"{KSERVE_GROUP}/"):
        return kserve_errors(obj)
    return builtin_errors(obj)


def validate(obj: dict) -> None:
    """Raise K8sSchemaError naming the object and each invalid path."""
    problems = errors(obj)
    if problems:
        name = obj.get("metadata", {}).get("name", "?")
        raise K8sSchemaError(f"{obj.get('kind')} {name}: " + "; ".join(problems))
