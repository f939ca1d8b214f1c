"""Resolve a ModelSpec's ``source`` URI to a local directory that ``from_pretrained`` can read.

Kept apart from model loading so that every source can be tested without torch, and so that the one place that
touches the network (hf, s3) is small and obvious.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import urlsplit

from lmops_runtime.config import PVC_MOUNT_ROOT, ModelSpec
from lmops_runtime.tiny import builtin_model_dir, cache_root

_TRUE = {"1", "true", "yes", "on"}
S3_MANIFEST = ".lmops-s3-manifest.json"


class SourceError(ValueError):
    """The source URI is malformed or names something that is not there."""


@dataclass(frozen=True)
class S3Object:
    key: str
    size: int
    etag: str


class S3Client(Protocol):
    """The two S3 calls a download needs; a ``minio.Minio`` adapter in production, a fake in unit tests."""

    def list(self, bucket: str, prefix: str) -> Iterable[S3Object]: ...

    def download(self, bucket: str, key: str, dest: Path) -> None: ...


def resolve_source(spec: ModelSpec, *, s3_client: S3Client | None = None) -> Path:
    """Return the local directory holding the model that ``spec.source`` names, fetching it when remote."""
    parts = urlsplit(spec.source)
    scheme = parts.scheme
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise SourceError(f"file:// sources must be absolute paths (file:///path), got {spec.source!r}")
        return _existing_dir(Path(parts.path), spec.source)
    if scheme == "pvc":
        return _existing_dir(pvc_path(spec.source), spec.source)
    if scheme == "builtin":
        name = (parts.netloc + parts.path).strip("/")
        try:
            return builtin_model_dir(name, spec.task, spec.labels)
        except ValueError as error:
            raise SourceError(str(error)) from error
    if scheme == "hf":
        return hf_snapshot(_repo_id(parts.netloc, parts.path, spec.source), spec.revision)
    if scheme == "s3":
        bucket, prefix = parts.netloc, parts.path.strip("/")
        if not bucket:
            raise SourceError(f"s3 source needs a bucket: s3://bucket/prefix, got {spec.source!r}")
        return s3_download(bucket, prefix, s3_client or MinioS3Client.from_env())
    raise SourceError(
        f"unsupported model source {spec.source!r}: use hf://, s3://, pvc://, file:/// or builtin://"
    )


def pvc_path(source: str, mount_root: Path | None = None) -> Path:
    """``pvc://claim/sub/path`` -> ``<mount root>/claim/sub/path``; the operator mounts each claim by name.

    ``LMOPS_PVC_MOUNT_ROOT`` overrides the root, for running outside a pod (local mode).
    """
    parts = urlsplit(source)
    if not parts.netloc:
        raise SourceError(f"pvc source needs a claim name: pvc://claim/path, got {source!r}")
    root = mount_root or Path(os.environ.get("LMOPS_PVC_MOUNT_ROOT", PVC_MOUNT_ROOT))
    relative = PurePosixPath(parts.netloc, parts.path.lstrip("/"))
    if ".." in relative.parts:
        raise SourceError(f"pvc source must not leave its claim: {source!r}")
    return root.joinpath(*relative.parts)


def hf_snapshot(repo_id: str, revision: str | None) -> Path:
    """Download (or, with ``HF_HUB_OFFLINE=1``, only look up in the local cache) a Hugging Face snapshot.

    The environment is read at call time rather than through huggingface_hub's import-time constants, so a
    replica started with a pre-filled cache and ``HF_HUB_OFFLINE=1`` never reaches for the network.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
    cache_dir = os.environ.get("HF_HUB_CACHE") or None
    try:
        path = snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, local_files_only=offline, token=None
        )
    except LocalEntryNotFoundError as error:
        where = f"{repo_id}@{revision or 'main'}"
        raise SourceError(
            f"{where} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
        ) from error
    return Path(str(path))


def s3_download(bucket: str, prefix: str, client: S3Client, cache_dir: Path | None = None) -> Path:
    """Mirror ``s3://bucket/prefix/`` into the cache, fetching only objects whose ETag changed."""
    dest = (cache_dir or cache_root()) / "s3" / bucket / prefix
    manifest_path = dest / S3_MANIFEST
    try:
        manifest: dict[str, str] = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}
    list_prefix = f"{prefix}/" if prefix else ""
    objects = [obj for obj in client.list(bucket, list_prefix) if not obj.key.endswith("/")]
    if not objects:
        raise SourceError(f"no objects under s3://{bucket}/{list_prefix}")
    fetched: dict[str, str] = {}
    for obj in objects:
        relative = PurePosixPath(obj.key[len(list_prefix) :])
        if relative.is_absolute() or ".." in relative.parts:
            raise SourceError(f"refusing S3 key that escapes its prefix: {obj.key!r}")
        target = dest.joinpath(*relative.parts)
        up_to_date = (
            manifest.get(obj.key) == obj.etag and target.is_file() and target.stat().st_size == obj.size
        )
        if not up_to_date:
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download(bucket, obj.key, target)
        fetched[obj.key] = obj.etag
    dest.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(fetched, sort_keys=True))
    return dest


class MinioS3Client:
    """S3 through the MinIO SDK, which talks to AWS S3 and any S3-compatible store.

    boto3 is not used because botocore pins python-dateutil<3 while the operator's kubernetes client needs
    >=3: the two cannot share one environment. Endpoint and credentials follow the AWS environment variables
    (``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_SESSION_TOKEN``, ``AWS_REGION``); without keys the pod's IAM role (IRSA, instance profile) is used.
    """

    def __init__(self, client: object) -> None:
        self._client = client

    @classmethod
    def from_env(cls) -> MinioS3Client:
        from minio import Minio
        from minio.credentials.providers import EnvAWSProvider, IamAwsProvider, Provider

        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        endpoint = endpoint or "https://s3.amazonaws.com"
        parsed = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        provider: Provider = EnvAWSProvider() if os.environ.get("AWS_ACCESS_KEY_ID") else IamAwsProvider()
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        client = Minio(parsed.netloc, secure=parsed.scheme == "https", region=region, credentials=provider)
        return cls(client)

    def list(self, bucket: str, prefix: str) -> Iterable[S3Object]:
        from minio import Minio

        client = self._client
        assert isinstance(client, Minio)
        for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
            if obj.object_name is None:
                continue
            yield S3Object(key=obj.object_name, size=obj.size or 0, etag=(obj.etag or "").strip('"'))

    def download(self, bucket: str, key: str, dest: Path) -> None:
        from minio import Minio

        client = self._client
        assert isinstance(client, Minio)
        client.fget_object(bucket, key, str(dest))


def _repo_id(netloc: str, path: str, source: str) -> str:
    repo_id = f"{netloc}{path}".strip("/")
    if not repo_id or repo_id.count("/") > 1:
        raise SourceError(f"hf source must be hf://org/name or hf://name, got {source!r}")
    if "@" in repo_id:
        raise SourceError(f"put the hf revision in the spec's revision field, not the URI: {source!r}")
    return repo_id


def _existing_dir(path: Path, source: str) -> Path:
    if not path.is_absolute():
        raise SourceError(f"model path must be absolute: {source!r}")
    if not path.is_dir():
        raise SourceError(f"model directory {path} (from {source!r}) does not exist")
    return path
