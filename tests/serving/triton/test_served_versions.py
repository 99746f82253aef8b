"""A served version's files are checked when it is first read (at the transformer's start)."""

from __future__ import annotations

import json
import shutil

import pytest

from anomalyops.serving.triton.served_versions import ServedVersions, VersionError


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("image", float("nan"), "model.json image: threshold must be finite and above 0"),
        ("pixel", 0.0, "model.json pixel: threshold must be finite and above 0"),
    ],
)
def test_a_version_with_an_unusable_threshold_is_refused(weld_export, tmp_path, field, value,
                                                         says):  # fmt: skip
    folder = tmp_path / "weld" / "1"
    shutil.copytree(weld_export, folder)
    body = json.loads((folder / "model.json").read_text())
    body["thresholds"][field]["threshold"] = value
    (folder / "model.json").write_text(json.dumps(body))
    with pytest.raises(VersionError, match=says):
        ServedVersions(tmp_path, "weld").get("1")


def test_a_version_with_a_zeroed_reference_is_refused(weld_export, tmp_path):
    folder = tmp_path / "weld" / "1"
    shutil.copytree(weld_export, folder)
    body = json.loads((folder / "reference.json").read_text())
    body["statistics"]["contrast"] = [0.0] * len(body["statistics"]["contrast"])
    (folder / "reference.json").write_text(json.dumps(body))
    with pytest.raises(VersionError, match=r"reference.json: statistics.contrast are all zero"):
        ServedVersions(tmp_path, "weld").get("1")
    shutil.copy(weld_export / "reference.json", folder / "reference.json")
    assert ServedVersions(tmp_path, "weld").get("1").number == "1"


def test_versions_from_a_bucket_are_cached_and_the_cache_goes_with_its_reader(
    weld_export, s3_bucket
):
    import gc

    from anomalyops.serving.storage import upload

    upload(weld_export, f"{s3_bucket}/triton/weld/1")
    versions = ServedVersions(f"{s3_bucket}/triton", "weld")
    served = versions.get("1")
    assert sorted(p.name for p in served.folder.iterdir()) == ["model.json", "reference.json"]
    assert versions.get("1") is served  # read once
    cache = versions.model_dir.parent
    del versions, served
    gc.collect()
    assert not cache.exists()
