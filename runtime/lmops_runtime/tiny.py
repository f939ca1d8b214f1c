"""The built-in tiny models: random weights and a byte-level tokenizer, built in code and saved to disk.

Nothing can be downloaded from a model hub here, yet local mode and every runtime test need a real model that
``from_pretrained`` loads. These builders make one in well under a second, seeded so every build is identical,
and save it the same way a hub model is laid out on disk, so the loading path under test is the real one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from lmops_runtime.config import Task

#: Bumped whenever a builder changes, so caches built by an older recipe are not reused.
RECIPE_VERSION: Final = 2
SEED: Final = 1234
MAX_POSITIONS: Final = 512
DEFAULT_LABELS: Final = ("negative", "positive")

#: ``builtin://<name>``: the model each name builds; plain ``tiny`` follows the ModelSpec's task.
BUILTIN_TASKS: Final[dict[str, Task]] = {
    "tiny-generator": "generate",
    "tiny-classifier": "classify",
    "tiny-embedder": "embed",
}

_CAUSAL_SPECIALS: Final = ["<pad>", "<s>", "</s>", "<unk>"]
_ENCODER_SPECIALS: Final = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

#: Chat turns end with the end-of-sequence token, so a reply ends where the model would stop.
CHAT_TEMPLATE: Final = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def cache_root() -> Path:
    """Where built-in and S3-downloaded models are kept: ``$LMOPS_CACHE_DIR`` or ``~/.cache/lmops``."""
    configured = os.environ.get("LMOPS_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "lmops"


def builtin_task(name: str, task: Task) -> Task:
    """The task ``builtin://<name>`` serves; ValueError for an unknown name or a task mismatch."""
    if name == "tiny":
        return task
    if name not in BUILTIN_TASKS:
        known = ", ".join(["tiny", *BUILTIN_TASKS])
        raise ValueError(f"unknown built-in model {name!r}; known: {known}")
    if BUILTIN_TASKS[name] != task:
        raise ValueError(f"builtin://{name} is a {BUILTIN_TASKS[name]} model, but the spec's task is {task}")
    return task


def builtin_model_dir(
    name: str, task: Task = "generate", labels: Sequence[str] | None = None, cache_dir: Path | None = None
) -> Path:
    """Return the directory of ``builtin://<name>``, building it on first use and reusing it afterwards.

    The build goes to a temporary sibling and is renamed into place, so replicas starting together on one node
    never see a half-written model.
    """
    task = builtin_task(name, task)
    label_list = list(labels) if labels else list(DEFAULT_LABELS)
    key = f"{task}-v{RECIPE_VERSION}"
    if task == "classify":
        key += "-" + hashlib.sha256("\n".join(label_list).encode()).hexdigest()[:12]
    root = (cache_dir or cache_root()) / "builtin"
    final = root / key
    if (final / "config.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        save_tiny_model(staging, task, label_list)
        try:
            staging.rename(final)
        except OSError:
            if not (final / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def save_tiny_model(dest: Path, task: Task = "generate", labels: Sequence[str] | None = None) -> Path:
    """Build the tiny model for ``task`` with seeded random weights; save model and tokenizer to ``dest``."""
    import torch

    dest.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        if task == "generate":
            _save_causal_lm(dest)
        else:
            _save_encoder(dest, task, list(labels) if labels else list(DEFAULT_LABELS))
    return dest


def _byte_level_tokenizer(specials: list[str]) -> object:
    """A byte-level BPE tokenizer: every byte is a token (no merges), so any text round-trips exactly."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: index for index, token in enumerate([*specials, *alphabet])}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(specials)
    return tokenizer


def _save_causal_lm(dest: Path) -> None:
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = _byte_level_tokenizer(_CAUSAL_SPECIALS)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=MAX_POSITIONS,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    ids: dict[str, int] = {name: tokenizer.convert_tokens_to_ids(name) for name in _CAUSAL_SPECIALS}  # type: ignore[misc]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        # head_dim 32: vLLM's CPU attention refuses head sizes below 32, and the same tiny model must load on
        # both engines (builtin://tiny with engine auto serves on vLLM in a vLLM image).
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=MAX_POSITIONS,
        pad_token_id=ids["<pad>"],
        bos_token_id=ids["<s>"],
        eos_token_id=ids["</s>"],
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        pad_token_id=ids["<pad>"], bos_token_id=ids["<s>"], eos_token_id=ids["</s>"]
    )
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)


def _save_encoder(dest: Path, task: Task, labels: list[str]) -> None:
    from tokenizers import processors
    from transformers import BertConfig, BertForSequenceClassification, BertModel, PreTrainedTokenizerFast

    backend = _byte_level_tokenizer(_ENCODER_SPECIALS)
    cls_id = backend.token_to_id("[CLS]")  # type: ignore[attr-defined]
    sep_id = backend.token_to_id("[SEP]")  # type: ignore[attr-defined]
    backend.post_processor = processors.TemplateProcessing(  # type: ignore[attr-defined]
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MAX_POSITIONS,
    )
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
    )
    model = BertForSequenceClassification(config) if task == "classify" else BertModel(config)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
