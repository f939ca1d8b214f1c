"""Imports point one way: every module of operator/ and runtime/ (and the shared test kit) imports only
its own layer or lower ones, and no set of modules imports itself round a cycle.

The layers are declared here, lowest first. A module's layer is the longest prefix that names it; an
import of a module at a higher layer, or of one no layer names, fails the test, so a new package has to
be placed deliberately. Imports inside functions count too: a lazy import still couples the modules.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {
    "lmops_runtime": ROOT / "runtime" / "lmops_runtime",
    "lmops_operator": ROOT / "operator" / "lmops_operator",
    "testkit": ROOT / "testkit",
}

# Lowest first. Modules of one layer may import each other (the cycle check still applies).
LAYERS: list[tuple[str, ...]] = [
    # The contract between operator and runtime: pydantic models, names, ports; no Ray, no Kubernetes.
    ("lmops_runtime.config", "lmops_runtime.contract", "lmops_runtime.local_env"),
    (
        "lmops_runtime.autoscaling",
        "lmops_runtime.protocol",
        "lmops_runtime.tiny",
        "lmops_runtime.sources",
        "lmops_runtime.loading",
    ),
    ("lmops_runtime.engine", "lmops_runtime.engine_metrics"),
    ("lmops_runtime.vllm_server",),
    ("lmops_runtime.router", "lmops_runtime.model_server"),
    ("lmops_runtime.app", "lmops_runtime.local"),
    # The operator: the images a release publishes, API types, the names of what it creates, pure builders
    # and planning, then I/O.
    ("lmops_operator.images",),
    ("lmops_operator.settings", "lmops_operator.observability"),
    ("lmops_operator.api",),
    ("lmops_operator.names",),
    ("lmops_operator.builders",),
    ("lmops_operator.planning",),
    ("lmops_operator.router_client",),
    ("lmops_operator.metrics_source", "lmops_operator.quality_gate"),
    ("lmops_operator.k8s", "lmops_operator.local"),
    ("lmops_operator.handlers",),
    ("lmops_operator.commands", "lmops_operator.cli"),
    # What tests and benchmarks share: builds on everything above, imported by tests/ and bench/ only.
    ("testkit",),
]

# The runtime images: the operator's image holds the runtime's contract and no Ray, so the operator may
# import only the contract of the runtime (and local_env, stdlib only: where local mode keeps its state and
# Ray token); local mode runs the runtime in-process and may start it.
OPERATOR_MAY_IMPORT = ("lmops_runtime.config", "lmops_runtime.contract", "lmops_runtime.local_env")
LOCAL_MODE = (
    "lmops_operator.local.reconciler",
    "lmops_operator.commands.local",
    "lmops_operator.commands.rollout_local",
)
FORBIDDEN_IN_RUNTIME = ("kubernetes", "kopf", "lmops_operator")


def _matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if _matches(module, prefix) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def _module_name(package: str, root: Path, path: Path) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> Iterator[tuple[str, Path]]:
    for package, root in SOURCES.items():
        for path in sorted(root.rglob("*.py")):
            yield _module_name(package, root, path), path


def imports_of(module: str, path: Path, known: Collection[str] = ()) -> set[str]:
    """Absolute names of the modules ``path`` imports: ``from a import b`` is ``a.b`` where that is a
    module in ``known``, else ``a``."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return out


def _sources() -> dict[str, Path]:
    return dict(modules())


def _graph() -> dict[str, set[str]]:
    known = _sources()
    return {
        module: {name for name in imports_of(module, path, known) if name in known and name != module}
        for module, path in known.items()
    }


def _boundary_problem(module: str, name: str) -> str | None:
    """The rules between the two images, which the layer order alone does not say."""
    if _matches(module, "lmops_runtime") and any(_matches(name, p) for p in FORBIDDEN_IN_RUNTIME):
        return f"{module} imports {name}: the runtime imports nothing of Kubernetes or the operator"
    if (
        _matches(module, "lmops_operator")
        and _matches(name, "lmops_runtime")
        and not any(_matches(name, p) for p in OPERATOR_MAY_IMPORT)
        and not any(_matches(module, p) for p in LOCAL_MODE)
    ):
        return f"{module} imports {name}: the operator may import the runtime's contract only"
    return None


def upward_imports() -> list[str]:
    problems = []
    known = _sources()
    for module, path in known.items():
        own = -1 if module in SOURCES else layer_of(module)  # a root package's __init__ sits below all
        if own is None:
            problems.append(f"{module}: no layer declared for it in {__name__}.LAYERS")
            continue
        for name in sorted(imports_of(module, path, known)):
            boundary = _boundary_problem(module, name)
            if boundary is not None:
                problems.append(boundary)
            if not any(_matches(name, package) for package in SOURCES):
                continue
            target = -1 if name in SOURCES else layer_of(name)
            if target is None:
                problems.append(f"{module} imports {name}, which no layer names")
            elif target > own:
                problems.append(f"{module} (layer {own}) imports {name} (layer {target}): upward")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_import_points_down_the_declared_layers() -> None:
    assert upward_imports() == []


def test_no_module_imports_itself_round_a_cycle() -> None:
    assert cycles(_graph()) == []


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """The checker itself: an upward import is reported, a cycle is found, a layer is the longest prefix."""
    assert layer_of("lmops_operator.planning.plan") == LAYERS.index(("lmops_operator.planning",))
    assert layer_of("lmops_runtime.config") == 0
    assert layer_of("nothing.here") is None
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    source = tmp_path / "mod.py"
    source.write_text("from . import sibling\nfrom ..up import thing\nimport os\ndef f():\n    import lazy\n")
    found = imports_of("pkg.sub.mod", source, {"pkg.sub.sibling"})
    assert found == {"pkg.sub.sibling", "pkg.up", "os", "lazy"}
    assert _boundary_problem("lmops_runtime.router", "kubernetes.client") is not None
    assert _boundary_problem("lmops_operator.planning", "lmops_runtime.router.stats") is not None
    assert _boundary_problem("lmops_operator.planning", "lmops_runtime.config") is None


def test_benchmarks_and_the_test_kit_import_no_tests() -> None:
    """bench/ and testkit/ share what they need through testkit, never by reaching into tests/."""
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for folder in ("bench", "testkit")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for name in sorted(imports_of(folder, path))
        if _matches(name, "tests")
    ]
    assert offenders == []


@pytest.mark.parametrize("package", sorted(SOURCES))
def test_every_source_folder_is_walked(package: str) -> None:
    """A moved folder would make the checks above pass on nothing."""
    assert any(name.startswith(package + ".") for name, _ in modules())
