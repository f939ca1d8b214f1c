"""Cross-field rules, each written once as an expression that renders to CEL and evaluates in Python.

The API server enforces a rule as an ``x-kubernetes-validations`` entry of the generated CRD; local mode,
which has no API server, enforces the same rule through a pydantic validator. Both come from one ``Rule``,
so they cannot drift: ``to_cel`` gives the CEL text, ``holds`` evaluates the same tree on a model.

Only what the rules need is here: field paths (camelCase, as in CEL), ``has``, comparisons with literals
or other fields, ``matches``, ``!``, ``&&``, ``||``, the conditional ``? :`` and ``strictly_increasing``
for lists.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from pydantic.alias_generators import to_snake

Literal_ = str | int | float


def _literal(value: Literal_ | Sequence[Literal_]) -> str:
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)


@dataclass(frozen=True)
class Expr:
    """A CEL expression and its Python meaning over a model (``self`` in CEL)."""

    cel: str
    evaluate: Callable[[Any], Any]
    precedence: int = 3  # 0: ?:, 1: ||, 2: &&, 3: a comparison or a term

    def _operand(self, precedence: int) -> str:
        return f"({self.cel})" if self.precedence < precedence else self.cel

    def __invert__(self) -> Expr:
        return Expr(f"!{self._operand(3)}", lambda m: not self.evaluate(m))

    def _in_or(self) -> str:
        """An operand of ``||``: another ``||`` chains bare; ``&&`` and ``?:`` are parenthesised to read."""
        return self.cel if self.precedence in (1, 3) else f"({self.cel})"

    def __or__(self, other: Expr) -> Expr:
        return Expr(
            f"{self._in_or()} || {other._in_or()}",
            lambda m: bool(self.evaluate(m)) or bool(other.evaluate(m)),
            1,
        )

    def __and__(self, other: Expr) -> Expr:
        return Expr(
            f"{self._operand(2)} && {other._operand(2)}",
            lambda m: bool(self.evaluate(m)) and bool(other.evaluate(m)),
            2,
        )


@dataclass(frozen=True)
class Path:
    """A field path from ``self``, camelCase as on the wire (``model.generation.maxNewTokens``)."""

    dotted: str
    cast: str | None = None  # a CEL conversion such as double(...) where CEL will not compare int and double
    sized: bool = False  # the length of the value (CEL ``.size()``)

    @property
    def cel(self) -> str:
        text = f"self.{self.dotted}" + (".size()" if self.sized else "")
        return f"{self.cast}({text})" if self.cast else text

    def value(self, model: Any) -> Any:
        for part in self.dotted.split("."):
            model = None if model is None else getattr(model, to_snake(part))
        if model is None:
            return None
        if self.sized:
            return len(model)
        return float(model) if self.cast == "double" else model

    def as_double(self) -> Path:
        return Path(self.dotted, "double", self.sized)

    def size(self) -> Path:
        return Path(self.dotted, self.cast, True)

    def truthy(self) -> Expr:
        """A boolean field used as a condition."""
        return Expr(self.cel, lambda m: bool(self.value(m)))

    def _compare(
        self, op: str, other: Path | Literal_ | Sequence[Literal_], fn: Callable[[Any, Any], bool]
    ) -> Expr:
        if isinstance(other, Path):
            return Expr(f"{self.cel} {op} {other.cel}", lambda m: fn(self.value(m), other.value(m)))
        return Expr(f"{self.cel} {op} {_literal(other)}", lambda m: fn(self.value(m), other))

    def eq(self, other: Path | Literal_) -> Expr:
        return self._compare("==", other, lambda a, b: a == b)

    def ne(self, other: Path | Literal_) -> Expr:
        return self._compare("!=", other, lambda a, b: a != b)

    def le(self, other: Path | Literal_) -> Expr:
        return self._compare("<=", other, lambda a, b: a <= b)

    def gt(self, other: Path | Literal_) -> Expr:
        return self._compare(">", other, lambda a, b: a > b)

    def is_in(self, options: Sequence[Literal_]) -> Expr:
        return self._compare("in", list(options), lambda a, b: a in b)

    def matches(self, pattern: str) -> Expr:
        """A string field matching a regular expression (CEL ``matches``: RE2, unanchored; anchor it)."""
        return Expr(f"{self.cel}.matches({_literal(pattern)})", lambda m: re.search(pattern, self.value(m)))


def field(dotted: str) -> Path:
    return Path(dotted)


def has(path: Path) -> Expr:
    """Set (CEL ``has``); in Python, not None (a defaulted field is always set on both sides)."""
    return Expr(f"has({path.cel})", lambda m: path.value(m) is not None)


def if_then_else(condition: Expr, then: Expr, otherwise: Expr) -> Expr:
    return Expr(
        f"{condition._operand(1)} ? {then._operand(1)} : {otherwise._operand(1)}",
        lambda m: then.evaluate(m) if condition.evaluate(m) else otherwise.evaluate(m),
        0,
    )


def strictly_increasing(item_field: str) -> Expr:
    """A list (``self``) whose items' ``item_field`` values strictly increase: distinct and sorted."""
    attr = to_snake(item_field)
    return Expr(
        f"self.all(a, self.exists_one(b, b.{item_field} == a.{item_field})) && "
        f"self.map(s, s.{item_field}).isSorted()",
        lambda items: all(getattr(a, attr) < getattr(b, attr) for a, b in pairwise(items)),
        2,
    )


@dataclass(frozen=True)
class Rule:
    """One rule: ``expr`` must hold; ``field_path`` (relative, ``.x``) is where the API server reports it."""

    expr: Expr
    message: str
    field_path: str | None = None
    subject: str | None = None  # for ``only_if`` rules: the field that may be set only where allowed

    def holds(self, model: Any) -> bool:
        return bool(self.expr.evaluate(model))

    def to_cel(self) -> dict[str, str]:
        out = {"rule": self.expr.cel, "message": self.message}
        if self.field_path is not None:
            out["fieldPath"] = self.field_path
        return out


def only_if(subject: str, condition: Expr, message: str) -> Rule:
    """``subject`` may be set only where ``condition`` holds (reported on ``subject``)."""
    return Rule(~has(field(subject)) | condition, message, f".{subject}", subject)


def cel_schema(rules: Sequence[Rule]) -> dict[str, Any]:
    """The rules as ``json_schema_extra`` (the CRD generator keeps ``x-kubernetes-*`` keys)."""
    return {"x-kubernetes-validations": [rule.to_cel() for rule in rules]}


def check(rules: Sequence[Rule], model: Any) -> None:
    """Raise the first broken rule's message (what the pydantic validators call)."""
    for rule in rules:
        if not rule.holds(model):
            raise ValueError(rule.message)
