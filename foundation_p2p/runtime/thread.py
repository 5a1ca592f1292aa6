"""A synchronous facade: a Node on a daemon thread's event loop (the python-zeroconf pattern).

Application threads never touch the engine or a replica directly: every call is shipped to the
node's loop with `run_coroutine_threadsafe` and waited for with a timeout, so a stuck loop
gives a clear `NodeTimeout` instead of a hang.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from foundation_p2p.node import Node
    from foundation_p2p.services.state import SharedState

T = TypeVar("T")
DEFAULT_TIMEOUT = 10.0


class NodeTimeout(TimeoutError):
    """A call to the node's thread did not complete in time."""


def call_on_loop(
    loop: asyncio.AbstractEventLoop, function: Callable[[], T], timeout: float = DEFAULT_TIMEOUT
) -> T:
    """Run a plain function on `loop`'s thread (from another thread) and return its result or
    raise its exception; NodeTimeout if the loop does not get to it within `timeout`."""
    future: Future[T] = Future()

    def invoke() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(function())
        except BaseException as exc:  # handed to the caller's thread
            future.set_exception(exc)

    loop.call_soon_threadsafe(invoke)
    try:
        return future.result(timeout)
    except FutureTimeout:
        future.cancel()
        raise NodeTimeout(f"the node's event loop did not answer within {timeout} s") from None


