"""A terminal chat room: pub/sub for the messages, the registry for presence.

Run, each in its own terminal:
    python examples/chat/chat.py --user ada --listen 127.0.0.1:7101
    python examples/chat/chat.py --user bob --seeds 127.0.0.1:7101

Type a line to send it to the room, `/who` to list who is here, Ctrl-D (or Ctrl-C) to leave.
Without --seeds the participants find each other by mDNS on the --listen address only
(127.0.0.1 by default: never beyond this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Iterable
from typing import Any

from foundation_p2p import Config, Node
from foundation_p2p.services.registry import Instance

ROOM = "chat.room"  # the pub/sub topic every message goes to
PRESENCE = "chat.presence"  # one registry instance per participant, meta {"user": name}


class Chat:
    """One participant: publishes what is typed, prints what others say and who comes and goes."""

    def __init__(self, node: Node, user: str) -> None:
        self.node = node
        self.user = user
        self.present: set[str] = set()

    async def join(self) -> None:
        """Subscribe to the room, announce presence, watch everyone else's."""
        self.node.pubsub.subscribe(ROOM, self.heard)
        await self.node.registry.register(PRESENCE, meta={"user": self.user})
        self.node.registry.watch(PRESENCE, self.presence_changed)

    def heard(self, message: dict[str, Any]) -> None:
        if message.get("user") != self.user:
            print(f"<{message.get('user')}> {message.get('text')}", flush=True)

    def presence_changed(self, instances: Iterable[Instance]) -> None:
        """Print joins and leaves: an instance vanishes when its node leaves or is found dead."""
        now = {str(i.meta.get("user")) for i in instances} - {self.user}
        for user in sorted(now - self.present):
            print(f"* {user} joined", flush=True)
        for user in sorted(self.present - now):
            print(f"* {user} left", flush=True)
        self.present = now

    async def say(self, line: str) -> None:
        if line == "/who":
            print(f"* here: {', '.join(sorted(self.present | {self.user}))}", flush=True)
        elif line:
            await self.node.pubsub.publish(ROOM, {"user": self.user, "text": line})


async def read_lines() -> asyncio.StreamReader:
    """stdin as an asyncio stream (a terminal or a pipe)."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def run(args: argparse.Namespace) -> int:
    seeds = [s for s in args.seeds.split(",") if s]
    host = args.listen.rpartition(":")[0]
    node = Node(
        cluster=args.room,
        node_id=args.user,
        listen=args.listen,
        seeds=seeds,
        discovery="static" if seeds else "mdns",
        mdns_interfaces=None if seeds else [host],  # mDNS stays on the listen address
        config=Config.development(),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with node:
        chat = Chat(node, args.user)
        await chat.join()
        print(
            f"* you are {args.user} on {node.address}; type to chat, /who, Ctrl-D to leave",
            flush=True,
        )
        reader = await read_lines()
        stopping = asyncio.create_task(stop.wait())
        while not stop.is_set():
            reading = asyncio.create_task(reader.readline())
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done():
                reading.cancel()
                break
            line = reading.result()
            if not line:  # end of input: leave
                break
            await chat.say(line.decode(errors="replace").strip())
        stopping.cancel()
        print(f"* {args.user} leaving", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", required=True, help="your name (also the node id)")
    parser.add_argument("--room", default="chat", help="the room (the cluster name)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="gossip address (127.0.0.1:0)")
    parser.add_argument("--seeds", default="", help="host:port of participants to join")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="  (%(name)s: %(message)s)")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
