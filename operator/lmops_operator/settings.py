"""Operator settings, read once from the environment (the Helm chart sets exactly these variables).

LMOPS_WATCH_NAMESPACES, LMOPS_ALLOWED_SOURCES, LMOPS_ALLOW_TRUST_REMOTE_CODE, LMOPS_DEFAULT_RUNTIME_IMAGE,
LMOPS_DEFAULT_VLLM_RUNTIME_IMAGE (GPU), LMOPS_DEFAULT_VLLM_CPU_RUNTIME_IMAGE, LMOPS_PEERING_NAME,
LMOPS_LOG_LEVEL, and LMOPS_PROMETHEUS_URL (canary metrics from Prometheus instead of the Router's /stats).

Policy (allowed sources, trustRemoteCode) lives here rather than in the CRD because it belongs to the
platform team running the operator, not to the teams writing LanguageModels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata

from lmops_operator.images import RUNTIME_VARIANTS, runtime_image, runtime_variant

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def _package_version() -> str:
    try:
        return metadata.version("lmops")
    except metadata.PackageNotFoundError:
        return "0.1.0"


# The CPU runtime image of this release (a release stamps the package version from its tag). The other
# variants (GPU, and vLLM's, which cannot share an image with the transformers engine: torch pins) are named
# after it with their suffix from ``images.RUNTIME_VARIANTS`` unless configured.
DEFAULT_RUNTIME_IMAGE = runtime_image(_package_version())


class SettingsError(ValueError):
    """An environment variable holds a value the operator cannot use; it refuses to start."""


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _bool(name: str, value: str | None, default: bool) -> bool:
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false, got {value!r}")


@dataclass(frozen=True)
class Settings:
    """What the operator watches, what it allows, and how it identifies itself."""

    watch_namespaces: tuple[str, ...] = ()
    allowed_sources: tuple[str, ...] = ()
    allow_trust_remote_code: bool = False
    default_runtime_image: str = DEFAULT_RUNTIME_IMAGE
    default_vllm_runtime_image: str | None = None
    default_vllm_cpu_runtime_image: str | None = None
    peering_name: str | None = None
    log_level: str = "INFO"
    prometheus_url: str | None = None

    @property
    def clusterwide(self) -> bool:
        """Empty LMOPS_WATCH_NAMESPACES means every namespace."""
        return not self.watch_namespaces

    def default_image(self, engine: str, gpus: int) -> str:
        """The image for a LanguageModel without spec.runtime.image: the variant for its engine and device
        (``images.runtime_variant``), the configured one for vLLM where set, else the default image's name
        with the variant's suffix. ``auto`` gets the transformers images and serves on what they hold."""
        variant = runtime_variant(engine, gpus)
        configured = {
            "vllm": self.default_vllm_runtime_image,
            "vllm-cpu": self.default_vllm_cpu_runtime_image,
        }
        return configured.get(variant) or self.default_runtime_image + RUNTIME_VARIANTS[variant]

    def source_allowed(self, source: str) -> bool:
        """A source is allowed when no prefixes are configured or it starts with one of them."""
        return not self.allowed_sources or any(source.startswith(p) for p in self.allowed_sources)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read LMOPS_* variables; a malformed value raises SettingsError (fail at start, not per object)."""
        env = os.environ if env is None else env
        level = env.get("LMOPS_LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if level not in _LOG_LEVELS:
            raise SettingsError(f"LMOPS_LOG_LEVEL must be one of {sorted(_LOG_LEVELS)}, got {level!r}")
        return cls(
            watch_namespaces=_split(env.get("LMOPS_WATCH_NAMESPACES")),
            allowed_sources=_split(env.get("LMOPS_ALLOWED_SOURCES")),
            allow_trust_remote_code=_bool(
                "LMOPS_ALLOW_TRUST_REMOTE_CODE", env.get("LMOPS_ALLOW_TRUST_REMOTE_CODE"), False
            ),
            default_runtime_image=env.get("LMOPS_DEFAULT_RUNTIME_IMAGE", "").strip() or DEFAULT_RUNTIME_IMAGE,
            default_vllm_runtime_image=env.get("LMOPS_DEFAULT_VLLM_RUNTIME_IMAGE", "").strip() or None,
            default_vllm_cpu_runtime_image=env.get("LMOPS_DEFAULT_VLLM_CPU_RUNTIME_IMAGE", "").strip()
            or None,
            peering_name=env.get("LMOPS_PEERING_NAME", "").strip() or None,
            log_level=level,
            prometheus_url=env.get("LMOPS_PROMETHEUS_URL", "").strip() or None,
        )
