"""The agent debug API's messages: ContainerIDs, ProcessIO records and the calls that carry them.

Shared by the agent, which serves `LAUNCH_NESTED_CONTAINER_SESSION`,
`ATTACH_CONTAINER_INPUT` and `ATTACH_CONTAINER_OUTPUT` (framework/local/agent/api.py), and by
the client that drives them (framework/mesos/attach.py), so both speak the same JSON
(include/mesos/v1/agent/agent.proto `ProcessIO`, include/mesos/v1/mesos.proto `TTYInfo`).
A ContainerID nests through `parent`; Mesos prints one as `parent.child`
(src/common/type_utils.cpp), which is why a container id may not hold a `.`.
"""
from __future__ import annotations

import base64
import json
from typing import Any

from framework.mesos import recordio
from framework.mesos.messages import invalid_id

RECORDIO = "application/recordio"
JSON = "application/json"
PROTOBUF = "application/x-protobuf"
MAX_CONTAINER_ID_LENGTH = 242  # src/slave/constants.hpp: the longest directory name AUFS allows
MAX_NESTING = 8  # parents of a ContainerID the agent follows; Mesos itself has no bound


def container_id(value: str, parent: dict | None = None) -> dict:
    """A ContainerID message."""
    return {"value": value, **({"parent": parent} if parent else {})}


def container_key(cid: dict) -> str:
    """`root.child.grandchild`, as Mesos prints a nested ContainerID (ids hold no `.`)."""
    parts: list[str] = []
    current: Any = cid
    while isinstance(current, dict) and len(parts) <= MAX_NESTING:
        parts.append(str(current.get("value", "")))
        current = current.get("parent")
    return ".".join(reversed(parts))


def root_value(cid: dict) -> str:
    return container_key(cid).split(".", 1)[0]


def invalid_container_id(cid: Any, depth: int = 0) -> str | None:
    """src/slave/validation.cpp `validateContainerId` (with common/validation.cpp `validateID`)."""
    if not isinstance(cid, dict) or not isinstance(cid.get("value"), str):
        return "Expecting 'ContainerID.value' to be a string"
    value = cid["value"]
    wrong = invalid_id(value)
    if wrong:
        return wrong
    if len(value) > MAX_CONTAINER_ID_LENGTH:
        return f"'ContainerID.value' '{value}' exceeds the maximum length ({MAX_CONTAINER_ID_LENGTH})"
    if "." in value or " " in value:
        return f"'ContainerID.value' '{value}' contains invalid characters"
    parent = cid.get("parent")
    if parent is not None:
        if depth >= MAX_NESTING:
            return "'ContainerID.parent' is nested too deeply"
        problem = invalid_container_id(parent, depth + 1)
        if problem is not None:
            return f"'ContainerID.parent' is invalid: {problem}"
    return None


# -- ProcessIO records ----------------------------------------------------------------------
def data(kind: str, payload: bytes) -> dict:
    """`DATA` of `kind` STDIN, STDOUT or STDERR (bytes travel base64-encoded in JSON)."""
    return {"type": "DATA", "data": {"type": kind, "data": base64.b64encode(payload).decode("ascii")}}


def heartbeat(interval: float) -> dict:
    return {"type": "CONTROL", "control": {"type": "HEARTBEAT",
                                           "heartbeat": {"interval": {"nanoseconds": int(interval * 1e9)}}}}


def tty_info(rows: int, columns: int) -> dict:
    return {"type": "CONTROL", "control": {"type": "TTY_INFO",
                                           "tty_info": {"window_size": {"rows": rows, "columns": columns}}}}


def frame(message: dict) -> bytes:
    """One message as a RecordIO record of compact JSON."""
    return recordio.encode(json.dumps(message, separators=(",", ":")).encode())


def data_frame(kind: str, payload: bytes | memoryview, protobuf: bool = False) -> bytes:
    """`frame(data(kind, payload))` without building the dict: the output path's hot loop.
    `protobuf`: the record in protobuf, where the bytes travel as they are (no base64)."""
    if protobuf:
        return b"".join((protobuf_data_prefix(kind, len(payload)), payload))
    encoded = base64.b64encode(payload)
    body = b'{"type":"DATA","data":{"type":"%s","data":"%s"}}' % (kind.encode(), encoded)
    return recordio.encode(body)


MAX_DATA_PREFIX = 64  # the longest `protobuf_data_prefix`: a length of 20 digits, two tags and varints


