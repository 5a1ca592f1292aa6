"""Durability for every replica: an append-only log of local writes, snapshots, backups.

One SQLite database per node (`<data_dir>/node.sqlite3`, WAL mode, `synchronous=FULL`). Every
local write reaches the engine through `Driver.local_write`; the driver hands it to `Journal`
first, which appends (replica, type tag, delta wire bytes) to the `log` table. With
`durability="always"` each append is committed before the write call returns; with "batch"
a writer thread commits them in groups (see `Journal`). Snapshots hold each replica's full
`to_wire()` and drop the log rows they cover, and the WAL is emptied after each, so the data dir
stays about the size of the replicas plus the log since the last snapshot.

Loading is all or nothing: every row is decoded and merged before anything reaches the
engine; a file that is not SQLite, fails its integrity check, or holds a row that does not
decode raises `PersistenceError` naming the file (or, with `on_corrupt="start_empty"`, is moved
aside and the node starts empty, to be refilled by its peers).

SQLite rather than pycrdt-store: the log must hold every CRDT type (maps, counters, sets and
Yjs documents alike) plus the peer list and incarnation in one transaction, and the stdlib
driver needs no extra dependency. Loading, recording and snapshot encoding run on the node's
event-loop thread; batch commits run on the journal's writer thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgpack
from pycrdt import merge_updates

from crdts import DecodeError, ORMap, YDoc
from foundation_p2p.engine import Engine, Event, MemberDown, MemberLeft, MemberUp, ReplicaChanged
from foundation_p2p.engine.replication import (
    REPLICA_TYPES,
    decode_delta,
    encode_delta,
    tag_of,
)

if TYPE_CHECKING:
    from foundation_p2p.config import Config

log = logging.getLogger("foundation_p2p.persistence")

Durability = Literal["batch", "always"]
OnCorrupt = Literal["fail", "start_empty"]
DURABILITIES = ("batch", "always")
ON_CORRUPT = ("fail", "start_empty")
STORE_FILE = "node.sqlite3"
LOCK_FILE = "LOCK"
FORMAT_VERSION = 1
BACKUP_MAGIC = b"FP2P-BACKUP\x00v1\n"
_RESTORE_REPLICA = "restore~0"  # replica id of scratch CRDTs built while loading (never written)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value ANY NOT NULL)",
    "CREATE TABLE IF NOT EXISTS snapshots "
    "(name TEXT PRIMARY KEY, tag TEXT NOT NULL, wire BLOB NOT NULL, checksum BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS log "
    "(seq INTEGER PRIMARY KEY, name TEXT NOT NULL, tag TEXT NOT NULL, delta BLOB NOT NULL, "
    "checksum BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS peers (node TEXT PRIMARY KEY, address TEXT NOT NULL)",
)


class PersistenceError(RuntimeError):
    """A data file or backup cannot be read or written; `path` names the file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass
class Loaded:
    """What a store or a backup holds: full replicas (name -> (tag, CRDT)), identity, peers."""

    replicas: dict[str, tuple[str, Any]] = field(default_factory=dict)
    node_id: str | None = None
    cluster: str | None = None
    incarnation: int = 0
    peers: dict[str, str] = field(default_factory=dict)
    log_rows: int = 0
    logged: set[str] = field(default_factory=set)
    """Replicas with log rows (not yet covered by a snapshot)."""


@dataclass(frozen=True)
class BackupInfo:
    """A backup's summary: where it is, what it holds, and each replica's fingerprint (hex)."""

    path: str
    node_id: str | None
    cluster: str | None
    created: float
    replicas: dict[str, str]


# --- encoding -----------------------------------------------------------------------------


def checksum(data: bytes) -> bytes:
    """8 bytes of BLAKE2b: SQLite pages carry no checksum, so each row carries its own."""
    return hashlib.blake2b(data, digest_size=8).digest()


def _pack(value: Any) -> bytes:
    return bytes(msgpack.packb(value, use_bin_type=True))


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def encode_state(replica: Any) -> bytes:
    """A replica's full state as bytes (msgpack of `to_wire()`)."""
    return _pack(replica.to_wire())


