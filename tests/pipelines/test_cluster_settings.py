"""The compiled pipeline as a cluster gets it: images, resources, GPUs, artifact passing."""

from __future__ import annotations

import pytest
import yaml

from anomalyops.components.steps import IMAGE
from anomalyops.pipelines.cli.main import main
from anomalyops.pipelines.cluster_settings import (
    GPU_STEPS,
    STEP_RESOURCES,
    STORAGE_ENV,
    ClusterSettings,
)
from anomalyops.pipelines.drift import COMPILED as DRIFT
from anomalyops.pipelines.retraining import COMPILED as RETRAINING
from anomalyops.pipelines.training import COMPILED, compile_pipeline

DIGEST = "registry.example/anomalyops@sha256:" + "a" * 64
GPU = {
    "image": DIGEST,
    "gpus": 1,
    "node_selector": {"nvidia.com/gpu.present": "true"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "resources": {"train": {"memory_limit": "24Gi"}},
}


def load(path) -> tuple[dict, dict]:
    """(pipeline spec, Kubernetes platform spec) of a compiled pipeline."""
    pipeline, platform = yaml.safe_load_all(path.read_text())
    return pipeline, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def executors(pipeline: dict) -> dict[str, dict]:
    """step name (validate, train, ...) -> its container spec."""
    return {
        name.removeprefix("exec-").removesuffix("-component"): executor["container"]
        for name, executor in pipeline["deploymentSpec"]["executors"].items()
    }


@pytest.mark.parametrize("compiled", [COMPILED, RETRAINING, DRIFT], ids=lambda p: p.stem)
def test_committed_pipeline_states_image_and_resources_for_every_step(compiled):
    """Every step of every committed pipeline runs with its own resource entry."""
    pipeline, platform = load(compiled)
    containers = executors(pipeline)
    assert set(containers) <= set(STEP_RESOURCES), sorted(set(containers) - set(STEP_RESOURCES))
    for step, container in containers.items():
        assert container["image"] == IMAGE
        wanted = STEP_RESOURCES[step]
        resources = container["resources"]
        assert resources["resourceCpuRequest"] == wanted["cpu_request"]
        assert resources["resourceCpuLimit"] == wanted["cpu_limit"]
        assert resources["resourceMemoryRequest"] == wanted["memory_request"]
        assert resources["resourceMemoryLimit"] == wanted["memory_limit"]
        assert "accelerator" not in resources  # no GPU unless asked for
        secret = platform[f"exec-{step}-component"]["secretAsEnv"][0]
        assert secret["secretName"] == "anomalyops-storage" and secret["optional"]
        assert [k["envVar"] for k in secret["keyToEnv"]] == list(STORAGE_ENV)


def test_every_resource_entry_belongs_to_a_step():
    steps = set()
    for compiled in (COMPILED, RETRAINING, DRIFT):
        steps |= set(executors(load(compiled)[0]))
    assert steps == set(STEP_RESOURCES)


def test_no_step_passes_a_machine_local_path():
    """Steps hand each other artifacts; the only parameter one step gives another is
    register's decision (JSON). Pipeline parameters (data, repository) are URIs the user
    gives, and no step reads a folder named in another's metadata."""
    pipeline, _ = load(COMPILED)
    tasks = pipeline["root"]["dag"]["tasks"]
    parameter_links = []
    for name, task in tasks.items():
        inputs = task.get("inputs", {})
        for parameter, source in inputs.get("parameters", {}).items():
            if "taskOutputParameter" in source:
                parameter_links.append((source["taskOutputParameter"]["producerTask"], name,
                                        parameter))  # fmt: skip
            else:
                assert "componentInputParameter" in source, (name, parameter)
        for artifact, source in inputs.get("artifacts", {}).items():
            assert "taskOutputArtifact" in source, (name, artifact)
    assert parameter_links == [("register-component", "deploy-component", "decision_json")]
    datasets = {
        name: task["inputs"]["artifacts"]["dataset"]["taskOutputArtifact"]
        for name, task in tasks.items()
        if "dataset" in task.get("inputs", {}).get("artifacts", {})
    }
    assert datasets == {
        step: {"producerTask": "validate-component", "outputArtifactKey": "dataset"}
        for step in ("train-component", "evaluate-component")
    }
    for container in executors(pipeline).values():
        assert 'metadata["root"]' not in "".join(container["command"])


def test_gpu_settings_reach_train_and_evaluate_only(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(GPU))
    compiled = compile_pipeline(tmp_path / "gpu.yaml", ClusterSettings.from_file(path))
    pipeline, platform = load(compiled)
    for step, container in executors(pipeline).items():
        assert container["image"] == DIGEST
        accelerator = container["resources"].get("accelerator")
        config = platform[f"exec-{step}-component"]
        if step in GPU_STEPS:
            assert accelerator["resourceType"] == "nvidia.com/gpu"
            assert accelerator["resourceCount"] == "1"
            assert config["nodeSelector"] == {"labels": {"nvidia.com/gpu.present": "true"}}
            assert config["tolerations"] == GPU["tolerations"]
        else:
            assert accelerator is None and "tolerations" not in config
    train = executors(pipeline)["train"]["resources"]
    assert (train["resourceMemoryLimit"], train["resourceMemoryRequest"]) == ("24Gi", "8Gi")


def test_image_comes_from_the_environment_or_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ANOMALYOPS_IMAGE", "registry.example/anomalyops:1.2.3")
    assert ClusterSettings().image == "registry.example/anomalyops:1.2.3"
    out = tmp_path / "p.yaml"
    assert main(["pipeline", "compile", "--output", str(out), "--image", DIGEST,
                 "--gpus", "2"]) == 0  # fmt: skip
    pipeline, _ = load(out)
    containers = executors(pipeline)
    assert {c["image"] for c in containers.values()} == {DIGEST}
    assert containers["train"]["resources"]["accelerator"]["resourceCount"] == "2"


def test_bad_cluster_settings_are_one_line_errors(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("gpu: 1\n")
    assert main(["pipeline", "compile", "--output", str(tmp_path / "p.yaml"),
                 "--cluster-settings", str(path)]) == 2  # fmt: skip
    assert f"{path}: unknown cluster setting(s) ['gpu']" in capsys.readouterr().err
    path.write_text("resources: {training: {cpu_limit: '2'}}\n")
    with pytest.raises(ValueError, match=r"resources\.training: steps are"):
        ClusterSettings.from_file(path)


def test_a_private_image_gets_its_pull_secrets_on_every_step(tmp_path):
    settings = ClusterSettings(image=DIGEST, image_pull_secrets=["ghcr-pull"])
    _, platform = load(compile_pipeline(tmp_path / "private.yaml", settings))
    assert platform and all(
        [secret["secretName"] for secret in executor["imagePullSecret"]] == ["ghcr-pull"]
        for executor in platform.values()
    )
    _, committed = load(COMPILED)  # none unless asked for
    assert not any("imagePullSecret" in executor for executor in committed.values())
