"""The images and charts a release publishes, named once.

`.github/workflows/release.yml` pushes exactly these (tests/unit/test_release_workflow.py parses it against
this module), the chart's values name the operator image, and the operator's built-in default runtime image
is ``runtime_image(<package version>)``. `hack/release-stamp.py` imports this module (stdlib only) to stamp
a release, so a registry or tag-scheme change is made here and nowhere else.
"""

from __future__ import annotations

REGISTRY = "ghcr.io/lmops"
OPERATOR = "operator"
RUNTIME = "runtime"
# Runtime image variants and the suffix each appends to the release version in its tag: the CPU image
# (torch's CPU wheels), the CUDA one (runtime/Dockerfile's VARIANT=-gpu), and vLLM's for CUDA and CPU
# (ENGINE=vllm / vllm-cpu): vLLM pins its own torch, so it cannot share the transformers images.
RUNTIME_VARIANTS = {"cpu": "", "gpu": "-gpu", "vllm": "-vllm", "vllm-cpu": "-vllm-cpu"}
CHARTS = ("lmops", "lmops-stack")


def repository(image: str, registry: str = REGISTRY) -> str:
    """``<registry>/<image>``: where the release workflow pushes ``image``."""
    return f"{registry}/{image}"


def runtime_image(version: str, variant: str = "cpu", registry: str = REGISTRY) -> str:
    """The runtime image a release of ``version`` publishes for ``variant``."""
    return f"{repository(RUNTIME, registry)}:{version}{RUNTIME_VARIANTS[variant]}"


def runtime_variant(engine: str, gpus: int) -> str:
    """The runtime image variant a replica needs: vLLM's for engine vllm, else the transformers images;
    the CUDA build where the replica has GPUs (torch's CPU wheels cannot use them)."""
    if engine == "vllm":
        return "vllm" if gpus > 0 else "vllm-cpu"
    return "gpu" if gpus > 0 else "cpu"


def chart_repository(registry: str = REGISTRY) -> str:
    """The OCI repository the release pushes the charts to (`helm install oci://.../lmops`)."""
    return f"oci://{registry}/charts"
