"""Random writes and faults against 3-7 simulated nodes; after a final heal and a quiet period,
every replica has converged, no acknowledged write is lost and nothing removed comes back.
SharedState writes (keys, a counter, a text; and keys and a counter of a "lanes" state) take
part like the other replicas.

Hypothesis drives the rules; the simulator's seed is part of the drawn data, so a failure
prints the exact steps and seed, and replays exactly.
"""

from __future__ import annotations

import os

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from crdts import AWORSet, LWWMap, PNCounter
from foundation_p2p.services.state import SharedState
from simulations import SimCluster, settle
from simulations.invariants import (
    memberships_agree,
    no_lost_writes,
    no_resurrection,
    replicas_equal,
)

ELEMENTS = st.sampled_from(["a", "b", "c", "d"])
KEYS = st.sampled_from(["k1", "k2", "k3"])


class ClusterMachine(RuleBasedStateMachine):
    """A cluster under random writes, partitions, one-way cuts, loss, crashes and restarts."""

    sim: SimCluster

    @initialize(nodes=st.integers(3, 7), seed=st.integers(0, 2**32 - 1))
    def start(self, nodes: int, seed: int) -> None:
        self.sim = SimCluster(nodes=nodes, seed=seed)
        self.ids = list(self.sim.nodes)
        self.amounts: list[tuple[int, int]] = []  # (index in sim.writes, increment)
        self.visits: list[tuple[int, int]] = []  # SharedState counter: (write index, amount)
        self.notes: list[tuple[int, str]] = []  # SharedState text appends: (write index, token)
        self.lane_visits: list[tuple[int, int]] = []  # the "lanes" state's counter
        self.sim.run_for(2.0)

    def live(self) -> list[str]:
        return [n.node_id for n in self.sim.live_nodes()]

    def pick(self, data: st.DataObject, only_live: bool = True) -> str:
        return data.draw(st.sampled_from(self.live() if only_live else self.ids))

    @rule(data=st.data(), amount=st.integers(-3, 5))
    def count(self, data: st.DataObject, amount: int) -> None:
        self.sim.node(self.pick(data)).replica("hits", PNCounter).increment(amount)
        if amount:
            self.amounts.append((len(self.sim.writes) - 1, amount))

    @rule(data=st.data(), element=ELEMENTS)
    def add(self, data: st.DataObject, element: str) -> None:
        self.sim.node(self.pick(data)).replica("online", AWORSet).add(element)

    @rule(data=st.data(), element=ELEMENTS)
    def remove(self, data: st.DataObject, element: str) -> None:
        self.sim.node(self.pick(data)).replica("online", AWORSet).remove(element)

    @rule(data=st.data(), key=KEYS, value=st.integers(0, 99))
    def set_key(self, data: st.DataObject, key: str, value: int) -> None:
        self.sim.node(self.pick(data)).replica("config", LWWMap).set(key, value)

    @rule(data=st.data(), key=KEYS)
    def delete_key(self, data: st.DataObject, key: str) -> None:
        self.sim.node(self.pick(data)).replica("config", LWWMap).delete(key)

    @rule(data=st.data(), key=KEYS, value=st.integers(0, 99) | st.binary(max_size=3))
    def state_set(self, data: st.DataObject, key: str, value: int | bytes) -> None:
        self.sim.node(self.pick(data)).shared_state("line-3")[key] = value

    @rule(data=st.data(), key=KEYS)
    def state_delete(self, data: st.DataObject, key: str) -> None:
        state = self.sim.node(self.pick(data)).shared_state("line-3")
        if key in state:
            del state[key]

    @rule(data=st.data(), amount=st.integers(-3, 5))
    def state_count(self, data: st.DataObject, amount: int) -> None:
        self.sim.node(self.pick(data)).shared_state("line-3").counter("visits").increment(amount)
        self.visits.append((len(self.sim.writes) - 1, amount))

    @rule(data=st.data())
    def state_note(self, data: st.DataObject) -> None:
        token = f"<{len(self.notes)}>"
        self.sim.node(self.pick(data)).shared_state("line-3").text("notes").append(token)
        self.notes.append((len(self.sim.writes) - 1, token))

    def lanes_state(self, data: st.DataObject) -> SharedState:
        return self.sim.node(self.pick(data)).shared_state("line-4", layout="lanes")

    @rule(data=st.data(), key=KEYS, value=st.integers(0, 99))
    def lanes_set(self, data: st.DataObject, key: str, value: int) -> None:
        self.lanes_state(data)[key] = value

    @rule(data=st.data(), key=KEYS)
    def lanes_delete(self, data: st.DataObject, key: str) -> None:
        state = self.lanes_state(data)
        if key in state:
            del state[key]

    @rule(data=st.data(), amount=st.integers(-3, 5))
    def lanes_count(self, data: st.DataObject, amount: int) -> None:
        self.lanes_state(data).counter("visits").increment(amount)
        self.lane_visits.append((len(self.sim.writes) - 1, amount))

    @rule(data=st.data())
    def partition(self, data: st.DataObject) -> None:
        shuffled = data.draw(st.permutations(self.ids))
        cut = data.draw(st.integers(1, len(self.ids) - 1))
        self.sim.partition(shuffled[:cut], shuffled[cut:])

    @rule(data=st.data())
    def partition_oneway(self, data: st.DataObject) -> None:
        shuffled = data.draw(st.permutations(self.ids))
        cut = data.draw(st.integers(1, len(self.ids) - 1))
        self.sim.partition_oneway(shuffled[:cut], shuffled[cut:])

    @rule(loss=st.sampled_from([0.0, 0.05, 0.2]))
    def loss(self, loss: float) -> None:
        self.sim.set_loss(loss)

    @precondition(lambda self: len(self.live()) > 1)
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        self.sim.crash(self.pick(data))

    @precondition(lambda self: len(self.live()) < len(self.ids))
    @rule(data=st.data(), keep_state=st.booleans())
    def restart(self, data: st.DataObject, keep_state: bool) -> None:
        down = [n for n in self.ids if n not in self.live()]
        self.sim.restart(data.draw(st.sampled_from(down)), keep_state=keep_state)

    @rule()
    def heal(self) -> None:
        self.sim.heal()

    @rule(seconds=st.sampled_from([0.01, 0.5, 2.0, 8.0]))
    def wait(self, seconds: float) -> None:
        self.sim.run_for(seconds)

    @invariant()
    def replicas_stay_readable(self) -> None:
        for node in self.sim.live_nodes():
            for replica in node.engine.replication.replicas.values():
                assert replica.value is not None

    def teardown(self) -> None:
        sim = getattr(self, "sim", None)
        if sim is None:
            return
        # heal, restart the crashed (empty), and require convergence to hold for 2 quiet seconds
        settled = settle(sim, quiet=2.0, timeout=120.0, keep_state=False)
        detail = f"seed={sim.seed} t={sim.now:.1f}"
        assert settled, (
            f"no convergence ({detail}): {replicas_equal(sim)[:3]} {memberships_agree(sim)[:3]}"
        )
        assert not no_lost_writes(sim), f"lost writes ({detail}): {no_lost_writes(sim)[:3]}"
        assert not no_resurrection(sim), f"resurrection ({detail}): {no_resurrection(sim)[:3]}"
        expected = sum(amount for i, amount in self.amounts if not sim.writes[i].lost)
        for node in sim.live_nodes():
            counter = node.engine.replication.replicas.get("hits")
            assert (counter.value if counter else 0) == expected, f"counter off ({detail})"
        visits = sum(amount for i, amount in self.visits if not sim.writes[i].lost)
        tokens = [token for i, token in self.notes if not sim.writes[i].lost]
        for node in sim.live_nodes():
            state = node.shared_state("line-3")
            assert state.counter("visits").value == visits, f"visits off ({detail})"
            notes = str(state.text("notes"))
            assert all(token in notes for token in tokens), f"lost text ({detail}): {notes}"
            assert len(notes) == sum(map(len, tokens)), f"text resurrected ({detail}): {notes}"
        lane_visits = sum(amount for i, amount in self.lane_visits if not sim.writes[i].lost)
        views = []
        for node in sim.live_nodes():
            lanes = node.shared_state("line-4", layout="lanes")
            assert lanes.counter("visits").value == lane_visits, f"lane visits off ({detail})"
            views.append(lanes.to_dict())
        assert all(view == views[0] for view in views), f"lanes differ ({detail}): {views}"


# 200 examples in CI (HYPOTHESIS_PROFILE=ci), a quick 25 locally.
ClusterMachine.TestCase.settings = settings(
    max_examples=200 if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else 25,
    stateful_step_count=25,
    deadline=None,
    print_blob=True,
)
TestCluster = ClusterMachine.TestCase
