"""RecordIO framing as Mesos streams it: `<decimal length>\\n<bytes>`, nothing else.

Chunk boundaries of the HTTP body and record boundaries are unrelated, so the
decoder buffers and yields whole records only.
"""
from __future__ import annotations

from framework.errors import DockyardError

MAX_HEADER = 20  # a uint64 in decimal fits in 20 digits


class RecordIOError(DockyardError, ValueError):
    """The stream is not valid RecordIO."""


def encode(record: bytes) -> bytes:
    """Frame one record."""
    return b"%d\n%s" % (len(record), record)


class Decoder:
    """Incremental decoder: feed it bytes, get back the records completed so far."""

    def __init__(self, max_record: int = 256 * 1024 * 1024) -> None:
        self._buffer = bytearray()
        self._length: int | None = None
        self._max_record = max_record

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        records: list[bytes] = []
        while True:
            if self._length is None:
                newline = self._buffer.find(b"\n")
                if newline < 0:
                    if len(self._buffer) > MAX_HEADER:
                        raise RecordIOError("record length header too long")
                    return records
                header = bytes(self._buffer[:newline])
                if not header.isdigit() or len(header) > MAX_HEADER:
                    raise RecordIOError(f"bad record length {header[:MAX_HEADER]!r}")
                length = int(header)
                if length > self._max_record:
                    raise RecordIOError(f"record of {length} bytes exceeds {self._max_record}")
                self._length = length
                del self._buffer[: newline + 1]
            if len(self._buffer) < self._length:
                return records
            records.append(bytes(self._buffer[: self._length]))
            del self._buffer[: self._length]
            self._length = None

    @property
    def pending(self) -> int:
        """Bytes held that do not yet form a whole record."""
        return len(self._buffer)
