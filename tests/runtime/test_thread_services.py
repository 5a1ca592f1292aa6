"""The synchronous facade's cluster services: registry, calls, pub/sub, caches, placement and
member events from plain threads, each call shipped to the node's loop (two loopback nodes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from foundation_p2p.engine import MemberLeft
from foundation_p2p.node import Node
from foundation_p2p.runtime.thread import NodeThread, ThreadSafeService
from foundation_p2p.services.messaging import RemoteError
from tests.realnodes import eventually, fast

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pair() -> Iterator[tuple[NodeThread, NodeThread]]:
    a = NodeThread(Node(cluster="thr", node_id="a", discovery=None, config=fast())).start()
    b = NodeThread(
        Node(cluster="thr", node_id="b", discovery=None, seeds=[a.address], config=fast())
    ).start()
    try:
        a.run(eventually(lambda: a.node.members().get("b") == "alive"))
        yield a, b
    finally:
        b.stop()
        a.stop()


def test_services_from_plain_threads(pair: tuple[NodeThread, NodeThread]) -> None:
    a, b = pair

    def thermo(request: Any) -> Any:
        if request == "fail":
            raise ValueError("sensor offline")
        return {"celsius": 21.5}

    registration = b.registry.register("thermo", thermo, capabilities={"unit": "C"})
    a.run(eventually(lambda: bool(a.node.registry.lookup("thermo"))))
    assert [i.node for i in a.registry.lookup("thermo")] == ["b"]
    assert a.request("thermo", "read") == {"celsius": 21.5}
    with pytest.raises(RemoteError, match="sensor offline"):
        a.request("thermo", "fail")

    heard: list[Any] = []
    b.pubsub.subscribe("alerts", heard.append)
    a.run(eventually(lambda: bool(a.node.registry.lookup("sys.pubsub/alerts"))))
    a.pubsub.publish("alerts", {"level": 2})
    b.run(eventually(lambda: heard == [{"level": 2}]))

    a.cache.put("config", {"mode": "auto"}, ttl=60)
    b.run(eventually(lambda: b.node.cache._replica is not None and len(b.node.cache) == 1))
    assert b.cache.get("config") == {"mode": "auto"}
    assert b.cache.stats["hits"] == 1  # a plain attribute, read on the loop
    sessions = a.open_cache("sessions", mode="local", max_entries=2)
    sessions.put("s1", 1)
    assert sessions.get("s1") == 1 and len(sessions) == 1
    with pytest.raises(ValueError, match="mode must be one of"):
        a.open_cache("bad", mode="everywhere")
    registration.unregister()
    a.run(eventually(lambda: not a.node.registry.lookup("thermo")))


def test_placement_and_member_events_from_plain_threads(
    pair: tuple[NodeThread, NodeThread],
) -> None:
    a, b = pair
    ran: list[str] = []

    async def job() -> None:
        ran.append("started")

    leader = a.singleton("leader", job)
    assert isinstance(leader, ThreadSafeService)
    a.run(eventually(lambda: bool(ran)))
    assert leader.owner in {"a", "b"}
    events: list[Any] = []
    unsubscribe = a.on_member_change(events.append)
    b.stop()
    a.run(eventually(lambda: any(isinstance(e, MemberLeft) and e.node == "b" for e in events)))
    unsubscribe()
    leader.close()
