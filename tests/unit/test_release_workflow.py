"""The release workflow publishes what lmops names: the operator image the chart defaults to, the runtime
image the operator defaults to (and its other variants), tagged from the git tag, and both charts.

GitHub runs the workflow, not this suite, so it is checked as data: .github/workflows/release.yml parsed, its
stamp step run for real on a copy of the files it stamps, the stamped chart rendered and packaged by the
pinned helm, and the whole file linted by the pinned actionlint (hack/build-actionlint.sh).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmops_operator import images
from lmops_operator.settings import Settings
from testkit.controlplane import REPO_ROOT
from tests.support.chart import helm, render

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "release.yml"
ACTIONLINT = REPO_ROOT / ".cache" / "tools" / "actionlint"
TAG_REF, VERSION = "refs/tags/v1.2.3", "1.2.3"
# What the stamp step reads and writes: a copy of these is a checkout as far as the step can tell.
STAMPED_CHECKOUT = ("pyproject.toml", "charts", "hack/release-stamp.py", "operator/lmops_operator/images.py")
EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")


def workflow() -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True)  # YAML 1.1 reads the key `on` as the boolean true
    return data


def step(job: Mapping[str, Any], step_id: str) -> dict[str, Any]:
    found = [s for s in job["steps"] if s.get("id") == step_id]
    assert len(found) == 1, f"expected one step with id {step_id}"
    return dict(found[0])


def action(job: Mapping[str, Any], name: str) -> dict[str, Any]:
    found = [s for s in job["steps"] if s.get("uses", "").split("@")[0] == name]
    assert len(found) == 1, f"expected one {name} step"
    return dict(found[0])


def evaluate(template: str, context: Mapping[str, str]) -> str:
    """Substitute ``${{ name }}``; a name the context lacks is a KeyError, so a new expression fails here."""
    return EXPRESSION.sub(lambda m: context[m.group(1)], template)


def pushed_images(registry: str, version: str) -> set[str]:
    """The image references the images job pushes when its stamp step outputs ``registry`` and ``version``."""
    job = workflow()["jobs"]["images"]
    tags = action(job, "docker/build-push-action")["with"]["tags"]
    outputs = {"steps.stamp.outputs.registry": registry, "steps.stamp.outputs.version": version}
    return {
        evaluate(tags, outputs | {f"matrix.{key}": value for key, value in row.items()})
        for row in job["strategy"]["matrix"]["include"]
    }


def run_stamp(tmp_path: Path, ref: str, owner: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the images job's stamp step, as the runner does, in a copy of the checkout under ``tmp_path``."""
    checkout = tmp_path / "checkout"
    for name in STAMPED_CHECKOUT:
        source, target = REPO_ROOT / name, checkout / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
        else:
            shutil.copy(source, target)
    output = tmp_path / "github_output"
    env = {
        "PATH": os.environ["PATH"],
        "GITHUB_REF": ref,
        "GITHUB_REPOSITORY_OWNER": owner,
        "GITHUB_OUTPUT": str(output),
    }
    run = step(workflow()["jobs"]["images"], "stamp")["run"]
    command = ["bash", "-euo", "pipefail", "-c", run]
    result = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, timeout=60)
    return result, checkout


def stamp_outputs(tmp_path: Path, owner: str) -> tuple[dict[str, str], Path]:
    result, checkout = run_stamp(tmp_path, TAG_REF, owner)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "github_output").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines), checkout


def test_triggers_permissions_timeouts_and_pinned_actions() -> None:
    data = workflow()
    assert data["on"] == {"push": {"tags": ["v*"]}, "workflow_dispatch": {}}
    assert data["permissions"] == {"contents": "read"}
    for name, job in data["jobs"].items():
        assert isinstance(job["timeout-minutes"], int) and 0 < job["timeout-minutes"] <= 120, name
        assert job.get("permissions", {}).items() <= {"contents": "read", "packages": "write"}.items(), name
    uses = re.findall(r"uses: (\S+)(.*)", WORKFLOW.read_text())
    assert uses
    for ref, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), f"{ref} is not pinned to a commit"
        assert re.fullmatch(r" # v\d+\.\d+\.\d+", comment), f"{ref} does not say which release it pins"


def test_both_jobs_build_from_the_same_stamped_checkout() -> None:
    jobs = workflow()["jobs"]
    assert step(jobs["images"], "stamp") == step(jobs["charts"], "stamp")
    for job in jobs.values():
        names = [s.get("uses", "").split("@")[0] or s["name"] for s in job["steps"]]
        assert names.index("actions/checkout") == 0 and names.index("Stamp the version from the tag") == 1
    # A Git context would build the commit as tagged, without the stamp.
    assert action(jobs["images"], "docker/build-push-action")["with"]["context"] == "."


def test_stamp_writes_the_tag_version_everywhere(tmp_path: Path) -> None:
    outputs, checkout = stamp_outputs(tmp_path, "LMops")
    assert outputs == {
        "version": VERSION,
        "registry": images.REGISTRY,
        "charts": images.chart_repository(),
    }
    assert tomllib.loads((checkout / "pyproject.toml").read_text())["project"]["version"] == VERSION
    for chart in images.CHARTS:
        meta = yaml.safe_load((checkout / "charts" / chart / "Chart.yaml").read_text())
        assert (meta["version"], meta["appVersion"]) == (VERSION, VERSION)
    stack = yaml.safe_load((checkout / "charts" / "lmops-stack" / "Chart.yaml").read_text())
    assert {d["name"]: d["version"] for d in stack["dependencies"]}["lmops"] == VERSION
    # The project's own registry: the values already name its images.
    values = "charts/lmops/values.yaml"
    assert (checkout / values).read_text() == (REPO_ROOT / values).read_text()


