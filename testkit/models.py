"""Variants of the tiny test models for the failure paths: a broken one and copies that keep the tokenizer."""

from __future__ import annotations

import shutil
from pathlib import Path

WEIGHT_FILES = frozenset({"config.json", "model.safetensors", "generation_config.json"})


def copy_tokenizer(source: Path, dest: Path) -> None:
    """Copy everything of a saved model directory but its config and weights (tokenizer, chat template)."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file() and path.name not in WEIGHT_FILES:
            shutil.copy(path, dest / path.name)


def broken_generate_model(source: Path, dest: Path) -> Path:
    """A real model that loads and passes the health probe but fails every real prompt.

    Its embedding table keeps only the 4 special tokens (the probe's), while the byte-level tokenizer emits
    ids up to 259: any text token is out of range inside the model, a genuine server fault, not a test flag.
    """
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(source)
    model.resize_token_embeddings(4)
    model.save_pretrained(dest)
    copy_tokenizer(source, dest)
    return dest
