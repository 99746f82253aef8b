"""Copy a folder to or from where a cluster keeps it: a bucket URI or a (mounted) path.

On a cluster nothing travels as a path that exists on one machine: training data, the
Triton model repository and MLflow artifacts live in a bucket (`s3://bucket/prefix`,
`gs://bucket/prefix`) or on a volume every pod mounts (a plain path, e.g. a PVC). One
client serves both buckets: boto3, which reads the usual AWS variables (credentials,
`AWS_ENDPOINT_URL_S3` for MinIO or a local S3 server); `gs://` goes through Google Cloud
Storage's S3-compatible XML API with HMAC keys. Local paths (and `file://`) are copied
with shutil, so the local default works as before.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tqdm import tqdm

BUCKET_SCHEMES = ("s3", "gs")
GCS_ENDPOINT = "https://storage.googleapis.com"


class StorageError(RuntimeError):
    """A copy to or from storage failed; the message names the URI."""


@dataclass(frozen=True)
class BucketUri:
    scheme: str
    bucket: str
    prefix: str  # without leading or trailing "/"; "" for the bucket's root

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative


def is_bucket_uri(location: str | Path) -> bool:
    """True for s3:// and gs:// URIs; False for paths (and file://), which are local."""
    return urlparse(str(location)).scheme in BUCKET_SCHEMES


def parse_bucket_uri(uri: str) -> BucketUri:
    parsed = urlparse(uri)
    if parsed.scheme not in BUCKET_SCHEMES or not parsed.netloc:
        raise StorageError(f"{uri}: not a bucket URI (expected s3://bucket/prefix or gs://...)")
    return BucketUri(parsed.scheme, parsed.netloc, parsed.path.strip("/"))


def local_path(location: str | Path) -> Path:
    """A path or file:// URI as a Path (a PVC path on a cluster is just a path)."""
    text = str(location)
    if text.startswith("file://"):
        return Path(urlparse(text).path)
    if "://" in text:
        raise StorageError(f"{text}: unsupported scheme; use s3://, gs://, file:// or a path")
    return Path(text)


def bucket_client(scheme: str):  # -> a boto3 S3 client (boto3 exports no type for it)
    """A boto3 S3 client for SCHEME; endpoints and credentials come from the environment."""
    import boto3

    # boto3 finds S3 endpoints and credentials in the environment; GCS needs its endpoint.
    return boto3.client("s3", endpoint_url=GCS_ENDPOINT if scheme == "gs" else None)


def object_keys(client, uri: BucketUri) -> list[str]:
    """Every object key under URI's prefix (folders' marker objects left out)."""
    prefix = f"{uri.prefix}/" if uri.prefix else ""
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=uri.bucket,
                                                                  Prefix=prefix):  # fmt: skip
        keys += [item["Key"] for item in page.get("Contents", []) if not item["Key"].endswith("/")]
    return keys


def download(source: str | Path, target: str | Path, progress: bool = False,
             only: Sequence[str] = ()) -> Path:  # fmt: skip
    """Copy the folder at SOURCE (URI or path) into TARGET; returns TARGET.

    ONLY, when given, names the files (relative to SOURCE) to copy and nothing else (a
    served version's model.json without its model.onnx). Fails, naming SOURCE, when
    there is nothing there: an empty copy would train on nothing.
    """
    target = Path(target)
    if not is_bucket_uri(source):
        path = local_path(source)
        if not path.is_dir():
            raise StorageError(f"{source}: no such folder")
        if only:
            target.mkdir(parents=True, exist_ok=True)
            for name in only:
                if (path / name).is_file():
                    shutil.copy2(path / name, target / name)
        else:
            shutil.copytree(path, target, dirs_exist_ok=True)
        return target
    uri = parse_bucket_uri(str(source))
    client = bucket_client(uri.scheme)
    try:
        keys = object_keys(client, uri)
        if only:
            keys = [key for key in keys if key[len(uri.prefix) :].lstrip("/") in set(only)]
        if not keys:
            raise StorageError(f"{uri}: no objects under this prefix")
        for key in tqdm(keys, desc=f"download {uri}", unit="file", disable=not progress):
            relative = key[len(uri.prefix) :].lstrip("/")
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(uri.bucket, key, str(destination))
    except StorageError:
        raise
    except Exception as error:
        raise StorageError(f"{uri}: download failed: {_first_line(error)}") from error
    return target


def upload(source: str | Path, target: str, progress: bool = False) -> str:
    """Copy the local folder SOURCE to TARGET (URI or path); returns TARGET.

    Callers give each upload its own prefix (e.g. one per model version) and switch
    readers to it only afterwards, so a half-finished upload is never served.
    """
    source = Path(source)
    files = sorted(p for p in source.rglob("*") if p.is_file())
    if not is_bucket_uri(target):
        shutil.copytree(source, local_path(target), dirs_exist_ok=True)
        return target
    uri = parse_bucket_uri(target)
    client = bucket_client(uri.scheme)
    try:
        for path in tqdm(files, desc=f"upload {uri}", unit="file", disable=not progress):
            client.upload_file(str(path), uri.bucket, uri.key(path.relative_to(source).as_posix()))
    except Exception as error:
        raise StorageError(f"{uri}: upload failed: {_first_line(error)}") from error
    return str(uri)


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:300]
