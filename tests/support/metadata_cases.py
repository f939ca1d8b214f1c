"""``metadata`` the API server refuses, and metadata it accepts, shared by the unit tests (local mode and
``lmops render`` must agree) and the control-plane tests (tests/controlplane/test_api_validation.py: the
real API server, which defines the rules).

Each case is merged into ``base_object``'s metadata. ``path`` is the field both name; ``message`` a substring
of both messages. A namespace is not checked on the object (the server answers 404 for a namespace that does
not exist); its rule is the Namespace's own name rule, so the control-plane test creates a Namespace of that
name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.support.languagemodel_cases import base_object, merge


@dataclass(frozen=True)
class MetadataCase:
    id: str
    metadata: dict[str, Any]
    path: str = ""
    message: str = ""

    def object(self) -> dict[str, Any]:
        return merge(base_object(f"meta-{self.id}"[:40]), {"metadata": self.metadata})


SUBDOMAIN = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"
DNS_LABEL = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"
NAME_PART = "name part must consist of alphanumeric characters, '-', '_' or '.'"
LABEL_VALUE = "a valid label must be an empty string or consist of alphanumeric characters"

INVALID_METADATA: tuple[MetadataCase, ...] = (
    MetadataCase("name-upper", {"name": "BadName"}, "metadata.name", SUBDOMAIN),
    MetadataCase("name-underscore", {"name": "bad_name"}, "metadata.name", SUBDOMAIN),
    MetadataCase("name-trailing-dash", {"name": "bad-"}, "metadata.name", SUBDOMAIN),
    MetadataCase("generate-name-upper", {"generateName": "Bad-"}, "metadata.generateName", SUBDOMAIN),
    MetadataCase("namespace-upper", {"namespace": "Prod"}, "metadata.namespace", DNS_LABEL),
    MetadataCase("namespace-dots", {"namespace": "team.prod"}, "metadata.namespace", "must not contain dots"),
    MetadataCase(
        "namespace-long", {"namespace": "n" * 64}, "metadata.namespace", "must be no more than 63 bytes"
    ),
    MetadataCase("label-key-space", {"labels": {"bad key": "x"}}, "metadata.labels", NAME_PART),
    MetadataCase(
        "label-key-prefix-upper",
        {"labels": {"Example.com/k": "v"}},
        "metadata.labels",
        f"prefix part {SUBDOMAIN}",
    ),
    MetadataCase(
        "label-key-empty-prefix", {"labels": {"/k": "v"}}, "metadata.labels", "prefix part must be non-empty"
    ),
    MetadataCase(
        "label-key-two-slashes",
        {"labels": {"a/b/c": "v"}},
        "metadata.labels",
        "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
    ),
    MetadataCase(
        "label-key-long",
        {"labels": {"k" * 64: "v"}},
        "metadata.labels",
        "name part must be no more than 63 bytes",
    ),
    MetadataCase("label-value-bang", {"labels": {"k": "bad value!"}}, "metadata.labels", LABEL_VALUE),
    MetadataCase(
        "label-value-long", {"labels": {"k": "v" * 64}}, "metadata.labels", "must be no more than 63 bytes"
    ),
    MetadataCase(
        "label-value-multibyte",
        {"labels": {"k": "é" * 32}},
        "metadata.labels",
        "must be no more than 63 bytes",
    ),
    MetadataCase(
        "annotation-key-space", {"annotations": {"bad key": "x"}}, "metadata.annotations", NAME_PART
    ),
    MetadataCase(
        "annotations-too-big",
        {"annotations": {"k": "x" * (256 * 1024)}},
        "metadata.annotations",
        "may not be more than 262144 bytes",
    ),
    MetadataCase("finalizer-space", {"finalizers": ["bad finalizer"]}, "metadata.finalizers", NAME_PART),
    MetadataCase(
        "finalizers-orphan-and-foreground",
        {"finalizers": ["orphan", "foregroundDeletion"]},
        "metadata.finalizers",
        "finalizer orphan and foregroundDeletion cannot be both set",
    ),
    MetadataCase(
        "owner-reference-without-uid",
        {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x"}]},
        "metadata.ownerReferences",
        "must not be empty",
    ),
    MetadataCase(
        "owner-references-two-controllers",
        {
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": n, "uid": n, "controller": True}
                for n in "xy"
            ]
        },
        "metadata.ownerReferences",
        "Only one reference can have Controller set to true",
    ),
)

VALID_METADATA: tuple[MetadataCase, ...] = (
    MetadataCase("name-digits-dashes", {"name": "m-0-x"}),
    MetadataCase("generate-name-dash", {"generateName": "m-"}),
    MetadataCase("namespace-63", {"namespace": "n" * 63}),
    MetadataCase("label-mixed-case-name", {"labels": {"example.com/MyName": "My_Value.1"}}),
    MetadataCase("label-empty-value", {"labels": {"app.kubernetes.io/name": ""}}),
    MetadataCase("label-value-63", {"labels": {"k": "v" * 63}}),
    # The server checks annotation keys lower-cased: an upper-case prefix is fine there, not in a label.
    MetadataCase("annotation-upper-prefix", {"annotations": {"Example.COM/Some_Key": "any text at all"}}),
    MetadataCase("finalizer-qualified", {"finalizers": ["example.com/cleanup"]}),
    MetadataCase(
        "owner-reference-complete",
        {
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u", "controller": True}
            ]
        },
    ),
)