def decode_state(tag: str, wire: bytes) -> Any:
    """Inverse of `encode_state`; DecodeError on bad bytes or an unknown tag."""
    cls = REPLICA_TYPES.get(tag)
    if cls is None:
        raise DecodeError(f"unknown replica type {tag!r}")
    try:
        obj = _unpack(wire)
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise DecodeError(f"not msgpack: {exc}") from None
    return cls.from_wire(obj)


def _blank(tag: str, like: Any) -> Any:
    """An empty CRDT of the type of `like` (a decoded delta or state)."""
    if tag == ORMap.TAG:
        return ORMap(_RESTORE_REPLICA, like.value_type)
    return REPLICA_TYPES[tag](_RESTORE_REPLICA)


def _fold(tag: str, state: Any, delta: Any) -> Any:
    """Merge `delta` into `state` (None: start from an empty replica); the merged state."""
    if state is None:
        state = _blank(tag, delta)
    try:
        state.merge(delta)
    except TypeError as exc:  # e.g. an ORMap of another value type
        raise DecodeError(str(exc)) from None
    return state


def restore_into(engine: Engine, loaded: Loaded) -> None:
    """Merge loaded replicas into a fresh engine (under its own session replica id)."""
    for name, (tag, state) in loaded.replicas.items():
        options = {"value_type": state.value_type} if tag == ORMap.TAG else {}
        engine.replica(name, REPLICA_TYPES[tag], **options).merge(state)


# --- the store ----------------------------------------------------------------------------


class Store:
    """One node's SQLite file: log, snapshots, peers and identity. Single-threaded."""

    def __init__(self, data_dir: str | Path, on_corrupt: OnCorrupt = "fail") -> None:
        if on_corrupt not in ON_CORRUPT:
            raise ValueError(f"on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}")
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / STORE_FILE
        self.on_corrupt = on_corrupt
        self.moved_aside: list[Path] = []
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    # --- open and load ----------------------------------------------------------------------

    def open(self) -> Loaded:
        """Lock the data dir, open (or create) the store and load it whole."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            try:
                return self._open_and_load()
            except PersistenceError as exc:
                if self.on_corrupt == "fail":
                    raise
                self._close_db()
                self._move_aside(exc)
                return self._open_and_load()
        except BaseException:
            self.close()
            raise

    def _open_and_load(self) -> Loaded:
        self._db = _connect(self.path)
        return load(self._db, self.path)

    def _move_aside(self, error: PersistenceError) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                target = Path(f"{self.path}{suffix}.corrupt-{stamp}-{os.getpid()}")
                source.rename(target)
                self.moved_aside.append(target)
        log.error(
            "%s; moved it aside (%s) and starting empty: peers will refill this node",
            error,
            ", ".join(str(p) for p in self.moved_aside),
        )

    def _lock(self) -> None:
        import fcntl

        path = self.data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise PersistenceError(
                self.data_dir, "data dir is in use by another node (its LOCK is held)"
            ) from None
        self._lock_fd = fd

    # --- writes -----------------------------------------------------------------------------

    def write(
        self,
        rows: list[tuple[str, str, bytes]],
        meta: dict[str, Any] | None = None,
        snapshots: Iterable[tuple[str, str, bytes]] = (),
        peers: dict[str, str] | None = None,
        compact: bool = False,
    ) -> None:
        """One durable transaction: log rows, meta values, snapshots, and (compact) log trim."""
        db = self._require_db()
        try:
            db.execute("BEGIN IMMEDIATE")
            if rows:
                db.executemany(
                    "INSERT INTO log (name, tag, delta, checksum) VALUES (?, ?, ?, ?)",
                    [(name, tag, delta, checksum(delta)) for name, tag, delta in rows],
                )
            if meta:
                db.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta.items()
                )
            db.executemany(
                "INSERT OR REPLACE INTO snapshots (name, tag, wire, checksum) VALUES (?, ?, ?, ?)",
                [(name, tag, wire, checksum(wire)) for name, tag, wire in snapshots],
            )
            if peers is not None:
                db.execute("DELETE FROM peers")
                db.executemany("INSERT INTO peers (node, address) VALUES (?, ?)", peers.items())
            if compact:
                db.execute("DELETE FROM log")
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise PersistenceError(self.path, f"write failed: {exc}") from exc
        if compact:
            # the WAL keeps the size it once reached: emptied here, the data dir holds about
            # the snapshots plus the log since (the freed log pages are reused in place)
            with contextlib.suppress(sqlite3.Error):  # busy: the next snapshot tries again
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def log_rows(self) -> int:
        """Rows in the log (written since the last snapshot)."""
        row = self._require_db().execute("SELECT count(*) FROM log").fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the database and release the data dir's lock."""
        self._close_db()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def _require_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise PersistenceError(self.path, "store is closed")
        return self._db


