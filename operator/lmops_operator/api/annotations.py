"""Control annotations: how a person (``kubectl annotate``) or ``lmops rollout`` steers a rollout.

Each is a one-shot request: the operator reads the annotations present at a reconcile, acts on them, writes
the status, then removes them (``consumed_patch``). What must outlast that one reconcile is kept in the
status: a promote requested before the canary is ready (``rollout.promoteRequested``), an abort (rollout
state Aborted until the spec changes). The value is free text (who asked, or a timestamp); only presence
counts, so ``kubectl annotate lm NAME lmops.io/promote=now`` is enough.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lmops_operator.api.base import GROUP

PROMOTE = f"{GROUP}/promote"  # skip the remaining canary steps (also forces an aborted rollout through)
ABORT = f"{GROUP}/abort"  # send all traffic back to stable; stays aborted until the spec changes
RESTART = f"{GROUP}/restart"  # run an aborted rollout of the same revision again from its first step
CONTROL_ANNOTATIONS = (PROMOTE, ABORT, RESTART)


@dataclass(frozen=True)
class Controls:
    """One-shot requests from annotations; every reconcile consumes them."""

    promote: bool = False
    abort: bool = False
    restart: bool = False  # start an aborted rollout of the same revision again from its first step


def read_controls(annotations: Mapping[str, str] | None) -> Controls:
    """The controls requested by the annotations present (abort wins over promote when both are set)."""
    present = set(annotations or {}) & set(CONTROL_ANNOTATIONS)
    abort = ABORT in present
    return Controls(promote=PROMOTE in present and not abort, abort=abort, restart=RESTART in present)


def present_controls(annotations: Mapping[str, str] | None) -> list[str]:
    return [key for key in CONTROL_ANNOTATIONS if key in (annotations or {})]


def consumed_patch(annotations: Mapping[str, str] | None) -> dict[str, Any] | None:
    """Merge patch removing the control annotations that were acted on; None when there were none."""
    keys = present_controls(annotations)
    if not keys:
        return None
    return {"metadata": {"annotations": dict.fromkeys(keys)}}


def request_patch(key: str, value: str) -> dict[str, Any]:
    """Merge patch that requests one control (what ``lmops rollout promote|abort|restart`` sends)."""
    if key not in CONTROL_ANNOTATIONS:
        raise ValueError(f"unknown control annotation {key}")
    return {"metadata": {"annotations": {key: value}}}