def test_the_repository_has_one_version() -> None:
    """Unreleased too: the chart's operator image tag and the operator's runtime image tag are one version."""
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    for chart in images.CHARTS:
        meta = yaml.safe_load((REPO_ROOT / "charts" / chart / "Chart.yaml").read_text())
        assert (meta["version"], meta["appVersion"]) == (version, version), chart
        dependencies = {d["name"]: d["version"] for d in meta.get("dependencies", [])}
        assert dependencies.get("lmops", version) == version, chart


@pytest.mark.parametrize(
    "ref",
    [
        "refs/tags/1.2.3",
        "refs/tags/v1.2",
        "refs/tags/v1.2.3-rc.1",
        "refs/tags/v1.2.3+build",
        "refs/tags/v01.2.3",
        "refs/heads/v1.2.3",  # workflow_dispatch from a branch
        "refs/heads/main",
    ],
)
def test_stamp_refuses_a_ref_that_is_not_a_plain_version_tag(tmp_path: Path, ref: str) -> None:
    result, checkout = run_stamp(tmp_path, ref, "lmops")
    assert result.returncode == 2
    assert "vMAJOR.MINOR.PATCH" in result.stderr
    assert (checkout / "pyproject.toml").read_text() == (REPO_ROOT / "pyproject.toml").read_text()


def test_pushed_images_are_the_published_contract() -> None:
    variants = {images.runtime_image(VERSION, variant) for variant in images.RUNTIME_VARIANTS}
    operator = f"{images.repository(images.OPERATOR)}:{VERSION}"
    assert pushed_images(images.REGISTRY, VERSION) == {operator, *variants}
    for row in workflow()["jobs"]["images"]["strategy"]["matrix"]["include"]:
        dockerfile = REPO_ROOT / row["dockerfile"]
        assert row["dockerfile"].startswith(f"{row['image']}/") and dockerfile.is_file(), row
        declared = set(re.findall(r"^ARG (\w+)", dockerfile.read_text(), flags=re.MULTILINE))
        passed = {arg.split("=", 1)[0] for arg in row["build-args"].splitlines()}
        assert passed <= declared, f"{row['dockerfile']} declares no ARG {passed - declared}"


@pytest.mark.parametrize("owner", ["lmops", "Fork-Owner"])
def test_released_chart_and_operator_default_to_pushed_images(tmp_path: Path, owner: str) -> None:
    outputs, checkout = stamp_outputs(tmp_path, owner)
    pushed = pushed_images(outputs["registry"], outputs["version"])
    deployment = next(d for d in render(chart=checkout / "charts" / "lmops") if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] in pushed
    env = {e["name"]: e.get("value") for e in container["env"]}
    runtime = Settings.from_env({"LMOPS_DEFAULT_RUNTIME_IMAGE": env["LMOPS_DEFAULT_RUNTIME_IMAGE"]})
    if env["LMOPS_DEFAULT_RUNTIME_IMAGE"]:
        assert runtime.default_runtime_image in pushed
    else:
        # The operator's built-in default, from the package version that the stamp set to the tag's.
        assert runtime.default_runtime_image == images.runtime_image(metadata.version("lmops"))
        assert images.runtime_image(VERSION) in pushed
    helm("package", str(checkout / "charts" / "lmops"), "--destination", str(tmp_path / "dist"))
    assert [p.name for p in (tmp_path / "dist").iterdir()] == [f"lmops-{VERSION}.tgz"]


def test_charts_are_pushed_after_the_images_to_the_stamped_repository() -> None:
    job = workflow()["jobs"]["charts"]
    assert job["needs"] == "images"
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    assert f"helm package {' '.join(f'charts/{c}' for c in images.CHARTS)} --destination dist" in runs
    push = next(s for s in job["steps"] if "helm push" in s.get("run", ""))
    assert push["env"]["CHARTS"] == "${{ steps.stamp.outputs.charts }}"
    assert push["env"]["VERSION"] == "${{ steps.stamp.outputs.version }}"
    pushes = re.findall(r"^helm push (.+)$", push["run"], flags=re.MULTILINE)
    assert pushes == [f'"dist/{chart}-${{VERSION}}.tgz" "$CHARTS"' for chart in images.CHARTS]


def test_actionlint_passes_every_workflow() -> None:
    if not os.access(ACTIONLINT, os.X_OK):
        pytest.skip(f"no actionlint at {ACTIONLINT}: `make binaries` (hack/build-actionlint.sh) builds it")
    workflows = sorted(str(p) for p in (REPO_ROOT / ".github" / "workflows").glob("*.yml"))
    # shellcheck and pyflakes off: the result must not depend on what else this machine has installed.
    result = subprocess.run(
        [str(ACTIONLINT), "-no-color", "-oneline", "-shellcheck=", "-pyflakes=", *workflows],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
