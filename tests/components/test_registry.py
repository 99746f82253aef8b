"""The register step against a real MLflow server on a free port."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from anomalyops.components.registry import (
    CHALLENGER,
    CHAMPION,
    LocalServer,
    RegistryError,
    compare,
    register,
)

GOOD = {"image_auroc": 0.90, "false_positive_rate": 0.10, "image_f1": 0.8}
EVAL_HASH = "e" * 64


@pytest.fixture(scope="module")
def model_dir(weld, tmp_path_factory) -> Path:
    from anomalyops.components.train import train

    out = tmp_path_factory.mktemp("model")
    train(weld, out, settings={"input_size": (128, 128)}, progress=False)
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LocalServer(tmp_path_factory.mktemp("mlflow")) as running:
        yield running


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri, uri)


def versions(uri: str, name: str) -> list[str]:
    return sorted(v.version for v in client(uri).search_model_versions(f"name='{name}'"))


def test_compare_rule():
    assert compare({"image_auroc": 0.91}, GOOD)[0]
    assert not compare({"image_auroc": 0.89}, GOOD)[0]
    assert compare({"image_auroc": 0.90, "false_positive_rate": 0.05}, GOOD)[0]
    assert compare({"image_auroc": 0.90, "false_positive_rate": 0.10}, GOOD)[0]
    ok, why = compare({"image_auroc": 0.90, "false_positive_rate": 0.2}, GOOD)
    assert not ok and "false_positive_rate" in why
    assert not compare({}, GOOD)[0]


def test_champion_then_gate(server, model_dir, tmp_path):
    report = tmp_path / "evaluation.html"
    report.write_text("<html>report</html>")
    first = register(model_dir, GOOD, "gate", server.uri, [report], EVAL_HASH)
    assert first.promoted and first.champion == first.version
    c = client(server.uri)
    champion = c.get_model_version_by_alias("gate", CHAMPION)
    assert champion.version == first.version
    assert champion.tags["eval_dataset_sha256"] == EVAL_HASH
    assert (
        champion.tags["dataset_sha256"]
        == json.loads((model_dir / "training.json").read_text())["dataset_sha256"]
    )
    logged = {a.path for a in c.list_artifacts(first.run_id, "model")}
    assert {"model/detector.json", "model/thresholds.json"} <= logged
    assert [a.path for a in c.list_artifacts(first.run_id, "reports")] == [
        "reports/evaluation.html"
    ]
    assert c.get_run(first.run_id).data.metrics["image_auroc"] == pytest.approx(0.90)

    worse = register(model_dir, GOOD | {"image_auroc": 0.85}, "gate", server.uri, [], EVAL_HASH)
    assert not worse.promoted and "0.8500 < champion's 0.9000" in worse.reason
    assert c.get_model_version_by_alias("gate", CHAMPION).version == first.version
    assert c.get_model_version_by_alias("gate", CHALLENGER).version == worse.version

    elsewhere = register(model_dir, GOOD | {"image_auroc": 0.99}, "gate", server.uri, [], "f" * 64)
    assert not elsewhere.promoted and "different evaluation set" in elsewhere.reason

    tie = register(
        model_dir, GOOD | {"false_positive_rate": 0.05}, "gate", server.uri, [], EVAL_HASH
    )
    assert tie.promoted and c.get_model_version_by_alias("gate", CHAMPION).version == tie.version


def test_server_killed_midway_leaves_no_version_and_champion(model_dir, tmp_path):
    server = LocalServer(tmp_path / "mlflow").start()
    try:
        champion = register(model_dir, GOOD, "crash", server.uri, [], EVAL_HASH)

        def kill(stage: str) -> None:
            if stage == "artifacts_logged":
                server.stop()

        better = GOOD | {"image_auroc": 0.99}
        with pytest.raises(RegistryError, match="still failing after 2 attempts"):
            register(model_dir, better, "crash", server.uri, [], EVAL_HASH,
                     attempts=2, backoff=0.1, on_stage=kill)  # fmt: skip
        server.start()  # same store, same port
        assert versions(server.uri, "crash") == [champion.version]
        current = client(server.uri).get_model_version_by_alias("crash", CHAMPION)
        assert current.version == champion.version
        assert not client(server.uri).search_registered_models("name LIKE '_lock.%'")
    finally:
        server.stop()


def _register_in_process(args: tuple) -> dict:
    model_dir, metrics, uri = args
    return register(model_dir, metrics, "race", uri, [], EVAL_HASH).to_dict()


def test_concurrent_registrations_keep_registry_consistent(server, model_dir):
    runs = [GOOD | {"image_auroc": 0.95}, GOOD | {"image_auroc": 0.93}]
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        decisions = pool.map(_register_in_process, [(model_dir, m, server.uri) for m in runs])
    assert sorted(d["version"] for d in decisions) == versions(server.uri, "race") == ["1", "2"]
    c = client(server.uri)
    tags = {d["version"]: c.get_model_version("race", d["version"]).tags for d in decisions}
    best = next(d for d in decisions if tags[d["version"]]["image_auroc"] == "0.95")
    assert c.get_model_version_by_alias("race", CHAMPION).version == best["version"]
    for d in decisions:
        assert {a.path for a in c.list_artifacts(d["run_id"], "model")} >= {"model/detector.json"}
    assert not c.search_registered_models("name LIKE '_lock.%'")


def test_server_coming_up_late_is_retried_with_backoff(model_dir, tmp_path):
    import threading

    server = LocalServer(tmp_path / "late")
    starter = threading.Timer(1.0, server.start)
    starter.start()
    try:
        decision = register(model_dir, GOOD, "late", server.uri, [], EVAL_HASH,
                            attempts=9, backoff=0.5)  # fmt: skip
        assert decision.promoted and decision.version == "1"
    finally:
        starter.join()
        server.stop()
