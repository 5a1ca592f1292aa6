"""Real network partitions between real processes: a throw-away lab of Linux network namespaces.

The topology is the one of shared/tools/netlab.sh, so what is learnt with one holds for the other:

    <prefix>-<pid>-hub   a namespace holding the bridge "br0" (no address) and the hub ends
                         "vh<i>" of one veth pair per host; they are the bridge's ports.
    <prefix>-<pid>-n<i>  one namespace per host i (0-based). "eth0" is the other end of the
                         veth, address <subnet>.<i+1>/24, a 224.0.0.0/4 route for multicast (mDNS),
                         loopback up, IPv6 off. No default route: a host reaches only the lab.

Partitions and loss are nftables rules of the "bridge" family in the hub namespace, so they
cut unicast, ARP and multicast between groups at once, and an atomic table replace switches
from one partition to another. The root namespace only gets a blackhole route for the lab
subnet (protocol 213, metric = the creating pid, so it is found again if that process dies, and
yields to a real route of the subnet), so a client started there by mistake cannot send lab
traffic out of the machine by the default route. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN),
iproute2 and nftables. Everything made is removed on exit, even after an error: the processes
started in the lab (by pid), the nftables tables, the namespaces with their veths and bridge,
the route. A lab left behind by a killed run is removed by the next lab of the same prefix.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["HttpReply", "NetLab", "NetLabError"]

DEFAULT_SUBNET = "10.213.0"
MAX_HOSTS = 250
_CAP_NET_ADMIN, _CAP_SYS_ADMIN = 12, 21
_PREFIX_RE = re.compile(r"[a-z][a-z0-9]{0,15}")
_SUBNET_RE = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})")
_PARTITION_TABLE = "netlab"
_STOP_GRACE = 5.0  # seconds a spawned process gets between SIGTERM and SIGKILL
_COMMAND_TIMEOUT = 15.0  # seconds any one ip/nft command may take

# Runs inside a host namespace: one JSON request per stdin line, one JSON reply per stdout line.
# Proxies are off: a proxy from the environment is unreachable from the lab, and wrong anyway.
_HTTP_AGENT = r"""
import json, sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for line in sys.stdin:
    q = json.loads(line)
    data = None if q["body"] is None else q["body"].encode()
    req = urllib.request.Request(q["url"], data=data, method=q["method"], headers=q["headers"])
    try:
        with opener.open(req, timeout=q["timeout"]) as r:
            out = {"status": r.status, "body": r.read().decode("utf-8", "replace")}
    except urllib.error.HTTPError as e:
        out = {"status": e.code, "body": e.read().decode("utf-8", "replace")}
    except Exception as e:
        out = {"error": f"{type(e).__name__}: {e}"}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"""


class NetLabError(RuntimeError):
    """The lab cannot be built or driven: a missing privilege or tool, or a failed command."""


@dataclass(frozen=True, slots=True)
class HttpReply:
    """An HTTP response received inside a lab host."""

    status: int
    body: str

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass(slots=True)
class _Agent:
    """A long-lived HTTP client process inside one host namespace."""

    process: subprocess.Popen[bytes]
    lock: threading.Lock
    buffer: bytes = b""


class NetLab:
    """A lab of `hosts` network namespaces on one bridge, with partitions and loss on demand."""

    def __init__(
        self, hosts: int, prefix: str = "netlab", subnet: str = DEFAULT_SUBNET, ipv6: bool = False
    ) -> None:
        if not 1 <= hosts <= MAX_HOSTS:
            raise ValueError(f"hosts must be 1..{MAX_HOSTS}, got {hosts}")
        if not _PREFIX_RE.fullmatch(prefix):
            raise ValueError(f"prefix must be 1-16 lower-case letters or digits, got {prefix!r}")
        octets = _SUBNET_RE.fullmatch(subnet)
        if octets is None or any(int(o) > 255 for o in octets.groups()):
            raise ValueError(f"subnet must be the first three octets, e.g. '10.213.0': {subnet!r}")
        self.hosts = hosts
        self.prefix = prefix
        self.subnet = subnet
        self.ipv6 = ipv6
        self.name = f"{prefix}-{os.getpid()}"
        self.hub = f"{self.name}-hub"
        self._created: list[str] = []
        self._processes: list[subprocess.Popen[Any]] = []
        self._agents: dict[int, _Agent] = {}
        self._agents_lock = threading.Lock()
        self._guarding = False
        self._up = False

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> NetLab:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        problems = self.down()
        if problems and exc is None:
            raise NetLabError("lab teardown was incomplete: " + "; ".join(problems))

    @staticmethod
    def check() -> None:
        """Raise NetLabError unless this process can build a lab (privileges, ip, nft)."""
        if os.geteuid() != 0 and not _has_capabilities(_CAP_NET_ADMIN, _CAP_SYS_ADMIN):
            raise NetLabError(
                "NetLab needs root or CAP_NET_ADMIN (with CAP_SYS_ADMIN for `ip netns add`); "
                "run the tests as root, e.g. sudo -E"
            )
        if not _has_capabilities(_CAP_NET_ADMIN, _CAP_SYS_ADMIN):
            raise NetLabError(
                "NetLab needs CAP_NET_ADMIN and CAP_SYS_ADMIN, which this root process lacks "
                "(an unprivileged container?)"
            )
        if shutil.which("ip") is None:
            raise NetLabError("`ip` not found: install iproute2 (apt-get install iproute2)")
        if shutil.which("nft") is None:
            raise NetLabError("`nft` not found: install nftables (apt-get install nftables)")
        for probe in (["ip", "netns", "list"], ["nft", "--version"]):
            try:
                subprocess.run(probe, capture_output=True, check=True, timeout=_COMMAND_TIMEOUT)
            except (OSError, subprocess.SubprocessError) as exc:
                raise NetLabError(f"`{' '.join(probe)}` does not work here: {exc}") from exc

    def up(self) -> None:
        """Build the lab (called by `with`); on any failure, remove what was built and raise."""
        if self._up:
            raise NetLabError(f"lab {self.name} is already up")
        self.check()
        self.remove_stale(self.prefix)
        self._up = True
        try:
            self._build()
        except BaseException:
            self.down()
            raise

    def down(self) -> list[str]:
        """Stop every process, remove rules, namespaces and route; return what could not be."""
        if not self._up:
            return []
        self._up = False
        problems: list[str] = []
        with self._agents_lock:
            agents, self._agents = list(self._agents.values()), {}
        for agent in agents:
            with contextlib.suppress(OSError):
                if agent.process.stdin is not None:
                    agent.process.stdin.close()
        _stop_all([*self._processes, *(a.process for a in agents)], problems)
        self._processes.clear()
        for namespace in reversed(self._created):
            _kill_namespace_pids(namespace, problems)
        if self.hub in self._created:
            # Deleting the namespace would drop its tables too; flushing first says so plainly.
            _try(["ip", "netns", "exec", self.hub, "nft", "flush", "ruleset"], problems)
        for namespace in reversed(self._created):
            _try(["ip", "netns", "del", namespace], problems)
        self._created.clear()
        left = [n for n in _namespaces() if n.startswith(f"{self.name}-")]
        if left:
            problems.append(f"namespaces still present: {', '.join(left)}")
        if self._guarding:
            self._guarding = False
            with _ROUTES_LOCK:
                _ROUTE_USERS[self.subnet] -= 1
                if not _ROUTE_USERS[self.subnet]:
                    del _ROUTE_USERS[self.subnet]
                    _try(["ip", "route", "del", *_blackhole(self.subnet, os.getpid())], problems)
        # `ip netns add` bind-mounts /run/netns on itself; undo that when no namespace at all
        # (ours or anybody's) is left, as netlab.sh does; the next `ip netns add` redoes it.
        if not _namespaces() and _netns_mounted():
            _try(["umount", "/run/netns"], problems)
        return problems

    @classmethod
    def remove_stale(cls, prefix: str) -> list[str]:
        """Remove labs of `prefix`, and lab routes, whose creating process is gone (kill -9)."""
        pattern = re.compile(rf"{re.escape(prefix)}-(\d+)-(hub|n\d+)")
        removed: list[str] = []
        routes = subprocess.run(
            ["ip", "-o", "route", "show", "proto", _ROUTE_PROTO],
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT,
        )
        for line in routes.stdout.splitlines():
            route = re.match(r"blackhole (\d+\.\d+\.\d+)\.0/24 .*\bmetric (\d+)", line)
            if route is not None and not Path(f"/proc/{route.group(2)}").exists():
                _try(["ip", "route", "del", *_blackhole(route.group(1), int(route.group(2)))], [])
                removed.append(line.strip())
        for namespace in _namespaces():
            match = pattern.fullmatch(namespace)
            if match is None or Path(f"/proc/{match.group(1)}").exists():
                continue
            problems: list[str] = []
            _kill_namespace_pids(namespace, problems)
            _try(["ip", "netns", "del", namespace], problems)
            removed.append(namespace)
        return removed

    # --- hosts -----------------------------------------------------------------------------

    def address(self, host: int) -> str:
        """Host `host`'s IPv4 address inside the lab."""
        self._check_host(host)
        return f"{self.subnet}.{host + 1}"

    def namespace(self, host: int) -> str:
        """The name of host `host`'s network namespace (for `ip netns exec`)."""
        self._check_host(host)
        return f"{self.name}-n{host}"

    def spawn(
        self,
        host: int,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` inside host `host`, in its own process group, stopped on exit."""
        self._require_up()
        # `env` replaces the environment, as in subprocess (None: inherit this process's).
        process = subprocess.Popen(
            [_ip(), "netns", "exec", self.namespace(host), *argv],
            env=None if env is None else dict(env),
            cwd=cwd,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        self._processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[Any], grace: float = _STOP_GRACE) -> int | None:
        """SIGTERM a spawned process's group, SIGKILL it after `grace` seconds; its exit code."""
        problems: list[str] = []
        _stop_all([process], problems, grace)
        if process in self._processes:
            self._processes.remove(process)
        if problems:
            raise NetLabError("; ".join(problems))
        return process.returncode

    def exec(
        self,
        host: int,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        check: bool = False,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside host `host` to completion (text output captured)."""
        self._require_up()
        return subprocess.run(
            [_ip(), "netns", "exec", self.namespace(host), *argv],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            env=None if env is None else dict(env),
        )

    def request(
        self,
        host: int,
        method: str,
        url: str,
        body: Any = None,
        *,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
    ) -> HttpReply:
        """An HTTP exchange made from inside host `host`, `body` sent as JSON unless None."""
        # Fails with ConnectionError below HTTP (refused, unreachable, timed out inside the
        # lab, e.g. across a partition) and with TimeoutError if no answer comes back at all.
        self._require_up()
        all_headers = {"Content-Type": "application/json"} if body is not None else {}
        all_headers.update(headers or {})
        line = json.dumps(
            {
                "method": method,
                "url": url,
                "body": None if body is None else json.dumps(body),
                "headers": all_headers,
                "timeout": timeout,
            }
        ).encode()
        agent = self._agent(host)
        with agent.lock:
            reply = self._ask(host, agent, line + b"\n", timeout + 5.0)
        if "error" in reply:
            raise ConnectionError(f"{method} {url} from host {host}: {reply['error']}")
        return HttpReply(int(reply["status"]), str(reply["body"]))

    # --- faults ----------------------------------------------------------------------------

    def partition(self, *groups: Sequence[int]) -> None:
        """Drop all traffic between the groups (2+), replacing any previous partition."""
        # Hosts in no group stay connected to everybody, as in netlab.sh.
        self._require_up()
        if len(groups) < 2 or not all(groups):
            raise ValueError("partition needs at least two non-empty groups")
        seen: set[int] = set()
        for group in groups:
            for host in group:
                self._check_host(host)
                if host in seen:
                    raise ValueError(f"host {host} appears in more than one group")
                seen.add(host)
        rules: list[str] = []
        for i, group in enumerate(groups):
            others = [h for j, other in enumerate(groups) if j != i for h in other]
            ports = ", ".join(f'"vh{h}"' for h in others)
            rules.extend(f'    iifname "vh{h}" oifname {{ {ports} }} counter drop' for h in group)
        self._nft(
            f"table bridge {_PARTITION_TABLE}\n"
            f"delete table bridge {_PARTITION_TABLE}\n"
            f"table bridge {_PARTITION_TABLE} {{\n"
            "  chain forward {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            + "\n".join(rules)
            + "\n  }\n}\n"
        )

    def isolate(self, host: int) -> None:
        """Cut host `host` off from every other host."""
        self.partition([host], [h for h in range(self.hosts) if h != host])

    def heal(self) -> None:
        """Remove the partition (idempotent); loss set by set_loss stays."""
        self._require_up()
        self._nft(f"table bridge {_PARTITION_TABLE}\ndelete table bridge {_PARTITION_TABLE}\n")

    def set_loss(self, host: int, probability: float) -> None:
        """Drop this fraction of the frames host `host` sends (0 removes the loss)."""
        self._require_up()
        self._check_host(host)
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"loss probability must be in [0, 1], got {probability}")
        table = f"netlab_loss_n{host}"
        script = f"table bridge {table}\ndelete table bridge {table}\n"
        if probability > 0.0:
            per_10000 = round(probability * 10000)
            # Dropped on the wire (the hub bridge), not in the host's output hook, where a drop
            # would make send()/connect() fail with EPERM instead of losing the frame.
            script += (
                f"table bridge {table} {{\n"
                "  chain forward {\n"
                "    type filter hook forward priority 10; policy accept;\n"
                f'    iifname "vh{host}" numgen random mod 10000 < {per_10000} counter drop\n'
                "  }\n}\n"
            )
        self._nft(script)

    def rules(self) -> str:
        """The nftables ruleset of the hub (partition and loss rules with their counters)."""
        self._require_up()
        return self._run(["ip", "netns", "exec", self.hub, "nft", "list", "ruleset"]).stdout

    # --- internals -------------------------------------------------------------------------

    def _build(self) -> None:
        hub = self.hub
        self._add_namespace(hub)
        self._run(["ip", "-n", hub, "link", "add", "br0", "type", "bridge"])
        # mcast_snooping 0: flood all multicast to all ports (no IGMP querier in the lab).
        self._run(["ip", "-n", hub, "link", "set", "br0", "type", "bridge", *_NO_SNOOPING_NO_STP])
        self._run(["ip", "-n", hub, "link", "set", "br0", "up"])
        for host in range(self.hosts):
            namespace = self.namespace(host)
            port = f"vh{host}"
            self._add_namespace(namespace)
            self._run(
                ["ip", "-n", hub, "link", "add", port, "type", "veth", *_PEER_ETH0, namespace]
            )
            self._run(["ip", "-n", hub, "link", "set", port, "master", "br0"])
            self._run(["ip", "-n", hub, "link", "set", port, "up"])
            self._run(["ip", "-n", namespace, "addr", "add", f"{self.address(host)}/24", *_ETH0])
            self._run(["ip", "-n", namespace, "link", "set", "eth0", "multicast", "on", "up"])
            self._run(["ip", "-n", namespace, "route", "replace", "224.0.0.0/4", *_ETH0])
        deadline = time.monotonic() + 10.0
        for host in range(self.hosts):
            while "UP" not in self._run(["ip", "-n", self.namespace(host), "-br", *_LINK]).stdout:
                if time.monotonic() > deadline:
                    raise NetLabError(f"eth0 of host {host} did not come up within 10 s")
                time.sleep(0.05)
        # One route per subnet per process, shared by this process's labs (counted).
        with _ROUTES_LOCK:
            if not _ROUTE_USERS.get(self.subnet):
                self._run(["ip", "route", "replace", *_blackhole(self.subnet, os.getpid())])
            _ROUTE_USERS[self.subnet] = _ROUTE_USERS.get(self.subnet, 0) + 1
            self._guarding = True

    def _add_namespace(self, namespace: str) -> None:
        self._run(["ip", "netns", "add", namespace])
        self._created.append(namespace)
        self._run(["ip", "-n", namespace, "link", "set", "lo", "up"])
        if not self.ipv6:
            # /proc/sys/net belongs to the namespace of whoever opens it.
            subprocess.run(
                ["ip", "netns", "exec", namespace, "sh", "-c", _DISABLE_IPV6],
                capture_output=True,
                timeout=_COMMAND_TIMEOUT,
            )

    def _nft(self, script: str) -> None:
        self._run(["ip", "netns", "exec", self.hub, "nft", "-f", "-"], script)

    def _run(self, argv: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(
                argv, input=input, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NetLabError(f"`{' '.join(argv)}` failed: {exc}") from exc
        if done.returncode != 0:
            raise NetLabError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")
        return done

    def _agent(self, host: int) -> _Agent:
        with self._agents_lock:
            agent = self._agents.get(host)
            if agent is None or agent.process.poll() is not None:
                process = self.spawn(
                    host,
                    [sys.executable, "-I", "-c", _HTTP_AGENT],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
                agent = self._agents[host] = _Agent(process, threading.Lock())
            return agent

    def _ask(self, host: int, agent: _Agent, line: bytes, timeout: float) -> dict[str, Any]:
        process = agent.process
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(line)
            process.stdin.flush()
            deadline = time.monotonic() + timeout
            while b"\n" not in agent.buffer:
                remaining = deadline - time.monotonic()
                ready = select.select([process.stdout], [], [], max(0.0, remaining))[0]
                if not ready:
                    raise TimeoutError(f"no HTTP answer inside host {host} within {timeout} s")
                chunk = os.read(process.stdout.fileno(), 1 << 16)
                if not chunk:
                    raise ConnectionError(f"the HTTP agent of host {host} exited")
                agent.buffer += chunk
        except OSError:
            self._drop_agent(host, agent)
            raise
        reply, _, agent.buffer = agent.buffer.partition(b"\n")
        decoded: dict[str, Any] = json.loads(reply)
        return decoded

    def _drop_agent(self, host: int, agent: _Agent) -> None:
        with self._agents_lock:
            if self._agents.get(host) is agent:
                del self._agents[host]
        with contextlib.suppress(NetLabError):
            self.stop(agent.process, grace=0.0)

    def _check_host(self, host: int) -> None:
        if not 0 <= host < self.hosts:
            raise ValueError(f"host must be 0..{self.hosts - 1}, got {host}")

    def _require_up(self) -> None:
        if not self._up:
            raise NetLabError(f"lab {self.name} is not up (use `with NetLab(...) as lab:`)")


_ROUTE_PROTO = "213"  # marks the root namespace's blackhole routes made by a NetLab
_ROUTES_LOCK = threading.Lock()
_ROUTE_USERS: dict[str, int] = {}  # subnet -> labs of this process relying on its route
_ETH0 = ("dev", "eth0")
_LINK = ("link", "show", "eth0")
_PEER_ETH0 = ("peer", "name", "eth0", "netns")
_NO_SNOOPING_NO_STP = ("mcast_snooping", "0", "stp_state", "0", "forward_delay", "0")
_DISABLE_IPV6 = (
    "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6;"
    " echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"
)


def _ip() -> str:
    """The `ip` command by full path, so a replaced environment without PATH still finds it."""
    return shutil.which("ip") or "ip"


def _blackhole(subnet: str, pid: int) -> list[str]:
    """The `ip route` arguments of the guard route for `subnet` made by process `pid`."""
    return ["blackhole", f"{subnet}.0/24", "metric", str(pid), "proto", _ROUTE_PROTO]


def _has_capabilities(*bits: int) -> bool:
    """Whether this process's effective capability set holds every bit in `bits`."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    match = re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.M)
    effective = int(match.group(1), 16) if match else 0
    return all(effective >> bit & 1 for bit in bits)


def _namespaces() -> list[str]:
    """The names of all named network namespaces (`ip netns list`)."""
    done = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=_COMMAND_TIMEOUT
    )
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def _netns_mounted() -> bool:
    """Whether /run/netns is a mount point (`ip netns add` makes it one)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[1:2] == ["/run/netns"] for line in mounts)


def _try(argv: list[str], problems: list[str]) -> None:
    """Run a teardown command; note a failure in `problems` instead of raising."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        problems.append(f"`{' '.join(argv)}`: {exc}")
        return
    if done.returncode != 0:
        problems.append(f"`{' '.join(argv)}`: {done.stderr.strip()}")


def _signal_group(process: subprocess.Popen[Any], signum: int) -> None:
    """Send `signum` to the process group led by `process` (spawn makes each a leader)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)


def _stop_all(
    processes: list[subprocess.Popen[Any]], problems: list[str], grace: float = _STOP_GRACE
) -> None:
    """SIGTERM every process group, wait up to `grace` s in all, then SIGKILL what is left."""
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.poll() is None:
            _signal_group(process, signal.SIGKILL)
            try:
                process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                problems.append(f"process {process.pid} survived SIGKILL")
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _kill_namespace_pids(namespace: str, problems: list[str]) -> None:
    """Kill, by pid, any process still inside a lab namespace (e.g. started with exec)."""
    for signum, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        pids = _namespace_pids(namespace)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
        deadline = time.monotonic() + wait
        while _namespace_pids(namespace) and time.monotonic() < deadline:
            time.sleep(0.05)
    left = _namespace_pids(namespace)
    if left:
        problems.append(f"processes left in {namespace}: {left}")


def _namespace_pids(namespace: str) -> list[int]:
    """The pids of the processes inside a named network namespace."""
    done = subprocess.run(
        ["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=_COMMAND_TIMEOUT
    )
    return [int(word) for word in done.stdout.split() if word.isdigit()]


def node_command(
    cluster: str,
    node_id: str,
    address: str,
    gossip_port: int,
    http_port: int,
    seeds: Sequence[str] = (),
    mdns: bool = False,
) -> list[str]:
    """The `foundation-p2p node` command line for one lab host (development timings)."""
    command = [
        sys.executable,
        "-m",
        "foundation_p2p",
        "node",
        "--cluster",
        cluster,
        "--node-id",
        node_id,
        "--listen",
        f"{address}:{gossip_port}",
        "--http",
        f"{address}:{http_port}",
        "--profile",
        "development",
    ]
    if seeds:
        command += ["--seeds", ",".join(seeds)]
    if mdns:
        command.append("--mdns")
    return command
