"""The API server's rules for ``metadata``, so local mode and ``lmops render`` refuse what a cluster refuses.

The CRD can constrain only ``spec`` and ``status`` (and the name's length, with a CEL rule); the rest of
``metadata`` is checked by the API server itself (apimachinery's ``ValidateObjectMetaAccessor``). Without
these checks ``lmops up`` would serve a ``metadata.name: BadName`` that ``kubectl apply`` refuses, and a file
that works locally would fail on the first cluster it meets. Each function returns the problems it finds,
worded as the API server words them, so a message reads the same wherever the object was refused.
Lengths count UTF-8 bytes, as Go's ``len`` does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + ")*"
_QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = "(" + _QUALIFIED_NAME + ")?"

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63
TOTAL_ANNOTATION_SIZE_MAX = 256 * 1024

SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com')"
)
LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name', or '123-abc')"
)
QUALIFIED_NAME_MESSAGE = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
    "character (e.g. 'MyName', or 'my.name', or '123-abc')"
)
LABEL_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345')"
)


def _size(value: str) -> int:
    return len(value.encode())


def _too_long(limit: int) -> str:
    return f"must be no more than {limit} bytes"


def dns1123_subdomain(value: str) -> list[str]:
    """What a resource name must be (``metadata.name`` of a custom resource)."""
    problems = [_too_long(DNS1123_SUBDOMAIN_MAX)] if _size(value) > DNS1123_SUBDOMAIN_MAX else []
    if not re.fullmatch(_DNS1123_SUBDOMAIN, value):
        problems.append(SUBDOMAIN_MESSAGE)
    return problems


def generate_name(prefix: str) -> list[str]:
    """``metadata.generateName``: a name once the server appends a random suffix (so it may end in '-')."""
    masked = prefix[:-1] + "a" if len(prefix) > 1 and prefix.endswith("-") else prefix
    return dns1123_subdomain(masked)


def dns1123_label(value: str) -> list[str]:
    """What a namespace name must be."""
    problems = [_too_long(DNS1123_LABEL_MAX)] if _size(value) > DNS1123_LABEL_MAX else []
    if not re.fullmatch(_DNS1123_LABEL, value):
        dots = re.fullmatch(_DNS1123_SUBDOMAIN, value) is not None
        problems.append("must not contain dots" if dots else LABEL_MESSAGE)
    return problems


def qualified_name(value: str) -> list[str]:
    """A label or annotation key, or a finalizer: ``[prefix/]name``, the prefix a DNS subdomain."""
    parts = value.split("/")
    if len(parts) > 2:
        return [
            f"a qualified name {QUALIFIED_NAME_MESSAGE} with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    problems: list[str] = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            problems.append("prefix part must be non-empty")
        else:
            problems += [f"prefix part {p}" for p in dns1123_subdomain(prefix)]
    if not name:
        problems.append("name part must be non-empty")
    elif _size(name) > QUALIFIED_NAME_MAX:
        problems.append(f"name part {_too_long(QUALIFIED_NAME_MAX)}")
    if not re.fullmatch(_QUALIFIED_NAME, name):
        problems.append(f"name part {QUALIFIED_NAME_MESSAGE}")
    return problems


def label_value(value: str) -> list[str]:
    problems = [_too_long(LABEL_VALUE_MAX)] if _size(value) > LABEL_VALUE_MAX else []
    if not re.fullmatch(_LABEL_VALUE, value):
        problems.append(LABEL_VALUE_MESSAGE)
    return problems


def _keyed(key: str, problems: Iterable[str]) -> list[str]:
    return [f"{key!r}: {problem}" for problem in problems]


def check_labels(values: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    for key, value in values.items():
        problems += _keyed(key, qualified_name(key))
        problems += _keyed(value, label_value(value))
    return problems


def check_annotations(values: Mapping[str, str]) -> list[str]:
    """Keys are qualified names (the server checks them lower-cased); all keys and values together are at
    most 256 KiB."""
    problems: list[str] = []
    total = 0
    for key, value in values.items():
        problems += _keyed(key, qualified_name(key.lower()))
        total += _size(key) + _size(value)
    if total > TOTAL_ANNOTATION_SIZE_MAX:
        problems.append(f"may not be more than {TOTAL_ANNOTATION_SIZE_MAX} bytes (keys and values together)")
    return problems


ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"


def check_finalizers(values: Iterable[str]) -> list[str]:
    names = list(values)
    problems: list[str] = []
    for name in names:
        problems += _keyed(name, qualified_name(name))
    if ORPHAN in names and FOREGROUND in names:
        problems.append(f"finalizer {ORPHAN} and {FOREGROUND} cannot be both set")
    return problems


def check_owner_references(values: Iterable[Mapping[str, Any]]) -> list[str]:
    """Each names its owner completely (apiVersion, kind, name, uid); at most one is the controller."""
    problems: list[str] = []
    controllers = 0
    for index, ref in enumerate(values):
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                problems.append(f"[{index}].{key}: must not be empty")
        controllers += bool(ref.get("controller"))
    if controllers > 1:
        problems.append("Only one reference can have Controller set to true")
    return problems
