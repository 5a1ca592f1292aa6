"""Transport benchmark: messages/s node -> node over loopback, Transport beside a raw asyncio loop.

Run: python -m bench.transport [--quick] [--uvloop]   (or python bench/transport.py)

Both ends run in this one process and event loop, so every figure pays for sending and
receiving. A message is a 100-byte msgpack map, packed by the sender and unpacked by the
receiver in every row. Rows:
  raw unbatched     asyncio streams, one write + drain per length-prefixed message
  raw batched x64   the same, 64 messages joined per write
  Transport ...     `Transport.send` then a yield to the loop every 64 messages (the transport
                    writes what a turn queued in one write), or every 1024 messages (burst),
                    and the burst again with every frame sealed (AES-256-GCM).
Figures are wall-clock on whatever machine runs this; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

# Run as a script, this file's folder heads sys.path and its name would shadow a package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import msgpack  # noqa: E402

from transport import Keyring, Transport, generate_key  # noqa: E402

BODY_BYTES = 100
DEADLINE = 30.0  # seconds any one run may take before it is abandoned
_prefix = struct.Struct(">I")


def message(seq: int) -> dict[str, object]:
    """A message whose msgpack encoding is BODY_BYTES long (for seq below 2**32)."""
    # fixmap(2) 1 + "seq" 4 + uint32 5 + "pad" 4 + bin8 header 2 = 16 bytes of framing
    return {"seq": seq, "pad": b"x" * (BODY_BYTES - 16)}


def pack(seq: int) -> bytes:
    """The 100-byte body for message `seq`, packed with the seq as a fixed-width uint32."""
    body: bytes = msgpack.packb(message(seq | 1 << 31))
    return body


async def raw_loop(n: int, per_write: int) -> float:
    """Messages/s through asyncio streams, `per_write` length-prefixed messages per write."""
    received = 0
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        buffer = b""
        while not done.is_set():
            chunk = await reader.read(256 * 1024)
            if not chunk:
                break
            buffer = buffer + chunk if buffer else chunk
            offset = 0
            while len(buffer) - offset >= 4:
                (length,) = _prefix.unpack_from(buffer, offset)
                end = offset + 4 + length
                if end > len(buffer):
                    break
                msgpack.unpackb(buffer[offset + 4 : end])
                received += 1
                offset = end
            buffer = buffer[offset:]
            if received >= n:
                done.set()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.perf_counter()
    for first in range(0, n, per_write):
        batch: list[bytes] = []
        for seq in range(first, min(n, first + per_write)):
            body = pack(seq)
            batch += (_prefix.pack(len(body)), body)
        writer.write(b"".join(batch))
        await writer.drain()
    await done.wait()
    elapsed = time.perf_counter() - start
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return n / elapsed


async def transport_loop(n: int, per_turn: int, *, sealed: bool) -> float:
    """Messages/s from one Transport to another, yielding to the loop every `per_turn` sends."""
    received = 0
    done = asyncio.Event()

    def on_frame(peer: str, body: bytes) -> None:
        nonlocal received
        msgpack.unpackb(body)
        received += 1
        if received >= n:
            done.set()

    key = generate_key()
    sender = Transport(
        "sender", "bench", 1, keyring=Keyring(key) if sealed else None, on_frame=lambda p, b: None
    )
    receiver = Transport(
        "receiver", "bench", 1, keyring=Keyring(key) if sealed else None, on_frame=on_frame
    )
    try:
        await sender.start()
        address = await receiver.start()
        await sender.connect(address)
        window = sender.limits.send_queue_frames // 2
        start = time.perf_counter()
        for first in range(0, n, per_turn):
            for seq in range(first, min(n, first + per_turn)):
                sender.send("receiver", pack(seq))
            await asyncio.sleep(0)
            while sender.queued("receiver") > window:
                await asyncio.sleep(0.0005)
        await done.wait()
        elapsed = time.perf_counter() - start
        dropped = sum(v for k, v in sender.counters.items() if k.startswith("dropped"))
        assert dropped == 0 and received == n, (dropped, received)
    finally:
        await sender.close()
        await receiver.close()
    return n / elapsed


async def best_of(runs: int, measure: Callable[[], Awaitable[float]]) -> float:
    """The best rate of `runs` runs, each bounded by DEADLINE."""
    best = 0.0
    for _ in range(runs):
        gc.collect()
        best = max(best, await asyncio.wait_for(measure(), DEADLINE))
    return best


async def run(n: int, runs: int) -> None:
    """Measure every row and print the table."""
    raw1 = await best_of(runs, lambda: raw_loop(n, 1))
    raw64 = await best_of(runs, lambda: raw_loop(n, 64))

    def t_loop(per_turn: int, sealed: bool) -> Awaitable[float]:
        return transport_loop(n, per_turn, sealed=sealed)

    rows = [
        ("raw unbatched (1 per write)", raw1),
        ("raw batched (64 per write)", raw64),
        ("Transport (64 sends per loop turn)", await best_of(runs, lambda: t_loop(64, False))),
        ("Transport burst (1024 per turn)", await best_of(runs, lambda: t_loop(1024, False))),
        ("Transport burst, AES-GCM sealed", await best_of(runs, lambda: t_loop(1024, True))),
    ]
    print("| mode | msg/s | vs raw unbatched | vs raw batched x64 |")
    print("|---|---:|---:|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} | {rate / raw1:.2f}x | {rate / raw64:.2f}x |")


def main(argv: list[str] | None = None) -> int:
    """Print the benchmark table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few messages (a smoke run)")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop if installed")
    args = parser.parse_args(argv)
    n, runs = (5_000, 1) if args.quick else (100_000, 3)
    loop = "asyncio"
    if args.uvloop:
        try:
            import uvloop  # type: ignore[import-not-found, unused-ignore]

            uvloop.install()
            loop = "uvloop"
        except ImportError:
            print("uvloop is not installed; using the default asyncio loop")
    print(
        f"# Transport benchmark ({n:,} messages of {BODY_BYTES} bytes per row, best of {runs}, "
        f"loopback, {loop}, Python {sys.version.split()[0]})\n"
    )
    asyncio.run(run(n, runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
