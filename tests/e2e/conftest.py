"""End-to-end fixtures: the runtime tier's tiny models and local Ray, re-exported (one definition)."""

from __future__ import annotations

from tests.runtime.conftest import (
    _isolated_lmops_cache,
    ray_local,
    tiny_classify_labels,
    tiny_classify_model_dir,
    tiny_generate_model_dir,
)

__all__ = [
    "_isolated_lmops_cache",
    "ray_local",
    "tiny_classify_labels",
    "tiny_classify_model_dir",
    "tiny_generate_model_dir",
]
