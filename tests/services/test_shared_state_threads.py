"""SharedState on a real node in this process: the default node, application threads, other
event loops, and the asyncio node's own loop. One node, loopback only, no peers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pycrdt import Array, Map

import foundation_p2p
from foundation_p2p import Config, ConsistencyTimeout, SharedState
from foundation_p2p.app import state_node
from foundation_p2p.node import Node, NodeError
from foundation_p2p.runtime.thread import NodeThread
from foundation_p2p.services.kvlayout import KeyValueArray
from foundation_p2p.services.lanes import LaneKeyValues
from foundation_p2p.services.state import LAYOUTS
from tests.yrs_vectors import BAD, BAD_BASE

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def default_node() -> Iterator[None]:
    foundation_p2p.stop()
    yield
    foundation_p2p.stop()


def test_shared_state_without_start_uses_a_local_only_node(default_node: None) -> None:
    s = SharedState("line-3")
    s["temperature"] = 21.5
    s["count"] = 1
    s["blob"] = b"\x00"
    s["cfg"] = {"a": [1, 2]}
    assert s["count"] == 1 and type(s["count"]) is int and type(s["blob"]) is bytes
    assert s.to_dict() == {"temperature": 21.5, "count": 1, "blob": b"\x00", "cfg": {"a": [1, 2]}}
    assert SharedState("line-3") is s
    node = state_node()
    assert node.node.discovery is None and node.node.address.startswith("127.0.0.1:")
    assert node.shared_state("line-3") is s
    with pytest.raises(RuntimeError, match="before start"):
        foundation_p2p.start(cluster="late")
    asyncio.run(s.synced(timeout=1.0))  # no peers: nothing to wait for
    asyncio.run(s.set("k", 1, write="majority", timeout=1.0))  # a majority of one
    assert s["k"] == 1


def test_shared_state_uses_the_started_node(default_node: None) -> None:
    started = foundation_p2p.start(
        cluster="solo", listen="127.0.0.1:0", config=Config.development()
    )
    s = SharedState("x")
    assert s is started.shared_state("x") is started.node.shared_state("x")
    s["k"] = "v"
    assert started.call(lambda: started.node.shared_state("x")["k"]) == "v"


def test_application_threads_write_concurrently(default_node: None) -> None:
    s = SharedState("threads")
    counter = s.counter("hits")
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(100):
                counter.increment()
                s[f"w{worker}-{i % 10}"] = i
                with s.transaction():
                    s["last"] = worker
                    s.list("log").append(worker)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert counter.value == 400
    assert len(s.list("log")) == 400
    assert {s[f"w{w}-9"] for w in range(4)} == {99}
    assert s["last"] in range(4)


def test_async_methods_work_from_another_event_loop(default_node: None) -> None:
    s = SharedState("loops")

    async def main() -> object:
        waiting = asyncio.ensure_future(s.wait_for(lambda st: st.get("ready"), timeout=5.0))
        await asyncio.sleep(0)
        threading.Thread(target=lambda: s.__setitem__("ready", "yes")).start()
        return await waiting

    assert asyncio.run(main()) == "yes"
    with pytest.raises(TimeoutError):
        asyncio.run(s.wait_for(lambda st: st.get("never"), timeout=0.2))


def test_observers_run_on_the_node_thread(default_node: None) -> None:
    s = SharedState("observed")
    threads: list[str] = []
    sub = s.observe(lambda change: threads.append(threading.current_thread().name))
    s["x"] = 1
    sub.close()
    s["x"] = 2
    assert len(threads) == 1 and threads[0].startswith("foundation-p2p")


async def test_an_asyncio_node_serves_shared_state_on_its_loop() -> None:
    async with Node(cluster="solo", listen="127.0.0.1:0", discovery=None) as node:
        s = node.shared_state("s")
        assert node.shared_state("s") is s and SharedState("s", node=node) is s
        s["k"] = [1, 2]
        await s.set("k2", {"a": 1}, write="all", timeout=1.0)
        assert s.to_dict() == {"k": [1, 2], "k2": {"a": 1}}
        with pytest.raises(NodeError, match="data"):
            await s.set("k3", 1, durable=True)
        assert s["k3"] == 1  # applied before the durability wait failed
        # from a worker thread, the synchronous API hops to this loop
        assert await asyncio.to_thread(lambda: s["k"]) == [1, 2]
        await asyncio.to_thread(lambda: s.__setitem__("from-thread", True))
        assert s["from-thread"] is True


async def test_a_node_that_is_not_running_refuses_clearly() -> None:
    node = Node(cluster="solo", listen="127.0.0.1:0", discovery=None)
    s = node.shared_state("s")  # fine before start
    with pytest.raises(NodeError, match="not started"):
        s["k"] = 1
    async with node:
        s["k"] = 1
        assert s["k"] == 1
    with pytest.raises(NodeError):
        s.get("k")


def test_a_node_thread_rejects_writes_after_stop() -> None:
    thread = NodeThread(Node(cluster="solo", listen="127.0.0.1:0", discovery=None)).start()
    s = thread.shared_state("s")
    s["k"] = 1
    thread.stop()
    with pytest.raises(NodeError):
        s["k"] = 2


def test_consistency_timeout_is_a_timeout_error() -> None:
    assert issubclass(ConsistencyTimeout, TimeoutError)


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_a_burst_of_sets_in_one_loop_turn_is_one_delta(layout: str) -> None:
    async with Node(cluster="solo", listen="127.0.0.1:0", discovery=None) as node:
        s = SharedState("burst", node=node, layout=layout)
        engine = node._require_engine()
        s["first"] = 0
        await asyncio.sleep(0)
        before = engine.write_seq
        for i in range(100):
            s[f"k{i}"] = i
        assert s["k99"] == 99 and len(s) == 101  # visible at once
        assert engine.write_seq == before  # not handed to the engine yet
        await asyncio.sleep(0)
        assert engine.write_seq == before + 1
        s["open"] = 1  # a batch is open ...
        with pytest.raises(RuntimeError), s.transaction():
            s["in-transaction"] = 1  # ... but a transaction's writes still wait for its end
            raise RuntimeError("abandon")
        assert "in-transaction" not in s
        await asyncio.sleep(0)
        before += 1
        await s.set("k0", "set waits for its own write", write="all", timeout=1.0)
        assert engine.write_seq == before + 2
        seen: list[object] = []
        s.observe(seen.append)  # with an observer, each set is its own change, at once ...
        s["a"] = 1
        s["b"] = 2
        assert [c.keys for c in seen] == [{"a"}, {"b"}] and engine.write_seq == before + 2
        await asyncio.sleep(0)  # ... and the sets still replicate as one delta
        assert engine.write_seq == before + 3 and len(seen) == 2


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_durable_writes_are_there_after_a_restart(tmp_path: Path, layout: str) -> None:
    options = {"cluster": "solo", "listen": "127.0.0.1:0", "discovery": None, "node_id": "p"}
    async with Node(data_dir=tmp_path, **options) as node:  # type: ignore[arg-type]
        s = SharedState("s", node=node, layout=layout)
        for i in range(50):
            s[f"k{i}"] = i  # batched
        await s.set("durable", b"yes", durable=True)
        s.counter("c").increment(3)
        await s.set("last", 1, durable=True)
    async with Node(data_dir=tmp_path, **options) as node:  # type: ignore[arg-type]
        other = "map" if layout == "kv" else "kv"
        with pytest.raises(ValueError, match=f"'{layout}' layout, opened with the '{other}'"):
            SharedState("s", node=node, layout=other).get("durable")
        s = SharedState("s", node=node, layout=layout)
        assert s["durable"] == b"yes" and s["k49"] == 49 and len(s) == 52
        assert s.counter("c").value == 3


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_a_batch_of_sets_survives_its_document_being_rebuilt(layout: str) -> None:
    from crdts import DecodeError, YDoc

    async with Node(cluster="solo", listen="127.0.0.1:0", discovery=None) as node:
        s = SharedState("s", node=node, layout=layout)
        s.apply_client_update(BAD_BASE)
        ydoc = node._require_engine().replication.replicas["state/s"]
        s["first"] = 1  # opens this turn's batch
        with pytest.raises(DecodeError):
            ydoc.merge(BAD)  # as a peer's delta: closes the batch, replaces the pycrdt Doc
        assert ydoc.generation == 1
        s["second"] = 2  # the batch's fast path notices the new Doc and re-binds
        s["third"] = 3
        await s.synced(timeout=1.0)
        assert s.to_dict() == {"first": 1, "second": 2, "third": 3}
        copy = YDoc.from_wire(ydoc.to_wire())
        if layout != "map":
            view = (
                KeyValueArray(copy.get("kv", Array))
                if layout == "kv"
                else LaneKeyValues(copy.doc, 0)
            )
            assert copy.fingerprint() == ydoc.fingerprint()
            assert dict(view.items()) == {"first": 1.0, "second": 2.0, "third": 3.0}
            return
        assert copy == ydoc and copy.get("data", Map).to_py() == {
            "first": 1.0,
            "second": 2.0,
            "third": 3.0,
        }
