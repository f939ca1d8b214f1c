"""Who drives the local model's reconcile loop, and rollout controls handed to it.

On a cluster the operator always runs, and ``lmops rollout promote`` only sets an annotation it acts on.
Locally the loop runs only inside a command: ``lmops up`` while it rolls a change out, or ``lmops rollout``.
Exactly one process may drive it at a time (two would each deploy their own view), so the driver holds an
exclusive ``flock`` on a lock file next to the state file, released by the kernel even when the process dies.
A control asked for while another process drives (``lmops rollout promote`` in a second terminal while ``lmops
up`` walks the canary) is written to a request file beside the state; the driver's next reconcile consumes
it, as the operator consumes a control annotation.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from lmops_operator.api.annotations import Controls


def lock_path(state_path: Path) -> Path:
    return state_path.with_suffix(".lock")


def requests_path(state_path: Path) -> Path:
    return state_path.with_suffix(".controls.json")


def acquire(state_path: Path) -> int | None:
    """Become the one process that drives the loop: the locked descriptor (``release`` it), or None when
    another process drives it now. Never waits."""
    path = lock_path(state_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def release(fd: int) -> None:
    os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def driving(state_path: Path) -> Iterator[bool]:
    """``acquire`` for a block; yields whether this process drives the loop in it."""
    fd = acquire(state_path)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            release(fd)


def merged(first: Controls | None, second: Controls | None) -> Controls:
    """Both requests at once; abort wins over promote, as with the annotations."""
    a, b = first or Controls(), second or Controls()
    abort = a.abort or b.abort
    promote = (a.promote or b.promote) and not abort
    return Controls(promote=promote, abort=abort, restart=a.restart or b.restart)


def request(state_path: Path, controls: Controls) -> None:
    """Leave a control for the process that drives the loop (merged with any not yet consumed)."""
    path = requests_path(state_path)
    wanted = merged(_read(path), controls)
    fd, tmp = tempfile.mkstemp(prefix=".controls.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(wanted), handle)
    os.replace(tmp, path)


def take(state_path: Path) -> Controls | None:
    """The controls requested since the last reconcile, removed so each acts once; None if there are none."""
    path = requests_path(state_path)
    claimed = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        os.replace(path, claimed)  # atomic: a request written after this lands in a new file
    except FileNotFoundError:
        return None
    try:
        return _read(claimed)
    finally:
        claimed.unlink(missing_ok=True)


def _read(path: Path) -> Controls | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return Controls(**{key: bool(data.get(key)) for key in ("promote", "abort", "restart")})
