"""ShardedCluster: one simulated cluster split over worker processes, to use every core.

Each worker runs a `SimCluster` of its share of the nodes, with the real Engine per node. A
message for a node of another worker leaves as its encoded bytes and is decoded there. The
workers advance in windows of the network's minimum latency: a message sent inside a window
cannot arrive before the window ends, so every worker runs a window without waiting on the
others and they swap messages between windows (conservative parallel discrete-event
simulation). The same seed and worker count replay exactly; another worker count is another
run (each worker has its own random source).

The verbs are those of a large scenario run: run_for/run_to, partition, partition_oneway,
heal, set_loss, crash, restart, converged, members, stats, trace_digest. Replica handles,
SharedState, `at()` and held links need the single-process SimCluster.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import weakref
from collections.abc import Iterable
from multiprocessing.connection import Connection
from typing import Any

from crdts import Status
from foundation_p2p.config import Config
from foundation_p2p.engine.messages import Message
from simulations.cluster import SimCluster
from simulations.network import Link

Export = tuple[float, str, str, bytes]
"""A message for another worker's node: (arrival time, src, dst, encoded body)."""


class _Shard(SimCluster):
    """The nodes one worker runs; messages for the other workers' nodes are exported."""

    def __init__(
        self,
        everyone: list[str],
        local: list[str],
        seed: int,
        config: Config | None,
        link: Link | None,
        bootstrap: str,
    ) -> None:
        super().__init__(
            local,
            seed,
            config,
            link,
            "none",
            record_writes=False,
            decode=False,
            record_events=False,
        )
        self.remote = frozenset(everyone) - frozenset(local)
        self.exports: list[Export] = []
        self.arrivals: list[Export] = []  # from the last window, for the next run
        if bootstrap == "formed":
            peers = {node: node for node in everyone}
            for node in self.nodes.values():
                node.engine.membership.restore(0.0, peers)
        elif bootstrap == "seed":
            for node in self.nodes.values():
                if node.node_id != everyone[0]:
                    outputs = node.engine.join(0.0, everyone[0], everyone[0])
                    self._process(node, outputs)
        else:
            raise ValueError(f"bootstrap must be 'formed' or 'seed', got {bootstrap!r}")

    def _generation_of(self, dst: str) -> int | None:
        if dst in self.remote:
            return -1  # the owner stamps its node's generation on arrival
        return super()._generation_of(dst)

    def _enqueue(
        self, when: float, src: str, dst: str, body: bytes, message: Message | None, generation: int
    ) -> None:
        if generation == -1:
            self.exports.append((when, src, dst, body))
        else:
            super()._enqueue(when, src, dst, body, message, generation)

    def windows(
        self,
        end: float,
        window: float,
        me: int,
        peers: dict[int, Connection],
        owner: dict[str, int],
    ) -> None:
        """Run to `end` in windows, swapping exports with every peer worker after each."""
        arrivals = self.arrivals
        while self.now < end:
            step = min(end, self.now + window)
            for when, src, dst, body in arrivals:
                super()._enqueue(when, src, dst, body, None, self.nodes[dst].generation)
            self.run_to(step)
            outgoing: dict[int, list[Export]] = {peer: [] for peer in peers}
            for export in self.exports:
                outgoing[owner[export[2]]].append(export)
            self.exports = []
            arrivals = []
            # pairwise in a fixed order (the lower index sends first), so two workers never
            # both block sending a full pipe to each other
            for peer, conn in sorted(peers.items()):
                if me < peer:
                    conn.send(outgoing[peer])
                    arrivals += conn.recv()
                else:
                    arrivals += conn.recv()
                    conn.send(outgoing[peer])
        self.arrivals = arrivals

    def views(self) -> dict[str, tuple[dict[str, Status], dict[str, bytes]]]:
        """Each live node's membership view and the fingerprint of each of its replicas."""
        return {
            node.node_id: (
                dict(node.engine.members()),
                {
                    name: replica.fingerprint()
                    for name, replica in node.engine.replication.replicas.items()
                },
            )
            for node in self.live_nodes()
        }

    def totals(self) -> dict[str, Any]:
        """Traffic, detections, false positives and the trace digest of this worker."""
        return {
            "sent": sum(s.sent for s in self._stats.values()),
            "bytes": sum(s.bytes_sent for s in self._stats.values()),
            "dropped": sum(s.dropped for s in self._stats.values()),
            "false_suspicions": len(self.false_suspicions),
            "false_downs": len(self.false_downs),
            "trace": self.trace_digest(),
        }


