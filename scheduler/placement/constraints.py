"""Marathon placement constraints: parsing and the per-round counters they need.

A constraint is `[field, OPERATOR, value?]` (Marathon) or
`{"attribute", "operator", "value"}` (Metronome). `field` is `hostname`, `@hostname`,
`@region`, `@zone` or an agent attribute. Agents without the attribute only match
UNLIKE, as in Marathon (docs/constraints.md).

Counting constraints (UNIQUE, CLUSTER without a value, GROUP_BY, MAX_PER) look at
where the app's tasks already run; `FieldCounts` keeps those counts per field value
and is updated by +1 as the pipeline places, instead of recounting every time.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from dataclasses import field as dataclass_field
from enum import Enum
from functools import lru_cache
from typing import Any, Iterable, Mapping

from framework.errors import DockyardError


class Operator(str, Enum):
    UNIQUE = "UNIQUE"
    CLUSTER = "CLUSTER"
    GROUP_BY = "GROUP_BY"
    LIKE = "LIKE"
    UNLIKE = "UNLIKE"
    MAX_PER = "MAX_PER"
    IS = "IS"


# Operators whose answer for an agent only depends on the agent itself: an agent they
# reject now rejects for ever (the pipeline may skip it for the rest of a round, and a
# rejection is not resolvable by waiting).
STATIC_OPERATORS = frozenset({Operator.LIKE, Operator.UNLIKE, Operator.IS})
# Metronome and Chronos spell IS as EQ / EQUALS.
_ALIASES = {"EQ": "IS", "EQUALS": "IS"}


class ConstraintError(DockyardError, ValueError):
    """A constraint that cannot be understood; `path` says where in the spec."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True)
class Constraint:
    field: str
    operator: Operator
    value: str | None = None
    # Set in __post_init__: static (answered by the agent alone), counting, text.
    static: bool = dataclass_field(default=False, init=False, compare=False, repr=False)
    counting: bool = dataclass_field(default=True, init=False, compare=False, repr=False)
    text: str = dataclass_field(default="", init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Precomputed: the pipeline asks these for every agent it looks at.
        static = self.operator in STATIC_OPERATORS or (
            self.operator is Operator.CLUSTER and bool(self.value))
        object.__setattr__(self, "static", static)
        object.__setattr__(self, "counting", not static)
        text = f"{self.field}:{self.operator.value}"
        object.__setattr__(self, "text", f"{text}:{self.value}" if self.value is not None else text)
        object.__setattr__(self, "_hash", hash((self.field, self.operator, self.value)))

    def __hash__(self) -> int:  # cached: asks are grouped by their constraints every round
        return self._hash  # type: ignore[attr-defined]

    def to_marathon(self) -> list[str]:
        """The `[field, OP, value?]` triple Marathon clients expect back."""
        out = [self.field, self.operator.value]
        if self.value is not None:
            out.append(self.value)
        return out

    def describe(self) -> str:
        return self.text  # type: ignore[attr-defined]


def parse(raw: Any, path: str = "constraints") -> list[Constraint]:
    """Parse Marathon (list of lists) or Metronome (list of dicts) constraints.

    Raises ConstraintError naming the offending element, so the API can answer 422.
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConstraintError("must be a list", path)
    return [parse_one(item, f"{path}({index})") for index, item in enumerate(raw)]


def parse_one(item: Any, path: str = "constraint") -> Constraint:
    if isinstance(item, Constraint):
        return item
    if isinstance(item, Mapping):
        fieldname, op, value = item.get("attribute") or item.get("field"), item.get("operator"), item.get("value")
    elif isinstance(item, (list, tuple)) and 2 <= len(item) <= 3:
        fieldname, op = item[0], item[1]
        value = item[2] if len(item) == 3 else None
    else:
        raise ConstraintError("must be [field, operator] or [field, operator, value]", path)
    if not isinstance(fieldname, str) or not fieldname:
        raise ConstraintError("field must be a non-empty string", path)
    if not isinstance(op, str):
        raise ConstraintError("operator must be a string", path)
    name = _ALIASES.get(op.upper(), op.upper())
    try:
        operator = Operator(name)
    except ValueError:
        raise ConstraintError(
            f"unknown operator {op!r}; expected one of {', '.join(o.value for o in Operator)}", path
        ) from None
    if value is not None and not isinstance(value, str):
        value = str(value)
    _validate(operator, value, path)
    return Constraint(fieldname, operator, value)


def _validate(operator: Operator, value: str | None, path: str) -> None:
    if operator is Operator.UNIQUE and value not in (None, ""):
        raise ConstraintError("UNIQUE takes no value", path)
    if operator in (Operator.LIKE, Operator.UNLIKE, Operator.IS) and value is None:
        raise ConstraintError(f"{operator.value} needs a value", path)
    if operator in (Operator.LIKE, Operator.UNLIKE):
        try:
            _regex(value or "")
        except re.error as error:
            raise ConstraintError(f"invalid regular expression: {error}", path) from None
    if operator is Operator.MAX_PER or (operator is Operator.GROUP_BY and value not in (None, "")):
        try:
            if int(value or "") < 1:
                raise ValueError
        except ValueError:
            raise ConstraintError(f"{operator.value} needs a positive integer", path) from None


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def field_value(fieldname: str, hostname: str, attributes: Mapping[str, str]) -> str | None:
    """The value an agent has for a constraint field, None when it lacks it."""
    if fieldname in ("hostname", "@hostname"):
        return hostname
    if fieldname.startswith("@"):
        return attributes.get(fieldname[1:])
    return attributes.get(fieldname)


@dataclass
class FieldCounts:
    """How many of one app's tasks run per value of one field (this round's view)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, value: str | None, delta: int = 1) -> None:
        if value is None:
            return
        self.counts[value] = self.counts.get(value, 0) + delta
        if self.counts[value] <= 0:
            del self.counts[value]


def matches(constraint: Constraint, value: str | None, counts: FieldCounts | None,
            known_values: int = 0) -> bool:
    """Whether an agent whose field value is `value` satisfies `constraint`.

    `counts` are the app's tasks per value of the constraint's field (needed by the
    counting operators); `known_values` is how many distinct values the cluster has
    for the field (GROUP_BY waits for that many groups before balancing).
    """
    op = constraint.operator
    if value is None:
        return op is Operator.UNLIKE
    if op is Operator.IS:
        return value == constraint.value
    if op is Operator.LIKE:
        return _regex(constraint.value or "").fullmatch(value) is not None
    if op is Operator.UNLIKE:
        return _regex(constraint.value or "").fullmatch(value) is None
    seen = counts.counts if counts is not None else {}
    if op is Operator.UNIQUE:
        return seen.get(value, 0) == 0
    if op is Operator.MAX_PER:
        return seen.get(value, 0) < int(constraint.value or "0")
    if op is Operator.CLUSTER:
        if constraint.value:
            return value == constraint.value
        # Empty value: every task goes where the first one went.
        return not seen or value in seen
    if op is Operator.GROUP_BY:
        if value not in seen:
            return True
        minimum = max(int(constraint.value or "0") if constraint.value else 0, known_values)
        if len(seen) < minimum:
            return False  # an unused value still exists: fill it first
        return seen[value] == min(seen.values())
    raise AssertionError(f"unhandled operator {op}")


def describe_all(constraints: Iterable[Constraint]) -> str:
    return ", ".join(c.describe() for c in constraints)
