"""Folders to and from a bucket (real boto3 against moto's S3 server) or a local path."""

from __future__ import annotations

import boto3
import pytest

from anomalyops.serving.storage import (
    GCS_ENDPOINT,
    StorageError,
    bucket_client,
    download,
    is_bucket_uri,
    local_path,
    parse_bucket_uri,
    upload,
)


def make_tree(root):
    (root / "weld" / "1").mkdir(parents=True)
    (root / "weld" / "config.pbtxt").write_text('name: "weld"\n')
    (root / "weld" / "1" / "model.onnx").write_bytes(bytes(range(256)) * 4000)  # ~1 MB
    return root


def files(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_round_trip_through_a_bucket(s3_bucket, tmp_path):
    source = make_tree(tmp_path / "repo")
    uri = upload(source, f"{s3_bucket}/triton/weld/v1/")
    assert uri == f"{s3_bucket}/triton/weld/v1"
    bucket = parse_bucket_uri(s3_bucket).bucket
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(o["Key"] for o in listed) == [
        "triton/weld/v1/weld/1/model.onnx",
        "triton/weld/v1/weld/config.pbtxt",
    ]
    back = download(uri, tmp_path / "back")
    assert files(back) == files(source)
    # A sibling prefix that starts with the same letters is not part of the folder.
    upload(source, f"{s3_bucket}/triton/weld/v10")
    assert files(download(uri, tmp_path / "again")) == files(source)


def test_local_paths_work_as_before(tmp_path):
    source = make_tree(tmp_path / "repo")
    assert upload(source, str(tmp_path / "copy")) == str(tmp_path / "copy")
    assert files(download(f"file://{tmp_path / 'copy'}", tmp_path / "back")) == files(source)
    assert not is_bucket_uri(tmp_path) and not is_bucket_uri("file:///x")
    assert is_bucket_uri("s3://b/p") and is_bucket_uri("gs://b")


def test_missing_sources_are_one_line_errors(s3_bucket, tmp_path):
    with pytest.raises(StorageError, match=r"/nothing-here: no objects under this prefix"):
        download(f"{s3_bucket}/nothing-here", tmp_path / "out")
    with pytest.raises(StorageError, match=r"s3://no-such-bucket-x/p: download failed: .*"):
        download("s3://no-such-bucket-x/p", tmp_path / "out")
    with pytest.raises(StorageError, match="no such folder"):
        download(tmp_path / "absent", tmp_path / "out")
    with pytest.raises(StorageError, match="unsupported scheme"):
        local_path("https://example.com/data")
    with pytest.raises(StorageError, match="not a bucket URI"):
        parse_bucket_uri("s3:///prefix-without-bucket")


def test_gs_uses_the_gcs_interoperability_endpoint():
    assert bucket_client("gs").meta.endpoint_url == GCS_ENDPOINT
    assert bucket_client("s3").meta.endpoint_url != GCS_ENDPOINT
