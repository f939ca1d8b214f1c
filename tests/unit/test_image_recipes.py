"""The images the cluster tier builds without Docker (hack/images/) install what the Dockerfiles users build
with Docker install: the same `pip install` specs, run as the same user, with the same environment."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIP_OPTIONS_WITH_VALUE = {"--extra-index-url", "--index-url", "-i", "--find-links", "-f", "-c", "-r"}


def _dockerfile(path: Path) -> list[tuple[str, str]]:
    """(keyword, rest) per instruction, with continuation lines joined."""
    text = path.read_text().replace("\\\n", " ")
    lines = (line.strip() for line in text.splitlines())
    return [
        (keyword.upper(), rest.strip())
        for keyword, _, rest in (line.partition(" ") for line in lines if line and not line.startswith("#"))
    ]


def _engine_arm(run: str, engine: str) -> str:
    """A RUN that picks by ``case "${ENGINE}"``: the arm for ``engine``; any other RUN as it is."""
    match = re.search(rf"\b{re.escape(engine)}\)(.*?);;", run)
    return match[1] if "case" in run and match else run


def _dockerfile_pip_specs(path: Path, engine: str = "transformers") -> list[str]:
    """The requirement specs of the Dockerfile's `pip install` (options and their values left out), for the
    ``ENGINE`` build argument's default where the Dockerfile installs one engine per image."""
    for keyword, rest in _dockerfile(path):
        words = shlex.split(_engine_arm(rest, engine).split("&&")[0]) if keyword == "RUN" else []
        if words[:2] == ["pip", "install"]:
            specs, skip = [], False
            for word in words[2:]:
                if skip or word.startswith("-"):
                    skip = not skip and word in PIP_OPTIONS_WITH_VALUE
                    continue
                specs.append(word)
            return specs
    raise AssertionError(f"{path} has no `RUN pip install`")


def _recipe_pip_specs(path: Path) -> list[str]:
    match = re.search(r"^PIP_SPECS=\((.*)\)$", path.read_text(), re.MULTILINE)
    assert match, f"{path} declares no PIP_SPECS"
    return shlex.split(match[1])


def _dockerfile_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in _dockerfile(path):
        if keyword == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(rest))  # type: ignore[misc]
    return env


def _recipe_env(path: Path) -> dict[str, str]:
    return dict(m.split("=", 1) for m in re.findall(r"--env (\S+=\S+)", path.read_text()))


@pytest.mark.parametrize("image", ["runtime", "operator"])
def test_recipe_installs_what_the_dockerfile_installs(image: str) -> None:
    dockerfile = ROOT / image / "Dockerfile"
    recipe = ROOT / "hack" / "images" / f"{image}.sh"
    assert _recipe_pip_specs(recipe) == _dockerfile_pip_specs(dockerfile)


@pytest.mark.parametrize("image", ["runtime", "operator"])
def test_recipe_sets_the_dockerfile_environment(image: str) -> None:
    dockerfile_env = _dockerfile_env(ROOT / image / "Dockerfile")
    recipe_env = _recipe_env(ROOT / "hack" / "images" / f"{image}.sh")
    assert dockerfile_env
    assert {k: v for k, v in recipe_env.items() if k in dockerfile_env} == dockerfile_env


def test_operator_recipe_runs_as_the_dockerfile_user_and_command() -> None:
    instructions = _dockerfile(ROOT / "operator" / "Dockerfile")
    user = [rest for keyword, rest in instructions if keyword == "USER"][-1]
    cmd = [rest for keyword, rest in instructions if keyword == "CMD"][-1]
    recipe = (ROOT / "hack" / "images" / "operator.sh").read_text()
    assert f"--user {user}" in recipe
    assert f"--cmd '{cmd.replace(' ', '')}'" in recipe


def test_pip_specs_parser_skips_options_and_their_values() -> None:
    """The parser the tests above rely on, on the runtime Dockerfile's shape."""
    dockerfile = ROOT / "runtime" / "Dockerfile"
    assert _dockerfile_pip_specs(dockerfile) == [".[runtime]"]
