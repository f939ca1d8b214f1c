"""``spec.model``: what to serve. Every field here makes a new revision."""

from __future__ import annotations

from pydantic import Field, field_validator

from lmops_operator.api.base import (
    SOURCE_PATTERN,
    ApiModel,
    DType,
    Engine,
    Label,
    Quantization,
    Strategy,
    Task,
    object_default,
)
from lmops_operator.api.changes import Change, cost
from lmops_operator.api.rules import (
    Rule,
    field,
    has,
    only_if,
)

# --------------------------------------------------------------------------------------------- model


class GenerationSpec(ApiModel):
    """Generation defaults for task generate; a request's own parameters override them."""

    rules = (
        only_if("numBeams", field("strategy").eq("beam"), "numBeams is only allowed with strategy beam"),
        only_if("topK", field("strategy").eq("sample"), "topK is only allowed with strategy sample"),
        only_if("topP", field("strategy").eq("sample"), "topP is only allowed with strategy sample"),
    )

    strategy: Strategy = Field(
        "greedy",
        description="Decoding strategy: greedy (argmax), sample (temperature, top-k, nucleus) or beam "
        "search.",
        json_schema_extra=cost(Change.REVISION, "model.generation.strategy"),
    )
    temperature: float = Field(
        1.0,
        gt=0,
        le=10,
        description="Softmax temperature for strategy sample; lower is more deterministic.",
        json_schema_extra=cost(Change.REVISION, "model.generation.temperature"),
    )
    top_k: int | None = Field(
        None,
        ge=1,
        le=10000,
        description="Sample only from the k most likely tokens (strategy sample).",
        json_schema_extra=cost(Change.REVISION, "model.generation.top_k"),
    )
    top_p: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Nucleus sampling: sample from the smallest token set whose probability reaches topP "
        "(strategy sample).",
        json_schema_extra=cost(Change.REVISION, "model.generation.top_p"),
    )
    num_beams: int | None = Field(
        None,
        ge=2,
        le=16,
        description="Beams for strategy beam; 4 when unset.",
        json_schema_extra=cost(Change.REVISION, "model.generation.num_beams"),
    )
    max_new_tokens: int = Field(
        128,
        ge=1,
        le=32768,
        description="Tokens generated when a request does not say; must not exceed serving.maxTokens.",
        json_schema_extra=cost(Change.REVISION, "model.generation.max_new_tokens"),
    )


class ModelSpec(ApiModel):
    """What to serve. Any change here makes a new revision, rolled out per spec.rollout."""

    rules = (
        Rule(
            field("task").ne("classify") | has(field("labels")),
            "labels are required when task is classify",
            ".labels",
        ),
        Rule(
            field("task").eq("classify") | ~has(field("labels")),
            "labels are only allowed when task is classify",
            ".labels",
        ),
        Rule(
            field("quantization").ne("int8") | field("dtype").is_in(["auto", "float32"]),
            "int8 dynamic quantization needs dtype auto or float32",
            ".quantization",
        ),
        Rule(
            field("engine").ne("vllm") | (field("task").eq("generate") & field("quantization").eq("none")),
            "engine vllm serves task generate without int8 quantization",
            ".engine",
        ),
    )

    source: str = Field(
        max_length=512,
        pattern=SOURCE_PATTERN,
        description="Where the weights come from: hf://org/name (Hugging Face Hub), s3://bucket/prefix, "
        "pvc://claim/path (a PersistentVolumeClaim mounted read-only), file:///absolute/path (on the node "
        "or in the image), or builtin://tiny (a tiny random-weight model for demos and tests).",
        json_schema_extra=cost(Change.REVISION, "model.source"),
    )
    revision: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
        description="Pinned revision of the weights: a Hugging Face commit, tag or branch, or a version "
        "label for other sources.",
        json_schema_extra=cost(Change.REVISION, "model.revision"),
    )
    task: Task = Field(
        "generate",
        description="generate: text generation (/v1/completions, /v1/chat/completions); classify: sequence "
        "classification (/predict); embed: sentence embeddings (/v1/embeddings, /embed).",
        json_schema_extra=cost(Change.REVISION, "model.task"),
    )
    dtype: DType = Field(
        "auto",
        description="Weight dtype; auto picks bfloat16 on GPUs that support it and float32 on CPU.",
        json_schema_extra=cost(Change.REVISION, "model.dtype"),
    )
    quantization: Quantization = Field(
        "none",
        description="none, or int8: dynamic int8 quantization of linear layers (CPU replicas only).",
        json_schema_extra=cost(Change.REVISION, "model.quantization"),
    )
    max_sequence_length: int | None = Field(
        None,
        ge=1,
        le=1048576,
        description="Longest prompt plus generated tokens accepted; defaults to the model's own limit.",
        json_schema_extra=cost(Change.REVISION, "model.max_sequence_length"),
    )
    trust_remote_code: bool = Field(
        False,
        description="Run Python code shipped with the model. Off unless set; the operator can forbid it "
        "cluster-wide.",
        json_schema_extra=cost(Change.REVISION, "model.trust_remote_code"),
    )
    labels: list[Label] | None = Field(
        None,
        min_length=2,
        max_length=1000,
        description="Class names in the order of the classifier's outputs; required for task classify "
        "and only allowed there.",
        json_schema_extra=cost(Change.REVISION, "model.labels", extra={"x-kubernetes-list-type": "set"}),
    )
    generation: GenerationSpec = Field(
        default_factory=GenerationSpec,
        description="Generation defaults (task generate).",
        json_schema_extra=object_default(GenerationSpec),
    )
    engine: Engine = Field(
        "auto",
        description="Inference engine. vllm: vLLM (paged KV cache, continuous batching, prefix caching, "
        "tensor parallel over runtime.gpus), task generate only, on the vLLM runtime image; transformers: "
        "the portable engine for every task; auto: vLLM for generate where the runtime image has it, else "
        "transformers.",
        json_schema_extra=cost(Change.REVISION, "model.engine"),
    )

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: list[str] | None) -> list[str] | None:
        """The CRD says the same with x-kubernetes-list-type: set."""
        if labels is not None and len(set(labels)) != len(labels):
            raise ValueError("labels must be unique")
        return labels
