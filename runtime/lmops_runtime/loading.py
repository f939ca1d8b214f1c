"""Load a ModelSpec into memory: resolve its source, pick device and dtype, quantize, set eval mode."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lmops_runtime.config import DType, ModelSpec, Task
from lmops_runtime.sources import S3Client, resolve_source

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
#: Used when neither the spec nor the model's config says how long a sequence may be.
FALLBACK_MAX_SEQUENCE_LENGTH = 2048


class ModelLoadError(RuntimeError):
    """The model could not be loaded as specified; the message says what to fix."""


@dataclass
class LoadedModel:
    """A model ready for inference and what the engine needs to know about it."""

    spec: ModelSpec
    path: Path
    model: Any
    tokenizer: Any
    task: Task
    device: torch.device
    dtype: torch.dtype
    max_sequence_length: int
    labels: list[str] = field(default_factory=list)

    @property
    def quantized(self) -> bool:
        return self.spec.quantization != "none"


def pick_device(requested: str | None = None) -> torch.device:
    """``LMOPS_DEVICE`` (or ``requested``) wins; otherwise the GPU when there is one."""
    name = requested or os.environ.get("LMOPS_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(dtype: DType, device: torch.device) -> torch.dtype:
    """``auto``: bf16 (fp16 without bf16 support) on a GPU, fp32 on CPU (where half precision is slow)."""
    if dtype != "auto":
        return _DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_model(
    spec: ModelSpec, *, device: str | None = None, s3_client: S3Client | None = None
) -> LoadedModel:
    """Load ``spec`` for inference; every failure is a ModelLoadError whose message names the spec field."""
    try:
        path = resolve_source(spec, s3_client=s3_client)
    except Exception as error:
        raise ModelLoadError(f"cannot resolve model source {spec.source!r}: {error}") from error
    target = pick_device(device)
    dtype = resolve_dtype(spec.dtype, target)
    _check_quantization(spec, target, dtype)
    tokenizer = load_tokenizer(path, spec)
    model = _load_weights(path, spec, dtype)
    model.to(target)
    if spec.quantization == "int8":
        model = quantize_int8(model)
    model.eval()
    if getattr(model, "generation_config", None) is not None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(
        spec=spec,
        path=path,
        model=model,
        tokenizer=tokenizer,
        task=spec.task,
        device=target,
        dtype=dtype,
        max_sequence_length=max_sequence_length(spec, model.config),
        labels=_labels(spec, model.config),
    )


def quantize_int8(model: Any) -> Any:
    """Dynamic int8 quantization of every Linear: weights stored as int8, activations quantized per batch.

    This is PyTorch's CPU path (fbgemm/qnnpack kernels); it roughly quarters the Linear weights' memory.
    """
    # torch.ao.quantization warns that it will move to torchao; it is the API this torch version ships.
    with torch.inference_mode(False), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        return torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            model, {torch.nn.Linear}, dtype=torch.qint8
        )


def max_sequence_length(spec: ModelSpec, config: Any) -> int:
    """The spec's limit, which may not exceed what the model's position embeddings allow."""
    model_limit = getattr(config, "max_position_embeddings", None)
    if spec.max_sequence_length is not None:
        if model_limit is not None and spec.max_sequence_length > model_limit:
            raise ModelLoadError(
                f"maxSequenceLength {spec.max_sequence_length} exceeds the model's limit of {model_limit}"
            )
        return spec.max_sequence_length
    return int(model_limit) if model_limit else FALLBACK_MAX_SEQUENCE_LENGTH


def _check_quantization(spec: ModelSpec, device: torch.device, dtype: torch.dtype) -> None:
    if spec.quantization != "int8":
        return
    if device.type != "cpu":
        raise ModelLoadError(
            "quantization int8 is PyTorch dynamic quantization, which runs on CPU only; on a GPU use "
            "dtype float16 or bfloat16 (half the memory of float32), or serve the int8 revision on CPU "
            "workers"
        )
    if dtype != torch.float32:
        raise ModelLoadError("quantization int8 needs float32 weights to quantize: set dtype auto or float32")


def load_tokenizer(path: Path, spec: ModelSpec) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
    except Exception as error:
        raise ModelLoadError(f"cannot load the tokenizer from {path}: {error}") from error
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(
                f"the tokenizer in {path} has neither a pad nor an eos token to pad batches with"
            )
        tokenizer.pad_token = tokenizer.eos_token
    # Decoder-only models continue the last token of each row, so batches are padded on the left.
    tokenizer.padding_side = "left" if spec.task == "generate" else "right"
    return tokenizer


def _load_weights(path: Path, spec: ModelSpec, dtype: torch.dtype) -> Any:
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    auto = {
        "generate": AutoModelForCausalLM,
        "classify": AutoModelForSequenceClassification,
        "embed": AutoModel,
    }[spec.task]
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": spec.trust_remote_code}
    if spec.task == "generate":
        # sdpa works for plain generate and for continuous batching alike, so both can share the model.
        kwargs["attn_implementation"] = "sdpa"
    try:
        try:
            return auto.from_pretrained(path, **kwargs)
        except ValueError as error:
            if "attn_implementation" not in kwargs or "sdpa" not in str(error).lower():
                raise
            del kwargs["attn_implementation"]
            return auto.from_pretrained(path, **kwargs)
    except Exception as error:
        raise ModelLoadError(f"cannot load a {spec.task} model from {path}: {error}") from error


def _labels(spec: ModelSpec, config: Any) -> list[str]:
    if spec.task != "classify":
        return []
    num_labels = int(getattr(config, "num_labels", 0))
    if spec.labels:
        if len(spec.labels) != num_labels:
            raise ModelLoadError(
                f"the spec lists {len(spec.labels)} labels but the model's classifier has {num_labels} "
                "outputs"
            )
        return list(spec.labels)
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label.get(index, f"LABEL_{index}")) for index in range(num_labels)]