def _connect(path: Path) -> sqlite3.Connection:
    """Open `path` in WAL mode with full sync, and check it; PersistenceError if it is bad."""
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise PersistenceError(path, f"cannot open: {exc}") from exc
    try:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise PersistenceError(path, f"cannot switch to WAL mode (got {mode!r})")
        db.execute("PRAGMA synchronous=FULL")
        problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise PersistenceError(path, f"integrity check failed: {'; '.join(problems[:3])}")
        for statement in _SCHEMA:
            db.execute(statement)
    except sqlite3.Error as exc:
        db.close()
        raise PersistenceError(path, f"not a readable store: {exc}") from exc
    except PersistenceError:
        db.close()
        raise
    return db


def load(db: sqlite3.Connection, path: Path) -> Loaded:
    """Everything in an open store, fully decoded and merged; PersistenceError on any bad row."""
    loaded = Loaded()
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        snapshots = db.execute("SELECT name, tag, wire, checksum FROM snapshots").fetchall()
        rows = db.execute("SELECT seq, name, tag, delta, checksum FROM log ORDER BY seq").fetchall()
        loaded.peers = dict(db.execute("SELECT node, address FROM peers").fetchall())
    except sqlite3.Error as exc:
        raise PersistenceError(path, f"not a readable store: {exc}") from exc
    version = meta.get("format", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise PersistenceError(path, f"store format {version!r}; this build reads {FORMAT_VERSION}")
    node_id, cluster, incarnation = (
        meta.get("node_id"),
        meta.get("cluster"),
        meta.get("incarnation"),
    )
    if node_id is not None and (type(node_id) is not str or not node_id):
        raise PersistenceError(path, f"bad node id {node_id!r} in meta")
    if cluster is not None and type(cluster) is not str:
        raise PersistenceError(path, f"bad cluster {cluster!r} in meta")
    if incarnation is not None and (type(incarnation) is not int or incarnation < 0):
        raise PersistenceError(path, f"bad incarnation {incarnation!r} in meta")
    loaded.node_id, loaded.cluster, loaded.incarnation = node_id, cluster, incarnation or 0
    for name, tag, wire, stored in snapshots:
        where = f"snapshot of replica {name!r}"
        _check_sum(path, where, wire, stored)
        state = _decode(path, where, tag, wire)
        loaded.replicas[str(name)] = (tag, state)
    ydoc_updates: dict[str, list[bytes]] = {}
    for seq, name, tag, delta, stored in rows:
        where = f"log row {seq} (replica {name!r})"
        _check_sum(path, where, delta, stored)
        loaded.logged.add(name)
        held = loaded.replicas.get(name)
        if held is not None and held[0] != tag:
            raise PersistenceError(path, f"{where}: tagged {tag!r}, the replica is a {held[0]}")
        try:
            if type(delta) is not bytes or type(name) is not str or tag not in REPLICA_TYPES:
                raise DecodeError(f"malformed row (tag {tag!r})")
            decoded = decode_delta(tag, delta)
            if tag == YDoc.TAG:  # many updates merge into a document at once, not one by one
                ydoc_updates.setdefault(name, []).append(decoded)
                if held is None:
                    loaded.replicas[name] = (tag, YDoc(_RESTORE_REPLICA))
                continue
            loaded.replicas[name] = (tag, _fold(tag, held[1] if held else None, decoded))
        except (DecodeError, KeyError, ValueError) as exc:
            raise PersistenceError(path, f"{where} does not decode: {exc}") from None
        loaded.log_rows += 1
    for name, updates in ydoc_updates.items():
        doc = loaded.replicas[name][1]
        combined = _combined(updates)
        # one merge (one rehearsal copy of the document) rather than one per row; if the rows
        # do not combine, merging them one by one names the first bad one
        for update in [combined] if combined is not None else updates:
            try:
                doc.merge(update)
            except (DecodeError, ValueError) as exc:
                raise PersistenceError(
                    path, f"a log row of {name!r} does not decode: {exc}"
                ) from None
        loaded.log_rows += len(updates)
    return loaded


def _combined(updates: list[bytes]) -> bytes | None:
    """Yjs updates merged into one, or None if pycrdt refuses them (it may panic on bad bytes)."""
    if len(updates) == 1:
        return updates[0]
    try:
        return bytes(merge_updates(*updates))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # pyo3 PanicException is a BaseException
        return None


def _check_sum(path: str | Path, where: str, data: Any, stored: Any) -> None:
    if type(data) is not bytes or checksum(data) != stored:
        raise PersistenceError(path, f"{where}: checksum mismatch (the data was altered)")


def _decode(path: str | Path, where: str, tag: Any, wire: Any) -> Any:
    try:
        if type(tag) is not str or type(wire) is not bytes:
            raise DecodeError(f"malformed row (tag {tag!r})")
        return decode_state(tag, wire)
    except (DecodeError, ValueError) as exc:
        raise PersistenceError(path, f"{where} does not decode: {exc}") from None


def stored_node_id(data_dir: str | Path) -> str | None:
    """The node id a data dir was last used with (None if none, or unreadable)."""
    path = Path(data_dir) / STORE_FILE
    if not path.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()
    except sqlite3.Error:
        return None  # a corrupt store is reported when the node opens it
    return row[0] if row and type(row[0]) is str and row[0] else None


# --- the journal: the node's live connection to its store ---------------------------------


@dataclass
class _Job:
    """One transaction for the store's writer thread."""

    upto: int  # local writes recorded when it was composed: all durable once it commits
    rows: list[tuple[str, str, bytes]]
    meta: dict[str, Any] | None = None
    peers: dict[str, str] | None = None
    snapshots: list[tuple[str, str, bytes]] = field(default_factory=list)
    compact: bool = False
    covered: list[tuple[str, str, bytes]] = field(default_factory=list)  # rows a snapshot holds
    future: concurrent.futures.Future[None] = field(default_factory=concurrent.futures.Future)


class Journal:
    """Records local writes, commits them as the durability mode says, takes snapshots.

    Commits run on one writer thread, one transaction at a time, so the event loop never waits
    for an fsync in batch mode; writes recorded while a commit is in flight go together in the
    next one (group commit). A snapshot is encoded on the loop (it reads the replicas) only when
    no commit is in flight, and deletes the whole log: every row committed before it is covered
    by the state it encodes, and rows recorded after it go in later transactions.
    """

    def __init__(
        self,
        store: Store,
        engine: Engine,
        cluster: str,
        config: Config,
        durability: Durability = "batch",
    ) -> None:
        if durability not in DURABILITIES:
            raise ValueError(f"durability must be one of {DURABILITIES}, got {durability!r}")
        self.store = store
        self.engine = engine
        self.cluster = cluster
        self.durability = durability
        self.snapshot_interval = config.snapshot_interval
        self.snapshot_log_rows = config.snapshot_log_rows
        self._pending: list[tuple[str, str, bytes]] = []
        self._dirty: set[str] = set()  # replicas changed since their snapshot
        self._rows_since_snapshot = store.log_rows()
        self._recorded = 0  # local writes recorded ...
        self._durable = 0  # ... and how many of them are committed
        self._incarnation: int | None = None
        self._peers_changed = False
        self._snapshot_wanted = False
        self._inflight: _Job | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "foundation-p2p-journal")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kick_handle: asyncio.Handle | None = None
        self._retry_handle: asyncio.TimerHandle | None = None
        self._snapshot_timer: asyncio.TimerHandle | None = None
        self._closed = False

    def start(self) -> None:
        """Record identity now, and snapshot periodically on the running loop."""
        self._loop = asyncio.get_running_loop()
        self.store.write([], meta=self._meta())
        self._arm_snapshot()

    # --- the write path ---------------------------------------------------------------------

    def record(self, replica: str, delta: Any) -> None:
        """Log a local write (called by the driver before the engine replicates it)."""
        if self._closed:
            raise PersistenceError(self.store.path, "store is closed")
        crdt = self.engine.replication.replicas.get(replica)
        if crdt is None:
            return  # the engine refuses it next; nothing was written
        self._pending.append((replica, tag_of(crdt), encode_delta(delta)))
        self._recorded += 1
        self._dirty.add(replica)
        self.engine.counters["persistence.writes"] += 1
        if self.durability == "always":
            self._commit_inline()
        else:
            self._soon()

    def mark_changed(self, names: Iterable[str]) -> None:
        """Include these replicas in the next snapshot."""
        self._dirty.update(names)

    def on_event(self, event: Event) -> None:
        """A remote change marks its replica for the next snapshot; a member coming or going
        rewrites the peer list with the next commit."""
        if isinstance(event, ReplicaChanged) and event.origin != "local":
            self._dirty.add(event.name)
        elif isinstance(event, MemberUp | MemberDown | MemberLeft):
            self._peers_changed = True
            self._soon()

    async def flush(self) -> None:
        """Return once every local write so far is committed; PersistenceError if it cannot be."""
        if self._closed:
            raise PersistenceError(self.store.path, "store is closed")
        target = self._recorded
        if self._durable < target:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append((target, waiter))
            self._kick()
            await waiter
        await asyncio.sleep(0)  # a loop of durable writes still lets the node run its timers

    # --- commits ----------------------------------------------------------------------------

    def _soon(self) -> None:
        if self._kick_handle is None and self._loop is not None and not self._closed:
            self._kick_handle = self._loop.call_soon(self._kick)

    def _kick(self) -> None:
        """Hand the next transaction to the writer thread, unless one is in flight."""
        self._kick_handle = None
        if self._inflight is not None or self._closed or self._loop is None:
            return
        job = self._compose()
        if job is None:
            return
        self._inflight = job
        loop = self._loop
        job.future = self._executor.submit(self._write, job)
        job.future.add_done_callback(lambda _: _call_soon(loop, self._finished, job))

    def _finished(self, job: _Job) -> None:
        if self._inflight is not job:
            return  # settled already by a caller that waited for it
        self._inflight = None
        if self._settle(job) and not self._closed:
            self._kick()

    def _commit_inline(self) -> None:
        """Commit everything recorded so far before returning (durability="always")."""
        target = self._recorded
        while self._durable < target:
            job = self._inflight
            if job is not None:
                concurrent.futures.wait([job.future])
            else:
                job = self._compose()
                if job is None:
                    return
                try:
                    self._write(job)
                    job.future.set_result(None)
                except BaseException as exc:
                    job.future.set_exception(exc)
            self._inflight = None
            if not self._settle(job):
                raise self._error_of(job)

    def _compose(self, snapshot: bool = False, names: Iterable[str] = ()) -> _Job | None:
        """The next transaction: pending rows, or a snapshot that covers them."""
        snapshot = snapshot or self._snapshot_wanted
        meta = self._meta() if snapshot or self._incarnation != self.engine.incarnation else None
        peers = self._peers() if snapshot or self._peers_changed else None
        if not snapshot and not self._pending and meta is None and peers is None:
            return None
        job = _Job(self._recorded, [], meta, peers)
        if snapshot:
            replicas = self.engine.replication.replicas
            chosen = (self._dirty | set(names)) & set(replicas)
            job.snapshots = [
                (n, tag_of(replicas[n]), encode_state(replicas[n])) for n in sorted(chosen)
            ]
            job.compact, job.covered = True, self._pending
            self._dirty -= chosen
            self._snapshot_wanted = False
        else:
            job.rows = self._pending
        self._pending = []
        self._peers_changed = False
        return job

    def _write(self, job: _Job) -> None:
        self.store.write(
            job.rows, meta=job.meta, snapshots=job.snapshots, peers=job.peers, compact=job.compact
        )

    def _settle(self, job: _Job) -> bool:
        """Account for a finished transaction; False if it failed (its work is kept)."""
        exc = job.future.exception()
        counters = self.engine.counters
        if exc is None:
            self._durable = max(self._durable, job.upto)
            if job.compact:
                counters["persistence.snapshots"] += 1
                self._rows_since_snapshot = 0
            else:
                counters["persistence.commits"] += 1
                self._rows_since_snapshot += len(job.rows)
                if self._rows_since_snapshot >= self.snapshot_log_rows:
                    self._snapshot_wanted = True
            ready = [w for t, w in self._waiters if t <= self._durable]
            self._waiters = [(t, w) for t, w in self._waiters if t > self._durable]
            for waiter in ready:
                if not waiter.done():
                    waiter.set_result(None)
            return True
        error = self._error_of(job)
        counters["persistence.errors"] += 1
        self._pending = job.rows + job.covered + self._pending
        self._dirty.update(name for name, _, _ in job.snapshots)
        self._peers_changed = self._peers_changed or job.peers is not None
        if job.meta is not None:
            self._incarnation = None
        waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error)
        if self._loop is not None and not self._closed and self._retry_handle is None:
            log.error("%s; retrying in 1 s (writes since are not yet durable)", error)
            self._retry_handle = self._loop.call_later(1.0, self._retry)
        return False

    def _retry(self) -> None:
        self._retry_handle = None
        self._kick()

    # --- snapshots --------------------------------------------------------------------------

    def snapshot(self, names: Iterable[str] | None = None) -> int:
        """Snapshot changed replicas (and `names`; None: all) now, dropping the log; how many."""
        self._wait_inflight()
        replicas = self.engine.replication.replicas
        job = self._compose(True, replicas if names is None else names)
        assert job is not None
        try:
            self._write(job)
            job.future.set_result(None)
        except BaseException as exc:
            job.future.set_exception(exc)
        if not self._settle(job):
            raise self._error_of(job)
        return len(job.snapshots)

    def _error_of(self, job: _Job) -> PersistenceError:
        exc = job.future.exception()
        if isinstance(exc, PersistenceError):
            return exc
        return PersistenceError(self.store.path, f"write failed: {exc!r}")

    def _wait_inflight(self) -> None:
        job = self._inflight
        if job is not None:
            concurrent.futures.wait([job.future])
            self._inflight = None
            self._settle(job)

    def _arm_snapshot(self) -> None:
        if self._loop is None or self._closed or self.snapshot_interval <= 0:
            return
        self._snapshot_timer = self._loop.call_later(self.snapshot_interval, self._periodic)

    def _periodic(self) -> None:
        if self._dirty or self._rows_since_snapshot:
            self._snapshot_wanted = True
            self._kick()
        self._arm_snapshot()

    def close(self) -> None:
        """Finish the commit in flight, take a final snapshot, close the store."""
        if self._closed:
            return
        for handle in (self._kick_handle, self._retry_handle, self._snapshot_timer):
            if handle is not None:
                handle.cancel()
        try:
            self.snapshot(())
        finally:
            self._closed = True
            self._executor.shutdown(wait=True)
            for _, waiter in self._waiters:
                if not waiter.done():
                    waiter.set_exception(PersistenceError(self.store.path, "store is closed"))
            self._waiters = []
            self.store.close()

    def _meta(self) -> dict[str, Any]:
        self._incarnation = self.engine.incarnation
        return {
            "format": FORMAT_VERSION,
            "node_id": self.engine.node_id,
            "cluster": self.cluster,
            "incarnation": self.engine.incarnation,
        }

    def _peers(self) -> dict[str, str]:
        me = self.engine.node_id
        return {
            node: member.address
            for node, member in self.engine.membership.table.items()
            if node != me and member.status in ("alive", "suspect") and member.address
        }


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> None:
    """From the writer thread: run `callback` on the loop (unless the loop is gone)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


# --- backups ------------------------------------------------------------------------------


def backup_bytes(
    replicas: Iterable[tuple[str, Any]],
    node_id: str | None,
    cluster: str | None,
    peers: dict[str, str] | None = None,
) -> bytes:
    """A backup of `(name, replica)` pairs: magic, SHA-256 of the body, msgpack body."""
    entries = [
        {
            "name": name,
            "tag": tag_of(replica),
            "wire": encode_state(replica),
            "digest": _pack(replica.digest()),
            "fingerprint": replica.fingerprint(),
        }
        for name, replica in replicas
    ]
    body = _pack(
        {
            "format": FORMAT_VERSION,
            "node_id": node_id,
            "cluster": cluster,
            "created": time.time(),
            "peers": dict(peers or {}),
            "replicas": entries,
        }
    )
    return BACKUP_MAGIC + hashlib.sha256(body).digest() + body


def read_backup(path: str | Path, data: bytes | None = None) -> tuple[Loaded, BackupInfo]:
    """Decode and verify a backup file (checksum, every replica, every digest)."""
    if data is None:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise PersistenceError(path, f"cannot read backup: {exc}") from exc
    if not data.startswith(BACKUP_MAGIC):
        raise PersistenceError(path, "not a foundation-p2p backup (bad magic)")
    checksum, body = (
        data[len(BACKUP_MAGIC) : len(BACKUP_MAGIC) + 32],
        data[len(BACKUP_MAGIC) + 32 :],
    )
    if hashlib.sha256(body).digest() != checksum:
        raise PersistenceError(path, "backup checksum mismatch (truncated or altered)")
    try:
        document = _unpack(body)
        entries = document["replicas"]
        loaded = Loaded(
            node_id=document.get("node_id"),
            cluster=document.get("cluster"),
            peers=dict(document.get("peers") or {}),
        )
        created = float(document.get("created", 0.0))
    except Exception as exc:  # any shape error in a checksummed body is a writer's bug
        raise PersistenceError(path, f"backup body is malformed: {exc}") from None
    fingerprints: dict[str, str] = {}
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"replica {name!r}"
        if type(name) is not str:
            raise PersistenceError(path, f"{where}: malformed entry")
        state = _decode(path, where, entry.get("tag"), entry.get("wire"))
        if state.fingerprint() != entry.get("fingerprint"):
            raise PersistenceError(path, f"{where}: fingerprint mismatch")
        if _pack(state.digest()) != entry.get("digest"):
            raise PersistenceError(path, f"{where}: digest mismatch")
        loaded.replicas[name] = (entry["tag"], state)
        fingerprints[name] = state.fingerprint().hex()
    info = BackupInfo(str(path), loaded.node_id, loaded.cluster, created, fingerprints)
    return loaded, info


def write_backup_file(path: str | Path, data: bytes) -> None:
    """Write a backup atomically (temporary file, fsync, rename)."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise PersistenceError(path, f"cannot write backup: {exc}") from exc


