"""A synchronous facade: a Node on a daemon thread's event loop (the python-zeroconf pattern).

Application threads never touch the engine or a replica directly: every call is shipped to the
node's loop with `run_coroutine_threadsafe` and waited for with a timeout, so a stuck loop
gives a clear `NodeTimeout` instead of a hang.
"""

from __future__ import annotations

import asyncio
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

    def shared_state(self, name: str) -> SharedState:
        """The node's SharedState `name`; its methods are safe from any thread."""
        return self.node.shared_state(name)

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