def _work(
    conn: Connection,
    peers: dict[int, Connection],
    me: int,
    shards: list[list[str]],
    seed: int,
    config: Config | None,
    link: Link,
    bootstrap: str,
) -> None:
    """A worker's loop: build its shard, then run what the coordinator asks until "stop"."""
    everyone = [node for shard in shards for node in shard]
    owner = {node: index for index, shard in enumerate(shards) for node in shard}
    shard = _Shard(everyone, shards[me], seed, config, link, bootstrap)
    conn.send("ready")
    while True:
        verb, args = conn.recv()
        if verb == "stop":
            conn.close()
            return
        try:
            if verb == "windows":
                end, window = args
                shard.windows(end, window, me, peers, owner)
                result = None
            else:
                result = getattr(shard, verb)(*args)
        except Exception as exc:  # the coordinator raises it in the caller
            conn.send(("error", exc))
        else:
            conn.send(("ok", result))


def _stop(processes: list[Any], conns: list[Connection]) -> None:
    for conn in conns:
        try:
            conn.send(("stop", ()))
        except OSError:
            pass
    for process in processes:
        process.join(timeout=5.0)
        if process.is_alive():
            process.kill()
            process.join(timeout=5.0)


class ShardedCluster:
    """A SimCluster's large-run verbs over `workers` processes (see the module docstring)."""

    def __init__(
        self,
        nodes: int | Iterable[str] = 3,
        seed: int = 0,
        workers: int = 2,
        config: Config | None = None,
        link: Link | None = None,
        bootstrap: str = "formed",
    ) -> None:
        ids = [f"n{i}" for i in range(nodes)] if isinstance(nodes, int) else list(nodes)
        if len(set(ids)) != len(ids) or not ids:
            raise ValueError("node ids must be unique and at least one")
        if not 1 <= workers <= len(ids):
            raise ValueError(f"workers must be between 1 and the node count, got {workers}")
        self.link = link or Link()
        self.window = self.link.latency.low
        if self.window <= 0:
            raise ValueError(
                "a sharded run needs a minimum link latency > 0 (the window the workers run "
                f"without waiting on each other); the link's is {self.window}"
            )
        self.seed = seed
        self.now = 0.0
        self.ids = ids
        self.up = dict.fromkeys(ids, True)
        size = -(-len(ids) // workers)
        shards = [ids[i : i + size] for i in range(0, len(ids), size)]
        self._owner = {node: index for index, shard in enumerate(shards) for node in shard}
        self._conns: list[Connection] = []
        self._processes: list[Any] = []
        links: list[dict[int, Connection]] = [{} for _ in shards]
        # spawn, not fork: a fork of a process with threads (an event loop's, a logger's) can
        # inherit a held lock; the workers import what they need
        context = multiprocessing.get_context("spawn")
        for a in range(len(shards)):
            for b in range(a + 1, len(shards)):
                links[a][b], links[b][a] = context.Pipe()
        for index in range(len(shards)):
            mine, theirs = context.Pipe()
            process = context.Process(
                target=_work,
                args=(
                    theirs,
                    links[index],
                    index,
                    shards,
                    seed * 7919 + index,
                    config,
                    self.link,
                    bootstrap,
                ),
                name=f"sim-shard-{index}",
                daemon=True,
            )
            process.start()
            theirs.close()
            self._conns.append(mine)
            self._processes.append(process)
        for peers in links:
            for conn in peers.values():
                conn.close()  # the workers hold their own ends
        self._finalizer = weakref.finalize(self, _stop, self._processes, self._conns)
        for conn in self._conns:
            if conn.recv() != "ready":
                raise RuntimeError("a simulation worker failed to start")

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids."""
        return [p.pid for p in self._processes if p.pid is not None]

    def close(self) -> None:
        """Stop the workers (also done when the cluster is garbage or the program exits)."""
        self._finalizer()

    def __enter__(self) -> ShardedCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- running ----------------------------------------------------------------------------

    def run_for(self, seconds: float) -> None:
        """Advance virtual time by `seconds` on every worker."""
        self.run_to(self.now + seconds)

    def run_to(self, when: float) -> None:
        """Advance virtual time to `when` (the workers swap messages window by window)."""
        if when > self.now:
            self._all("windows", when, self.window)
            self.now = when

    def _gather(self) -> list[Any]:
        results = []
        failure: BaseException | None = None
        for conn in self._conns:
            status, value = conn.recv()
            if status == "error" and failure is None:
                failure = value
            results.append(value)
        if failure is not None:
            raise failure
        return results

    def _all(self, verb: str, *args: Any) -> list[Any]:
        for conn in self._conns:
            conn.send((verb, args))
        return self._gather()

    def _one(self, node: str, verb: str, *args: Any) -> Any:
        if node not in self._owner:
            raise KeyError(f"no node {node!r}")
        conn = self._conns[self._owner[node]]
        conn.send((verb, args))
        status, value = conn.recv()
        if status == "error":
            raise value
        return value

    # --- faults -----------------------------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the cluster: nodes in different groups cannot reach each other."""
        self._all("partition", *[list(group) for group in groups])

    def partition_oneway(self, sources: Iterable[str], destinations: Iterable[str]) -> None:
        """Cut messages from `sources` to `destinations` only."""
        self._all("partition_oneway", list(sources), list(destinations))

    def heal(self) -> None:
        """End every partition and one-way cut."""
        self._all("heal")

    def set_loss(self, loss: float) -> None:
        """Packet loss on every link."""
        self._all("set_loss", loss)

    def crash(self, node: str) -> None:
        """Stop a node at once."""
        self._one(node, "crash", node)
        self.up[node] = False

    def restart(self, node: str, keep_state: bool = False) -> None:
        """Start a crashed node again, empty or with its replicas, and rejoin."""
        self._one(node, "restart", node, keep_state)
        self.up[node] = True

    # --- checks -----------------------------------------------------------------------------

    def members(self, node: str) -> dict[str, Status]:
        """`node`'s membership view."""
        views: dict[str, tuple[dict[str, Status], dict[str, bytes]]] = self._one(node, "views")
        return views[node][0]

    def problems(self) -> list[str]:
        """What keeps the cluster from having converged (empty when it has): live nodes that
        see a live node as anything but alive, a stopped one as alive or suspect, or hold a
        replica another live node lacks or holds differently."""
        views: dict[str, tuple[dict[str, Status], dict[str, bytes]]] = {}
        for part in self._all("views"):
            views.update(part)
        problems = []
        for observer in sorted(views):
            members, _ = views[observer]
            for node, up in self.up.items():
                status = members.get(node)
                if up and status != "alive":
                    problems.append(f"{observer} sees live {node} as {status}")
                elif not up and status in ("alive", "suspect"):
                    problems.append(f"{observer} sees stopped {node} as {status}")
        if views:
            reference = min(views)
            base = views[reference][1]
            for node in sorted(views):
                replicas = views[node][1]
                for name in sorted(set(base) | set(replicas)):
                    if replicas.get(name) != base.get(name):
                        problems.append(f"{node} differs from {reference} on {name!r}")
        return problems

    def converged(self) -> bool:
        """Every live node sees the live nodes alive, and all hold equal replicas."""
        return not self.problems()

    def stats(self) -> dict[str, Any]:
        """Messages and bytes sent, drops and false positives, summed over the workers."""
        parts = self._all("totals")
        totals = {
            key: sum(part[key] for part in parts)
            for key in ("sent", "bytes", "dropped", "false_suspicions", "false_downs")
        }
        return {"virtual_seconds": self.now, "workers": len(parts), **totals}

    def trace_digest(self) -> str:
        """A hash of every worker's deliveries: same seed and workers, same digest."""
        combined = hashlib.blake2b(digest_size=16)
        for part in self._all("totals"):
            combined.update(part["trace"].encode())
        return combined.hexdigest()
