"""tests/k8s_schemas.py itself: strictness where the CRD allows it, and a line as the chart
makes it, after the deploy step's patch, validates against the real CRDs."""

from __future__ import annotations

import pytest
from k8s_schemas import K8sSchemaError, kserve_errors, strict, validate
from kube_api import chart_line_object

from anomalyops.components.deploy.kserve import model_patch


def test_strict_closes_listed_objects_but_not_open_ones():
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"a": {"type": "string"}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                     "properties": {"b": {"type": "string"}}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }  # fmt: skip
    closed = strict(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["spec"]["additionalProperties"] is False
    assert "additionalProperties" not in closed["properties"]["free"]
    assert closed["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    assert "additionalProperties" not in schema  # the input is left alone


def merged(target: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch, as the API server applies the deploy step's patch."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def patched_line() -> dict:
    """A stopped line, after the deploy step's patch, with a canary share as Knative adds."""
    line = chart_line_object("plant", "weld-line-1", "Knative", None)
    patch = model_patch(line, "s3://anomalyops/triton/weld/v1")
    patch["spec"]["predictor"]["canaryTrafficPercent"] = 10
    patch["metadata"] = {"annotations": {"serving.kserve.io/stop": None}}
    return merged(line, patch)


def test_a_patched_line_validates():
    obj = patched_line()
    assert obj["spec"]["predictor"]["model"]["storageUri"].startswith("s3://")
    assert obj["spec"]["transformer"]["storageUris"][0]["mountPath"] == "/mnt/models"
    validate(obj)


def test_a_hand_written_typo_is_named():
    obj = patched_line()
    obj["spec"]["predictor"]["model"]["storageURI"] = "s3://x/y"
    assert kserve_errors(obj) == [
        "spec.predictor.model: Additional properties are not allowed ('storageURI' was unexpected)"
    ]
    with pytest.raises(K8sSchemaError, match=r"InferenceService weld-line-1: .*storageURI"):
        validate(obj)
