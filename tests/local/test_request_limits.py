"""`--max-request-bytes` of the master and the agent (the scheduler's flag of that name): a larger
body is answered 413 before it is read, a smaller one is served, and the flag moves the bound
both ways. And the agent's `/api/v1` answers a protobuf call as the master answers one: as a
body Mesos cannot parse (docs/mesos-compatibility.md), where it answered 415 before.
"""
from __future__ import annotations

import base64
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

from framework.mesos import recordio
from tests.support.cluster import Cluster
from tests.support.security import Endpoint

from .test_master import StartMaster, start_master  # noqa: F401

JSON = {"Content-Type": "application/json", "Accept": "application/json"}
PROTOBUF = "application/x-protobuf"


def padded_health(size: int) -> bytes:
    """A GET_HEALTH call `size` bytes long: JSON allows any whitespace after the value."""
    call = b'{"type": "GET_HEALTH"}'
    return call + b" " * (size - len(call))


def head_only(endpoint: Endpoint, path: str, length: int) -> tuple[bytes, float]:
    """Send a POST's head announcing `length` bytes and none of them: (the answer's first bytes,
    seconds until they came). A server that waits for the body answers nothing."""
    identity = endpoint.identity
    auth = "" if identity is None else "Authorization: Basic " + base64.b64encode(
        f"{identity.principal}:{identity.secret}".encode()).decode() + "\r\n"
    host, port = endpoint.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        started = time.monotonic()
        connection.sendall(f"POST {path} HTTP/1.1\r\nHost: {endpoint.address}\r\n{auth}"
                           f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode())
        try:
            answer = connection.recv(200)
        except socket.timeout:
            answer = b""
        return answer, time.monotonic() - started


def test_the_master_reads_no_body_past_its_flag(start_master: StartMaster) -> None:  # noqa: F811
    small = start_master("--max-request-bytes", "1024")
    assert small.post("/api/v1", None, headers=JSON, raw=padded_health(1024)).json() == {
        "type": "GET_HEALTH", "get_health": {"healthy": True}}
    for path in ("/api/v1", "/api/v1/scheduler", "/internal/agent"):
        refused = small.post(path, None, headers=JSON, raw=padded_health(1025))
        assert (refused.status_code, refused.text) == (413, "Request body larger than 1024 bytes"), path
        # without a Content-Length (chunked), counted as it comes
        chunked = small.client.post(small.base + path, headers=small.headers(JSON),
                                    content=iter([padded_health(1025)]))
        assert chunked.status_code == 413, path
    answer, seconds = head_only(small.api, "/api/v1", 10 << 20)
    assert answer.startswith(b"HTTP/1.1 413") and seconds < 2.0  # before a byte of the body

    # the default (64 MiB) refuses a larger body at once; the flag raises it
    default = start_master()
    answer, seconds = head_only(default.api, "/api/v1", (64 << 20) + 1)
    assert answer.startswith(b"HTTP/1.1 413") and seconds < 2.0
    large = start_master("--max-request-bytes", str(80 << 20))
    answer, _ = head_only(large.api, "/api/v1", (64 << 20) + 1)
    assert answer == b""  # waits for the body it may read
    body = padded_health((64 << 20) + 1)
    assert large.post("/api/v1", None, headers=JSON, raw=body).json()["get_health"] == {"healthy": True}
    assert default.post("/api/v1", None, headers=JSON, raw=body).status_code == 413


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """An agent that reads at most 1 KiB of a request (its /api/v1 as the operator)."""
    with Cluster(Path(tmp_path_factory.mktemp("limits")), agents=1,
                 agent_args=["--max-request-bytes", "1024"]).start() as cluster:
        yield cluster.agent_api()


def test_the_agent_reads_no_body_past_its_flag(agent: Endpoint) -> None:
    status, _, body = agent.call("POST", "/api/v1", padded_health(1024), headers=JSON)
    assert (status, body) == (200, b'{"type":"GET_HEALTH","get_health":{"healthy":true}}')
    for path in ("/api/v1", "/api/v1/executor"):
        status, _, body = agent.call("POST", path, padded_health(1025), headers=JSON)
        assert (status, body) == (413, b"Request body larger than 1024 bytes"), path
        answer, seconds = head_only(agent, path, 10 << 20)
        assert answer.startswith(b"HTTP/1.1 413") and seconds < 2.0, path


def test_the_agent_answers_a_protobuf_call_as_the_master_does(agent: Endpoint) -> None:
    """src/slave/http.cpp `Http::api` takes protobuf; this agent cannot decode it and answers as
    Mesos answers a protobuf body it cannot parse (common/http.hpp `deserialize`)."""
    protobuf = {"Content-Type": PROTOBUF, "Accept": "application/json"}
    assert agent.call("POST", "/api/v1", b"\x08\x01", headers=protobuf)[::2] == (
        400, b"Failed to parse body into a protobuf object")
    # an empty body parses into an empty Call, which has no type
    assert agent.call("POST", "/api/v1", b"", headers=protobuf)[::2] == (
        400, b"Failed to validate agent::Call: Expecting 'type' to be present")
    # the records of an input stream alike
    stream = {"Content-Type": "application/recordio", "Message-Content-Type": PROTOBUF,
              "Accept": "application/json"}
    assert agent.call("POST", "/api/v1", recordio.encode(b"\x08\x01"), headers=stream)[::2] == (
        400, b"Failed to parse body into a protobuf object")
    # an answer in protobuf only: 406, as the master
    status, _, body = agent.call("POST", "/api/v1", b'{"type": "GET_HEALTH"}',
                                 headers={"Content-Type": "application/json", "Accept": PROTOBUF})
    assert status == 406 and body.startswith(b"Expecting 'Accept' to allow application/json")
