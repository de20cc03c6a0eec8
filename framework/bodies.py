"""Request bodies every server reads under limits: size, JSON nesting, finite numbers.

A body is read in chunks and reading stops at the limit, so a 50 MB upload costs
at most the limit in memory (`BodyLimit` also refuses a `Content-Length` above it
before reading anything). Nesting is measured on the raw bytes before `json.loads`
recurses (Python's parser recurses once per level: 10,000 levels are a
RecursionError, or worse on a small thread stack). `NaN` and the infinities are
refused: Python's `json` accepts them, but no JSON client can read them back
(Starlette refuses to encode them: every later GET would answer 500).
"""
from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any, Awaitable, Callable, MutableMapping

import yaml

from framework.errors import DockyardError

DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_MAX_DEPTH = 64

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Render = Callable[[int, str], tuple[bytes, bytes]]  # (status, message) -> (content type, body)

# A string runs to its closing quote, or to the end when it has none: one pass, no restarts.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


class BodyError(DockyardError, ValueError):
    """A body refused before it is understood; `status` is the answer (400, 408, 413 or 422),
    `path` the `/field` at fault when one is known."""

    def __init__(self, status: int, message: str, path: str = "/") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.path = path


class BodyTooLarge(BodyError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body larger than {limit} bytes")
        self.limit = limit


def nested_deeper(raw: bytes | str, max_depth: int) -> bool:
    """Whether `[`/`{` nest deeper than `max_depth` in `raw` (strings skipped); no recursion.

    Each pass deletes the innermost `[]`/`{}` pairs (C-speed `bytes.replace`), so a
    document `max_depth` deep is empty after `max_depth` passes."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False  # cannot nest deeper than it has brackets: the common case costs two counts
    if b'"' in data:
        data = _STRING.sub(b"", data)
    brackets = data.translate(None, _NOT_BRACKETS)
    for passes in range(max_depth):
        reduced = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if not reduced:
            return False
        if reduced == brackets:  # mismatched: a parser gets as deep as the openers before the first closer
            closers = [i for i in (reduced.find(b"]"), reduced.find(b"}")) if i >= 0]
            return passes + (min(closers) if closers else len(reduced)) > max_depth
        brackets = reduced
    return True


def check_depth(raw: bytes | str, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """Refuse (422) a document nested deeper than `max_depth` before anything parses it."""
    if nested_deeper(raw, max_depth):
        raise BodyError(422, f"JSON nested deeper than {max_depth} levels")


def _refuse_constant(name: str) -> Any:
    raise BodyError(400, f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BodyError(400, f"number out of range: {text[:40]}")
    return value


def loads(raw: bytes | str, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Strict JSON: nesting checked first; NaN, Infinity and overflowing numbers refused.

    Raises BodyError (422 for nesting, 400 for a number JSON cannot carry: not worth
    trying as YAML), ValueError for anything else that is not JSON."""
    check_depth(raw, max_depth)
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise BodyError(422, f"JSON nested deeper than {max_depth} levels") from None


def json_incompatible(document: Any, max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[str, str] | None:
    """`(path, why)` of the first value JSON cannot carry (NaN, a date, a non-string key) or of
    a level deeper than `max_depth`; None when the whole document is plain JSON.

    For documents that did not come through `loads` (YAML); iterative, so depth is no risk."""
    pending: list[tuple[Any, str, int]] = [(document, "", 0)]
    while pending:
        value, path, depth = pending.pop()
        if isinstance(value, (dict, list)) and depth >= max_depth:
            return path or "/", f"nested deeper than {max_depth} levels"
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    return path or "/", f"key {str(key)[:40]!r} is not a string"
                pending.append((item, f"{path}/{key}", depth + 1))
        elif isinstance(value, list):
            pending.extend((item, f"{path}({i})", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, float):
            if not math.isfinite(value):
                return path or "/", f"{value} is not a JSON number"
        elif value is not None and not isinstance(value, (str, int)):  # bool is an int
            return path or "/", f"a {type(value).__name__} is not a JSON value"
    return None


class _PlainYamlLoader(yaml.SafeLoader):
    """Safe YAML without aliases: an alias is a reference, and a few of them nested make a
    document whose JSON form is exponentially large (the billion laughs)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"YAML aliases are not accepted ({mark})")
        return super().compose_node(parent, index)


def yaml_loads(text: bytes | str, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Safe YAML of plain JSON values; raises BodyError (422) for depth, ValueError otherwise."""
    check_depth(text, max_depth)  # flow style (`[[[...]]]`) nests without indentation
    try:
        document = yaml.load(text, Loader=_PlainYamlLoader)  # noqa: S506 - a SafeLoader
    except RecursionError:
        raise BodyError(422, f"YAML nested deeper than {max_depth} levels") from None
    except yaml.YAMLError as error:
        raise ValueError(str(error)) from None
    problem = json_incompatible(document, max_depth)
    if problem is not None:
        path, why = problem
        raise BodyError(422 if why.startswith("nested") else 400, why, path)
    return document


def text_render(status: int, message: str) -> tuple[bytes, bytes]:
    return b"text/plain; charset=utf-8", message.encode()


def json_render(status: int, message: str) -> tuple[bytes, bytes]:
    """Marathon's error shape, naming the body as the field."""
    body = {"message": message, "details": [{"path": "/", "errors": [message]}]}
    return b"application/json", json.dumps(body).encode()


class BodyLimit:
    """ASGI middleware: no request body larger than `max_bytes` is read, nor waited for
    longer than `body_timeout` seconds.

    A `Content-Length` above the limit is answered 413 at once; a body sent without
    one (chunked) is counted as it arrives, and `receive` raises `BodyTooLarge` at the
    limit; a handler that lets it escape gets the same 413 (408 for a body too slow).
    The connection is closed after either: the rest of the body is never read.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int = DEFAULT_MAX_BYTES,
                 render: Render = text_render, body_timeout: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.render = render
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope.get("headers") or []:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(send, 400, "Content-Length is not a number")
                    return
                if declared > limit:
                    await self._refuse(send, 413, BodyTooLarge(limit).message)
                    return
        received = 0
        started = complete = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout if self.body_timeout else None

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete or deadline is None:
                message = await receive()  # after the body: waits for a disconnect, untimed
            else:
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    raise BodyError(408, f"Request body not received within {self.body_timeout:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
                complete = not message.get("more_body", False)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyError as error:
            if started:
                raise
            await self._refuse(send, error.status, error.message)

    async def _refuse(self, send: Send, status: int, message: str) -> None:
        content_type, body = self.render(status, message)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The whole body from an ASGI `receive`, in chunks, refusing (413) past `max_bytes`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(max_bytes)
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def accepts(header: str | None, media: str) -> bool:
    """libprocess's `Request::acceptsMediaType`: no header accepts anything; `*/*`, `type/*`, q>0."""
    if header is None or not header.strip():
        return True
    kind = media.split("/")[0]
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        quality = 1.0
        for param in fields[1:]:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        if quality > 0 and fields[0].lower() in (media, f"{kind}/*", "*/*"):
            return True
    return False
