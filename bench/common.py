"""What every benchmark shares: the machine it ran on, robust statistics, tables, and stored results.

Each benchmark stores its raw figures as JSON under ``bench/results/`` and ``run_all`` renders every stored
result into ``docs/benchmarks.md``, so a slow benchmark can be rerun alone without rerunning the others.
Figures are ratios measured side by side in one process run: absolute numbers on a shared 2-core machine move
with whatever else runs, ratios far less.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Outputs:
    """Where results, plots and the page go. Quick runs (plumbing checks) never overwrite the real page."""

    results: Path
    images: Path
    page: Path


def outputs(quick: bool) -> Outputs:
    if quick:
        root = REPO_ROOT / "bench" / "out-quick"
        return Outputs(root / "results", root / "img", root / "benchmarks.md")
    docs = REPO_ROOT / "docs"
    return Outputs(REPO_ROOT / "bench" / "results", docs / "img", docs / "benchmarks.md")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def median(values: Iterable[float]) -> float:
    """Median of repeated trials: one slow trial (another job on the shared cores) does not move it."""
    items = list(values)
    if not items:
        raise ValueError("median of no values")
    return float(statistics.median(items))


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; NaN when the denominator is zero, so a table shows n/a, never a crash."""
    return numerator / denominator if denominator else math.nan


def fmt(value: float | int | None, digits: int = 3) -> str:
    """A table cell: integers as they are, floats to ``digits`` significant figures, NaN/None as n/a."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table whose columns are padded so it also reads well printed to a terminal."""
    if any(len(row) != len(headers) for row in rows):
        raise ValueError("every row needs one cell per header")
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    widths = [max(3, width) for width in widths]

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True))
            + " |"
        )

    rule = "| " + " | ".join("-" * width for width in widths) + " |"
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory and the versions that shape the figures."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    try:
        import psutil  # type: ignore[import-untyped]

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except ImportError:
        pass
    for module in ("torch", "transformers", "ray", "kopf", "kubernetes"):
        info[module] = _version(module)
    return info


def machine_line(info: Mapping[str, Any]) -> str:
    parts = [f"{info.get('cpu')}, {info.get('cores')} cores"]
    if "memory_gib" in info:
        parts.append(f"{info['memory_gib']} GiB RAM")
    parts.append(f"Python {info.get('python')}")
    for module in ("torch", "transformers", "ray", "kopf"):
        if info.get(module):
            parts.append(f"{module} {info[module]}")
    if "gpu" in info:
        parts.append(str(info["gpu"]))
    if "load_avg_1m" in info:
        parts.append(f"load average at start {info['load_avg_1m']}")
    return "; ".join(parts)


def _cpu_model() -> str:
    try:
        for raw in Path("/proc/cpuinfo").read_text().splitlines():
            if raw.startswith("model name"):
                return raw.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``; monotonic, so clock steps do not skew it."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2) -> float:
    """Poll ``check`` until true; returns the seconds it took, raises TimeoutError naming ``what``."""
    started = time.perf_counter()
    while True:
        if check():
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"{what} not reached within {timeout_s:.0f} s")
        time.sleep(interval_s)


@dataclass
class Result:
    """One benchmark's stored outcome: raw figures, the rendered markdown and the plots it wrote."""

    name: str
    title: str
    machine: dict[str, Any]
    data: dict[str, Any]
    markdown: str
    images: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.json"
        path.write_text(json.dumps(self.__dict__, indent=2, default=str) + "\n")
        return path

    def report(self) -> str:
        """What a benchmark script prints when it ends: title, machine, tables, then its notes."""
        head = f"## {self.title}\n\n{machine_line(self.machine)}\n\n{self.markdown}"
        return "\n".join([head, *(f"Note: {note}" for note in self.notes)])

    @classmethod
    def load(cls, path: Path) -> Result:
        return cls(**json.loads(path.read_text()))


def start_ray(attempts: int = 3, **kwargs: Any) -> None:
    """``ray.init`` with retries: Ray gives its raylet a fixed 30 s to register, which a machine shared with
    other jobs sometimes misses; a second attempt on a fresh session normally succeeds. The token is lmops'
    own, as for ``lmops up`` (``lmops_runtime.local_env``), never one from the home directory."""
    from lmops_runtime.local_env import use_local_token

    use_local_token()
    import ray

    for attempt in range(1, attempts + 1):
        try:
            ray.init(**kwargs)
            return
        except Exception as exc:
            ray.shutdown()
            if attempt == attempts:
                raise
            log(f"ray.init failed ({exc}); retrying ({attempt}/{attempts})")
            time.sleep(5)


def log(message: str) -> None:
    """Progress to stderr, so stdout carries only the tables."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()
