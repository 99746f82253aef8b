"""The register step against a real MLflow server on a free port."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from anomalyops.components.registry.client import CHALLENGER, CHAMPION, RegistryError, mlflow_client
from anomalyops.components.registry.promotion import compare
from anomalyops.components.registry.register import register
from anomalyops.components.registry.server import LocalServer

GOOD = {"image_auroc": 0.90, "false_positive_rate": 0.10, "image_f1": 0.8}
EVAL_HASH = "e" * 64


@pytest.fixture(scope="module")
def model_dir(weld, tmp_path_factory) -> Path:
    from anomalyops.components.training.train import train

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


# ---------------------------------------------------------------- crashes and locks


def _register_then_die(args: tuple) -> None:
    """Register, and kill -9 this process at STAGE (a crash mid-registration)."""
    import os
    import signal

    model_dir, metrics, variant, uri, stage = args

    def die(name: str) -> None:
        if name == stage:
            os.kill(os.getpid(), signal.SIGKILL)

    register(model_dir, metrics, variant, uri, [], EVAL_HASH, on_stage=die, lease_s=2.0)


def _killed(args: tuple) -> int:
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_register_then_die, args=(args,))
    process.start()
    process.join(timeout=300)
    return process.exitcode


def pending(uri: str, name: str) -> list[str]:
    found = client(uri).search_model_versions(f"name='{name}'")
    return [v.version for v in found if v.tags.get("registration") == "pending"]


def test_kill_9_after_champion_moved_is_rolled_back_by_the_next_run(server, model_dir):
    first = register(model_dir, GOOD, "killed", server.uri, [], EVAL_HASH)
    better = GOOD | {"image_auroc": 0.99}
    assert _killed((model_dir, better, "killed", server.uri, "aliases_set")) == -9
    c = client(server.uri)
    # The dead run left exactly what the issue saw: a version holding the aliases, a lock.
    assert pending(server.uri, "killed") == ["2"]
    assert c.get_model_version_by_alias("killed", CHAMPION).version == "2"
    assert c.search_registered_models("name LIKE '_lock.killed.%'")

    # The next run takes the expired lease over and rolls the dead version back first.
    after = register(model_dir, GOOD | {"image_auroc": 0.95}, "killed", server.uri, [], EVAL_HASH)
    assert after.promoted and after.version == "3"
    assert versions(server.uri, "killed") == [first.version, "3"]
    assert not pending(server.uri, "killed")
    assert c.get_model_version_by_alias("killed", CHAMPION).version == "3"
    assert c.get_model_version("killed", "3").tags["previous_champion"] == first.version
    assert not c.search_registered_models("name LIKE '_lock.killed.%'")


def test_mlflow_killed_after_version_creation_then_next_run_succeeds(model_dir, tmp_path):
    server = LocalServer(tmp_path / "mlflow").start()
    try:
        champion = register(model_dir, GOOD, "crash9", server.uri, [], EVAL_HASH)

        def kill_9(stage: str) -> None:
            if stage == "version_created":
                import os
                import signal

                os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait()

        with pytest.raises(RegistryError, match="crash9 version 2 failed"):
            register(model_dir, GOOD | {"image_auroc": 0.99}, "crash9", server.uri, [],
                     EVAL_HASH, attempts=2, backoff=0.1, on_stage=kill_9,
                     lease_s=2.0)  # fmt: skip
        server.start()  # same store and port, as an operator would restart it
        assert pending(server.uri, "crash9") == ["2"]
        after = register(model_dir, GOOD | {"image_auroc": 0.99}, "crash9", server.uri, [],
                         EVAL_HASH)  # fmt: skip
        assert after.promoted and after.version == "3"
        assert versions(server.uri, "crash9") == [champion.version, "3"]
        assert client(server.uri).get_model_version_by_alias("crash9", CHAMPION).version == "3"
    finally:
        server.stop()


def test_live_lock_is_waited_for_then_named_and_force_unlock_clears_it(server, model_dir):
    from anomalyops.components.registry.lock import LockError, VariantLock
    from anomalyops.components.registry.register import unlock

    holder = VariantLock(mlflow_client(server.uri), "held", lease_s=600).acquire()
    holder._stop.set()  # a hung run: holds a long lease, renews no more
    contender = VariantLock(mlflow_client(server.uri), "held", wait_s=1.0)
    with pytest.raises(LockError, match=r"_lock\.held\.1 \(owner .*still held.*--force-unlock"):
        contender.acquire()
    removed, rolled = unlock(server.uri, "held")
    assert removed and "_lock.held.1" in removed[0] and rolled == []
    decision = register(model_dir, GOOD, "held", server.uri, [], EVAL_HASH)
    assert decision.promoted
    with pytest.raises(LockError, match="lost"):
        holder.check()  # the hung run would find out before committing anything


def test_expired_lock_is_taken_over_by_exactly_one_contender(server):
    import threading

    from anomalyops.components.registry.lock import VariantLock, lock_states

    c = mlflow_client(server.uri)
    c.create_registered_model("_lock.race2.1", tags={"owner": "dead", "expires": "0"})
    won, lost = [], []

    def contend() -> None:
        try:
            won.append(VariantLock(mlflow_client(server.uri), "race2", wait_s=1.5).acquire())
        except RuntimeError as error:
            lost.append(str(error))

    threads = [threading.Thread(target=contend) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and len(lost) == 1 and "still held" in lost[0]
    assert [s.epoch for s in lock_states(c, "race2")] == [2]  # the dead epoch is gone
    won[0].release()
    assert lock_states(c, "race2") == []


@pytest.mark.parametrize("name", ['weld"2', "weld'2", "../../x", "Weld", "weld_2", "", "a" * 41])
def test_bad_variant_names_are_refused_before_any_work(name, tmp_path):
    from anomalyops.serving.contract.names import InvalidNameError

    with pytest.raises(InvalidNameError, match="lowercase letters"):
        register(tmp_path, GOOD, name, "http://127.0.0.1:9", [], EVAL_HASH)


def test_evaluation_with_skipped_images_is_not_promoted(server, model_dir):
    register(model_dir, GOOD, "skips", server.uri, [], EVAL_HASH)
    skipped = register(model_dir, GOOD | {"image_auroc": 0.99, "test_skipped": 2}, "skips",
                       server.uri, [], "d" * 64)  # fmt: skip
    assert not skipped.promoted and skipped.champion == "1"
    assert "2 unreadable test images were skipped" in skipped.reason
    assert "different evaluation set" in skipped.reason
