"""Deploy and rollback against the real MLflow server and the real bundled Triton.

One scenario, as a plant sees it: v1 deployed before Triton starts; v2 deployed while
clients send requests (none fails, scores switch to v2's); a corrupt v3 fails to load and
v2 keeps serving, with `champion` moved back; a restarted Triton serves v2; rollback
serves v1 again.
"""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton_http

from anomalyops.components.deploy.release import DeployError, release
from anomalyops.components.registry.champion import champion_version
from anomalyops.components.registry.register import register
from anomalyops.components.registry.server import LocalServer
from anomalyops.pipelines.cli.main import main
from anomalyops.serving.contract.checksums import file_sha256
from anomalyops.serving.contract.model import load_contract
from anomalyops.serving.images.decode import load_image
from anomalyops.serving.triton.repository import served_version

EVAL_HASH = "d" * 64


@pytest.fixture(scope="module")
def trained(weld, tmp_path_factory):
    """Two PatchCores on weld at 128 px (coreset 1 % and 5 %: different scores), exported."""
    from anomalyops.components.deploy.export import export
    from anomalyops.components.training.train import train

    root = tmp_path_factory.mktemp("deploy_models")
    models = []
    for ratio in (0.01, 0.05):
        out = root / f"coreset-{ratio}"
        train(weld, out / "model", "patchcore", {"coreset_ratio": ratio, "input_size": (128, 128)},
              progress=False)  # fmt: skip
        export(out / "model", out / "export")
        models.append(out)
    return models


class Plant(threading.Thread):
    """Sends the same image again and again, as a plant would, recording every answer."""

    def __init__(self, url: str, image: np.ndarray) -> None:
        super().__init__(daemon=True)
        self.url, self.image = url, image
        self.answers: list[tuple[str, float]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        client = triton_http.InferenceServerClient(self.url)
        tensor = triton_http.InferInput("image", list(self.image.shape), "UINT8")
        tensor.set_data_from_numpy(self.image)
        while not self.stop.is_set():
            try:
                result = client.infer("weld", [tensor])
                version = result.get_response()["model_version"]
                self.answers.append((version, float(result.as_numpy("score")[0, 0])))
            except Exception as error:  # every failure is what the test counts
                self.errors.append(str(error))
        client.close()


def _served_by_triton(url: str, image: np.ndarray) -> tuple[str, float]:
    client = triton_http.InferenceServerClient(url)
    tensor = triton_http.InferInput("image", list(image.shape), "UINT8")
    tensor.set_data_from_numpy(image)
    result = client.infer("weld", [tensor])
    client.close()
    return result.get_response()["model_version"], float(result.as_numpy("score")[0, 0])


@pytest.mark.slow  # two trainings, an MLflow server, two Triton starts: ~160 s here
def test_deploy_switches_what_triton_serves_and_rollback_returns(
    trained, weld, triton_server, tmp_path, capsys
):
    image = load_image(sorted((weld / "test" / "defective").glob("*"))[0], (128, 128))[None]
    sessions = [ort.InferenceSession(str(m / "export" / "model.onnx")) for m in trained]
    expected = [float(s.run(["score"], {"image": image})[0][0]) for s in sessions]
    assert abs(expected[0] - expected[1]) > 1e-3 * abs(expected[0])  # v1 and v2 tell apart
    corrupt = tmp_path / "corrupt"
    shutil.copytree(trained[1] / "export", corrupt)
    (corrupt / "model.onnx").write_bytes(b"not an onnx graph" * 100)
    # Checksum kept consistent, so the file reaches Triton and fails to load there.
    contract = json.loads((corrupt / "model.json").read_text())
    contract["onnx"]["sha256"] = file_sha256(corrupt / "model.onnx")
    (corrupt / "model.json").write_text(json.dumps(contract))
    repository = tmp_path / "repository"

    with LocalServer(tmp_path / "mlflow") as registry:

        def registered(model_dir, export_dir, auroc):
            decision = register(model_dir / "model", {"image_auroc": auroc}, "weld", registry.uri,
                                [], EVAL_HASH, export_dir=export_dir)  # fmt: skip
            assert decision.promoted
            return decision.to_dict()

        # v1 before any Triton runs: only the repository changes.
        first = release(registered(trained[0], trained[0] / "export", 0.80), str(repository))
        assert first.deployed and first.triton_version == "1"
        assert "served from the next start" in first.reason

        with triton_server(repository) as triton:
            assert _served_by_triton(triton.url, image) == ("1", pytest.approx(expected[0]))
            plants = [Plant(triton.url, image) for _ in range(2)]
            for plant in plants:
                plant.start()
            second = release(registered(trained[1], trained[1] / "export", 0.85),
                                 str(repository), triton_url=triton.url)  # fmt: skip
            for plant in plants:
                plant.stop.set()
                plant.join(60)
            assert second.deployed and f"loaded by Triton at {triton.url}" in second.reason
            for plant in plants:
                assert plant.errors == []
                versions = [version for version, _ in plant.answers]
                assert versions[0] == "1" and versions[-1] == "2"  # it switched under traffic
                assert "1" not in versions[versions.index("2") :]  # no flip-flop
                for version, score in plant.answers:
                    assert score == pytest.approx(expected[int(version) - 1], rel=1e-5)

            # A corrupt v3 does not load: v2 keeps serving and stays champion.
            with pytest.raises(DeployError, match="version 2 keeps serving") as failed:
                release(registered(trained[1], corrupt, 0.90), str(repository),
                            triton_url=triton.url)  # fmt: skip
            assert "champion alias moved back to v2" in str(failed.value)
            assert champion_version(registry.uri, "weld") == "2"
            assert served_version(repository / "weld") == 2
            assert _served_by_triton(triton.url, image) == ("2", pytest.approx(expected[1]))

        # A restart serves what was served before it.
        with triton_server(repository) as triton:
            assert _served_by_triton(triton.url, image) == ("2", pytest.approx(expected[1]))
            capsys.readouterr()
            common = ["--variant", "weld", "--tracking-uri", registry.uri,
                      "--repository", str(repository), "--triton-url", triton.url]  # fmt: skip
            assert main(["rollback", *common, "--to", "9"]) == 2
            assert "weld/9: missing; deployed versions kept: [1, 2, 3]" in capsys.readouterr().err
            assert main(["rollback", *common]) == 0  # the previous champion: v1
            assert "champion v2 -> v1" in capsys.readouterr().out
            assert champion_version(registry.uri, "weld") == "1"
            assert _served_by_triton(triton.url, image) == ("1", pytest.approx(expected[0]))
            assert load_contract(repository / "weld").lineage["model_version"] == "1"
            # A version the registry never had is refused before anything moves.
            shutil.copytree(repository / "weld" / "1", repository / "weld" / "7")
            assert main(["rollback", *common, "--to", "7"]) == 2
            assert "has no version 7" in capsys.readouterr().err
            assert champion_version(registry.uri, "weld") == "1"