class NodeThread:
    """Runs one Node on a background event loop and proxies calls to it."""

    def __init__(self, node: Node, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.node = node
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, name=f"foundation-p2p {node.node_id}", daemon=True
        )
        self._started = False

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def start(self) -> NodeThread:
        """Start the loop thread and the node; raise what the node's start raised."""
        if self._started:
            return self
        self._thread.start()
        self._started = True
        try:
            self.run(self.node.start())
        except BaseException:
            self._shutdown_loop()
            raise
        return self

    def stop(self, leave: bool = True) -> None:
        """Stop the node (leaving gracefully) and the loop thread; idempotent."""
        if not self._started or not self._thread.is_alive():
            return
        try:
            self.run(self.node.stop(leave=leave))
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=self.timeout)
        if not self._thread.is_alive():
            self._loop.close()

    def run(self, coroutine: Any, timeout: float | None = None) -> Any:
        """Run a coroutine on the node's loop and wait for its result."""
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("NodeThread.run() called from the node's own loop: await instead")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(self.timeout if timeout is None else timeout)
        except FutureTimeout:
            future.cancel()
            raise NodeTimeout(
                f"node {self.node.node_id} did not answer within "
                f"{self.timeout if timeout is None else timeout} s"
            ) from None

    def call(self, function: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run a plain function on the node's loop thread and return its result."""

        async def invoke() -> T:
            return function(*args)

        return self.run(invoke(), timeout)  # type: ignore[no-any-return]

    def replica(self, name: str, cls: type[Any], **options: Any) -> ThreadSafeReplica:
        """A thread-safe handle on replica `name`."""
        self.call(lambda: self.node.replica(name, cls, **options))  # create/check on the loop
        return ThreadSafeReplica(self, name, cls, options)

    def shared_state(self, name: str, layout: str | None = None) -> SharedState:
        """The node's SharedState `name`; its methods are safe from any thread."""
        return self.node.shared_state(name, layout)

    def members(self) -> dict[str, str]:
        """`{node_id: status}` as this node sees it."""
        return dict(self.call(self.node.members))

    def flush_durable(self, timeout: float | None = None) -> None:
        """Return once every local write so far is committed to disk (the node has a data_dir)."""
        self.run(self.node.flush_durable(), timeout)

    def backup(self, path: str, timeout: float | None = None) -> Any:
        """Write a consistent backup of every replica to `path`; its BackupInfo."""
        return self.run(self.node.backup(path), timeout)

    @property
    def address(self) -> str:
        """The node's advertised address."""
        return self.node.address

    # --- cluster services, each call shipped to the node's loop ---------------------------------

    @property
    def registry(self) -> ThreadSafeService:
        """The service registry (register, lookup, pick, watch), safe from any thread."""
        return self._service(lambda: self.node.registry, "registry")

    @property
    def pubsub(self) -> ThreadSafeService:
        """Publish/subscribe; callbacks run on the node's thread."""
        return self._service(lambda: self.node.pubsub, "pubsub")

    @property
    def cache(self) -> ThreadSafeService:
        """The default (replicated) cache: `get`, `put`, `delete`… block until done."""
        return self._service(lambda: self.node.cache, "cache")

    def open_cache(self, name: str, **options: Any) -> ThreadSafeService:
        """The cache `name` (see Node.open_cache), safe from any thread."""
        return self._service(lambda: self.node.open_cache(name, **options), f"cache {name!r}")

    def singleton(self, name: str, run: Any, **options: Any) -> ThreadSafeService:
        """Run `await run()` on exactly one member (see Node.singleton); `run` runs on the
        node's loop. Returns the handle (running, owner, close), safe from any thread."""
        handle = self.call(lambda: self.node.singleton(name, run, **options))
        return self._service(lambda: handle, f"singleton {name!r}")

    def spread(self, name: str, count: int, run: Any) -> ThreadSafeService:
        """Run `count` workers spread over the cluster (see Node.spread), from any thread."""
        handle = self.call(lambda: self.node.spread(name, count, run))
        return self._service(lambda: handle, f"spread {name!r}")

    def send(self, service: str, message: Any, **options: Any) -> None:
        """Fire-and-forget `message` to one instance of `service` (Node.send)."""
        self.run(self.node.send(service, message, **options))

    def request(
        self, service: str, request: Any, timeout: float = 1.0, retries: int = 1, **options: Any
    ) -> Any:
        """Request/response with one instance of `service` (Node.call; `call` here runs a
        function on the node's loop)."""
        return self.run(
            self.node.call(service, request, timeout=timeout, retries=retries, **options),
            timeout * (retries + 1) + self.timeout,
        )

    def on_member_change(self, callback: Callable[[Any], object]) -> Callable[[], None]:
        """Call `callback(MemberEvent)` on the node's thread at each change; returns an
        unsubscribe function safe from any thread."""
        unsubscribe = self.call(lambda: self.node.on_member_change(callback))
        return lambda: self.call(unsubscribe)

    def _service(self, resolve: Callable[[], Any], label: str) -> ThreadSafeService:
        self.call(resolve)  # create or check it on the loop now: a bad option raises here
        return ThreadSafeService(self, resolve, label)


class ThreadSafeReplica:
    """A replica handle usable from any thread: each call runs on the node's loop."""

    def __init__(self, owner: NodeThread, name: str, cls: type[Any], options: dict[str, Any]):
        self._owner = owner
        self._name = name
        self._cls = cls
        self._options = options

    def _handle(self) -> Any:
        return self._owner.node.replica(self._name, self._cls, **self._options)

    @property
    def value(self) -> Any:
        """The replica's value, read on the node's thread."""
        return self._owner.call(lambda: self._handle().value)

    def __getattr__(self, attr: str) -> Callable[..., Any]:
        def proxied(*args: Any, **kwargs: Any) -> Any:
            return self._owner.call(lambda: getattr(self._handle(), attr)(*args, **kwargs))

        proxied.__name__ = attr
        return proxied

    def __contains__(self, item: object) -> bool:
        return bool(self._owner.call(lambda: item in self._handle()))

    def __len__(self) -> int:
        return int(self._owner.call(lambda: len(self._handle())))

    def __repr__(self) -> str:
        return f"ThreadSafeReplica({self._name!r})"


class ThreadSafeService:
    """A cluster service usable from any thread: each method runs on the node's loop and, if it
    returns an awaitable, is waited for there; plain attributes are read on the loop."""

    def __init__(self, owner: NodeThread, resolve: Callable[[], Any], label: str) -> None:
        self._owner = owner
        self._resolve = resolve
        self._label = label

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        found = self._owner.call(lambda: getattr(self._resolve(), attr))
        if not callable(found):
            return found

        def proxied(*args: Any, **kwargs: Any) -> Any:
            async def invoke() -> Any:
                result = getattr(self._resolve(), attr)(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
                return result

            return _safe(self._owner, self._owner.run(invoke()), attr)

        proxied.__name__ = attr
        return proxied

    def __len__(self) -> int:
        return int(self._owner.call(lambda: len(self._resolve())))

    def __repr__(self) -> str:
        return f"ThreadSafeService({self._label})"


def _safe(owner: NodeThread, result: Any, label: str) -> Any:
    """A handle the node returned (a Registration, a Subscription…) wrapped so that its methods
    run on the loop too; data (values, dataclass records) is returned as it is."""
    kind = type(result)
    if kind.__module__.startswith("foundation_p2p.") and not dataclasses.is_dataclass(result):
        return ThreadSafeService(owner, lambda: result, f"{label} -> {kind.__name__}")
    return result
