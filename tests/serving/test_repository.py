"""Triton repository builder: both flavours, versions, several variants."""

import pytest

from anomalyops.serving.contract import load_contract
from anomalyops.serving.repository import add_model, build_repository, model_config


def test_python_flavour_layout_and_versions(weld_export, tmp_path):
    repo = build_repository(tmp_path, {"a": weld_export, "b": weld_export}, "python")
    for name in ("a", "b"):
        version = repo / name / "1"
        files = {p.name for p in version.iterdir()}
        assert files == {"model.onnx", "model.json", "reference.json", "model.py"}
        config = (repo / name / "config.pbtxt").read_text()
        assert f'name: "{name}"' in config and 'backend: "python"' in config
        assert "KIND_CPU" in config and "dynamic_batching" in config
        assert "dims: [ 256, 256, 3 ]" in config and "TYPE_UINT8" in config
    assert add_model(repo, "a", weld_export).name == "2"
    assert load_contract(repo / "a" / "2").kind == "patchcore"


def test_onnxruntime_flavour_config(weld_export, tmp_path):
    contract = load_contract(weld_export)
    config = model_config("weld", contract, "onnxruntime", max_batch_size=32, tensorrt=True)
    assert 'platform: "onnxruntime_onnx"' in config and "KIND_GPU" in config
    assert "max_batch_size: 32" in config and 'name: "tensorrt"' in config
    assert "reshape: { shape: [ ] }" in config and "model_warmup" in config
    version = add_model(tmp_path, "weld", weld_export, "onnxruntime")
    assert not (version / "model.py").exists() and (version / "model.onnx").is_file()


def test_failed_add_keeps_the_served_version(weld_export, tmp_path, monkeypatch):
    """A copy failing part-way (disk full) leaves the repository exactly as it was."""
    import shutil

    from anomalyops.serving import repository as builder

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
    assert after == before and builder.latest_version(tmp_path / "weld").name == "1"
    assert not list((tmp_path / "weld").glob(".staging-*"))


def test_bad_arguments_are_refused(weld_export, tmp_path):
    contract = load_contract(weld_export)
    with pytest.raises(ValueError, match="tensorrt"):
        model_config("w", contract, "python", tensorrt=True)
    with pytest.raises(ValueError, match="flavour"):
        model_config("w", contract, "tensorflow")
    with pytest.raises(ValueError, match="model name"):
        add_model(tmp_path, "../x", weld_export)
    with pytest.raises(ValueError, match="no exported"):
        build_repository(tmp_path, {})
