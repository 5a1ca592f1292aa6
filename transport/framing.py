"""Sans-IO frame codec: a frame is a 4-byte big-endian unsigned length, then that many bytes.

Rules of this file: it knows bytes, never sockets or messages. Zero-length frames are valid
(an empty body encodes to four zero bytes and decodes back to b""). A length above the
decoder's limit raises FrameTooLarge as soon as its 4 prefix bytes are buffered, before any of
the body is waited for; after any FramingError the decoder stays failed.
"""

from __future__ import annotations

import struct
from typing import cast

from transport.errors import FrameTooLarge, FramingError

PREFIX_BYTES = 4
MAX_LENGTH = 0xFFFF_FFFF  # what a 4-byte prefix can express
_LENGTH = struct.Struct(">I")


def encode_frame(body: bytes) -> bytes:
    """The frame carrying `body`: its length as 4 big-endian bytes, then the body."""
    if len(body) > MAX_LENGTH:
        raise ValueError(f"a frame body holds at most {MAX_LENGTH} bytes, got {len(body)}")
    return _LENGTH.pack(len(body)) + body


def encode_prefix(length: int) -> bytes:
    """The 4-byte length prefix alone, for callers that join prefixes and bodies themselves."""
    return _LENGTH.pack(length)


class FrameDecoder:
    """Turns a byte stream, fed in arbitrary pieces, back into frame bodies."""

    __slots__ = ("_buffer", "_error", "_offset", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int) -> None:
        if not 0 <= max_frame_bytes <= MAX_LENGTH:
            raise ValueError(f"max_frame_bytes must be in 0..{MAX_LENGTH}, got {max_frame_bytes}")
        self.max_frame_bytes = max_frame_bytes
        # Pending bytes start at _offset. The buffer is the caller's own bytes object while
        # chunks hold whole frames (slicing it copies once), and a bytearray only while a frame
        # spans chunks, so appending stays amortized O(1) and nothing is copied twice.
        self._buffer: bytes | bytearray = b""
        self._offset = 0
        self._error: FramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buffer) - self._offset

    def receive_data(self, data: bytes) -> None:
        """Append bytes from the stream; raise FrameTooLarge if the next frame's prefix is over."""
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        if self._offset == len(buffer):
            self._buffer = bytes(data)
        elif isinstance(buffer, bytes):
            self._buffer = bytearray(memoryview(buffer)[self._offset :])
            self._buffer += data
        else:
            del buffer[: self._offset]
            buffer += data
        self._offset = 0
        if len(self._buffer) >= PREFIX_BYTES:
            self._check_length(_LENGTH.unpack_from(self._buffer, 0)[0])

    def next_frame(self) -> bytes | None:
        """The next complete frame body, or None until more data arrives."""
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        start = self._offset + PREFIX_BYTES
        if len(buffer) < start:
            return None
        (length,) = _LENGTH.unpack_from(buffer, self._offset)
        self._check_length(length)
        end = start + length
        if len(buffer) < end:
            return None
        self._offset = end
        return bytes(buffer[start:end]) if isinstance(buffer, bytearray) else buffer[start:end]

    def frames(self) -> list[bytes]:
        """Every complete frame body buffered, in order; an oversized prefix after some good
        frames is raised by the next call, so no good frame is lost to it."""
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        offset = self._offset
        size = len(buffer)
        limit = self.max_frame_bytes
        unpack = _LENGTH.unpack_from
        bodies: list[bytes | bytearray] = []
        while offset + PREFIX_BYTES <= size:
            (length,) = unpack(buffer, offset)
            if length > limit:
                self._offset = offset
                if bodies:
                    break
                self._check_length(length)
            end = offset + PREFIX_BYTES + length
            if end > size:
                break
            bodies.append(buffer[offset + PREFIX_BYTES : end])
            offset = end
        self._offset = offset
        if isinstance(buffer, bytearray):
            return [bytes(body) for body in bodies]
        return cast(list[bytes], bodies)

    def receive_eof(self) -> None:
        """The stream ended: raise FramingError if it stopped in the middle of a frame."""
        if self._error is not None:
            raise self._error
        if self.buffered:
            self._error = FramingError(f"stream ended inside a frame ({self.buffered} bytes)")
            raise self._error

    def _check_length(self, length: int) -> None:
        if length > self.max_frame_bytes:
            self._error = FrameTooLarge(length, self.max_frame_bytes)
            self._buffer = b""
            self._offset = 0
            raise self._error
