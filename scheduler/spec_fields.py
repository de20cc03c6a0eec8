"""Fields of a spec that nothing reads: a misspelt `instnaces` is accepted and ignored, as
Marathon and Metronome ignore unknown keys, but the caller is told, with the nearest
known name (difflib), so that the typo does not go unnoticed.

The walk follows the pydantic models of a spec (their fields and aliases), into nested
objects, lists of objects and maps of objects; free-form maps (`env`, `labels`) are not
checked. Names a model does not declare but the original API knows (Marathon's `uris`,
`executor`, read-only fields a client sends back) are passed in as `also_known`.
"""
from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Mapping, Union

from pydantic import BaseModel

AlsoKnown = Mapping[type, Mapping[str, Any]]  # model -> name -> the annotation to check its value by (None: not)


def unknown_fields(document: Any, model: type[BaseModel], also_known: AlsoKnown | None = None,
                   path: str = "") -> list[str]:
    """`unknown field 'instnaces' (did you mean 'instances'?)` for each key no model knows;
    nested keys are named by their path (`healthChecks[0].protocl`)."""
    if not isinstance(document, dict):
        return []
    extra = (also_known or {}).get(model, {})
    fields = {}
    for name, info in model.model_fields.items():
        for spelling in (name, info.alias):
            if spelling:
                fields[spelling] = info.annotation
    suggestions = sorted({info.alias or name for name, info in model.model_fields.items()} | set(extra))
    found: list[str] = []
    for key, value in document.items():
        where = f"{path}.{key}" if path else str(key)
        if key in fields:
            found += _walk(value, fields[key], also_known, where)
        elif key in extra:
            inner = extra[key]
            if inner is not None:
                found += _walk(value, inner, also_known, where)
        else:
            found.append(_message(str(key), where, path, suggestions))
    return found


def _message(key: str, where: str, path: str, known: list[str]) -> str:
    lowered = {name.lower(): name for name in known}
    near = [lowered[key.lower()]] if key.lower() in lowered else difflib.get_close_matches(key, known, n=1,
                                                                                            cutoff=0.6)
    if not near:
        return f"unknown field '{where}'"
    return f"unknown field '{where}' (did you mean '{f'{path}.{near[0]}' if path else near[0]}'?)"


def _walk(value: Any, annotation: Any, also_known: AlsoKnown | None, path: str) -> list[str]:
    """The unknown fields of `value`, read as `annotation` (a model, optional, list or map of one)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _walk(value, typing.get_args(annotation)[0], also_known, path)
    if origin in (Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if _is_model(a) or typing.get_origin(a) in (list, dict)]
        if isinstance(value, dict):
            model = next((a for a in models if _is_model(a)), None)
            return _walk(value, model, also_known, path) if model is not None else []
        container = next((a for a in models if typing.get_origin(a) is list), None)
        return _walk(value, container, also_known, path) if container is not None and isinstance(value, list) else []
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(annotation) or (Any,)
        return [m for index, entry in enumerate(value) for m in _walk(entry, item, also_known, f"{path}[{index}]")]
    if origin is dict and isinstance(value, dict):
        args = typing.get_args(annotation)
        inner = args[1] if len(args) == 2 else Any
        return [m for key, entry in value.items() for m in _walk(entry, inner, also_known, f"{path}.{key}")]
    if _is_model(annotation) and isinstance(value, dict):
        return unknown_fields(value, annotation, also_known, path)
    return []


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
