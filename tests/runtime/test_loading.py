"""Model loading from every source that works offline, with dtype, int8 quantization, labels and limits."""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Iterable
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import torch

from lmops_runtime.config import ModelSpec
from lmops_runtime.loading import ModelLoadError, load_model
from lmops_runtime.sources import S3Object, SourceError, pvc_path, resolve_source, s3_download
from lmops_runtime.tiny import builtin_model_dir, save_tiny_model


def _digest(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def _greedy(loaded: object, prompt: str = "hello", tokens: int = 8) -> list[int]:
    model, tokenizer = loaded.model, loaded.tokenizer  # type: ignore[attr-defined]
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=tokens, do_sample=False)
    return list(output[0, inputs["input_ids"].shape[1] :].tolist())


def test_tiny_model_is_deterministic(tmp_path: Path, tiny_generate_model_dir: Path) -> None:
    again = save_tiny_model(tmp_path / "again", "generate")
    assert _digest(again) == _digest(tiny_generate_model_dir)


def test_builtin_is_built_once_and_reused(tmp_path: Path) -> None:
    first = builtin_model_dir("tiny", "generate", cache_dir=tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    second = builtin_model_dir("tiny", "generate", cache_dir=tmp_path)
    assert first == second
    assert (second / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "builtin").iterdir()] == [first.name]


def test_builtin_per_task_and_labels() -> None:
    loaded = load_model(ModelSpec(source="builtin://tiny", task="classify", labels=["no", "yes", "maybe"]))
    assert loaded.labels == ["no", "yes", "maybe"]
    assert loaded.model.config.num_labels == 3
    embedder = load_model(ModelSpec(source="builtin://tiny-embedder", task="embed"))
    assert embedder.model.__class__.__name__ == "BertModel"
    with pytest.raises(ModelLoadError, match="is a classify model"):
        load_model(ModelSpec(source="builtin://tiny-classifier", task="generate"))
    with pytest.raises(ModelLoadError, match="unknown built-in model"):
        load_model(ModelSpec(source="builtin://huge"))


def test_file_source_loads_eval_fp32_on_cpu(tiny_generate_model_dir: Path) -> None:
    loaded = load_model(ModelSpec(source=f"file://{tiny_generate_model_dir}"))
    assert loaded.path == tiny_generate_model_dir
    assert loaded.device == torch.device("cpu")
    assert loaded.dtype == torch.float32
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert not loaded.model.training
    assert loaded.max_sequence_length == 512
    assert loaded.tokenizer.padding_side == "left"
    assert len(_greedy(loaded)) == 8


def test_missing_and_malformed_sources_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(ModelSpec(source=f"file://{tmp_path}/nothing"))
    with pytest.raises(ModelLoadError, match="unsupported model source"):
        load_model(ModelSpec(source="ftp://host/model"))
    with pytest.raises(ModelLoadError, match="absolute"):
        load_model(ModelSpec(source="file://relative/path"))


