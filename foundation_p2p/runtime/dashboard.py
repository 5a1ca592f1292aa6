"""The node's operator views over HTTP: the dashboard page, its JSON feed, and /metrics.

`GET /` serves a static page (foundation_p2p/runtime/static/, no build step) that polls
`GET /api/overview` every 500 ms. `GET /metrics` is Prometheus text from the node's own
registry. Everything is read from the engine and the observer when asked.
"""

from __future__ import annotations

import base64
import json
import math
from collections import Counter
from collections.abc import Iterator
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from foundation_p2p.engine.replication import MEMBERS
from foundation_p2p.runtime.metrics import (
    ObservedNode,
    health_details,
    silence_limit,
    transport_counters,
)

REGISTRY = "sys/registry"
MAX_REGISTRY_ENTRIES = 200
STATIC_FILES = {
    "index.html": "text/html",
    "dashboard.js": "application/javascript",
    "dashboard.css": "text/css",
}


def add_observability_routes(app: web.Application, node: ObservedNode) -> None:
    """Add `/`, `/static/<file>`, `/api/overview` and `/metrics` for `node` to `app`."""
    registry = registry_for(node)
    static = resources.files("foundation_p2p.runtime") / "static"

    async def page(request: web.Request) -> web.Response:
        return await static_file(request, "index.html")

    async def static_file(request: web.Request, name: str | None = None) -> web.Response:
        name = name or request.match_info["name"]
        content_type = STATIC_FILES.get(name)
        if content_type is None:
            raise web.HTTPNotFound(text=f"no static file {name!r}")
        body = (static / name).read_bytes()
        return web.Response(body=body, content_type=content_type, charset="utf-8")

    async def metrics(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def api_overview(request: web.Request) -> web.Response:
        return web.Response(
            text=json.dumps(overview(node), default=_json_default, allow_nan=False),
            content_type="application/json",
        )

    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static_file)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/overview", api_overview)


class NodeCollector(Collector):
    """Prometheus metrics of one node, read from its engine and observer at scrape time."""

    def __init__(self, node: ObservedNode) -> None:
        self.node = node

    def describe(self) -> list[Metric]:
        """No up-front description: metric families depend on the running node."""
        return []

    def collect(self) -> Iterator[Metric]:
        """One family per metric, labelled by state, message type, peer, replica or reason."""
        node, engine, observer = self.node, self.node.engine, self.node.observer
        if engine is None or observer is None:
            return
        now = observer.clock()
        info = GaugeMetricFamily(
            "foundation_p2p_node_info", "This node (always 1).", labels=["node", "cluster"]
        )
        info.add_metric([node.node_id, node.cluster], 1)
        yield info

        members = GaugeMetricFamily(
            "foundation_p2p_members", "Members known to this node, by state.", labels=["state"]
        )
        by_state = Counter(engine.members().values())
        for state in ("alive", "suspect", "dead", "left"):
            members.add_metric([state], by_state.get(state, 0))
        yield members

        for direction, messages, sizes in (
            ("received", observer.messages_in, observer.bytes_in),
            ("sent", observer.messages_out, observer.bytes_out),
        ):
            count = CounterMetricFamily(
                f"foundation_p2p_messages_{direction}",
                f"Protocol messages {direction}, by message type.",
                labels=["type"],
            )
            volume = CounterMetricFamily(
                f"foundation_p2p_{direction}_bytes",
                f"Frame bytes {direction} (after the length prefix), by message type.",
                labels=["type"],
            )
            for kind in sorted(messages):
                count.add_metric([kind], messages[kind])
                volume.add_metric([kind], sizes[kind])
            yield count
            yield volume

        counters = engine.counters
        rounds = CounterMetricFamily(
            "foundation_p2p_anti_entropy_rounds", "Anti-entropy exchanges this node started."
        )
        rounds.add_metric([], counters.get("anti_entropy.rounds", 0))
        yield rounds
        merges = CounterMetricFamily(
            "foundation_p2p_replica_merges", "Remote deltas merged into a local replica."
        )
        merges.add_metric([], counters.get("replica.merged", 0))
        yield merges

        refused = CounterMetricFamily(
            "foundation_p2p_refused_frames",
            "Frames, connections and messages refused, by reason.",
            labels=["reason"],
        )
        for key in sorted(counters):
            if key.startswith("refused."):
                refused.add_metric([key.removeprefix("refused.")], counters[key])
        yield refused

        lag = GaugeMetricFamily(
            "foundation_p2p_replication_lag_seconds",
            "Per peer: seconds since the oldest push it has not acknowledged (0: none).",
            labels=["peer"],
        )
        for peer, seconds in sorted(observer.replication_lag(now).items()):
            lag.add_metric([peer], seconds)
        yield lag

        replica_sizes = GaugeMetricFamily(
            "foundation_p2p_replica_size_bytes",
            "Encoded size of each replica's full state.",
            labels=["replica"],
        )
        replicas = engine.replication.replicas
        table_size = observer.replica_summary(MEMBERS, engine.membership.table)[0]
        replica_sizes.add_metric([MEMBERS], table_size)
        for name in sorted(replicas):
            replica_sizes.add_metric([name], observer.replica_summary(name, replicas[name])[0])
        yield replica_sizes

        engine_events = CounterMetricFamily(
            "foundation_p2p_engine_events",
            "Every engine counter (probes, suspicions, pushes, ...), by name.",
            labels=["name"],
        )
        for key in sorted(counters):
            engine_events.add_metric([key], counters[key])
        yield engine_events

        transport_events = CounterMetricFamily(
            "foundation_p2p_transport_events",
            "Transport counters (dial failures, drops, refusals), by name.",
            labels=["name"],
        )
        for key, value in sorted(transport_counters(node).items()):
            transport_events.add_metric([key], value)
        yield transport_events

        caches = CounterMetricFamily(
            "foundation_p2p_cache_operations",
            "Cache operations (hits, misses, invalidations, ...), by cache and operation.",
            labels=["cache", "operation"],
        )
        for name, cache in sorted((getattr(node, "open_caches", None) or {}).items()):
            for operation, count in sorted(getattr(cache, "stats", {}).items()):
                caches.add_metric([name, operation], count)
        yield caches

        uptime = GaugeMetricFamily("foundation_p2p_uptime_seconds", "Seconds since start.")
        uptime.add_metric([], max(0.0, now - observer.started))
        yield uptime


