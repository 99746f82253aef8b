"""tests/k8s_schemas.py itself: strictness where the CRD allows it, and objects built with
the kserve SDK's models (as the deploy step builds them) validate against the real CRDs."""

from __future__ import annotations

import pytest
from k8s_schemas import K8sSchemaError, kserve_errors, strict, validate


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


def sdk_inference_service(storage_uri_field: str = "storage_uri") -> dict:
    from kserve import (
        V1beta1InferenceService,
        V1beta1InferenceServiceSpec,
        V1beta1ModelFormat,
        V1beta1ModelSpec,
        V1beta1PredictorSpec,
    )
    from kubernetes.client import ApiClient, V1ObjectMeta

    model = V1beta1ModelSpec(
        model_format=V1beta1ModelFormat(name="triton"),
        runtime="anomalyops-triton",
        protocol_version="v2",
        **{storage_uri_field: "s3://anomalyops/triton/weld-line-1"},
    )
    isvc = V1beta1InferenceService(
        api_version="serving.kserve.io/v1beta1",
        kind="InferenceService",
        metadata=V1ObjectMeta(name="weld-line-1", namespace="plant"),
        spec=V1beta1InferenceServiceSpec(
            predictor=V1beta1PredictorSpec(model=model, canary_traffic_percent=10)
        ),
    )
    return ApiClient().sanitize_for_serialization(isvc)


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