def backup_data_dir(data_dir: str | Path, out: str | Path) -> BackupInfo:
    """A backup of a data dir taken offline (the node may be stopped or running)."""
    path = Path(data_dir) / STORE_FILE
    if not path.exists():
        raise PersistenceError(path, "no store here")
    db = _connect(path)
    try:
        loaded = load(db, path)
    finally:
        db.close()
    states = [(name, state) for name, (_, state) in sorted(loaded.replicas.items())]
    write_backup_file(out, backup_bytes(states, loaded.node_id, loaded.cluster, loaded.peers))
    return read_backup(out)[1]


def restore_backup(
    backup: str | Path,
    data_dir: str | Path,
    node_id: str | None = None,
    overwrite: bool = False,
) -> BackupInfo:
    """Create a data dir holding a backup's replicas; a node started on it begins from them.

    The node's identity (id, incarnation) and peer list are not carried over unless `node_id`
    is given: the data dir is for a new node, in this cluster or a new one.
    """
    loaded, info = read_backup(backup)
    store = Store(data_dir)
    held = store.open()
    try:
        if (held.replicas or held.log_rows) and not overwrite:
            raise PersistenceError(store.path, "data dir already holds replicas (overwrite=False)")
        snapshots = [
            (name, tag, encode_state(state))
            for name, (tag, state) in sorted(loaded.replicas.items())
        ]
        meta: dict[str, Any] = {"format": FORMAT_VERSION}
        if node_id is not None:
            meta["node_id"] = node_id
        db = store._require_db()
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM snapshots")
            db.execute("DELETE FROM log")
            db.execute("DELETE FROM meta")
            db.execute("DELETE FROM peers")
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise PersistenceError(store.path, f"write failed: {exc}") from exc
        store.write([], meta=meta, snapshots=snapshots)
    finally:
        store.close()
    return info


def iter_replicas(engine: Engine) -> Iterator[tuple[str, Any]]:
    """Every replica of an engine except the member table, by name."""
    yield from sorted(engine.replication.replicas.items())


__all__ = [
    "BackupInfo",
    "Durability",
    "Journal",
    "Loaded",
    "OnCorrupt",
    "PersistenceError",
    "Store",
    "backup_bytes",
    "backup_data_dir",
    "read_backup",
    "restore_backup",
    "restore_into",
    "stored_node_id",
    "write_backup_file",
]
