"""Runtime fixtures shared by the runtime and e2e tiers: tiny random-weight models saved to disk, one local
Ray per test session, and local mode's reconciler on it. Registered once from tests/conftest.py, so both
tiers get the same session fixture instead of each calling ``ray.init``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lmops_runtime.tiny import save_tiny_model

if TYPE_CHECKING:
    from lmops_operator.local.reconciler import LocalReconciler

TINY_LABELS = ["negative", "neutral", "positive"]


@pytest.fixture(scope="session")
def tiny_generate_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama-style causal LM, byte-level tokenizer and chat template, saved with save_pretrained."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-generate"), "generate")


@pytest.fixture(scope="session")
def tiny_classify_labels() -> list[str]:
    """The labels ``tiny_classify_model_dir`` was built with."""
    return list(TINY_LABELS)


@pytest.fixture(scope="session")
def tiny_classify_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT sequence classifier whose labels are ``TINY_LABELS``."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-classify"), "classify", TINY_LABELS)


@pytest.fixture(scope="session")
def tiny_embed_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT encoder (no head) for embeddings."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-embed"), "embed")


@pytest.fixture(autouse=True)
def _isolated_lmops_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep ``builtin://`` and S3 downloads of tests out of the user's real cache."""
    monkeypatch.setenv("LMOPS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "lmops-cache"))


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One local Ray (2 CPUs, no dashboard) for the session; Serve and Ray are shut down afterwards.

    Its token is lmops' own, made in the session's temporary directory as ``lmops up`` makes it in its
    state directory (``lmops_runtime.local_env``): nothing is read from or written to the home directory.
    """
    import os

    from lmops_runtime.local_env import use_local_token

    use_local_token(tmp_path_factory.getbasetemp() / "ray-auth")
    import ray
    from ray import serve

    cache = tmp_path_factory.getbasetemp() / "lmops-cache"
    os.environ["LMOPS_CACHE_DIR"] = str(cache)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"LMOPS_CACHE_DIR": str(cache)}},
    )
    try:
        yield
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


@pytest.fixture
def reconciler(ray_local: None, tmp_path: Path) -> Iterator[LocalReconciler]:
    """Local mode's reconciler with its own state file; the Serve apps it made are deleted afterwards."""
    from lmops_operator.local.reconciler import LocalReconciler
    from lmops_runtime import local as runtime_local

    rec = LocalReconciler(path=tmp_path / "state.json")
    yield rec
    apps = [a for a in runtime_local.status() if a == "lm" or a.startswith("rev-")]
    if apps:
        runtime_local.delete_apps(apps)
