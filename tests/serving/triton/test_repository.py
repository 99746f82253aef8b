"""Triton repository builder: both flavours, versions, several variants, served version."""

import shutil

import pytest

from anomalyops.components.deploy.export import stamp_lineage
from anomalyops.serving.contract.model import ContractError, load_contract, parse_contract
from anomalyops.serving.triton.repository import (
    VERSION_CONFIG,
    add_model,
    build_repository,
    model_config,
    prune_versions,
    served_version,
    set_served,
    versions,
)


def registered(export, tmp_path, version: str, run_id: str):
    """A copy of EXPORT whose lineage says it is registered version VERSION of run RUN_ID."""
    copy = tmp_path / f"export-{version}-{run_id}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(export, copy)
    stamp_lineage(copy, mlflow_run_id=run_id, registered_model="weld", model_version=version)
    return copy


def test_python_flavour_layout_and_versions(weld_export, tmp_path):
    repo = build_repository(tmp_path, {"a": weld_export, "b": weld_export}, "python")
    for name in ("a", "b"):
        version = repo / name / "1"
        files = {p.name for p in version.iterdir()}
        assert files == {"model.onnx", "model.json", "reference.json", "model.py", "threads.py",
                         VERSION_CONFIG}  # fmt: skip
        config = (repo / name / "config.pbtxt").read_text()
        assert "version_policy: { specific: { versions: [ 1 ] } }" in config
        assert f'name: "{name}"' in config and 'backend: "python"' in config
        assert "KIND_CPU" in config and "dynamic_batching" in config
        assert "dims: [ 256, 256, 3 ]" in config and "TYPE_UINT8" in config
    assert add_model(repo, "a", weld_export).name == "2"
    assert load_contract(repo / "a" / "2").kind == "patchcore"
    assert served_version(repo / "a") == 2 and served_version(repo / "b") == 1


def test_version_folder_is_the_registered_version(weld_export, tmp_path):
    """lineage.model_version names the folder; adding without serving keeps what is served."""
    repo = tmp_path / "repo"
    assert add_model(repo, "weld", registered(weld_export, tmp_path, "7", "r7")).name == "7"
    v9 = add_model(repo, "weld", registered(weld_export, tmp_path, "9", "r9"), serve=False)
    assert v9.name == "9" and served_version(repo / "weld") == 7
    assert load_contract(repo / "weld").lineage["model_version"] == "7"
    assert "versions: [ 9 ]" in (v9 / VERSION_CONFIG).read_text()
    set_served(repo / "weld", 9)
    assert served_version(repo / "weld") == 9
    assert load_contract(repo / "weld").lineage["model_version"] == "9"
    # The same model again is its folder; another model under a taken number is refused.
    assert add_model(repo, "weld", registered(weld_export, tmp_path, "9", "r9")).name == "9"
    with pytest.raises(ValueError, match="already holds a different model"):
        add_model(repo, "weld", registered(weld_export, tmp_path, "9", "other-run"))
    with pytest.raises(FileNotFoundError, match="cannot be served"):
        set_served(repo / "weld", 8)


def test_retention_keeps_the_newest_and_the_served(weld_export, tmp_path):
    for number in range(1, 8):
        add_model(tmp_path, "weld", weld_export, version=number, serve=number == 2)
    assert prune_versions(tmp_path / "weld", keep=3) == [1, 3, 4]
    assert versions(tmp_path / "weld") == [2, 5, 6, 7] and served_version(tmp_path / "weld") == 2


def test_onnxruntime_flavour_config(weld_export, tmp_path):
    contract = load_contract(weld_export)
    config = model_config("weld", contract, "onnxruntime", 3, max_batch_size=32, tensorrt=True)
    assert 'platform: "onnxruntime_onnx"' in config and "KIND_AUTO" in config
    assert "max_batch_size: 32" in config and 'name: "tensorrt"' in config
    assert "reshape: { shape: [ ] }" in config and "model_warmup" in config
    assert 'key: "keep_aspect" value: { string_value: "true" }' in config  # for clients
    version = add_model(tmp_path, "weld", weld_export, "onnxruntime")
    assert not (version / "model.py").exists() and (version / "model.onnx").is_file()


def test_failed_add_keeps_the_served_version(weld_export, tmp_path, monkeypatch):
    """A copy failing part-way (disk full) leaves the repository exactly as it was."""
    import shutil

    from anomalyops.serving.triton import repository as builder

    add_model(tmp_path, "weld", weld_export)
    before = {
        str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()
    }
    copy = shutil.copy2

    def disk_full(source, target, **kwargs):
        if str(target).endswith("model.py"):
            raise OSError(28, "No space left on device")
        return copy(source, target, **kwargs)

    monkeypatch.setattr(builder.shutil, "copy2", disk_full)
    with pytest.raises(OSError, match="No space left"):
        add_model(tmp_path, "weld", weld_export)
    after = {
        str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()
    }
    assert after == before and builder.versions(tmp_path / "weld") == [1]
    assert not list((tmp_path / "weld").glob(".staging-*"))


def test_bad_arguments_are_refused(weld_export, tmp_path):
    contract = load_contract(weld_export)
    with pytest.raises(ValueError, match="tensorrt"):
        model_config("w", contract, "python", 1, tensorrt=True)
    with pytest.raises(ValueError, match="flavour"):
        model_config("w", contract, "tensorflow", 1)
    with pytest.raises(ValueError, match="positive"):
        add_model(tmp_path, "w", weld_export, version=0)
    with pytest.raises(ValueError, match="model name"):
        add_model(tmp_path, "../x", weld_export)
    with pytest.raises(ValueError, match="no exported"):
        build_repository(tmp_path, {})
    with pytest.raises(ValueError, match="threads"):
        model_config("w", contract, "python", 1, threads=0)
    with pytest.raises(ValueError, match="instances"):
        model_config("w", contract, "python", 1, instances=0)


def _threads_parameter(config: str) -> str:
    return config.split('key: "threads" value: { string_value: "')[1].split('"')[0]


def test_python_flavour_threads_auto_unless_pinned(weld_export):
    """auto: each instance divides the server's CPUs; a pin comes from the call or model.json."""
    contract = load_contract(weld_export)
    assert contract.threads is None  # an export pins nothing unless asked
    config = model_config("w", contract, "python", 1, instances=3)
    assert _threads_parameter(config) == "auto" and "count: 3 kind: KIND_CPU" in config
    assert _threads_parameter(model_config("w", contract, "python", 1, threads=2)) == "2"
    body = contract.to_dict()
    body["resources"] = {**body["resources"], "threads": 4}
    pinned = parse_contract(body)
    assert pinned.threads == 4 and _threads_parameter(model_config("w", pinned, "python", 1)) == "4"
    for bad in (0, True, "2"):
        body["resources"]["threads"] = bad
        with pytest.raises(ContractError, match=r"resources\.threads"):
            parse_contract(body)
