"""Where local mode keeps its state, and the token that admits a process to the local Ray.

Ray 2.60 guards a cluster with token auth: without it, anything that can reach the head's ports can run
code as the user who started it. Local mode binds Ray to loopback, but loopback is shared by every user and
job on the machine (a CI runner, a dev box), so lmops keeps token auth on rather than turning it off.

Ray finds its token in ``RAY_AUTH_TOKEN``, else the file ``RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``;
``ray start`` with ``RAY_AUTH_MODE=token`` refuses to start when none exists, and only ``ray.init()`` of a new
in-process cluster creates one (in the home directory). So lmops creates its own token, once, in its own
state directory (mode 0600), and points every process of a local Ray at it: ``use_local_token`` sets
``RAY_AUTH_MODE`` and ``RAY_AUTH_TOKEN_PATH`` in this process, and the Ray head, its workers and every later
driver (``lmops down``, ``lmops rollout``, the tests' session Ray, the benchmarks) inherit or set the same.
Nothing depends on, or is written to, a token the user keeps for other clusters in ``~/.ray``.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any

from lmops_runtime.config import state_dir

TOKEN_FILE = "ray-auth-token"
AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def ensure_token(directory: Path) -> Path:
    """The token file in ``directory``, created readable by this user only if it does not exist yet."""
    path = directory / TOKEN_FILE
    directory.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))  # what `ray get-auth-token --generate` writes: 256 random bits
    return path


def use_local_token(directory: Path | None = None) -> Path:
    """Point this process, and every process it starts, at lmops' token; returns the token file.

    ``RAY_AUTH_TOKEN`` is dropped because Ray would prefer it over the file. Ray caches its configuration
    and the token on first use, so where ray is already imported both caches are refreshed. A process
    already attached to a Ray keeps the token it attached with (changing it would lock it out), so this
    then changes nothing.
    """
    path = ensure_token(directory or state_dir())
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return path
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(path)
    os.environ.pop("RAY_AUTH_TOKEN", None)
    raylet: Any = sys.modules.get("ray._raylet")
    if raylet is not None:
        raylet.Config.initialize("")
        raylet.AuthenticationTokenLoader.instance().reset_cache()
    return path
