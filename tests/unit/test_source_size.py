"""No source file over 500 lines: a file that grows past it is split by responsibility, not scrolled."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 500


def test_no_source_file_is_over_the_limit() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    sizes = {name: len((ROOT / name).read_text().splitlines()) for name in listed if (ROOT / name).is_file()}
    assert len(sizes) > 100  # the walk found the sources
    assert {name: n for name, n in sizes.items() if n > LIMIT} == {}
