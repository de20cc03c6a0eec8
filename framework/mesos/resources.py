"""Mesos resource arithmetic: scalars, ranges (ports), sets, keyed by role.

The master, the agent and the scheduler's placement all add, subtract and
compare resources; doing it on raw `Resource` JSON everywhere is slow and easy
to get wrong, so this module normalises once into `Resources`, an immutable bag
keyed by (name, role). Scalars use Mesos's fixed point (three decimals) so that
`0.1 + 0.2 - 0.3` is exactly zero, as in the real master.
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable, Iterator, Mapping

Range = tuple[int, int]
Value = float | tuple[Range, ...] | frozenset[str]

UNRESERVED = "*"
# The names the legacy flat shape always carries, even when zero.
FLAT_SCALARS = ("cpus", "disk", "gpus", "mem")
_EPSILON = 0.0005


def _fixed(value: float) -> float:
    """Round to Mesos's fixed-point precision (3 decimals)."""
    return round(value * 1000.0) / 1000.0


def _normalise_ranges(ranges: Iterable[Range]) -> tuple[Range, ...]:
    """Sort and coalesce overlapping or adjacent inclusive ranges."""
    merged: list[list[int]] = []
    for begin, end in sorted((int(b), int(e)) for b, e in ranges):
        if end < begin:
            continue
        if merged and begin <= merged[-1][1] + 1:
            if end > merged[-1][1]:
                merged[-1][1] = end
        else:
            merged.append([begin, end])
    return tuple((b, e) for b, e in merged)


def _subtract_ranges(have: tuple[Range, ...], take: tuple[Range, ...]) -> tuple[Range, ...]:
    out: list[Range] = []
    for begin, end in have:
        pieces = [(begin, end)]
        for tb, te in take:
            next_pieces: list[Range] = []
            for pb, pe in pieces:
                if te < pb or tb > pe:
                    next_pieces.append((pb, pe))
                    continue
                if tb > pb:
                    next_pieces.append((pb, tb - 1))
                if te < pe:
                    next_pieces.append((te + 1, pe))
            pieces = next_pieces
        out.extend(pieces)
    return _normalise_ranges(out)


def _ranges_contain(have: tuple[Range, ...], want: tuple[Range, ...]) -> bool:
    for wb, we in want:
        if not any(hb <= wb and we <= he for hb, he in have):
            return False
    return True


def _format_ranges(ranges: tuple[Range, ...]) -> str:
    return "[" + ", ".join(f"{b}-{e}" for b, e in ranges) + "]"


def _resource_role(resource: Mapping[str, Any]) -> str:
    """The reservation role of a Resource in either the legacy or refined form."""
    reservations = resource.get("reservations")
    if reservations:
        return str(reservations[-1].get("role") or UNRESERVED)
    return str(resource.get("role") or UNRESERVED)


