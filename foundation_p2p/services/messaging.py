"""Messaging between services: pub/sub, fire-and-forget `send`, request/response `call`.

Messages travel as engine `AppMessage`s (the engine carries them; this module gives them
meaning). A subscriber's node registers the topic in the registry under `sys.pubsub/<topic>`,
so a publisher sends one message to each node with subscribers and calls its own subscribers
directly. What one event-loop turn queues for a peer leaves as one `APP_BATCH` frame, in
order. Handlers are the ones given to `registry.register`; any exception a handler raises goes
back to the caller as `RemoteError`, and nothing a peer sends can stop the node.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack

from foundation_p2p import context as ctx
from foundation_p2p.engine import (
    AppMessage,
    AppReceived,
    Event,
    MemberDown,
    MemberLeft,
    RemoteProtocolError,
)
from foundation_p2p.engine.codec import app_message_fields, parse_app_message
from foundation_p2p.engine.messages import (
    APP_BATCH,
    APP_ERROR,
    APP_PUBLISH,
    APP_REPLY,
    APP_REQUEST,
    APP_SEND,
)
from foundation_p2p.services.registry import Instance, Registration, Registry, ServiceNotFound

log = logging.getLogger("foundation_p2p.services.messaging")

PUBSUB_PREFIX = "sys.pubsub/"
BATCH_MESSAGES = 1024  # at most this many messages...
BATCH_BYTES = 64 * 1024  # ...and about this many payload bytes in one batch frame
SYSTEM_PREFIX = "sys."
Callback = Callable[[Any], Any]


class RemoteError(Exception):
    """A handler on another node (or this one) raised; `type` and `message` say what."""

    def __init__(self, type_name: str, message: str, service: str = "") -> None:
        super().__init__(f"{type_name}: {message}" + (f" (service {service!r})" if service else ""))
        self.type = type_name
        self.message = message
        self.service = service


class _PeerLost(Exception):
    """The node a request was sent to died or left before replying (the call retries)."""


def pack(value: Any) -> bytes:
    """A message as msgpack; TypeError if it is not a msgpack-able value."""
    try:
        return bytes(msgpack.packb(value, use_bin_type=True))
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"a message must be msgpack-able (dict, list, str, ...): {exc}") from None


def unpack(payload: bytes) -> Any:
    """Inverse of pack()."""
    return msgpack.unpackb(payload, raw=False, strict_map_key=False)


class Subscription:
    """A pub/sub subscription; `close()` ends it."""

    __slots__ = ("_messaging", "callback", "topic")

    def __init__(self, messaging: Messaging, topic: str, callback: Callback) -> None:
        self._messaging = messaging
        self.topic = topic
        self.callback = callback

    def close(self) -> None:
        """Stop delivering to this callback (idempotent)."""
        self._messaging._unsubscribe(self)


class PubSub:
    """`node.pubsub`: topics delivered to every current subscriber in the cluster."""

    def __init__(self, messaging: Messaging) -> None:
        self._messaging = messaging

    def subscribe(self, topic: str, callback: Callback) -> Subscription:
        """Call `callback(message)` (sync or async) for every message published on `topic`."""
        return self._messaging.subscribe(topic, callback)

    async def publish(self, topic: str, message: Any) -> int:
        """Deliver `message` to every subscriber of `topic`; returns how many nodes it went to."""
        return self._messaging.publish_now(topic, message)


class Messaging:
    """The point-to-point and pub/sub message paths of one node."""

    def __init__(
        self,
        node_id: str,
        registry: Registry,
        send_app: Callable[[str, AppMessage], None],
    ) -> None:
        self.node_id = node_id
        self.registry = registry
        self._transmit = send_app
        self._outgoing: dict[str, list[list[Any]]] = {}  # per peer: queued messages' wire fields
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_scheduled = False
        self._corr = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Any], str, str]] = {}
        self._subscribers: dict[str, list[Subscription]] = {}
        self._topic_registrations: dict[str, Registration] = {}
        self._topic_nodes: dict[str, tuple[tuple[Instance, ...], tuple[str, ...]]] = {}
        self._system: dict[str, Callable[[str, Any], Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.counters: Counter[str] = Counter()
        self.pubsub = PubSub(self)

    # --- pub/sub ------------------------------------------------------------------------------

    def subscribe(self, topic: str, callback: Callback) -> Subscription:
        """See PubSub.subscribe."""
        _check_name(topic, "topic")
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        subscription = Subscription(self, topic, callback)
        subscribers = self._subscribers.setdefault(topic, [])
        subscribers.append(subscription)
        if topic not in self._topic_registrations:
            self._topic_registrations[topic] = self.registry.register_now(PUBSUB_PREFIX + topic)
        return subscription

    def publish_now(self, topic: str, message: Any) -> int:
        """Publish without awaiting; returns the number of nodes (this one included) reached."""
        if type(topic) is not str or not topic:
            _check_name(topic, "topic")
        payload = pack(message)
        headers = ctx.inject()
        found = self.registry.lookup(PUBSUB_PREFIX + topic)
        cached = self._topic_nodes.get(topic)
        if cached is None or cached[0] is not found:  # lookup results are cached tuples
            nodes = tuple({i.node for i in found if i.node != self.node_id})
            self._topic_nodes[topic] = (found, nodes)
        else:
            nodes = cached[1]
        reached = 0
        for node in nodes:
            self._queue(node, [APP_PUBLISH, topic, payload, "", 0, 0, headers])
            reached += 1
        if topic in self._subscribers:
            self._deliver(topic, payload, headers)
            reached += 1
        self.counters["published"] += 1
        return reached

    def _unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.topic)
        if not subscribers or subscription not in subscribers:
            return
        subscribers.remove(subscription)
        if not subscribers:
            del self._subscribers[subscription.topic]
            registration = self._topic_registrations.pop(subscription.topic, None)
            if registration is not None:
                registration.unregister()

    def _deliver(self, topic: str, payload: bytes, headers: dict[str, Any]) -> None:
        subscribers = self._subscribers.get(topic)
        if not subscribers:
            self.counters["publish.no_subscriber"] += 1
            return
        try:
            message = unpack(payload)
        except Exception as exc:  # a peer's bad bytes: count and drop, never raise
            self._bad_payload(topic, exc)
            return
        for subscription in list(subscribers):
            self._run(subscription.callback, message, headers, f"subscriber of {topic!r}")

    # --- send and call ------------------------------------------------------------------------

    async def send(
        self, name: str, message: Any, strategy: str = "round_robin", key: Any = None
    ) -> None:
        """Fire-and-forget `message` to one picked instance of service `name`."""
        payload = pack(message)
        instance = self.registry.pick(name, strategy, key)
        headers = ctx.inject()
        if instance.node == self.node_id:
            registration = self.registry.registration(instance.id)
            if registration is None or registration.handler is None:
                raise ServiceNotFound(name, "the local instance has no handler")
            self._run(registration.handler, unpack(payload), headers, f"handler of {name!r}")
            return
        self._send_app(
            instance.node, AppMessage(APP_SEND, name, payload, instance.id, headers=headers)
        )

    async def call(
        self,
        name: str,
        request: Any,
        timeout: float = 1.0,
        retries: int = 1,
        strategy: str = "round_robin",
        key: Any = None,
    ) -> Any:
        """Send `request` to one instance of `name` and return its reply.

        On a timeout or a lost instance the call retries on another (up to `retries` times).
        Raises ServiceNotFound, RemoteError (the handler raised), TimeoutError, or TypeError
        (the request cannot be serialized).
        """
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        payload = pack(request)
        headers = ctx.inject()
        tried: set[str] = set()
        failure: Exception | None = None
        for _ in range(max(0, retries) + 1):
            try:
                instance = self.registry.pick(name, strategy, key, exclude=tried)
            except ServiceNotFound:
                if failure is None:
                    raise
                try:  # nobody else: try the same instances again
                    instance = self.registry.pick(name, strategy, key)
                except ServiceNotFound:
                    break
            tried.add(instance.id)
            try:
                return await self._request(instance, name, payload, headers, timeout)
            except TimeoutError:
                self.counters["call.timeout"] += 1
                failure = TimeoutError(f"call to {name!r} timed out after {timeout} s")
            except (_PeerLost, ServiceNotFound) as exc:
                self.counters["call.instance_lost"] += 1
                failure = (
                    exc if isinstance(exc, ServiceNotFound) else ServiceNotFound(name, str(exc))
                )
        assert failure is not None
        raise failure

    async def request_node(self, node: str, channel: str, value: Any, timeout: float) -> Any:
        """Call the system handler for `channel` on `node` (served with serve())."""
        payload = pack(value)
        if node == self.node_id:
            handler = self._system.get(channel)
            if handler is None:
                raise ServiceNotFound(channel)
            return unpack(pack(await _awaited(handler(self.node_id, unpack(payload)))))
        return await self._remote(node, AppMessage(APP_REQUEST, channel, payload), timeout)

    def send_node(self, node: str, channel: str, value: Any) -> None:
        """Fire-and-forget `value` to the system handler for `channel` on `node`."""
        payload = pack(value)
        if node == self.node_id:
            handler = self._system.get(channel)
            if handler is not None:
                self._run(lambda v: handler(self.node_id, v), unpack(payload), {}, channel)
            return
        self._send_app(node, AppMessage(APP_SEND, channel, payload))

    def serve(self, channel: str, handler: Callable[[str, Any], Any]) -> None:
        """Serve node-addressed requests on system `channel`: `handler(src_node, value)`."""
        if not channel.startswith(SYSTEM_PREFIX):
            raise ValueError(f"system channels start with {SYSTEM_PREFIX!r}, got {channel!r}")
        self._system[channel] = handler

    async def _request(
        self, instance: Instance, name: str, payload: bytes, headers: dict[str, Any], timeout: float
    ) -> Any:
        if instance.node == self.node_id:
            registration = self.registry.registration(instance.id)
            if registration is None or registration.handler is None:
                raise ServiceNotFound(name, "the local instance has no handler")
            outcome = await asyncio.wait_for(
                self._invoke(registration.handler, unpack(payload), headers), timeout
            )
            return _outcome(outcome, name)
        message = AppMessage(
            APP_REQUEST, name, payload, instance.id, 0, max(1, int(timeout * 1000)), headers
        )
        return await self._remote(instance.node, message, timeout)

    async def _remote(self, node: str, message: AppMessage, timeout: float) -> Any:
        corr = next(self._corr)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[corr] = (future, node, message.channel)
        try:
            self._send_app(
                node,
                AppMessage(
                    message.kind,
                    message.channel,
                    message.payload,
                    message.target,
                    corr,
                    message.timeout_ms or max(1, int(timeout * 1000)),
                    message.headers,
                ),
            )
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(corr, None)

    # --- batching -----------------------------------------------------------------------------

    def _send_app(self, node: str, message: AppMessage) -> None:
        """Queue a message for `node`; what one loop turn queued leaves as one batch frame."""
        self._queue(node, app_message_fields(message))

    def _queue(self, node: str, fields: list[Any]) -> None:
        queue = self._outgoing.get(node)
        if queue is None:
            self._outgoing[node] = [fields]
        else:
            queue.append(fields)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outgoing, self._outgoing = self._outgoing, {}
        for node, queued in outgoing.items():
            if len(queued) == 1:
                self._transmit(node, AppMessage(*queued[0]))
                continue
            start, size = 0, 0
            for end, fields in enumerate(queued, 1):
                size += len(fields[2]) + 32
                if end - start >= BATCH_MESSAGES or size >= BATCH_BYTES:
                    self._transmit(
                        node, AppMessage(APP_BATCH, "sys.batch", pack(queued[start:end]))
                    )
                    start, size = end, 0
            if start < len(queued):
                self._transmit(node, AppMessage(APP_BATCH, "sys.batch", pack(queued[start:])))
        self.counters["batches"] += 1

    def _receive_batch(self, src: str, message: AppMessage) -> None:
        try:
            items = unpack(message.payload)
            if type(items) is not list:
                raise RemoteProtocolError("malformed", "a batch is a list")
        except Exception as exc:  # a peer's bad bytes: count and drop, never raise
            self._bad_payload("sys.batch", exc)
            return
        for item in items:
            # the pub/sub hot path, checked inline; anything else goes through the codec
            if (
                type(item) is list
                and len(item) == 7
                and item[0] == APP_PUBLISH
                and type(item[1]) is str
                and item[1]
                and type(item[2]) is bytes
                and type(item[6]) is dict
            ):
                self.counters["received.publish"] += 1
                self._deliver(item[1], item[2], item[6])
                continue
            try:
                parsed = parse_app_message(item)
                if parsed.kind == APP_BATCH:
                    raise RemoteProtocolError("malformed", "a batch inside a batch")
            except RemoteProtocolError as exc:
                self._bad_payload("sys.batch", exc)
                continue
            self._receive(src, parsed)

    # --- receiving ----------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """Deliver application messages; fail requests to members that died or left."""
        if isinstance(event, AppReceived):
            self._receive(event.src, event.message)
        elif isinstance(event, MemberDown | MemberLeft):
            for future, node, _ in list(self._pending.values()):
                if node == event.node and not future.done():
                    future.set_exception(_PeerLost(f"node {node} is {type(event).__name__}"))

    def _receive(self, src: str, message: AppMessage) -> None:
        kind = message.kind
        if kind == APP_BATCH:
            self._receive_batch(src, message)
        elif kind == APP_PUBLISH:
            self.counters["received.publish"] += 1
            self._deliver(message.channel, message.payload, dict(message.headers))
        elif kind == APP_REQUEST or kind == APP_SEND:
            self.counters["received.request" if kind == APP_REQUEST else "received.send"] += 1
            self._serve(src, message)
        else:
            entry = self._pending.get(message.corr)
            if entry is None or entry[1] != src or entry[0].done():
                self.counters["reply.stale"] += 1
                return
            future, _, channel = entry
            try:
                value = unpack(message.payload)
            except Exception as exc:  # a peer's bad bytes: the caller gets an error, not a hang
                self._bad_payload(channel, exc)
                future.set_exception(RemoteError("DecodeError", str(exc), channel))
                return
            if kind == APP_REPLY:
                future.set_result(value)
            else:
                future.set_exception(_remote_error(value, channel))

    def _serve(self, src: str, message: AppMessage) -> None:
        channel = message.channel
        reply = message.kind == APP_REQUEST
        try:
            value = unpack(message.payload)
        except Exception as exc:  # a peer's bad bytes
            self._bad_payload(channel, exc)
            if reply:
                self._reply_error(src, message, "DecodeError", str(exc))
            return
        system = self._system.get(channel) if channel.startswith(SYSTEM_PREFIX) else None
        handler: Callable[[Any], Any] | None
        if system is not None:
            handler = lambda v: system(src, v)  # noqa: E731
        else:
            registration = self.registry.registration(message.target) if message.target else None
            if registration is None or registration.name != channel:
                local = [r for r in self.registry.local(channel) if r.handler is not None]
                registration = local[0] if local else None
            handler = registration.handler if registration is not None else None
        if handler is None:
            self.counters["received.no_handler"] += 1
            if reply:
                self._reply_error(src, message, "ServiceNotFound", f"no instance of {channel!r}")
            return
        if not reply:
            self._run(handler, value, dict(message.headers), f"handler of {channel!r}")
            return
        headers = dict(message.headers)
        if not inspect.iscoroutinefunction(handler):
            # a plain function answers at once, without a task (the common fast path)
            context = contextvars.copy_context()
            if headers:
                context.run(ctx.attach, headers)
            try:
                result = context.run(handler, value)
            except Exception as exc:  # the handler's failure goes back to the caller
                self.counters["handler.raised"] += 1
                self._reply_error(src, message, type(exc).__name__, str(exc))
                return
            if not inspect.isawaitable(result):
                self._reply(src, message, result)
                return
            handler = _returning(result)
        timeout = message.timeout_ms / 1000 if message.timeout_ms else None
        self._spawn(self._answer(src, message, handler, value, timeout), headers)

    async def _answer(
        self,
        src: str,
        message: AppMessage,
        handler: Callable[[Any], Any],
        value: Any,
        timeout: float | None,
    ) -> None:
        try:
            result = await asyncio.wait_for(_awaited(handler(value)), timeout)
        except TimeoutError:
            self.counters["handler.timeout"] += 1  # the caller gave up already
            return
        except Exception as exc:  # the handler's failure goes back to the caller
            self.counters["handler.raised"] += 1
            self._reply_error(src, message, type(exc).__name__, str(exc))
            return
        self._reply(src, message, result)

    def _reply(self, src: str, message: AppMessage, result: Any) -> None:
        try:
            payload = pack(result)
        except TypeError as exc:
            self._reply_error(src, message, "TypeError", f"the reply is not msgpack-able: {exc}")
            return
        self._send_app(src, AppMessage(APP_REPLY, message.channel, payload, corr=message.corr))

    def _reply_error(self, src: str, message: AppMessage, type_name: str, text: str) -> None:
        payload = pack([type_name, text])
        self._send_app(src, AppMessage(APP_ERROR, message.channel, payload, corr=message.corr))

    async def _invoke(
        self, handler: Callable[[Any], Any], value: Any, headers: dict[str, Any]
    ) -> tuple[bool, Any]:
        """Run a local handler as a remote one would be: (True, reply) or (False, [type, text])."""
        context = contextvars.copy_context()
        context.run(ctx.attach, headers)
        task = asyncio.get_running_loop().create_task(
            _awaited_call(handler, value), context=context
        )
        try:
            result = await task
        except Exception as exc:
            self.counters["handler.raised"] += 1
            return False, [type(exc).__name__, str(exc)]
        try:
            return True, unpack(pack(result))
        except TypeError as exc:
            return False, ["TypeError", f"the reply is not msgpack-able: {exc}"]

    def _run(
        self, callback: Callable[[Any], Any], value: Any, headers: dict[str, Any], what: str
    ) -> None:
        """Call a subscriber or a send handler: sync ones now, async ones as a task."""
        context = None
        try:
            if headers:
                context = contextvars.copy_context()
                context.run(ctx.attach, headers)
                result = context.run(callback, value)
            else:  # nothing to attach: no need to run inside a copy
                result = callback(value)
        except Exception:  # an application callback must not stop the node
            self.counters["callback.raised"] += 1
            log.exception("%s raised", what)
            return
        if result is not None and inspect.isawaitable(result):
            self._spawn(_logged(result, what, self.counters), None, context)

    def _spawn(
        self,
        coroutine: Any,
        headers: dict[str, Any] | None,
        context: contextvars.Context | None = None,
    ) -> None:
        if context is None:
            context = contextvars.copy_context()
            if headers:
                context.run(ctx.attach, headers)
        task = asyncio.get_running_loop().create_task(coroutine, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _bad_payload(self, channel: str, exc: Exception) -> None:
        self.counters["refused.payload"] += 1
        log.warning("undecodable message payload on %r: %s", channel, exc)

    def close(self) -> None:
        """Send what is queued, cancel running handlers and fail pending calls."""
        self._flush()
        for task in list(self._tasks):
            task.cancel()
        for future, _node, _channel in self._pending.values():
            if not future.done():
                future.set_exception(_PeerLost(f"node {self.node_id} stopped"))


def _check_name(name: str, what: str) -> None:
    if type(name) is not str or not name:
        raise TypeError(f"a {what} is a non-empty str, got {name!r}")


def _outcome(outcome: tuple[bool, Any], service: str) -> Any:
    ok, value = outcome
    if ok:
        return value
    raise _remote_error(value, service)


def _remote_error(value: Any, service: str) -> Exception:
    if isinstance(value, list) and len(value) == 2 and all(type(v) is str for v in value):
        if value[0] == "ServiceNotFound":
            return ServiceNotFound(service, value[1])
        return RemoteError(value[0], value[1], service)
    return RemoteError("RemoteError", repr(value), service)


def _returning(awaitable: Any) -> Callable[[Any], Any]:
    """A handler that hands back an awaitable a plain function already returned."""
    return lambda value: awaitable


async def _awaited(result: Any) -> Any:
    if inspect.isawaitable(result):
        return await result
    return result


async def _awaited_call(handler: Callable[[Any], Any], value: Any) -> Any:
    return await _awaited(handler(value))


async def _logged(awaitable: Awaitable[Any], what: str, counters: Counter[str]) -> None:
    try:
        await awaitable
    except asyncio.CancelledError:
        raise
    except Exception:  # an application callback must not stop the node
        counters["callback.raised"] += 1
        log.exception("%s raised", what)
