"""RecordIO framing: records survive any split of the byte stream, bad framing is refused."""
from __future__ import annotations

import json
import random

import pytest

from framework.mesos.recordio import Decoder, RecordIOError, encode


def test_encode_is_decimal_length_newline_bytes() -> None:
    assert encode(b'{"type":"HEARTBEAT"}') == b'20\n{"type":"HEARTBEAT"}'


def test_length_counts_bytes_not_characters() -> None:
    record = json.dumps({"message": "h\u00e9llo \u2603"}, ensure_ascii=False).encode()
    framed = encode(record)
    assert framed.startswith(b"%d\n" % len(record))
    assert Decoder().feed(framed) == [record]


def test_several_records_in_one_chunk() -> None:
    records = [b"a", b"bb", b"{}", b"x" * 1000]
    assert Decoder().feed(b"".join(encode(r) for r in records)) == records


def test_every_split_point_yields_the_same_records() -> None:
    records = [b'{"type":"SUBSCRIBED"}', b'{"type":"HEARTBEAT"}', b"z" * 37]
    stream = b"".join(encode(r) for r in records)
    for cut in range(len(stream) + 1):
        decoder = Decoder()
        got = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert got == records, cut
        assert decoder.pending == 0


def test_byte_by_byte_and_random_chunks() -> None:
    rng = random.Random(7)
    records = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300))) for _ in range(50)]
    stream = b"".join(encode(r) for r in records)
    decoder = Decoder()
    got = [rec for byte in stream for rec in decoder.feed(bytes([byte]))]
    assert got == records
    decoder, got, pos = Decoder(), [], 0
    while pos < len(stream):
        step = rng.randrange(1, 64)
        got += decoder.feed(stream[pos:pos + step])
        pos += step
    assert got == records


def test_payload_may_contain_newlines_and_digits() -> None:
    record = b"12\n34\n\n5"
    assert Decoder().feed(encode(record) + encode(b"7")) == [record, b"7"]


def test_partial_record_is_held_until_complete() -> None:
    decoder = Decoder()
    assert decoder.feed(b"10\nhello") == []
    assert decoder.pending == 5
    assert decoder.feed(b"world") == [b"helloworld"]
    assert decoder.pending == 0


def test_zero_length_record_decodes_to_empty_bytes() -> None:
    # Mesos never sends one, but the framing allows it and it must not wedge the stream.
    assert Decoder().feed(b"0\n3\nabc") == [b"", b"abc"]


@pytest.mark.parametrize("bad", [b"-1\nx", b"+1\nx", b"1a\nx", b" 1\nx", b"\nx", b"0x10\n"])
def test_non_decimal_length_is_an_error(bad: bytes) -> None:
    with pytest.raises(RecordIOError):
        Decoder().feed(bad)


def test_overlong_header_without_newline_is_an_error() -> None:
    decoder = Decoder()
    decoder.feed(b"1" * 20)
    with pytest.raises(RecordIOError):
        decoder.feed(b"1")


def test_overlong_header_with_newline_is_an_error() -> None:
    with pytest.raises(RecordIOError):
        Decoder().feed(b"1" * 21 + b"\n")


def test_record_larger_than_the_limit_is_refused_before_buffering() -> None:
    with pytest.raises(RecordIOError):
        Decoder(max_record=100).feed(b"101\n")
    assert Decoder(max_record=100).feed(encode(b"x" * 100)) == [b"x" * 100]