def test_pvc_source_maps_to_the_claim_mount(
    tmp_path: Path, tiny_generate_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pvc_path("pvc://models/llama/v1") == Path("/mnt/models/models/llama/v1")
    with pytest.raises(SourceError, match="must not leave"):
        pvc_path("pvc://models/../etc")
    shutil.copytree(tiny_generate_model_dir, tmp_path / "claim-a" / "tiny")
    monkeypatch.setenv("LMOPS_PVC_MOUNT_ROOT", str(tmp_path))
    loaded = load_model(ModelSpec(source="pvc://claim-a/tiny"))
    assert loaded.path == tmp_path / "claim-a" / "tiny"


def _fake_hf_cache(root: Path, model_dir: Path, repo: str, sha: str) -> None:
    """The on-disk layout huggingface_hub uses: models--org--name/{snapshots/<sha>/,refs/main}."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    shutil.copytree(model_dir, repo_dir / "snapshots" / sha)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(sha)


def test_hf_source_offline_from_local_cache(
    tmp_path: Path, tiny_generate_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    _fake_hf_cache(tmp_path, tiny_generate_model_dir, "acme/tiny-llm", sha)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    by_branch = load_model(ModelSpec(source="hf://acme/tiny-llm"))
    assert by_branch.path == tmp_path / "models--acme--tiny-llm" / "snapshots" / sha
    by_commit = resolve_source(ModelSpec(source="hf://acme/tiny-llm", revision=sha))
    assert by_commit == by_branch.path
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        load_model(ModelSpec(source="hf://acme/other"))
    with pytest.raises(ModelLoadError, match="revision field"):
        load_model(ModelSpec(source="hf://acme/tiny-llm@main"))


class FakeS3:
    """In-memory bucket: the two calls the download uses, counting downloads."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.downloads: list[str] = []

    def list(self, bucket: str, prefix: str) -> Iterable[S3Object]:
        assert bucket == "models"
        for key, data in sorted(self.objects.items()):
            if key.startswith(prefix):
                yield S3Object(key=key, size=len(data), etag=hashlib.md5(data).hexdigest())

    def download(self, bucket: str, key: str, dest: Path) -> None:
        self.downloads.append(key)
        dest.write_bytes(self.objects[key])


def test_s3_source_downloads_once_and_refreshes_changed_objects(tiny_generate_model_dir: Path) -> None:
    objects = {f"team/tiny/{p.name}": p.read_bytes() for p in tiny_generate_model_dir.iterdir()}
    objects["team/tiny-other/config.json"] = b"{}"
    fake = FakeS3(objects)
    loaded = load_model(ModelSpec(source="s3://models/team/tiny"), s3_client=fake)
    assert sorted(fake.downloads) == sorted(k for k in objects if k.startswith("team/tiny/"))
    assert len(_greedy(loaded)) == 8
    fake.downloads.clear()
    resolve_source(ModelSpec(source="s3://models/team/tiny"), s3_client=fake)
    assert fake.downloads == []
    objects["team/tiny/tokenizer_config.json"] += b"\n"
    resolve_source(ModelSpec(source="s3://models/team/tiny"), s3_client=fake)
    assert fake.downloads == ["team/tiny/tokenizer_config.json"]


def test_s3_rejects_empty_prefix_and_escaping_keys(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no objects"):
        s3_download("models", "absent", FakeS3({}), cache_dir=tmp_path)
    with pytest.raises(SourceError, match="escapes"):
        s3_download("models", "a", FakeS3({"a/../../x": b"1"}), cache_dir=tmp_path)


def test_dtype_bfloat16_changes_parameters_and_generates(tiny_generate_model_dir: Path) -> None:
    loaded = load_model(ModelSpec(source=f"file://{tiny_generate_model_dir}", dtype="bfloat16"))
    assert loaded.dtype == torch.bfloat16
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert len(_greedy(loaded)) == 8


def test_int8_quantization_replaces_linear_layers_and_generates(tiny_generate_model_dir: Path) -> None:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    loaded = load_model(ModelSpec(source=f"file://{tiny_generate_model_dir}", quantization="int8"))
    kinds = {type(m) for m in loaded.model.modules()}
    assert DynamicQuantizedLinear in kinds
    assert torch.nn.Linear not in kinds
    assert loaded.quantized
    assert len(_greedy(loaded)) == 8


def test_int8_is_refused_on_gpu_and_with_half_precision(tiny_generate_model_dir: Path) -> None:
    source = f"file://{tiny_generate_model_dir}"
    with pytest.raises(ModelLoadError, match="CPU only"):
        load_model(ModelSpec(source=source, quantization="int8", dtype="float32"), device="cuda")
    with pytest.raises(ModelLoadError, match="float32 weights"):
        load_model(ModelSpec(source=source, quantization="int8", dtype="float16"))


def test_classifier_labels_and_limits(tiny_classify_model_dir: Path, tiny_classify_labels: list[str]) -> None:
    source = f"file://{tiny_classify_model_dir}"
    assert load_model(ModelSpec(source=source, task="classify")).labels == tiny_classify_labels
    renamed = load_model(ModelSpec(source=source, task="classify", labels=["a", "b", "c"]))
    assert renamed.labels == ["a", "b", "c"]
    with pytest.raises(ModelLoadError, match="2 labels"):
        load_model(ModelSpec(source=source, task="classify", labels=["a", "b"]))
    assert (
        load_model(ModelSpec(source=source, task="classify", max_sequence_length=64)).max_sequence_length
        == 64
    )
    with pytest.raises(ModelLoadError, match="exceeds the model's limit"):
        load_model(ModelSpec(source=source, task="classify", max_sequence_length=100_000))


class _S3Handler(BaseHTTPRequestHandler):
    """Just enough of the S3 REST API for a download: ListObjectsV2, HeadObject, GetObject."""

    objects: ClassVar[dict[str, bytes]] = {}
    bucket = "models"

    def log_message(self, format: str, *args: object) -> None:
        return

    def _object(self) -> bytes | None:
        path = urlsplit(self.path).path
        prefix = f"/{self.bucket}/"
        return self.objects.get(unquote(path[len(prefix) :])) if path.startswith(prefix) else None

    def _headers(self, data: bytes) -> None:
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{hashlib.md5(data).hexdigest()}"')
        self.send_header("Last-Modified", "Sun, 22 Nov 2026 00:00:00 GMT")
        self.send_header("Content-Type", "application/octet-stream")

    def _send_object(self, with_body: bool) -> None:
        data = self._object()
        if data is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self._headers(data)
        self.end_headers()
        if with_body:
            self.wfile.write(data)

    def do_HEAD(self) -> None:
        self._send_object(with_body=False)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path.rstrip("/") == f"/{self.bucket}":
            prefix = parse_qs(parts.query).get("prefix", [""])[0]
            entries = "".join(
                f"<Contents><Key>{escape(key)}</Key><Size>{len(data)}</Size>"
                f"<ETag>&quot;{hashlib.md5(data).hexdigest()}&quot;</ETag>"
                "<LastModified>2026-11-22T00:00:00.000Z</LastModified><StorageClass>STANDARD</StorageClass>"
                "</Contents>"
                for key, data in sorted(self.objects.items())
                if key.startswith(prefix)
            )
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>'
                '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<Name>{self.bucket}</Name><Prefix>{escape(prefix)}</Prefix><IsTruncated>false</IsTruncated>"
                f"{entries}</ListBucketResult>"
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self._send_object(with_body=True)


def test_s3_source_through_the_minio_client_over_http(
    tiny_generate_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real S3 client against a local S3-speaking server on a free port."""
    _S3Handler.objects = {f"llm/v1/{p.name}": p.read_bytes() for p in tiny_generate_model_dir.iterdir()}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _S3Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        loaded = load_model(ModelSpec(source="s3://models/llm/v1"))
        assert sorted(p.name for p in loaded.path.iterdir() if not p.name.startswith(".")) == sorted(
            p.name for p in tiny_generate_model_dir.iterdir()
        )
        assert len(_greedy(loaded)) == 8
    finally:
        server.shutdown()
        server.server_close()
