"""One control-plane process (etcd, kube-apiserver, kube-controller-manager): started, watched, stopped."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path


class ControlPlaneError(RuntimeError):
    """A component failed to start or a command against the control plane failed."""


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child before exec: the kernel kills it if the test process dies without tearing down."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Component:
    """One control-plane process with its log file, so a failed start can show why."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 10.0) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace_s)

    def wait_until(self, check: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Poll ``check`` until true; fail fast with the log tail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        last_error = ""
        while time.monotonic() < deadline:
            if not self.running():
                code = self.process.returncode if self.process else None
                raise ControlPlaneError(
                    f"{self.name} exited (code {code}) before {what}. Log tail ({self.log_path}):\n"
                    + self.log_tail()
                )
            try:
                if check():
                    return
            except (OSError, urllib.error.URLError, ControlPlaneError) as exc:
                last_error = str(exc)
            time.sleep(0.2)
        raise ControlPlaneError(
            f"{self.name}: {what} not reached within {timeout_s:.0f}s (last error: {last_error or 'none'}). "
            f"Log tail ({self.log_path}):\n{self.log_tail()}"
        )
