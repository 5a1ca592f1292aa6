"""The node's HTTP API (aiohttp): health, members, shared state as JSON, key administration.

`/state/<name>[/<key>]` reads and writes the node's SharedState `name` (the same data Python
sees through `node.shared_state(name)`); a PUT is a local write of this node and replicates
like any other. Bytes read back as `{"$bytes": base64}`. Bad JSON, an unknown replica or key,
or a value that cannot be replicated gets a 4xx with a JSON error body, and nothing is written.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from crdts import YDoc
from foundation_p2p.engine import MEMBERS
from foundation_p2p.runtime.dashboard import add_observability_routes
from foundation_p2p.runtime.metrics import health_details
from foundation_p2p.runtime.yjs import add_yjs_routes

if TYPE_CHECKING:
    from foundation_p2p.node import Node
    from foundation_p2p.services.state import SharedState

log = logging.getLogger("foundation_p2p.http")
STATE_PREFIX = "state/"  # as foundation_p2p.services.state names SharedState replicas
MAX_BODY = 1024 * 1024


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _jsonable(value: Any) -> Any:
    """A SharedState value for JSON: dict keys that are not str become str (bytes as base64)."""
    if isinstance(value, dict):
        return {_json_key(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _json_key(key: Any) -> str:
    if isinstance(key, bytes):
        return "$bytes:" + base64.b64encode(key).decode()
    return key if isinstance(key, str) else str(key)


def _reply(data: Any, status: int = 200) -> web.Response:
    return web.json_response(
        data, status=status, dumps=lambda d: json.dumps(d, default=_json_default)
    )


def _error(status: int, message: str) -> web.Response:
    return _reply({"error": message}, status)


def build_app(node: Node) -> web.Application:
    """The aiohttp application for `node`."""
    app = web.Application(client_max_size=MAX_BODY)
    routes = web.RouteTableDef()

    @routes.get("/health")
    async def health(request: web.Request) -> web.Response:
        members = node.members()
        by_state: dict[str, int] = {}
        for status in members.values():
            by_state[status] = by_state.get(status, 0) + 1
        return _reply(
            {
                "status": "ok",
                "node": node.node_id,
                "cluster": node.cluster,
                "address": node.address,
                "members": by_state,
                "replicas": sorted(n for n in node._require_engine().replica_names if n != MEMBERS),
                "shared_state_bytes": {
                    name.removeprefix(STATE_PREFIX): len(replica.full_update())
                    for name, replica in node._require_engine().replication.replicas.items()
                    if name.startswith(STATE_PREFIX) and isinstance(replica, YDoc)
                },
                **health_details(node),
            }
        )

    @routes.get("/members")
    async def members(request: web.Request) -> web.Response:
        engine = node._require_engine()
        table = {
            member_id: {
                "status": m.status,
                "incarnation": m.incarnation,
                "address": m.address,
                "metadata": dict(m.metadata),
            }
            for member_id, m in engine.membership.table.items()
        }
        return _reply({"node": node.node_id, "members": table})

    def existing_state(name: str) -> SharedState | None:
        """The node's SharedState `name` if the node holds it (a GET creates nothing)."""
        replica = node._require_engine().replication.replicas.get(STATE_PREFIX + name)
        if replica is None:
            return None
        if not isinstance(replica, YDoc):
            raise web.HTTPBadRequest(
                text=json.dumps({"error": f"replica {STATE_PREFIX + name!r} is not a SharedState"}),
                content_type="application/json",
            )
        return node.shared_state(name)

    @routes.get("/state/{name}")
    async def get_state(request: web.Request) -> web.Response:
        state = existing_state(request.match_info["name"])
        if state is None:
            return _error(404, f"no shared state named {request.match_info['name']!r}")
        return _reply(_jsonable(state.to_dict()))

    @routes.get("/state/{name}/{key}")
    async def get_key(request: web.Request) -> web.Response:
        name, key = request.match_info["name"], request.match_info["key"]
        state = existing_state(name)
        if state is None:
            return _error(404, f"no shared state named {name!r}")
        missing = object()
        value = state.get(key, missing)
        if value is missing:
            return _error(404, f"no key {key!r} in {name!r}")
        return _reply({"key": key, "value": _jsonable(value)})

    @routes.put("/state/{name}/{key}")
    async def put_key(request: web.Request) -> web.Response:
        """Set a key; `?write=majority|all&timeout=S` waits like SharedState.set (504 when the
        level is not reached in time: the write stays applied and replicates)."""
        name, key = request.match_info["name"], request.match_info["key"]
        try:
            value = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, f"body is not JSON: {exc}")
        write = request.query.get("write", "local")
        try:
            timeout = float(request.query.get("timeout", "2.0"))
            if not 0 < timeout <= 60:
                raise ValueError(timeout)
            state = existing_state(name)  # refuses a replica of another type
            if state is None:
                state = node.shared_state(name)
            await state.set(key, value, write=write, timeout=timeout)
        except TimeoutError as exc:  # ConsistencyTimeout (runtime does not import services)
            return _error(504, str(exc))
        except (TypeError, ValueError) as exc:
            return _error(400, f"value cannot be replicated: {exc}")
        return _reply({"key": key, "value": value, "node": node.node_id})

    @routes.delete("/state/{name}/{key}")
    async def delete_key(request: web.Request) -> web.Response:
        name, key = request.match_info["name"], request.match_info["key"]
        state = existing_state(name)
        if state is None or key not in state:
            return _error(404, f"no key {key!r} in {name!r}")
        del state[key]
        return _reply({"deleted": key, "node": node.node_id})

    @routes.get("/admin/keys")
    async def list_keys(request: web.Request) -> web.Response:
        denied = _authorize(node, request)
        if denied is not None:
            return denied
        keyring = node.keyring
        assert keyring is not None
        return _reply({"keys": keyring.key_ids(), "primary": keyring.primary_id()})

    @routes.post("/admin/keys")
    async def change_keys(request: web.Request) -> web.Response:
        denied = _authorize(node, request)
        if denied is not None:
            return denied
        keyring = node.keyring
        assert keyring is not None
        try:
            body = await request.json()
            operation, key = body["op"], body["key"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            return _error(400, f'expected {{"op": "install"|"use"|"remove", "key": ...}}: {exc}')
        if operation not in ("install", "use", "remove"):
            return _error(400, f"op must be install, use or remove, got {operation!r}")
        try:
            getattr(keyring, operation)(key)
        except (ValueError, KeyError) as exc:
            return _error(400, str(exc))
        log.warning("key %s: %s", operation, keyring.key_id(key))
        return _reply({"keys": keyring.key_ids(), "primary": keyring.primary_id()})

    @routes.get("/admin/backup")
    async def backup(request: web.Request) -> web.Response:
        denied = _authorize(node, request)
        if denied is not None:
            return denied
        data = node.backup_bytes()  # taken on the loop in one go: a consistent cut
        return web.Response(body=data, content_type="application/octet-stream")

    @routes.get("/admin/partition")
    @routes.post("/admin/partition")
    @routes.delete("/admin/partition")
    async def partition(request: web.Request) -> web.Response:
        """Fault injection (`--demo-faults` only): POST {"seconds": S} cuts this node off from
        every peer for S s, DELETE heals it now, GET reports the cut and what it dropped."""
        denied = _authorize(node, request)
        if denied is not None:
            return denied
        gate = node.fault
        if gate is None:
            return _error(404, "fault injection is off: start the node with --demo-faults")
        if request.method == "POST":
            try:
                body = await request.json()
                gate.cut_for(body["seconds"])
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
                return _error(400, f'expected {{"seconds": S}}: {exc}')
            except ValueError as exc:
                return _error(400, str(exc))
        elif request.method == "DELETE":
            gate.heal()
        return _reply(
            {"node": node.node_id, "cut": gate.cut, "remaining": gate.remaining, **gate.counters}
        )

    app.add_routes(routes)
    add_observability_routes(app, node)
    add_yjs_routes(app, node)  # /yjs/<state-name>: y-websocket clients (runtime/yjs.py)
    return app


def _authorize(node: Node, request: web.Request) -> web.Response | None:
    """Admin endpoints need a bearer token derived from any installed cluster key."""
    keyring = node.keyring
    if keyring is None:
        return _error(403, "this node has no cluster key; key administration is disabled")
    supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not any(hmac.compare_digest(supplied, token) for token in keyring.tokens("admin")):
        log.warning("refused admin request from %s: bad token", request.remote)
        node._require_engine().counters["refused.admin_token"] += 1
        return _error(401, "missing or wrong admin token")
    return None


async def serve(node: Node, listen: str) -> tuple[web.AppRunner, str]:
    """Start the HTTP server on `listen` ("host:port"); return the runner and the bound address."""
    from transport.discovery import parse_address

    host, port = parse_address(listen) if not listen.endswith(":0") else (listen[:-2], 0)
    runner = web.AppRunner(build_app(node), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0] if runner.addresses else (host, port)
    return runner, f"{bound[0]}:{bound[1]}"