def registry_for(node: ObservedNode) -> CollectorRegistry:
    """A registry of its own for `node`, so several nodes in one process never clash."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    return registry


def overview(node: ObservedNode) -> dict[str, Any]:
    """Everything the dashboard and `foundation-p2p status` show, as JSON-safe data."""
    engine, observer = node.engine, node.observer
    if engine is None or observer is None:
        return {"node": node.node_id, "cluster": node.cluster, "running": False}
    now = observer.clock()
    table = engine.membership.table
    limit = silence_limit(engine)
    connected = set(_connected_peers(node))
    lag = observer.replication_lag(now)
    members = []
    for member_id, member in sorted(table.items()):
        since = observer.member_since.get(member_id)
        heard = observer.last_heard.get(member_id)
        members.append(
            {
                "id": member_id,
                "self": member_id == node.node_id,
                "status": member.status,
                "incarnation": member.incarnation,
                "address": member.address,
                "since_ago": None if since is None else _finite(now - since[1]),
                "last_heard_ago": None if heard is None else _finite(now - heard),
                "connected": member_id in connected,
                "lag": lag.get(member_id),
            }
        )
    links = []
    for entry in members:
        if entry["self"] or entry["status"] == "left":
            continue
        heard_ago = entry["last_heard_ago"]
        reached = isinstance(heard_ago, float) and heard_ago <= limit and entry["status"] == "alive"
        links.append(
            {
                "from": node.node_id,
                "to": entry["id"],
                "state": "ok" if reached else "unreachable",
            }
        )
    # who else failed to reach a suspect, as far as the suspicion's accusers tell us
    suspicions = getattr(engine.membership, "_suspicions", {})
    for suspect, suspicion in sorted(suspicions.items()):
        for accuser in sorted(getattr(suspicion, "accusers", ())):
            if accuser != node.node_id:
                links.append({"from": accuser, "to": suspect, "state": "accuses"})
    replicas = []
    all_replicas = [(MEMBERS, table), *sorted(engine.replication.replicas.items())]
    for name, replica in all_replicas:
        size, fingerprint = observer.replica_summary(name, replica)
        replicas.append(
            {
                "name": name,
                "type": type(replica).__name__,
                "digest": fingerprint.hex(),
                "size": size,
            }
        )
    return {
        "running": True,
        "node": node.node_id,
        "cluster": node.cluster,
        "address": node.address,
        "now": now,
        "uptime": now - observer.started,
        "members": members,
        "links": links,
        "replicas": replicas,
        "registry": _registry_entries(engine.replication.replicas.get(REGISTRY)),
        "events": [dict(e, ago=now - e["t"]) for e in reversed(observer.events)][:50],
        "lag": lag,
        "health": health_details(node),
        "traffic": {
            "received": dict(observer.messages_in),
            "sent": dict(observer.messages_out),
            "bytes_received": sum(observer.bytes_in.values()),
            "bytes_sent": sum(observer.bytes_out.values()),
        },
        "counters": {
            "engine": dict(engine.counters),
            "transport": dict(transport_counters(node)),
        },
    }


def _connected_peers(node: ObservedNode) -> list[str]:
    transport = getattr(node, "transport", None)
    peers = getattr(transport, "peers", None)
    return list(peers()) if callable(peers) else []


def _registry_entries(replica: Any) -> list[dict[str, Any]] | None:
    """The registry's services with their instances, JSON-safe and bounded (None if there is
    no registry). Records are read in the layout of services.registry.Instance.to_record
    (name, node, capabilities, meta, load); one of another shape is shown raw."""
    if replica is None:
        return None
    try:
        value = replica.value
    except Exception as exc:  # a replica we cannot read: say so rather than fail the page
        return [{"service": "?", "instances": [], "raw": f"unreadable: {exc}"}]
    if not isinstance(value, dict):
        return [{"service": "?", "instances": [], "raw": _json_safe(value)}]
    services: dict[str, list[dict[str, Any]]] = {}
    odd: list[dict[str, Any]] = []
    for instance_id in sorted(value, key=str)[:MAX_REGISTRY_ENTRIES]:
        record = value[instance_id]
        if isinstance(record, list) and len(record) == 5 and isinstance(record[0], str):
            name, node, capabilities, meta, load = record
            services.setdefault(name, []).append(
                {
                    "id": str(instance_id),
                    "node": _json_safe(node),
                    "capabilities": _json_safe(capabilities),
                    "meta": _json_safe(meta),
                    "load": _json_safe(load),
                }
            )
        else:
            odd.append({"service": "?", "instances": [], "raw": _json_safe(record)})
    return [{"service": n, "instances": services[n]} for n in sorted(services)] + odd


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [_json_safe(v) for v in items]
    if isinstance(value, float):
        return _finite(value)
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, bytes | bytearray):
        return {"$bytes": base64.b64encode(value).decode()}
    return repr(value)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _json_default(value: Any) -> Any:
    return _json_safe(value)


def format_status(data: dict[str, Any]) -> str:
    """The overview as terminal text: members, replicas, health findings."""
    if not data.get("running"):
        return f"node {data.get('node')} of cluster {data.get('cluster')!r} is stopped"
    health = data.get("health", {})
    lines = [
        f"node {data['node']} of cluster {data['cluster']!r} at {data['address']}, "
        f"up {_seconds(data.get('uptime'))}",
        f"members: {health.get('actual_members')} alive of {health.get('expected_members')} "
        f"expected; last topology change "
        + (
            "never"
            if health.get("last_topology_change_ago") is None
            else f"{_seconds(health['last_topology_change_ago'])} ago"
        ),
        "",
    ]
    member_rows = [
        [
            m["id"] + (" *" if m["self"] else ""),
            m["status"],
            _seconds(m["since_ago"]),
            "-" if m["self"] else _seconds(m["last_heard_ago"]),
            "-" if m["lag"] is None else _seconds(m["lag"]),
            m["address"],
        ]
        for m in data["members"]
    ]
    lines += _table(["MEMBER", "STATUS", "SINCE", "LAST HEARD", "LAG", "ADDRESS"], member_rows)
    lines.append("")
    replica_rows = [[r["name"], r["type"], r["digest"], str(r["size"])] for r in data["replicas"]]
    lines += _table(["REPLICA", "TYPE", "DIGEST", "BYTES"], replica_rows)
    registry = data.get("registry")
    if registry is not None:
        lines.append("")
        rows = [
            [entry["service"], _instances(entry) or json.dumps(entry.get("raw"))[:80]]
            for entry in registry
        ]
        lines += _table(["SERVICE", "INSTANCES (NODE CAPABILITIES)"], rows)
    lines.append("")
    status = health.get("cluster_status", "?")
    lines.append(f"health: {status}")
    for advice in health.get("recommendations", []):
        lines.append(f"  - {advice}")
    return "\n".join(lines)


def _instances(entry: dict[str, Any]) -> str:
    return ", ".join(f"{i['node']} {json.dumps(i['capabilities'])}" for i in entry["instances"])


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