def protobuf_data_prefix(kind: str, size: int) -> bytes:
    """What comes before `size` bytes of `kind` in a framed protobuf ProcessIO{type: DATA, data:
    Data{type: kind, data: ...}}: written in front of output read into a buffer after room for it,
    the record is made without copying the output."""
    data = b"\x08%c\x12%s" % (DATA_TYPES.index(kind), _varint(size))
    head = b"\x08\x01\x12%s" % _varint(len(data) + size)
    return b"%d\n%s%s" % (len(head) + len(data) + size, head, data)


def heartbeat_frame(interval: float, protobuf: bool = False) -> bytes:
    if not protobuf:
        return frame(heartbeat(interval))
    duration = b"\x08" + _varint(int(interval * 1e9))
    beat = b"\x0a" + _varint(len(duration)) + duration
    control = b"\x08\x02\x1a" + _varint(len(beat)) + beat
    return recordio.encode(b"\x08\x02\x1a" + _varint(len(control)) + control)


def decoded_data(message: dict) -> tuple[str, bytes] | None:
    """(STDOUT|STDERR|STDIN, bytes) of a DATA record; None for anything else."""
    if message.get("type") != "DATA" or not isinstance(message.get("data"), dict):
        return None
    payload = message["data"]
    return str(payload.get("type", "")), base64.b64decode(payload.get("data", "") or "")


def decoded_protobuf(raw: bytes | memoryview) -> tuple[str, memoryview] | None:
    """`decoded_data` of a ProcessIO in protobuf (agent.proto: type = 1, data = 2 {type = 1, data = 2});
    the bytes are a view of `raw`, not a copy."""
    fields = _fields(raw)
    if fields.get(1) != 1 or not isinstance(fields.get(2), memoryview):
        return None
    data = _fields(fields[2])
    kind = data.get(1, 0)
    payload = data.get(2)
    return (DATA_TYPES[kind] if isinstance(kind, int) and kind < len(DATA_TYPES) else "UNKNOWN",
            payload if isinstance(payload, memoryview) else memoryview(b""))


DATA_TYPES = ("UNKNOWN", "STDIN", "STDOUT", "STDERR")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(raw: bytes | memoryview) -> dict[int, Any]:
    """The varint and length-delimited fields of one protobuf message (the last of each number)."""
    view, position, found = memoryview(raw), 0, {}
    while position < len(view):
        key, position = _read_varint(view, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            found[number], position = _read_varint(view, position)
        elif wire == 2:
            size, position = _read_varint(view, position)
            found[number] = view[position:position + size]
            position += size
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
    return found


def _read_varint(view: memoryview, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(view) or shift > 63:
            raise ValueError("truncated protobuf varint")
        byte = view[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


# -- calls ------------------------------------------------------------------------------------
def input_call(process_io: dict) -> dict:
    """A later record of an `ATTACH_CONTAINER_INPUT` stream."""
    return {"type": "ATTACH_CONTAINER_INPUT",
            "attach_container_input": {"type": "PROCESS_IO", "process_io": process_io}}


def input_start(cid: dict) -> dict:
    """The first record of an `ATTACH_CONTAINER_INPUT` stream: whose input it is."""
    return {"type": "ATTACH_CONTAINER_INPUT",
            "attach_container_input": {"type": "CONTAINER_ID", "container_id": cid}}


def session_call(cid: dict, argv: list[str], *, tty: bool = False, rows: int = 0, columns: int = 0,
                 environment: dict[str, str] | None = None) -> dict:
    """`LAUNCH_NESTED_CONTAINER_SESSION` running `argv` as the Mesos CLI asks for it (no shell)."""
    command: dict[str, Any] = {"value": argv[0], "arguments": list(argv), "shell": False}
    if environment:
        command["environment"] = {"variables": [{"name": k, "value": v} for k, v in environment.items()]}
    call: dict[str, Any] = {"container_id": cid, "command": command}
    if tty:
        info: dict[str, Any] = {}
        if rows and columns:
            info["window_size"] = {"rows": rows, "columns": columns}
        call["container"] = {"type": "MESOS", "tty_info": info}
    return {"type": "LAUNCH_NESTED_CONTAINER_SESSION", "launch_nested_container_session": call}


def exit_code(wait_status: int | None) -> int:
    """A shell's exit code for a raw wait(2) status: the code, or 128+N for death by signal N."""
    if wait_status is None:
        return 1
    signal = wait_status & 0x7F
    if signal and signal != 0x7F:
        return 128 + signal
    return (wait_status >> 8) & 0xFF


def wait_status(code: int | None, signal: int | None) -> int:
    """The raw wait(2) status Mesos reports (`exit_status`): exit code 3 is 768, signal N is N."""
    if signal:
        return signal
    return ((code or 0) & 0xFF) << 8
