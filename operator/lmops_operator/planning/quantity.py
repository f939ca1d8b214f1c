"""Kubernetes resource quantities as numbers, for the Ray resources that mirror a pod's limits."""

from __future__ import annotations

import re
from decimal import Decimal

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
# The exponent may be a decimal, as in the Kubernetes OpenAPI pattern the CRD uses for quantities.
_QUANTITY = re.compile(
    r"^(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE][+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))?$"
)
# Kubernetes keeps quantities within int64; anything larger cannot be a real pod's request.
_LIMIT = Decimal(2**63 - 1)


def parse_quantity(value: str) -> Decimal:
    """``"500m"`` -> 0.5, ``"8Gi"`` -> 8589934592, ``"1e3"`` -> 1000; ValueError when malformed."""
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise ValueError(f"not a resource quantity: {value!r}")
    number = Decimal(match["number"])
    suffix = match["suffix"] or ""
    try:
        if suffix in _BINARY:
            result = number * _BINARY[suffix]
        elif suffix in _DECIMAL:
            result = number * _DECIMAL[suffix]
        else:
            result = number * (Decimal(10) ** Decimal(suffix[1:]))
    except ArithmeticError:  # decimal Overflow and friends: far beyond any real quantity
        raise ValueError(f"resource quantity out of range: {value!r}") from None
    if result > _LIMIT:
        raise ValueError(f"resource quantity out of range: {value!r}")
    return result


def cpu_count(value: str) -> float:
    return float(parse_quantity(value))


def byte_count(value: str) -> int:
    return int(parse_quantity(value))