class Resources:
    """An immutable bag of Mesos resources with `+`, `-` and `contains`.

    Build from a list of Resource dicts (`Resources(offer["resources"])`) or
    from agent flag text (`Resources.parse("cpus:4;ports:[31000-32000]")`).
    """

    __slots__ = ("_items", "_hash", "_scalars")

    def __init__(self, resources: Iterable[Mapping[str, Any]] | None = None) -> None:
        items: dict[tuple[str, str], Value] = {}
        for resource in resources or ():
            key = (str(resource["name"]), _resource_role(resource))
            value = _value_of(resource)
            items[key] = _add_value(items[key], value) if key in items else value
        self._items = {k: v for k, v in items.items() if not _is_empty(v)}
        self._hash: int | None = None
        self._scalars: dict[str, float] | None = None

    @classmethod
    def _from_items(cls, items: dict[tuple[str, str], Value]) -> "Resources":
        obj = cls.__new__(cls)
        obj._items = items
        obj._hash = None
        obj._scalars = None
        return obj

    @classmethod
    def parse(cls, text: str, role: str = UNRESERVED) -> "Resources":
        """Parse Mesos's `--resources` syntax: `cpus:4;mem(role):1024;ports:[1-2];s:{a,b}`.

        A JSON array of Resource objects is accepted too, as the real agent does.
        """
        text = text.strip()
        if not text:
            return cls()
        if text.startswith("["):
            try:
                return cls(json.loads(text))
            except json.JSONDecodeError:
                pass  # "[a-b]" alone is not valid input anyway; fall through for the error
        items: dict[tuple[str, str], Value] = {}
        for part in text.split(";"):
            part = part.strip()
            if not part:
                continue
            name, sep, raw = part.partition(":")
            if not sep:
                raise ValueError(f"bad resource {part!r}: expected name:value")
            name = name.strip()
            item_role = role
            match = re.fullmatch(r"([^()]+)\(([^()]*)\)", name)
            if match:
                name, item_role = match.group(1).strip(), match.group(2).strip() or role
            value = _parse_value(raw.strip(), part)
            key = (name, item_role)
            items[key] = _add_value(items[key], value) if key in items else value
        return cls._from_items({k: v for k, v in items.items() if not _is_empty(v)})

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any], role: str = UNRESERVED) -> "Resources":
        """Read the legacy `/state` shape that `flat()` writes back into resources:
        `{"cpus": 1.0, "ports": "[31000-31009]", "s": "{a, b}"}` (numbers or text)."""
        items: dict[tuple[str, str], Value] = {}
        for name, raw in flat.items():
            value = _parse_value(str(raw).strip(), f"{name}:{raw}")
            if not _is_empty(value):
                items[(str(name), role)] = value
        return cls._from_items(items)

    # -- queries -----------------------------------------------------------------
    @property
    def empty(self) -> bool:
        return not self._items

    def __bool__(self) -> bool:
        return bool(self._items)

    def names(self) -> set[str]:
        return {name for name, _ in self._items}

    def roles(self) -> set[str]:
        return {role for _, role in self._items}

    def scalar(self, name: str, role: str | None = None) -> float:
        """Sum of scalar `name` over all roles (or one role)."""
        total = 0.0
        for (n, r), value in self._items.items():
            if n == name and (role is None or r == role) and isinstance(value, float):
                total += value
        return _fixed(total)

    def ranges(self, name: str, role: str | None = None) -> list[Range]:
        collected: list[Range] = []
        for (n, r), value in self._items.items():
            if n == name and (role is None or r == role) and isinstance(value, tuple):
                collected.extend(value)
        return list(_normalise_ranges(collected))

    def set_items(self, name: str, role: str | None = None) -> set[str]:
        collected: set[str] = set()
        for (n, r), value in self._items.items():
            if n == name and (role is None or r == role) and isinstance(value, frozenset):
                collected |= value
        return collected

    def by_role(self) -> dict[str, "Resources"]:
        grouped: dict[str, dict[tuple[str, str], Value]] = {}
        for key, value in self._items.items():
            grouped.setdefault(key[1], {})[key] = value
        return {role: Resources._from_items(items) for role, items in grouped.items()}

    def for_role(self, role: str) -> "Resources":
        """Only the resources reserved to `role` (use `"*"` for unreserved)."""
        return Resources._from_items({k: v for k, v in self._items.items() if k[1] == role})

    def allocatable_to(self, role: str) -> "Resources":
        """What a framework in `role` may be offered: unreserved plus `role`'s reservations."""
        return Resources._from_items(
            {k: v for k, v in self._items.items() if k[1] == UNRESERVED or k[1] == role})

    def unreserved(self) -> "Resources":
        """The same resources with every reservation dropped (all moved to `*`)."""
        out: dict[tuple[str, str], Value] = {}
        for (name, _), value in self._items.items():
            key = (name, UNRESERVED)
            out[key] = _add_value(out[key], value) if key in out else value
        return Resources._from_items(out)

    # -- arithmetic --------------------------------------------------------------
    def __add__(self, other: "Resources") -> "Resources":
        if not other._items:
            return self
        if not self._items:
            return other
        items = dict(self._items)
        for key, value in other._items.items():
            items[key] = _add_value(items[key], value) if key in items else value
        return Resources._from_items(items)

    def __sub__(self, other: "Resources") -> "Resources":
        """Take away what `other` holds; what `self` lacks is ignored (never negative)."""
        if not other._items or not self._items:
            return self
        if other is self or other._items == self._items:
            return Resources._from_items({})
        items = dict(self._items)
        for key, value in other._items.items():
            mine = items.get(key)
            if mine is None:
                continue
            left = _sub_value(mine, value)
            if _is_empty(left):
                del items[key]
            else:
                items[key] = left
        return Resources._from_items(items)

    def contains(self, other: "Resources") -> bool:
        """True when every resource of `other` is available here, per role."""
        for key, want in other._items.items():
            have = self._items.get(key)
            if have is None:
                return False
            if isinstance(want, float):
                if not isinstance(have, float) or have + _EPSILON < want:
                    return False
            elif isinstance(want, tuple):
                if not isinstance(have, tuple) or not _ranges_contain(have, want):
                    return False
            elif not isinstance(have, frozenset) or not want <= have:
                return False
        return True

    def __contains__(self, other: object) -> bool:
        return isinstance(other, Resources) and self.contains(other)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Resources):
            return NotImplemented
        return self._items == other._items

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._items.items()))
        return self._hash

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.to_json())

    def __repr__(self) -> str:
        return f"Resources({self})"

    def __str__(self) -> str:
        parts = []
        for (name, role), value in sorted(self._items.items()):
            label = name if role == UNRESERVED else f"{name}({role})"
            parts.append(f"{label}:{_format_value(value)}")
        return ";".join(parts)

    # -- rendering ---------------------------------------------------------------
    def to_json(self, allocation_role: str | None = None, *, refined: bool = False) -> list[dict[str, Any]]:
        """Resource dicts, by default in the pre-RESERVATION_REFINEMENT form: `role` always set
        (`*` when unreserved). `refined` gives the post-refinement form a framework with the
        RESERVATION_REFINEMENT capability is offered (src/common/resources_utils.cpp
        `upgradeResource`): no `role`, a `reservations` stack for a reserved resource. A
        dockyard reservation is an agent's (`--resources "cpus(role):2"`), so STATIC, which the
        old form carries without a `reservation` field (`downgradeResource`).

        `allocation_role` adds `allocation_info` (offers to MULTI_ROLE frameworks).
        """
        out: list[dict[str, Any]] = []
        for (name, role), value in sorted(self._items.items()):
            resource: dict[str, Any] = {"name": name}
            if isinstance(value, float):
                resource["type"] = "SCALAR"
                resource["scalar"] = {"value": value}
            elif isinstance(value, tuple):
                resource["type"] = "RANGES"
                resource["ranges"] = {"range": [{"begin": b, "end": e} for b, e in value]}
            else:
                resource["type"] = "SET"
                resource["set"] = {"item": sorted(value)}
            if not refined:
                resource["role"] = role
            elif role != UNRESERVED:
                resource["reservations"] = [{"type": "STATIC", "role": role}]
            if allocation_role is not None:
                resource["allocation_info"] = {"role": allocation_role}
            out.append(resource)
        return out

    def scalar_part(self) -> "Resources":
        """Only the scalar resources (what quota and headroom count)."""
        return Resources._from_items({k: v for k, v in self._items.items() if isinstance(v, float)})

    def named(self, names: Iterable[str]) -> "Resources":
        """Only the resources with one of these names."""
        wanted = set(names)
        return Resources._from_items({k: v for k, v in self._items.items() if k[0] in wanted})

    def capped(self, caps: Mapping[str, float]) -> "Resources":
        """The same resources with each scalar named in `caps` cut down to at most that amount
        (over all roles, taken in role order): Mesos's `shrinkResources` for quota."""
        left = dict(caps)
        items: dict[tuple[str, str], Value] = {}
        for key, value in sorted(self._items.items()):
            name = key[0]
            if isinstance(value, float) and name in left:
                value = _fixed(min(value, max(0.0, left[name])))
                left[name] -= value
                if _is_empty(value):
                    continue
            items[key] = value
        return Resources._from_items(items)

    def flat(self) -> dict[str, Any]:
        """The legacy `/state` shape: `{"cpus": 1.0, "mem": 128.0, "ports": "[1-2]"}`."""
        out: dict[str, Any] = {name: 0.0 for name in FLAT_SCALARS}
        ranges: dict[str, list[Range]] = {}
        sets: dict[str, set[str]] = {}
        for (name, _), value in self._items.items():
            if isinstance(value, float):
                out[name] = _fixed(out.get(name, 0.0) + value)
            elif isinstance(value, tuple):
                ranges.setdefault(name, []).extend(value)
            else:
                sets.setdefault(name, set()).update(value)
        for name, collected in ranges.items():
            out[name] = _format_ranges(_normalise_ranges(collected))
        for name, items in sets.items():
            out[name] = "{" + ", ".join(sorted(items)) + "}"
        return out

    def scalars(self) -> dict[str, float]:
        """Scalar totals by name over all roles (what DRF shares are computed on).

        Cached: the allocator asks for it on every allocation. Do not mutate.
        """
        if self._scalars is None:
            out: dict[str, float] = {}
            for (name, _), value in self._items.items():
                if isinstance(value, float):
                    out[name] = out.get(name, 0.0) + value
            self._scalars = {k: _fixed(v) for k, v in out.items()}
        return self._scalars


