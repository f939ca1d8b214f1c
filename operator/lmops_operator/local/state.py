"""The local-mode state file: the applied manifest, the last status, the revision history, the deployment.

It plays the part of the API server (the LanguageModel object, its ControllerRevisions) for local mode.
Writes are atomic (write, fsync, rename), so a Ctrl-C or a crash never leaves half a file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from lmops_runtime.local_env import state_dir

STATE_FILE = "local-model.json"


class LocalRevision(BaseModel):
    """What a ControllerRevision holds in the cluster."""

    number: int
    data: dict[str, Any]
    created_at: datetime


class LocalState(BaseModel):
    manifest: dict[str, Any]
    status: dict[str, Any] = Field(default_factory=dict)
    revisions: dict[str, LocalRevision] = Field(default_factory=dict)
    http_port: int
    host: str = "127.0.0.1"
    config_maps: dict[str, dict[str, str]] = Field(default_factory=dict)
    deployed_apps: list[str] = Field(default_factory=list)
    document: dict[str, Any] | None = None
    document_digest: str | None = None

    @property
    def name(self) -> str:
        return str(self.manifest.get("metadata", {}).get("name", "?"))


def state_path() -> Path:
    return state_dir() / STATE_FILE


def load(path: Path | None = None) -> LocalState | None:
    path = path or state_path()
    try:
        return LocalState.model_validate_json(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ValueError(
            f"{path} is not a valid lmops local state file ({exc}); remove it to start over"
        ) from None


def save(state: LocalState, path: Path | None = None) -> None:
    path = path or state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".local-model.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(state.model_dump(mode="json"), indent=1))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove(path: Path | None = None) -> None:
    (path or state_path()).unlink(missing_ok=True)
