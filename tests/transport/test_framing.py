"""The frame codec: any split of a stream decodes the same, bad prefixes fail early and typed."""

from __future__ import annotations

import itertools
import time
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport import FrameDecoder, FrameTooLarge, FramingError, encode_frame

LIMIT = 1024
bodies = st.lists(st.binary(max_size=300), max_size=30)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def _decode_all(pieces: list[bytes], *, one_by_one: bool, limit: int = LIMIT) -> list[bytes]:
    decoder = FrameDecoder(limit)
    out: list[bytes] = []
    for piece in pieces:
        decoder.receive_data(piece)
        if one_by_one:
            while (frame := decoder.next_frame()) is not None:
                out.append(frame)
        else:
            out += decoder.frames()
    decoder.receive_eof()
    return out


@given(bodies, st.lists(st.integers(min_value=0), max_size=40), st.booleans())
def test_any_split_of_a_valid_stream_decodes_identically(
    frames: list[bytes], cuts: list[int], one_by_one: bool
) -> None:
    """However the stream is cut into reads, the same bodies come out, in order."""
    stream = b"".join(encode_frame(f) for f in frames)
    decoded = _decode_all(_split(stream, cuts), one_by_one=one_by_one)
    assert decoded == frames
    assert all(type(frame) is bytes for frame in decoded)


@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0), max_size=20))
def test_random_bytes_yield_frames_or_raise_only_the_typed_error(
    data: bytes, cuts: list[int]
) -> None:
    """Garbage either parses as frames within the limit or raises a FramingError, which sticks."""
    decoder = FrameDecoder(LIMIT)
    try:
        for piece in _split(data, cuts):
            decoder.receive_data(piece)
            assert all(len(frame) <= LIMIT for frame in decoder.frames())
        decoder.receive_eof()
    except FramingError as exc:
        with pytest.raises(type(exc)):
            decoder.next_frame()
        with pytest.raises(type(exc)):
            decoder.receive_data(b"more")


def test_oversize_prefix_raises_before_the_body_is_buffered_or_allocated() -> None:
    """The 4-byte prefix of a 4 GB frame is refused on arrival, costing no memory."""
    decoder = FrameDecoder(16 * 1024 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge) as raised:
            decoder.receive_data(b"\xff\xff\xff\xff")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024
    assert raised.value.length == 0xFFFF_FFFF and raised.value.limit == 16 * 1024 * 1024
    assert decoder.buffered == 0


def test_oversize_prefix_fed_byte_by_byte_raises_on_the_fourth_byte() -> None:
    decoder = FrameDecoder(100)
    for byte in b"\x00\x00\x00":
        decoder.receive_data(bytes([byte]))
        assert decoder.next_frame() is None
    with pytest.raises(FrameTooLarge):
        decoder.receive_data(b"\x65")  # 101


def test_frames_before_an_oversize_prefix_are_returned_first() -> None:
    """No good frame is lost to a bad prefix that follows it in the same read."""
    decoder = FrameDecoder(10)
    decoder.receive_data(encode_frame(b"one") + encode_frame(b"two") + b"\x00\x00\x00\x0b")
    assert decoder.frames() == [b"one", b"two"]
    with pytest.raises(FrameTooLarge):
        decoder.frames()


def test_a_frame_at_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(10)
    decoder.receive_data(encode_frame(b"x" * 10))
    assert decoder.next_frame() == b"x" * 10


def test_zero_length_frames_are_valid() -> None:
    """An empty body is four zero bytes and decodes back to b""."""
    assert encode_frame(b"") == b"\x00\x00\x00\x00"
    decoder = FrameDecoder(LIMIT)
    decoder.receive_data(encode_frame(b"") * 3 + encode_frame(b"a"))
    assert decoder.frames() == [b"", b"", b"", b"a"]


def test_stream_ending_inside_a_frame_is_a_framing_error() -> None:
    decoder = FrameDecoder(LIMIT)
    decoder.receive_data(encode_frame(b"whole") + encode_frame(b"partial")[:6])
    assert decoder.frames() == [b"whole"]
    assert decoder.buffered == 6
    with pytest.raises(FramingError, match="inside a frame"):
        decoder.receive_eof()


def test_invalid_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(-1)
    with pytest.raises(ValueError):
        FrameDecoder(1 << 32)


@pytest.mark.parametrize("chunk", [None, 65536, 1000])
def test_decoding_100k_small_frames_is_fast(chunk: int | None) -> None:
    """100k 20-byte frames decode in well under a second, whole or in reads (no O(n^2) copy)."""
    stream = encode_frame(b"x" * 20) * 100_000
    step = chunk or len(stream)
    pieces = [stream[i : i + step] for i in range(0, len(stream), step)]
    start = time.perf_counter()
    decoded = _decode_all(pieces, one_by_one=chunk == 1000)
    elapsed = time.perf_counter() - start
    assert len(decoded) == 100_000
    assert elapsed < 0.8, f"{elapsed:.2f}s"


def test_a_large_frame_arriving_in_small_reads_is_linear() -> None:
    """An 8 MiB frame in 4 KiB reads: appending is amortized O(1), not a copy per read."""
    body = bytes(range(256)) * (32 * 1024)
    stream = encode_frame(body)
    decoder = FrameDecoder(len(body))
    start = time.perf_counter()
    for i in range(0, len(stream), 4096):
        decoder.receive_data(stream[i : i + 4096])
        frame = decoder.next_frame()
    elapsed = time.perf_counter() - start
    assert frame == body
    assert elapsed < 1.0, f"{elapsed:.2f}s"