def _parse_value(raw: str, part: str) -> Value:
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise ValueError(f"bad ranges in {part!r}")
        ranges: list[Range] = []
        for piece in raw[1:-1].split(","):
            piece = piece.strip()
            if not piece:
                continue
            begin, dash, end = piece.partition("-")
            try:
                ranges.append((int(begin), int(end if dash else begin)))
            except ValueError as error:
                raise ValueError(f"bad range {piece!r} in {part!r}") from error
        return _normalise_ranges(ranges)
    if raw.startswith("{"):
        if not raw.endswith("}"):
            raise ValueError(f"bad set in {part!r}")
        return frozenset(item.strip() for item in raw[1:-1].split(",") if item.strip())
    try:
        value = float(raw)
    except ValueError as error:
        raise ValueError(f"bad scalar in {part!r}") from error
    if value < 0:
        raise ValueError(f"negative scalar in {part!r}")
    return _fixed(value)


def _value_of(resource: Mapping[str, Any]) -> Value:
    kind = resource.get("type", "SCALAR")
    if kind == "SCALAR":
        scalar = resource.get("scalar") or {}
        return _fixed(float(scalar.get("value", 0.0)))
    if kind == "RANGES":
        ranges = (resource.get("ranges") or {}).get("range") or []
        return _normalise_ranges((int(r["begin"]), int(r["end"])) for r in ranges)
    if kind == "SET":
        return frozenset((resource.get("set") or {}).get("item") or [])
    raise ValueError(f"unsupported resource type {kind!r} for {resource.get('name')!r}")


