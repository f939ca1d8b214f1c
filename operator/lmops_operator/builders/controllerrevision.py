"""``ControllerRevision <name>-<revision>``: one per model revision, what rollback restores from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lmops_operator.api import LanguageModel
from lmops_operator.builders.meta import child_metadata
from lmops_operator.names import REVISION_LABEL, controller_revision_name


def build_controller_revision(
    lm: LanguageModel, revision: str, number: int, data: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": child_metadata(
            lm, controller_revision_name(lm.metadata.name, revision), {REVISION_LABEL: revision}
        ),
        "data": dict(data),
        "revision": number,
    }
