"""A job queue with no coordinator: workers in the registry, a singleton scheduler that hands
each job to a worker with `call`, and the queue itself in a SharedState.

Run: python examples/job_queue/job_queue.py [--nodes 3] [--jobs 12]

Every node runs in this one process on 127.0.0.1 (joined by address). Each node registers a
`worker` instance and declares the `scheduler` singleton (quorum="majority"): exactly one node
runs it, taking pending jobs from the SharedState `jobs` and calling, for each, the worker
that rendezvous hashing of the job id picks. Halfway, the scheduler's node leaves: the
singleton moves to another node, which goes on with the jobs still pending. Exit code 0 once
every job is done, 1 if not in time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from foundation_p2p import Config, Node
from foundation_p2p.services.placement import Singleton

JOBS = "jobs"  # the SharedState: job id -> {"text": ..., "state": "pending"|"done", ...}


async def work(node: Node, job: dict[str, Any]) -> dict[str, Any]:
    """The worker service: hash the job's text (slowly, as real work would take a while)."""
    await asyncio.sleep(0.02)
    digest = hashlib.sha256(job["text"].encode()).hexdigest()[:12]
    return {"digest": digest, "worker": node.node_id}


def scheduler(node: Node) -> Callable[[], Any]:
    """The singleton body for `node`: dispatch pending jobs until stopped (cancelled)."""

    async def run() -> None:
        print(f"   scheduler running on {node.node_id}", flush=True)
        jobs = node.shared_state(JOBS)
        while True:
            pending = sorted(k for k, v in jobs.items() if v["state"] == "pending")
            for job_id in pending:
                job = jobs[job_id]
                reply = await node.call(
                    "worker", job, timeout=1.0, retries=2, strategy="consistent_hash", key=job_id
                )
                jobs[job_id] = {**job, "state": "done", **reply, "scheduler": node.node_id}
            await asyncio.sleep(0.05)

    return run


async def until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll `condition()` every 50 ms for at most `timeout` seconds; whether it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def start_cluster(count: int) -> tuple[list[Node], dict[str, Singleton]]:
    """`count` nodes on loopback, each with a worker and the scheduler singleton declared."""
    config = Config.development(probe_interval=0.1, probe_timeout=0.05)
    nodes: list[Node] = []
    for i in range(count):
        seeds = [nodes[0].address] if nodes else []
        node = Node(
            cluster="jobs", node_id=f"n{i}", listen="127.0.0.1:0", seeds=seeds, config=config
        )
        await node.start()
        nodes.append(node)
    singletons = {}
    for node in nodes:
        await node.registry.register("worker", lambda job, node=node: work(node, job))
        singletons[node.node_id] = node.singleton("scheduler", scheduler(node), quorum="majority")
    return nodes, singletons


def submit(node: Node, first: int, count: int) -> list[str]:
    """Queue `count` jobs on `node` (local writes; the scheduler sees them once replicated)."""
    jobs = node.shared_state(JOBS)
    ids = [f"job-{n:03d}" for n in range(first, first + count)]
    with jobs.transaction():
        for job_id in ids:
            jobs[job_id] = {"text": f"payload {job_id}", "state": "pending"}
    return ids


def done(node: Node, ids: list[str]) -> bool:
    jobs = node.shared_state(JOBS)
    return all(jobs.get(job_id, {}).get("state") == "done" for job_id in ids)


async def run(node_count: int, job_count: int) -> int:
    nodes, singletons = await start_cluster(node_count)
    try:
        if not await until(lambda: all(len(n.members()) == node_count for n in nodes), 10.0):
            print("the cluster never formed", file=sys.stderr)
            return 1
        print(f"{node_count} nodes, each with a worker; submitting {job_count // 2} jobs on n0")
        first = submit(nodes[0], 0, job_count // 2)
        if not await until(lambda: done(nodes[-1], first), 15.0):
            print("the first jobs were not all done in time", file=sys.stderr)
            return 1
        report(nodes[-1], first)

        holder = next(n for n in nodes if singletons[n.node_id].running)
        print(f"-- stopping {holder.node_id}, which runs the scheduler")
        await holder.stop()
        nodes.remove(holder)
        rest = job_count - job_count // 2
        print(f"submitting {rest} more jobs on {nodes[0].node_id}")
        second = submit(nodes[0], job_count // 2, rest)
        if not await until(lambda: done(nodes[-1], second), 15.0):
            print("the jobs after the handover were not all done in time", file=sys.stderr)
            return 1
        report(nodes[-1], second)
        moved = {nodes[-1].shared_state(JOBS)[j]["scheduler"] for j in second}
        print(
            f"all {job_count} jobs done; the scheduler moved from {holder.node_id} to "
            f"{', '.join(sorted(moved))}"
        )
        return 0
    finally:
        for node in nodes:
            await node.stop()


def report(node: Node, ids: list[str]) -> None:
    jobs = node.shared_state(JOBS)
    by_worker: dict[str, int] = {}
    for job_id in ids:
        by_worker[jobs[job_id]["worker"]] = by_worker.get(jobs[job_id]["worker"], 0) + 1
    schedulers = sorted({jobs[job_id]["scheduler"] for job_id in ids})
    spread = ", ".join(f"{w}: {c}" for w, c in sorted(by_worker.items()))
    print(f"   {len(ids)} jobs done, scheduled by {', '.join(schedulers)}; per worker: {spread}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3, help="cluster size (3)")
    parser.add_argument("--jobs", type=int, default=12, help="jobs in all (12)")
    args = parser.parse_args()
    if args.nodes < 3 or args.jobs < 2:
        parser.error("--nodes must be at least 3 (a majority survives one leaving), --jobs >= 2")
    logging.basicConfig(level=logging.WARNING, format="  (%(name)s: %(message)s)")
    return asyncio.run(run(args.nodes, args.jobs))


if __name__ == "__main__":
    sys.exit(main())
