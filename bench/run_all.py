"""Run every benchmark, then write docs/benchmarks.md (tables and plots) and print the tables.

Each benchmark runs as its own process (``bench/<name>.py``): Ray and the control plane start and stop
cleanly between them, and one failing benchmark does not lose the others' results. Each stores its figures
in ``bench/results/<name>.json``; the document is rendered from every stored result, so
``--only serving`` reruns one benchmark and still writes the whole page.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO_ROOT, Result, log, machine_line, outputs

#: Benchmark name -> (script, stored result names, in page order).
BENCHMARKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "serving": ("bench/serving.py", ("serving",)),
    "operator": ("bench/operator_scale.py", ("operator",)),
    "rollout": ("bench/rollout.py", ("rollout",)),
    "autoscaling": ("bench/autoscaling.py", ("autoscaling",)),
    "serving-gpu": ("bench/serving.py", ("serving-gpu",)),
    # In the vLLM venv (`make install-vllm`): vLLM cannot share the main environment.
    "serving-vllm": ("bench/serving_vllm.py", ("serving-vllm",)),
}
DEFAULT = ("serving", "serving-vllm", "operator", "rollout", "autoscaling")
PAGE_ORDER = ("serving", "serving-vllm", "serving-gpu", "operator", "rollout", "autoscaling")
VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"

INTRO = """\
# Benchmarks

Every figure here is a ratio measured side by side in one run of its benchmark (`bench/<name>.py`, all of them
through `make bench`): the lmops path against the baseline a user would pick first and against the limit of
the hardware or the API server, on the same machine, in the same process run, with the same model files.
The absolute numbers come from one run on a 2-core machine that other jobs may share (each section's
machine line gives the load average at its start, and the serving section the load around each path), so
read the ratios rather than the absolute values. Throughput and latency are medians of repeated trials.
Raw figures: `bench/results/*.json`.

Reproduce: `make bench` (or `.venv/bin/python bench/run_all.py --quick` for a plumbing check in minutes,
written to `bench/out-quick/`; `--only serving` reruns one benchmark and re-renders this page;
`--device cuda` adds the GPU serving variant where a GPU exists). The vLLM serving section runs in the vLLM
virtualenv (`.venv-vllm`, `make install-vllm`): vLLM pins its own torch.
"""


def command(name: str, quick: bool, sizes: list[int] | None) -> list[str]:
    script = str(REPO_ROOT / BENCHMARKS[name][0])
    args = [str(VLLM_PYTHON) if name == "serving-vllm" else sys.executable, script]
    if name == "serving-gpu":
        args.append("--device=cuda")
    elif quick:
        args.append("--quick")
    if name == "operator" and sizes:
        args += [f"--n={n}" for n in sizes]
    return args


def render_page(results: dict[str, Result], failures: dict[str, str], quick: bool = False) -> str:
    parts = [INTRO]
    if quick:
        parts.append("**Quick mode: small sizes, a plumbing check; these figures mean nothing.**\n")
    for name in PAGE_ORDER:
        result = results.get(name)
        if result is None:
            if name in failures:
                parts.append(f"## {name}\n\nNot measured in this run: {failures[name]}\n")
            continue
        section = [
            f"## {result.title}",
            f"Machine: {machine_line(result.machine)}; run {result.machine['date']}.",
        ]
        section.append(result.markdown.strip())
        section += [f"![{result.title}]({image})" for image in result.images]
        section += [f"Note: {note}" for note in result.notes]
        parts.append("\n\n".join(section) + "\n")
    return "\n".join(parts)


def load_results(directory: Path) -> dict[str, Result]:
    results = {}
    for path in sorted(directory.glob("*.json")):
        result = Result.load(path)
        results[result.name] = result
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the plumbing in minutes")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda adds serving-gpu")
    parser.add_argument(
        "--n", type=int, action="append", help="operator benchmark sizes (default 100, 500, 1000)"
    )
    parser.add_argument("--render-only", action="store_true", help="rewrite the page from stored results")
    args = parser.parse_args(argv)
    names = list(DEFAULT) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    if args.device == "cuda" and "serving-gpu" not in names:
        names.append("serving-gpu")
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    failures: dict[str, str] = {}
    out = outputs(args.quick)
    if not args.render_only:
        for name in names:
            log(f"run_all: {name}")
            started = time.monotonic()
            for stored in BENCHMARKS[name][1]:
                (out.results / f"{stored}.json").unlink(missing_ok=True)
            # The scripts print their own tables; the page below prints them all once.
            completed = subprocess.run(
                command(name, args.quick, args.n), cwd=REPO_ROOT, check=False, stdout=subprocess.DEVNULL
            )
            code = completed.returncode
            log(f"run_all: {name} finished in {time.monotonic() - started:.0f} s (exit {code})")
            if code != 0:
                failures[name] = f"`{BENCHMARKS[name][0]}` exited with {code}"
    results = load_results(out.results)
    page = render_page(results, failures, args.quick)
    out.page.parent.mkdir(parents=True, exist_ok=True)
    out.page.write_text(page)
    log(f"run_all: wrote {out.page}")
    print(page)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
