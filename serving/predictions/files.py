"""Where the prediction log keeps images and anomaly maps: a local folder or a bucket.

The log's rows hold only a key (`<day>/<uuid><suffix>`); the bytes live in a store. Next
to a SQLite log that is a folder (`<log>.files/`); on a cluster it is a bucket prefix
(`s3://bucket/prefix`, `gs://...`) that every replica, the review page and the prune job
reach through the same boto3 code as the rest of the platform
(`serving/storage.py`; AWS credentials and `AWS_ENDPOINT_URL_S3` from the
environment), so no ReadWriteMany volume is needed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse


class FileStore(Protocol):
    """Kept images and maps, addressed by the keys the log's rows hold."""

    location: str

    def put(self, data: bytes, suffix: str) -> str: ...
    def get(self, key: str) -> bytes | None: ...
    def delete(self, key: str) -> None: ...
    def stored_keys(self) -> Iterator[str]: ...


def new_key(suffix: str) -> str:
    """A fresh key, grouped by UTC day so a person can find a day's images."""
    return f"{datetime.now(UTC).strftime('%Y-%m-%d')}/{uuid.uuid4().hex}{suffix}"


class LocalFiles:
    """A folder on this machine (the default beside a SQLite log)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.location = str(self.folder)

    def path(self, key: str) -> Path:
        """The file a key names; a key that leaves the folder is refused."""
        path = (self.folder / key).resolve()
        if self.folder.resolve() not in path.parents:
            raise ValueError(f"{key!r} is not inside {self.folder}")
        return path

    def put(self, data: bytes, suffix: str) -> str:
        key = new_key(suffix)
        target = self.folder / key
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")  # whole or not at all
        partial.write_bytes(data)
        partial.replace(target)
        return key

    def get(self, key: str) -> bytes | None:
        path = self.path(key)
        return path.read_bytes() if path.is_file() else None

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def stored_keys(self) -> Iterator[str]:
        if self.folder.is_dir():
            for path in self.folder.rglob("*"):
                if path.is_file() and not path.name.endswith(".partial"):
                    yield path.relative_to(self.folder).as_posix()


class BucketFiles:
    """A bucket prefix (S3, MinIO, GCS's S3 API): what a cluster's replicas share."""

    def __init__(self, uri: str) -> None:
        from anomalyops.serving.storage import bucket_client, parse_bucket_uri

        self.uri = parse_bucket_uri(uri)
        self.location = str(self.uri)
        self._client = bucket_client(self.uri.scheme)

    def _key(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"{key!r} is not inside {self.location}")
        return self.uri.key(key)

    def put(self, data: bytes, suffix: str) -> str:
        key = new_key(suffix)  # one PUT: an object is whole or absent
        self._client.put_object(Bucket=self.uri.bucket, Key=self._key(key), Body=data)
        return key

    def get(self, key: str) -> bytes | None:
        try:
            answer = self._client.get_object(Bucket=self.uri.bucket, Key=self._key(key))
        except self._client.exceptions.NoSuchKey:
            return None
        return answer["Body"].read()

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.uri.bucket, Key=self._key(key))

    def stored_keys(self) -> Iterator[str]:
        from anomalyops.serving.storage import object_keys

        start = len(self.uri.prefix) + 1 if self.uri.prefix else 0
        for key in object_keys(self._client, self.uri):
            yield key[start:]


def file_store(location: str | Path) -> FileStore:
    """The store at LOCATION: a bucket URI, else a local folder."""
    if urlparse(str(location)).scheme in ("s3", "gs"):
        return BucketFiles(str(location))
    return LocalFiles(location)