def _is_empty(value: Value) -> bool:
    if isinstance(value, float):
        return value < _EPSILON
    return not value


def _add_value(a: Value, b: Value) -> Value:
    if isinstance(a, float) and isinstance(b, float):
        return _fixed(a + b)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return _normalise_ranges(a + b)
    if isinstance(a, frozenset) and isinstance(b, frozenset):
        return a | b
    raise ValueError("cannot add resources of different types under one name")


def _sub_value(a: Value, b: Value) -> Value:
    if isinstance(a, float) and isinstance(b, float):
        return max(0.0, _fixed(a - b))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return _subtract_ranges(a, b)
    if isinstance(a, frozenset) and isinstance(b, frozenset):
        return a - b
    raise ValueError("cannot subtract resources of different types under one name")


def _format_value(value: Value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return _format_ranges(value)
    return "{" + ",".join(sorted(value)) + "}"


def parse_attributes(text: str) -> list[dict[str, Any]]:
    """Parse agent `--attributes` (`rack:a;zone:z1;level:3;ids:[1-5]`) to Attribute dicts.

    As the real agent: a number is SCALAR, `[a-b]` is RANGES, `{a,b}` is SET,
    anything else TEXT.
    """
    attributes: list[dict[str, Any]] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, raw = part.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"bad attribute {part!r}: expected name:value")
        name, raw = name.strip(), raw.strip()
        attribute: dict[str, Any] = {"name": name}
        if raw.startswith("[") and raw.endswith("]"):
            ranges = _parse_value(raw, part)
            assert isinstance(ranges, tuple)
            attribute["type"] = "RANGES"
            attribute["ranges"] = {"range": [{"begin": b, "end": e} for b, e in ranges]}
        elif raw.startswith("{") and raw.endswith("}"):
            attribute["type"] = "SET"
            attribute["set"] = {"item": [i.strip() for i in raw[1:-1].split(",") if i.strip()]}
        else:
            try:
                number = float(raw)
            except ValueError:
                attribute["type"] = "TEXT"
                attribute["text"] = {"value": raw}
            else:
                attribute["type"] = "SCALAR"
                attribute["scalar"] = {"value": number}
        attributes.append(attribute)
    return attributes


def attribute_value(attribute: Mapping[str, Any]) -> str:
    """An Attribute's value as text (`"a"`, `"3"`, `"[1-5]"`), as `/state` shows it."""
    kind = attribute.get("type", "TEXT")
    if kind == "SCALAR":
        value = float(attribute.get("scalar", {}).get("value", 0.0))
        return f"{value:g}"
    if kind == "RANGES":
        ranges = attribute.get("ranges", {}).get("range", [])
        return _format_ranges(tuple((int(r["begin"]), int(r["end"])) for r in ranges))
    if kind == "SET":
        return "{" + ",".join(attribute.get("set", {}).get("item", [])) + "}"
    return str(attribute.get("text", {}).get("value", ""))


def attribute_text(value: Any) -> str:
    """An attribute's value in a master's `/state` as the same text `attribute_value` gives.

    The embedded master writes every value as text; a Mesos master writes a SCALAR as a
    JSON number (src/common/http.cpp, `model(const Attributes&)`), which reads back here
    as `attribute_value` would have written it (`3`, not `3.0`).
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{float(value):g}"
    return str(value)
