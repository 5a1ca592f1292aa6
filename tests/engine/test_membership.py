"""SWIM with Lifeguard: probe, indirect probe, suspect, refute, dead, leave, rejoin."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdts import MemberTable
from foundation_p2p.config import Config
from foundation_p2p.engine import MemberDown, MemberLeft, MemberSuspect, MemberUp, Send
from foundation_p2p.engine.messages import Ack, Gossip, Ping, PingReq, Rumour
from foundation_p2p.engine.rumours import RumourQueue
from foundation_p2p.engine.suspicion import Suspicion


def formed(net, names):
    """Whether every engine sees every named node alive."""
    return all(net[name].members().get(other) == "alive" for name in names for other in names)


def test_join_through_a_seed_forms_the_cluster(engine_net):
    net = engine_net(["a", "b", "c", "d"])
    net.join_all("a")
    net.flush()
    net.run(3.0)
    assert formed(net, "abcd")
    assert net.events_of("d", MemberUp)  # d learned of the others through the seed


def test_probes_are_answered_and_counted(engine_net):
    net = engine_net(["a", "b"])
    net.join_all("a")
    net.run(5.0)
    assert net["a"].counters["probe.sent"] >= 3
    assert net["a"].counters["probe.acked"] == net["a"].counters["probe.sent"]
    assert net["a"].counters["probe.failed"] == 0
    assert net["a"].membership.health == 0


def test_a_silent_member_is_suspected_then_declared_dead(engine_net):
    config = Config.simulation()
    net = engine_net(["a", "b", "c"], config)
    net.join_all("a")
    net.run(3.0)
    net.down.add("c")
    crashed_at = net.now
    net.run(40.0)
    assert net["a"].members()["c"] == "dead" and net["b"].members()["c"] == "dead"
    suspected = [t for t, n, e in net.events if n == "a" and isinstance(e, MemberSuspect)]
    dead = [t for t, n, e in net.events if n == "a" and isinstance(e, MemberDown)]
    assert suspected and dead and suspected[0] < dead[0]
    # Lifeguard bound: never later than the maximum suspicion timeout after a full probe round
    _, maximum = config.suspicion_timeouts(3)
    assert dead[0] - crashed_at <= maximum + 3 * config.probe_interval + 1


def test_indirect_probe_saves_a_member_behind_a_broken_direct_link(engine_net):
    net = engine_net(["a", "b", "c", "d"])
    net.join_all("a")
    net.run(3.0)
    net.cut |= {("a", "b"), ("b", "a")}  # a and b cannot talk; both can reach c and d
    net.run(30.0)
    assert net["a"].members()["b"] == "alive"
    assert any(isinstance(s.message, PingReq) for src, s in net.sent if src == "a")


def test_a_suspected_member_refutes_with_a_higher_incarnation(engine_net):
    net = engine_net(["a", "b"])
    net.join_all("a")
    net.run(2.0)
    before = net["b"].incarnation
    rumour = Rumour("b", before, "suspect", "b", {}, "a")
    net.take("b", net["b"].receive(net.now, "a", Ack(999, (rumour,))))
    assert net["b"].incarnation == before + 1
    net.flush()
    net.run(2.0)
    assert net["a"].members()["b"] == "alive"
    assert net["a"].membership.table.get("b").incarnation == before + 1
    assert net["b"].counters["refuted"] == 1


def test_a_node_told_it_is_dead_rejoins_by_refuting(engine_net):
    net = engine_net(["a", "b", "c"])
    net.join_all("a")
    net.run(3.0)
    net.cut |= {("a", "c"), ("c", "a"), ("b", "c"), ("c", "b")}
    net.run(40.0)
    assert net["a"].members()["c"] == "dead"
    net.cut.clear()  # the partition heals: no discovery event, no operator action
    # noticed at the next reconnect attempt, whose backoff doubles up to its maximum
    net.run(net.config.reconnect_max_interval + 5.0)
    assert formed(net, "abc")
    assert net["c"].incarnation >= 1


def test_leave_is_graceful_and_final(engine_net):
    net = engine_net(["a", "b", "c"])
    net.join_all("a")
    net.run(3.0)
    net.take("c", net["c"].leave(net.now))
    net.flush()
    net.down.add("c")
    assert net.events_of("a", MemberLeft) and net.events_of("b", MemberLeft)
    net.run(30.0)
    assert net["a"].members()["c"] == "left"
    assert not net.events_of("a", MemberDown)  # a left member is not "failed"


def test_a_restarted_member_that_lost_its_state_rejoins(engine_net):
    net = engine_net(["a", "b"])
    net.join_all("a")
    net.run(3.0)
    net["b"].membership.refute(5)  # b has been around: incarnation 6
    net.run(2.0)
    from foundation_p2p.engine import Engine

    net.engines["b"] = Engine("b", net.config, address="b")  # restarted empty at incarnation 0
    net.take("b", net["b"].join(net.now, "a", "a"))
    net.flush()
    net.run(5.0)
    assert net["b"].incarnation > 6  # it learned of its old self and out-ranked it
    assert formed(net, "ab")


def test_suspicion_timeout_shrinks_with_independent_confirmations():
    suspicion = Suspicion(incarnation=1, started=0.0, minimum=4.0, maximum=24.0, expected=2)
    suspicion.confirm("a")
    assert suspicion.timeout() == 24.0
    assert suspicion.confirm("b") and not suspicion.confirm("b")
    middle = suspicion.timeout()
    suspicion.confirm("c")
    assert 4.0 < middle < 24.0 and suspicion.timeout() == pytest.approx(4.0)
    suspicion.confirm("d")
    assert suspicion.timeout() == 4.0  # never below the minimum


def test_rumour_queue_sends_least_sent_first_and_replaces_older_news():
    queue = RumourQueue()
    queue.push(Rumour("x", 1, "alive"))
    queue.push(Rumour("y", 1, "alive"))
    first = queue.take(1, limit=3)
    second = queue.take(1, limit=3)
    assert {first[0].node, second[0].node} == {"x", "y"}  # the unsent one goes next
    queue.push(Rumour("x", 2, "suspect"))
    assert [r for r in queue.pending() if r.node == "x"] == [Rumour("x", 2, "suspect")]
    for _ in range(10):
        queue.take(2, limit=3)
    assert len(queue) == 0  # every rumour retired after its retransmit limit


def test_retransmit_limit_follows_the_memberlist_formula():
    config = Config.simulation()
    assert config.retransmit_limit(1) == 4
    assert config.retransmit_limit(9) == 4
    assert config.retransmit_limit(10) == 8
    assert config.retransmit_limit(1000) == 16


def test_local_health_slows_probing_when_probes_fail(engine_net):
    net = engine_net(["a", "b", "c"])
    net.join_all("a")
    net.run(3.0)
    net.down |= {"b", "c"}  # a is cut off from everyone: its own health is in doubt
    net.run(6.0)
    assert net["a"].membership.health > 0
    assert net["a"].counters["probe.failed"] >= 2


def test_local_health_recovers_when_a_probe_is_answered_by_any_message(engine_net):
    """A probe's target may speak first (its own ping, an anti-entropy digest) and the Ack
    come after: the probe counts as answered either way, and health must come back down, or
    a node that once failed probes keeps probing slowly for good."""
    net = engine_net(["a", "b"])
    net.join_all("a")
    net.run(3.0)
    a = net["a"].membership
    a.health = 3
    a._start_probe(net.now)
    probe = a._probe
    assert probe is not None and probe.target == "b"
    net["a"].receive(net.now, "b", Ping(99, "a"))  # b speaks before its Ack arrives
    assert probe.acked and a.health == 2
    net["a"].receive(net.now, "b", Ack(probe.seq))
    assert a.health == 2  # one probe answered, one step down


def test_ping_answered_only_for_the_right_target(engine_net):
    net = engine_net(["a", "b"])
    outputs = net["b"].receive(0.0, "a", Ping(1, "b"))
    assert any(getattr(o, "message", None) == Ack(1, o.message.rumours) for o in outputs)


# --- evidence from the transport: a dropped connection, a refused dial ----------------------


def refusing_net(engine_net, names):
    """An EngineNet whose messages to a down node are refused at once, as TCP is refused by a
    live host whose process is gone: the sender is told through peer_unreachable."""
    net = engine_net(names)
    deliver = net.flush

    def flush(limit: int = 10_000) -> None:
        for src, send in list(net.queue):
            if send.dst in net.down and src not in net.down:
                net.take(src, net[src].peer_unreachable(net.now, send.dst))
        deliver(limit)

    net.flush = flush
    return net


def crash(net, victim):
    """Take `victim` down; every other engine sees its connection drop (TCP FIN on kill -9)."""
    net.down.add(victim)
    for name in net.engines:
        if name != victim:
            net.take(name, net[name].peer_disconnected(net.now, victim))
    net.flush()


def first(net, observer, kind, node):
    return min(
        (t for t, n, e in net.events if n == observer and isinstance(e, kind) and e.node == node),
        default=None,
    )


def test_a_refused_connection_starts_suspicion_at_once(engine_net):
    net = engine_net(["a", "b", "c", "d"])
    net.join_all("a")
    net.run(3.0)
    net.down.add("d")
    net.take("a", net["a"].peer_unreachable(net.now, "d"))
    assert net["a"].members()["d"] == "suspect"
    assert first(net, "a", MemberSuspect, "d") == net.now
    assert net["a"].counters["suspicion.unreachable"] == 1


def test_a_killed_process_is_declared_dead_after_the_minimum_suspicion(engine_net):
    names = ["a", "b", "c", "d", "e"]
    net = refusing_net(engine_net, names)
    net.join_all("a")
    net.run(5.0)
    killed = net.now
    crash(net, "e")  # each observer pings e at once, is refused, and accuses it itself
    minimum, maximum = net.config.suspicion_timeouts(len(names))
    net.run(minimum + 1.0)
    for observer in "abcd":
        assert net[observer].members()["e"] == "dead"
        assert first(net, observer, MemberSuspect, "e") == killed
        # the others' accusations are independent confirmations: the timeout fell to its floor
        assert killed + minimum <= first(net, observer, MemberDown, "e") <= killed + minimum + 0.1
    assert minimum < maximum


def test_without_refusals_a_crash_waits_for_failed_probes(engine_net):
    names = ["a", "b", "c", "d", "e"]
    net = engine_net(names)  # packets to e vanish: no connection refused (host down, partition)
    net.join_all("a")
    net.run(5.0)
    killed = net.now
    net.down.add("e")
    minimum, _ = net.config.suspicion_timeouts(len(names))
    net.run(30.0)
    downs = [first(net, observer, MemberDown, "e") for observer in "abcd"]
    assert all(t is not None for t in downs)
    assert max(downs) - killed > minimum + net.config.probe_interval  # slower than with evidence


def test_a_false_unreachable_report_is_refuted_and_nobody_marks_it_dead(engine_net):
    net = engine_net(["a", "b", "c", "d"])
    net.join_all("a")
    net.run(3.0)
    before = net["b"].incarnation
    for observer in "acd":  # every other member is told, wrongly, that b refused them
        net.take(observer, net[observer].peer_unreachable(net.now, "b"))
    net.flush()
    net.run(20.0)
    assert net["b"].incarnation > before
    assert all(net[n].members()["b"] == "alive" for n in "acd")
    assert not any(isinstance(e, MemberDown) and e.node == "b" for _, _, e in net.events)


def test_unreachable_reports_about_unknown_gone_or_own_nodes_change_nothing(engine_net):
    net = engine_net(["a", "b", "c"])
    net.join_all("a")
    net.run(3.0)
    net.take("c", net["c"].leave(net.now))
    net.flush()
    net.down.add("c")
    table = dict(net["a"].members())
    for node in ("nobody", "c", "a"):
        assert net["a"].peer_unreachable(net.now, node) == []
    assert net["a"].members() == table
    assert net["a"].counters["suspicion.unreachable"] == 0


def test_a_dropped_connection_to_a_live_member_is_probed_at_once(engine_net):
    net = engine_net(["a", "b", "c"])
    net.join_all("a")
    net.run(3.0)
    outputs = net["a"].peer_disconnected(net.now, "b")
    assert [(o.dst, type(o.message)) for o in outputs] == [("b", Ping)]
    net.take("a", outputs)
    net.flush()  # b answers: nothing else happens
    assert net["a"].members()["b"] == "alive"
    net.take("c", net["c"].leave(net.now))
    net.flush()
    assert net["a"].peer_disconnected(net.now, "c") == []  # a member that left is not probed


def test_in_a_three_node_cluster_suspicion_waits_only_the_minimum(engine_net):
    net = engine_net(["a", "b", "c"])
    net.join_all("a")
    net.run(3.0)
    net.down.add("c")
    accused = net.now
    net.take("a", net["a"].peer_unreachable(net.now, "c"))
    minimum, _ = net.config.suspicion_timeouts(3)
    net.run(minimum + 0.2)
    # one other member can never make the two confirmations expected: memberlist waits the minimum
    assert first(net, "a", MemberDown, "c") == pytest.approx(accused + minimum, abs=0.06)


def test_restore_knows_persisted_peers_as_news_would_without_gossiping_them():
    from foundation_p2p.engine import Engine

    restored, told = Engine("a", Config.simulation()), Engine("a", Config.simulation())
    restored.membership.restore(0.0, {"a": "a", "b": "b:1", "c": "c:1"})
    events = restored.tick(0.0)
    for node, address in (("b", "b:1"), ("c", "c:1")):
        told.membership.add_candidate(0.0, node, address)
    ups = [e for e in events if isinstance(e, MemberUp)]
    assert ups == [MemberUp("b", "b:1"), MemberUp("c", "c:1")]
    assert restored.members() == told.members() == {"a": "alive", "b": "alive", "c": "alive"}
    assert restored.membership.table.fingerprint() == told.membership.table.fingerprint()
    assert restored.membership.peers() == ["b", "c"] and restored.membership.cluster_size() == 3
    assert [r.node for r in restored.membership.rumours.pending()] == ["a"]
    restored.membership.restore(1.0, {"b": "b:2"})  # a known peer keeps what we know of it
    assert restored.membership.address_of("b") == "b:1"


def test_confirmations_stop_counting_once_the_timeout_is_at_its_minimum():
    # as memberlist's suspicion.Confirm: k confirmations, then no more (and no re-gossip)
    suspicion = Suspicion(incarnation=1, started=0.0, minimum=4.0, maximum=24.0, expected=2)
    assert suspicion.confirm("a") and suspicion.confirm("b") and not suspicion.full
    assert suspicion.confirm("c") and suspicion.full
    assert not suspicion.confirm("d") and suspicion.accusers == {"a", "b", "c"}
    assert suspicion.timeout() == pytest.approx(4.0)
    alone = Suspicion(incarnation=1, started=0.0, minimum=4.0, maximum=24.0, expected=0)
    assert alone.confirm("a") and not alone.confirm("b")


def test_a_confirmation_beyond_k_is_not_gossiped_again():
    from foundation_p2p.engine import Engine

    engine = Engine("a", Config.simulation())
    membership = engine.membership
    membership.restore(0.0, {n: n for n in "bcdefg"})
    membership.peer_unreachable(0.0, "g")  # suspected by "a" itself
    suspicion = membership._suspicions["g"]
    for accuser in ("x1", "x2", "x3", "x4"):
        engine.receive(1.0, "b", Gossip((Rumour("g", 0, "suspect", "g", {}, accuser),)))
    assert suspicion.full and suspicion.accusers == {"a", "x1", "x2"}
    assert engine.counters["suspicion.confirmed"] == 2
    queued = [r for r in membership.rumours.pending() if r.node == "g"]
    assert [r.by for r in queued] == ["x2"]


class _ReferenceQueue:
    """The rumour queue's contract written plainly: least-sent first, newest first among
    equals, one rumour per member, each retired after `limit` sends."""

    def __init__(self) -> None:
        self.entries: list[list] = []  # [sends, age, rumour]
        self.age = 0

    def push(self, rumour):
        self.entries = [e for e in self.entries if e[2].node != rumour.node]
        self.age += 1
        self.entries.append([0, self.age, rumour])

    def discard(self, node):
        self.entries = [e for e in self.entries if e[2].node != node]

    def take(self, count, limit):
        chosen = sorted(self.entries, key=lambda e: (e[0], -e[1]))[:count]
        for entry in chosen:  # re-queued as the newest of its new equals
            entry[0] += 1
            self.age += 1
            entry[1] = self.age
        self.entries = [e for e in self.entries if e[0] < limit or e not in chosen]
        return tuple(e[2] for e in chosen)


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.sampled_from("abcdefgh"), st.integers(0, 5)),
            st.tuples(st.just("take"), st.integers(1, 6), st.integers(1, 4)),
            st.tuples(st.just("discard"), st.sampled_from("abcdefgh"), st.just(0)),
        ),
        max_size=60,
    )
)
def test_the_rumour_queue_takes_what_the_plain_model_takes(operations):
    queue, model = RumourQueue(), _ReferenceQueue()
    for op, a, b in operations:
        if op == "push":
            rumour = Rumour(a, b, "alive")
            queue.push(rumour)
            model.push(rumour)
        elif op == "discard":
            queue.discard(a)
            model.discard(a)
        else:
            assert queue.take(a, b) == model.take(a, b)
        assert len(queue) == len(model.entries)


def _engine_with_peers(peers: str, node: str = "a", config: Config | None = None) -> Any:
    from foundation_p2p.engine import Engine

    engine = Engine(node, config or Config.simulation(), address=node)
    engine.membership.restore(0.0, {n: n for n in peers})
    engine.tick(0.0)
    engine._outbox.drain()
    return engine


def _dead_in_table(src: str, node: str, incarnation: int = 0) -> MemberTable:
    theirs = MemberTable(src)
    theirs.alive(node, incarnation, node)
    theirs.dead(node, incarnation)
    return theirs


def test_a_death_pulled_from_tables_is_checked_before_it_is_believed():
    # a healed partition's other side holds us all dead: rather than suspect (memberlist's
    # mergeState), ask the member itself, carrying the accusation so a live one refutes
    engine = _engine_with_peers("bcdefg")
    membership = engine.membership
    for src in ("b", "c", "d"):
        membership.apply_table(1.0, src, _dead_in_table(src, "g"))
    assert engine.members()["g"] == "alive"
    pings = [o for o in engine._outbox.drain() if isinstance(o, Send)]
    assert [p.dst for p in pings] == ["g"]  # one check, however many tables said so
    ping = pings[0].message
    assert isinstance(ping, Ping) and ping.target == "g"
    assert Rumour("g", 0, "suspect", "g", {}, "a") in ping.rumours
    assert len(ping.rumours) <= Config.simulation().max_rumours_per_message
    assert engine.counters["suspicion.checked"] == 1
    assert not [r for r in membership.rumours.pending() if r.node == "g"]

    # the accused, alive, refutes at once and answers
    accused = _engine_with_peers("abcdef", "g")
    answer = accused.receive(1.001, "a", ping)
    ack = next(o.message for o in answer if isinstance(o, Send) and o.dst == "a")
    assert accused.incarnation == 1
    assert Rumour("g", 1, "alive", "g", {}) in ack.rumours
    engine.receive(1.002, "g", ack)
    engine.tick(2.0)
    assert engine.members()["g"] == "alive"
    assert engine.membership.table.get("g").incarnation == 1
    assert engine.counters["suspicion.check_failed"] == 0


def test_a_check_carries_its_accusation_even_when_a_message_holds_one_rumour():
    engine = _engine_with_peers("bcdefg", config=Config.simulation(max_rumours_per_message=1))
    for node in "bcdef":  # news queued, waiting to be piggybacked
        engine.membership.rumours.push(Rumour(node, 1, "alive", node))
    queued = engine.membership.rumours.pending()
    engine.membership.apply_table(1.0, "b", _dead_in_table("b", "g"))
    (ping,) = [o.message for o in engine._outbox.drain() if isinstance(o, Send)]
    assert ping.rumours == (Rumour("g", 0, "suspect", "g", {}, "a"),)
    assert engine.membership.rumours.pending() == queued  # none taken for the check
    assert RumourQueue().take(0, 4) == ()


def test_a_death_pulled_from_tables_for_a_silent_member_becomes_our_suspicion():
    engine = _engine_with_peers("bcdefg")
    engine.membership.apply_table(1.0, "b", _dead_in_table("b", "g"))
    engine.tick(1.4)
    assert engine.members()["g"] == "alive"  # a probe period to answer
    engine.tick(1.0 + Config.simulation().probe_interval)
    assert engine.members()["g"] == "suspect"
    assert engine.counters["suspicion.check_failed"] == 1
    assert engine.membership._suspicions["g"].accusers == {"a"}


def test_a_death_pulled_from_tables_for_a_suspect_is_our_own_accusation_counted_once():
    # memberlist's mergeState: tables pulled from several peers are not independent
    # confirmations (nor re-gossiped); a gossiped accuser still confirms and is spread on
    engine = _engine_with_peers("bcdefg")
    membership = engine.membership
    engine.receive(1.0, "b", Gossip((Rumour("g", 0, "suspect", "g", {}, "b"),)))
    for src in ("b", "c", "d"):
        membership.apply_table(1.1, src, _dead_in_table(src, "g"))
    assert engine.members()["g"] == "suspect"
    assert membership._suspicions["g"].accusers == {"b", "a"}
    assert engine.counters["suspicion.confirmed"] == 1
    assert engine.counters["suspicion.checked"] == 0
    engine.receive(2.0, "c", Gossip((Rumour("g", 0, "suspect", "g", {}, "e"),)))
    assert membership._suspicions["g"].accusers == {"a", "b", "e"}


def test_news_from_a_table_drops_the_older_news_queued_about_that_member():
    # after a heal: "dead" is still queued when the member's refutation arrives in a table;
    # sent on, the older news would mark it dead again wherever the refutation is not yet known
    engine = _engine_with_peers("bcdefg")
    membership = engine.membership
    engine.receive(1.0, "b", Gossip((Rumour("g", 0, "dead", "g"), Rumour("f", 0, "dead", "f"))))
    assert {r.node for r in membership.rumours.pending()} >= {"f", "g"}
    refuted = MemberTable("c")
    refuted.alive("g", 1, "g")
    membership.apply_table(2.0, "c", refuted)
    assert engine.members()["g"] == "alive"
    pending = {r.node: r for r in membership.rumours.pending()}
    assert "g" not in pending  # nor is the table's news queued: anti-entropy spreads it
    assert pending["f"] == Rumour("f", 0, "dead", "f")
    taken = membership.take_rumours()
    assert all(r.node != "g" for r in taken) and Rumour("f", 0, "dead", "f") in taken


def test_the_rumour_queue_sweeps_replaced_news_and_keeps_the_newest() -> None:
    queue = RumourQueue()
    for incarnation in range(200):  # news about 3 members, replaced over and over
        for node in "xyz":
            queue.push(Rumour(node, incarnation, "alive"))
        if incarnation % 7 == 0:
            queue.take(2, limit=5)
    assert sorted((r.node, r.incarnation) for r in queue.pending()) == [
        ("x", 199),
        ("y", 199),
        ("z", 199),
    ]
    assert queue._entries <= 2 * len(queue) + 64  # replaced entries do not pile up
    taken = [r for _ in range(10) for r in queue.take(3, limit=5)]
    assert len(taken) == 15 and {r.incarnation for r in taken} == {199}
    assert len(queue) == 0


def test_news_is_passed_on_as_it_came_with_its_encoding() -> None:
    # a rumour that changes our table is re-gossiped as the same object (its msgpack encoding,
    # made once, goes with it); one completed from our table is a new rumour
    from foundation_p2p.engine import Engine, encode

    engine = Engine("a", Config.simulation())
    engine.membership.restore(0.0, {n: n for n in "bcdefg"})
    engine.tick(0.0)
    heard = Rumour("g", 0, "suspect", "g", {}, "b")
    encode(Gossip((heard,)))  # the sender encoded it
    engine.receive(1.0, "b", Gossip((heard,)))
    queued = [r for r in engine.membership.rumours.pending() if r.node == "g"]
    assert queued == [heard] and queued[0] is heard and heard.wire is not None
    confirmation = Rumour("g", 0, "suspect", "g", {}, "c")
    engine.receive(1.1, "c", Gossip((confirmation,)))
    assert next(r for r in engine.membership.rumours.pending() if r.node == "g") is confirmation
    bare = Rumour("f", 0, "dead", "")  # no address: ours completes it, so it is a new rumour
    engine.receive(1.2, "b", Gossip((bare,)))
    queued = [r for r in engine.membership.rumours.pending() if r.node == "f"]
    assert queued == [Rumour("f", 0, "dead", "f")] and queued[0] is not bare


def test_a_node_retries_a_few_of_many_dead_members_per_step_with_one_timer_each():
    # Serf's spread: RETRY_SPREAD / live members per dead member per backoff step, so about
    # three nodes of the cluster try each dead member per step; the steps a node skips are
    # drawn at once, not woken for
    from foundation_p2p.engine.membership import RETRY_SPREAD

    peers = [f"p{i:03}" for i in range(300)]
    unprobed = Config.simulation(probe_interval=1000.0, probe_timeout=1.0)  # the rest live on
    engine = _engine_with_peers("", config=unprobed)
    engine.membership.restore(0.0, {p: p for p in peers})
    membership = engine.membership
    timers: list[str] = []
    schedule = membership._schedule

    def counted(when: float, kind: str, node: str) -> None:
        timers.append(kind)
        schedule(when, kind, node)

    membership._schedule = counted
    dead = peers[:150]
    for node in dead:
        membership.apply(1.0, "p299", Rumour(node, 0, "dead", node))
    attempts = []  # a retry is an anti-entropy exchange with the dead member
    now = 1.0
    while now < 123.0:  # the backoff steps 2, 6, 14, 30, 62 and 122 s after the deaths
        now += 0.1
        attempts += [o.dst for o in engine.tick(now) if isinstance(o, Send) and o.dst in dead]
    expected = len(dead) * 6 * RETRY_SPREAD / (len(peers) - len(dead) + 1)
    assert expected / 3 < len(attempts) < expected * 3, (len(attempts), expected)
    assert engine.counters["reconnect.attempt"] == len(attempts)
    assert membership.cluster_size() == len(peers) - len(dead) + 1
    # a timer per dead member and per attempt (a timer per member per step would be 900)
    assert timers.count("retry") <= len(dead) + len(attempts)


def test_a_dead_member_that_speaks_is_retried_at_once():
    engine = _engine_with_peers("bc")
    engine.membership.apply(1.0, "b", Rumour("c", 0, "dead", "c"))
    engine.receive(1.5, "c", Gossip(()))
    sent = engine.tick(1.5)
    assert engine.counters["reconnect.attempt"] == 1
    assert [o.dst for o in sent if isinstance(o, Send) and o.dst == "c"] == ["c"]
