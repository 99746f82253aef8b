"""tests/k8s_schemas.py itself: strictness where the CRD allows it, and the object the deploy
step builds with the kserve SDK's models validates against the real CRDs."""

from __future__ import annotations

import pytest
from k8s_schemas import K8sSchemaError, kserve_errors, strict, validate

from anomalyops.components.deploy.kserve import KServeSettings, inference_service


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


def sdk_inference_service() -> dict:
    """What the deploy step sends, with a canary share as its patch adds."""
    settings = KServeSettings(namespace="plant", resources={"limits": {"nvidia.com/gpu": 1}})
    obj = inference_service(settings, "weld-line-1", "s3://anomalyops/triton/weld-line-1")
    obj["spec"]["predictor"]["canaryTrafficPercent"] = 10
    return obj


def test_an_inference_service_built_with_the_kserve_sdk_validates():
    obj = sdk_inference_service()
    assert obj["spec"]["predictor"]["model"]["storageUri"].startswith("s3://")
    validate(obj)


def test_a_hand_written_typo_is_named():
    obj = sdk_inference_service()
    obj["spec"]["predictor"]["model"]["storageURI"] = "s3://x/y"
    assert kserve_errors(obj) == [
        "spec.predictor.model: Additional properties are not allowed ('storageURI' was unexpected)"
    ]
    with pytest.raises(K8sSchemaError, match=r"InferenceService weld-line-1: .*storageURI"):
        validate(obj)
