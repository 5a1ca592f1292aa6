"""Run every benchmark in bench/ and write bench/REPORT.md: one table per area, peers beside us.

Run: python -m bench all [--quick] [--soak] [--only crdts,transport] [--output bench/REPORT.md]

Each benchmark runs in its own process (`python -m bench.<name>`), as a user would run it, so
one that hangs or fails is cut off at its deadline and reported, and the others still run. Their
printed tables are parsed (Markdown `| a | b |` tables and the `a | b` / `--+--` tables of
bench/shared_state.py); the few results printed as lines (bench/services.py) are parsed by
pattern. Every area's full output is kept in the report, folded, so nothing measured is lost.
BEAM: with Erlang installed (Debian `erlang-base`), `:global` lookup and pg pub/sub between two
VMs over Erlang distribution on loopback are measured in the same run (bench/beam*.escript);
without it they are skipped, and the figures quoted in the issue texts stand, labelled as quoted.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "bench" / "REPORT.md"

# BEAM figures measured elsewhere on this kind of machine (quoted in issue 6, D2).
BEAM_GLOBAL_LOOKUP_NS = 410.0
BEAM_PUBSUB_PER_S = 174_000.0
ZENOH_QUOTED_PER_S = 440_000.0


@dataclass(frozen=True)
class Area:
    """One benchmark module: how to run it quick and full, and what its peer is."""

    name: str
    title: str
    peers: str
    quick: tuple[str, ...]
    full: tuple[str, ...]
    timeout_quick: float
    timeout_full: float
    soak: bool = False
    program: tuple[str, ...] = ()
    """Run this instead of `python -m bench.<name>` (the arguments follow it)."""
    env: tuple[tuple[str, str], ...] = ()
    """Extra environment variables; `{port}` in a value becomes a free loopback TCP port."""


AREAS = (
    Area(
        "beam",
        "BEAM reference",
        "measured here when Erlang is installed, else quoted",
        ("200000",),
        ("1000000",),
        120,
        300,
        program=("escript", "bench/beam.escript"),
    ),
    Area(
        "beam_pubsub",
        "BEAM pub/sub node -> node",
        "measured here when Erlang is installed, else quoted",
        ("100000",),
        ("500000",),
        120,
        300,
        program=("escript", "bench/beam_pubsub.escript"),
        env=(("ERL_FLAGS", "-erl_epmd_port {port}"),),
    ),
    Area("crdts", "CRDTs", "raw pycrdt (same work)", ("--quick",), (), 120, 600),
    Area("transport", "Transport", "raw asyncio TCP loop", ("--quick",), (), 120, 600),
    Area(
        "simulation",
        "Simulator",
        "floors: log2(N) hops; the detection formula",
        ("--quick",),
        (),
        300,
        1200,
    ),
    Area(
        "membership",
        "Membership",
        "Serf 0.8 (LAN profile), separate processes",
        ("--quick",),
        (),
        600,
        1800,
    ),
    Area(
        "services",
        "Cluster services",
        "raw asyncio msgpack loop, Eclipse Zenoh, BEAM (measured or quoted)",
        ("--quick",),
        (),
        600,
        1200,
    ),
    Area(
        "shared_state",
        "SharedState",
        "raw pycrdt, PySyncObj (Raft), Redis",
        ("--quick",),
        (),
        900,
        1800,
    ),
    Area("discovery", "Discovery", "floor: one discovery_interval", ("--quick",), (), 300, 900),
    Area(
        "soak_crash",
        "Crash soak",
        "none (a pass/fail soak: every acknowledged write survives kill -9)",
        ("--cycles", "10", "--seed", "1", "--writes", "500"),
        ("--seed", "1"),
        600,
        1800,
        soak=True,
    ),
    Area(
        "soak_partitions",
        "Partition soak",
        "none (a pass/fail soak in network namespaces; needs root)",
        ("--cycles", "3"),
        (),
        900,
        1800,
        soak=True,
    ),
    Area(
        "soak_frames",
        "Frame soak",
        "none (a pass/fail soak: hostile frames against one node)",
        ("--frames", "5000", "--duration", "60"),
        (),
        300,
        1800,
        soak=True,
    ),
)
AREA_NAMES = tuple(area.name for area in AREAS)


@dataclass
class Table:
    """A parsed table: the heading printed above it, its header row and its rows."""

    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def markdown(self) -> str:
        """The table as GitHub Markdown."""
        width = len(self.header)
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * width]
        for row in self.rows:
            cells = (row + [""] * width)[:width]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


@dataclass
class Outcome:
    """What one area's run produced."""

    area: Area
    command: list[str]
    seconds: float
    returncode: int | None
    output: str
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


_MD_SEPARATOR = re.compile(r"^\|\s*:?-{3,}")
_PLAIN_SEPARATOR = re.compile(r"^-+(-\+-+)+$")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def parse_tables(output: str) -> tuple[list[Table], list[str]]:
    """Tables printed in `output` (Markdown or `a | b` over `--+--`) and the other lines."""
    lines = output.splitlines()
    tables: list[Table] = []
    notes: list[str] = []
    heading = ""  # the last `#` heading
    index = 0
    while index < len(lines):
        line = lines[index].rstrip()
        following = lines[index + 1].strip() if index + 1 < len(lines) else ""
        # A table's title: the line right above it when there is one (a caption), else the
        # last heading; a line with a blank line between it and the table is only progress.
        above = lines[index - 1].strip() if index > 0 else ""
        title = above.lstrip("#").strip() if above else heading
        if line.startswith("|") and _MD_SEPARATOR.match(following):
            table = Table(title, _cells(line))
            index += 2
            while index < len(lines) and lines[index].startswith("|"):
                table.rows.append(_cells(lines[index]))
                index += 1
            tables.append(table)
            continue
        if " | " in line and _PLAIN_SEPARATOR.match(following):
            table = Table(title, _cells(line))
            index += 2
            while index < len(lines) and " | " in lines[index]:
                table.rows.append(_cells(lines[index]))
                index += 1
            tables.append(table)
            continue
        stripped = line.strip()
        if stripped.startswith("#"):
            heading = stripped.lstrip("#").strip()
        elif stripped:
            notes.append(stripped)
        index += 1
    return tables, notes


# Printed lines worth lifting out of the folded output: ratios, goals, verdicts.
_FINDING = re.compile(
    r"\d\.\d+x\b|goal|converged|PASS|FAIL|missing|wall |skipped|not installed|median"
)
_NUMBER = r"([0-9][0-9,]*\.?[0-9]*)"


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def beam_figures(output: str) -> dict[str, float]:
    """The figures bench/beam.escript printed (`name value` lines)."""
    return {
        name: float(value) for name, value in re.findall(r"^([a-z_]+) ([0-9.]+)$", output, re.M)
    }


def beam_tables(output: str, measured: dict[str, float]) -> list[Table]:
    """The BEAM area's own table: measured here beside the quoted figures."""
    figures = beam_figures(output)
    measured.update(figures)
    if "pg_node_to_node_msgs_per_s" in figures:
        rate = figures["pg_node_to_node_msgs_per_s"]
        return [
            Table(
                "pg over Erlang distribution, two VMs on loopback, 93-byte payloads",
                ["figure", "measured here", "quoted", "here / quoted"],
                [
                    [
                        "pg publish -> subscriber on the other VM (msg/s)",
                        f"{rate:,.0f}",
                        f"{BEAM_PUBSUB_PER_S:,.0f}",
                        f"{rate / BEAM_PUBSUB_PER_S:.2f}x",
                    ]
                ],
            )
        ]
    if "global_lookup_ns" not in figures:
        return []
    table = Table(
        f"Erlang/OTP {measured.get('otp', 0):.0f} on this machine, beside the figures quoted in"
        " the issues",
        ["figure", "measured here", "quoted", "here / quoted"],
    )
    lookup = measured["global_lookup_ns"]
    table.rows.append(
        [
            ":global.whereis_name, 10,000 names (ns)",
            f"{lookup:,.0f}",
            f"{BEAM_GLOBAL_LOOKUP_NS:.0f}",
            f"{lookup / BEAM_GLOBAL_LOOKUP_NS:.2f}x",
        ]
    )
    if "pg_local_msgs_per_s" in measured:
        table.rows.append(
            [
                "pg publish -> one subscriber, one VM, no network (msg/s)",
                f"{measured['pg_local_msgs_per_s']:,.0f}",
                f"node -> node {BEAM_PUBSUB_PER_S:,.0f}",
                "not comparable (no network here)",
            ]
        )
    return [table]


def services_tables(output: str, measured: dict[str, float]) -> list[Table]:
    """bench/services.py prints lines, not tables: turn its figures into rows with ratios."""
    tables: list[Table] = []
    beam_lookup = measured.get("global_lookup_ns", BEAM_GLOBAL_LOOKUP_NS)
    source = "measured in this run" if "global_lookup_ns" in measured else "quoted"
    registry = Table(
        f"Registry (10,000 instances, one node), beside BEAM :global ({source}: "
        f"{beam_lookup:,.0f} ns)",
        [
            "operation",
            "ns/op",
            f"BEAM :global lookup ns ({source})",
            "ours / BEAM (time: < 1 is faster)",
            "ours / BEAM quoted 410 ns",
        ],
    )
    for label, value in re.findall(r"^\s+(.+?)\s+" + _NUMBER + r" ns/op", output, re.M):
        ns = _number(value)
        lookup = "lookup" in label
        ratio = f"{ns / beam_lookup:.2f}x" if lookup else ""
        beam = f"{beam_lookup:,.0f}" if lookup else ""
        quoted = f"{ns / BEAM_GLOBAL_LOOKUP_NS:.2f}x" if lookup else ""
        registry.rows.append([label, f"{ns:,.0f}", beam, ratio, quoted])
    if registry.rows:
        tables.append(registry)

    pubsub = Table(
        "Pub/sub node -> node, 100-byte messages",
        ["system", "msg/s", "ours / it (rate: > 1 is faster)"],
    )
    ours = re.search(r"foundation-p2p pubsub\s+" + _NUMBER + r" msg/s", output)
    if ours:
        rate = _number(ours.group(1))
        pubsub.rows.append(["foundation-p2p pubsub", f"{rate:,.0f}", "1.00x"])
        for label, pattern in (
            ("raw asyncio msgpack loop (same run)", r"raw asyncio msgpack loop\s+"),
            ("Zenoh, peer mode (same run)", r"zenoh \(peer mode\)\s+"),
        ):
            match = re.search(pattern + _NUMBER + r" msg/s", output)
            if match:
                peer = _number(match.group(1))
                pubsub.rows.append([label, f"{peer:,.0f}", f"{rate / peer:.2f}x"])
        if "zenoh" in output and "skipped" in output.split("call:")[0]:
            pubsub.rows.append(["Zenoh", "skipped (see output)", ""])
        beam_rate = measured.get("pg_node_to_node_msgs_per_s")
        if beam_rate:
            pubsub.rows.append(
                [
                    "BEAM pg node -> node (same run)",
                    f"{beam_rate:,.0f}",
                    f"{rate / beam_rate:.2f}x",
                ]
            )
        pubsub.rows.append(
            [
                "BEAM Phoenix.PubSub (quoted)",
                f"{BEAM_PUBSUB_PER_S:,.0f}",
                f"{rate / BEAM_PUBSUB_PER_S:.2f}x",
            ]
        )
        tables.append(pubsub)

    call = Table(
        "call: sequential request/response round trips",
        ["system", "p50 µs", "p99 µs", "ours p50 / its p50 (time: < 1 is faster)"],
    )
    found = re.findall(r"^\s+(.+?)\s+p50\s+" + _NUMBER + r"\s+p99\s+" + _NUMBER, output, re.M)
    ours_p50 = next((_number(p50) for label, p50, _ in found if "foundation" in label), None)
    for label, p50, p99 in found:
        ratio = f"{ours_p50 / _number(p50):.2f}x" if ours_p50 else ""
        call.rows.append([label, f"{_number(p50):,.0f}", f"{_number(p99):,.0f}", ratio])
    if call.rows:
        tables.append(call)
    return tables


# Parsers for output that is not (only) tables; `measured` carries figures between areas (the
# BEAM area runs first so the services tables can use its figures).
PARSERS: dict[str, Callable[[str, dict[str, float]], list[Table]]] = {
    "beam": beam_tables,
    "beam_pubsub": beam_tables,
    "services": services_tables,
}


def erlang_version() -> str | None:
    """The installed Erlang/OTP release, or None when `erl` is absent."""
    erl = shutil.which("erl")
    if erl is None:
        return None
    try:
        result = subprocess.run(
            [
                erl,
                "-noshell",
                "-eval",
                'io:format("~s", [erlang:system_info(otp_release)]), halt().',
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run_area(area: Area, quick: bool, measured: dict[str, float]) -> Outcome:
    """Run one benchmark module in its own process; parse what it printed."""
    arguments = area.quick if quick else area.full
    if area.program:
        if shutil.which(area.program[0]) is None:
            note = f"{area.program[0]} is not installed: skipped, BEAM figures quoted"
            print(f"== {area.name}: {note}", flush=True)
            return Outcome(area, [*area.program, *arguments], 0.0, 0, note)
        command = [*area.program, *arguments]
    else:
        command = [sys.executable, "-m", f"bench.{area.name}", *arguments]
    timeout = area.timeout_quick if quick else area.timeout_full
    print(f"== {area.name}: {shown_command(command)} (deadline {timeout:.0f} s)", flush=True)
    env = dict(os.environ)
    for name, value in area.env:
        env[name] = value.format(port=free_port())
    began = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
        returncode: int | None = process.returncode
    except subprocess.TimeoutExpired:
        # The benchmark's own children share its session: stop them all, by its process group.
        os.killpg(process.pid, 9)
        output, _ = process.communicate()
        output += f"\n(cut off after {timeout:.0f} s)"
        returncode = None
    seconds = time.monotonic() - began
    outcome = Outcome(area, command, seconds, returncode, output)
    outcome.tables, outcome.notes = parse_tables(output)
    if area.name in PARSERS:
        outcome.tables = PARSERS[area.name](output, measured) + outcome.tables
    status = "ok" if returncode == 0 else f"exit {returncode}"
    print(f"   {status}, {seconds:.0f} s, {len(outcome.tables)} tables", flush=True)
    return outcome


def machine() -> str:
    """One line naming the machine: CPU model, cores, memory, OS and Python."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


_RATIO = re.compile(r"^[+-]?\d[\d.,]*x\b")


def ratios_at_a_glance(outcomes: list[Outcome]) -> Table:
    """One row per table row that carries a ratio cell, and per printed ratio line."""
    glance = Table("", ["area", "row", "ratio"])
    for outcome in outcomes:
        for table in outcome.tables:
            for row in table.rows:
                cells = [
                    f"{header}: {cell}"
                    for header, cell in zip(table.header[1:], row[1:], strict=False)
                    if _RATIO.match(cell)
                    and not re.match(r"^1\.00x$", cell)
                    # a floor's own row measured against a floor (transport: raw vs raw)
                    and not (row[0].startswith("raw") and header.startswith("vs"))
                ]
                if cells:
                    label = " ".join(c for c in row[:1] if c)
                    if len(table.header) > 1 and table.header[1] == "N":
                        label += f" (N={row[1]})"
                    glance.rows.append([outcome.area.title, label, "; ".join(cells)])
        for note in outcome.notes:
            if re.search(r"\d\.\d+x\s*$", note):
                glance.rows.append(
                    [outcome.area.title, note.rsplit(":", 1)[0], note.rsplit(":", 1)[-1].strip()]
                )
    return glance


def beam_note(erlang: str | None, measured: dict[str, float]) -> str:
    """Where the BEAM figures come from in this report."""
    quoted = (
        "the figures quoted in issue D2 (`:global` lookup 0.41 µs, Phoenix.PubSub node -> node"
        " ~174k msg/s) are shown beside them, labelled `(quoted)`"
    )
    parts = []
    if "global_lookup_ns" in measured:
        parts.append("`:global` lookup (`escript bench/beam.escript`)")
    if "pg_node_to_node_msgs_per_s" in measured:
        parts.append(
            "pg pub/sub between two VMs over Erlang distribution on loopback"
            " (`escript bench/beam_pubsub.escript`)"
        )
    if parts:
        return (
            f"Erlang/OTP {erlang or '?'} is installed, so these are measured in this run: "
            + " and ".join(parts)
            + f"; {quoted}."
        )
    return f"Erlang is not installed here, so only {quoted}."


def shown_command(command: list[str]) -> str:
    """A command as a reader would type it (`python` for this interpreter)."""
    return " ".join("python" if word == sys.executable else word for word in command)


def render(
    outcomes: list[Outcome],
    command: str,
    started: datetime.datetime,
    measured: dict[str, float] | None = None,
) -> str:
    """The whole report as Markdown."""
    erlang = erlang_version()
    measured = measured or {}
    parts = [
        "# Benchmark report",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        f"- command: `{command}`",
        "- Every figure below was measured in this one run on this machine, the peers beside us"
        " included; compare ratios, not absolute figures (the machine may have been running other"
        " work at the same time).",
        "- BEAM: " + beam_note(erlang, measured),
        "",
        "## Summary",
        "",
        "| area | peer or floor | benchmark | result | time |",
        "|---|---|---|---|---:|",
    ]
    for outcome in outcomes:
        status = (
            "ok"
            if outcome.returncode == 0
            else (
                "cut off" if outcome.returncode is None else f"failed (exit {outcome.returncode})"
            )
        )
        parts.append(
            f"| {outcome.area.title} | {outcome.area.peers} | `{shown_command(outcome.command)}` "
            f"| {status} "
            f"| {outcome.seconds:.0f} s |"
        )
    glance = ratios_at_a_glance(outcomes)
    if glance.rows:
        parts += [
            "",
            "## Ratios at a glance",
            "",
            "Every row of the tables below that states a ratio to a peer or a floor (what the"
            " ratio compares is in the column name; the goals are the issues').",
            "",
            glance.markdown(),
        ]
    for outcome in outcomes:
        parts += [
            "",
            f"## {outcome.area.title}",
            "",
            f"`{shown_command(outcome.command)}` — peers: {outcome.area.peers}",
        ]
        for table in outcome.tables:
            parts += ["", f"**{table.title}**" if table.title else "", "", table.markdown()]
        findings = [note for note in outcome.notes if _FINDING.search(note)]
        if findings:
            parts += ["", *(f"- {note}" for note in findings)]
        if not outcome.tables:
            parts += ["", "No table was printed; see the output below."]
        parts += [
            "",
            "<details><summary>full output</summary>",
            "",
            "```text",
            outcome.output.rstrip(),
            "```",
            "",
            "</details>",
        ]
    return "\n".join(line for line in _squeeze(parts)) + "\n"


def _squeeze(lines: list[str]) -> list[str]:
    """Drop the blank lines that an empty title leaves doubled."""
    kept: list[str] = []
    for line in lines:
        if line == "" and kept and kept[-1] == "":
            continue
        kept.append(line)
    return kept


def main(argv: list[str] | None = None) -> int:
    """Run the chosen areas in turn and write the report."""
    parser = argparse.ArgumentParser(
        prog="python -m bench all", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="each benchmark's --quick run")
    parser.add_argument("--soak", action="store_true", help="also run the soak benchmarks")
    parser.add_argument("--only", help="comma-separated areas: " + ",".join(AREA_NAMES))
    parser.add_argument("--output", type=Path, default=REPORT, help="where to write the report")
    args = parser.parse_args(argv)
    chosen = [area for area in AREAS if args.soak or not area.soak]
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - set(AREA_NAMES))
        if unknown:
            parser.error(f"unknown area {unknown[0]!r}; choose from {', '.join(AREA_NAMES)}")
        chosen = [area for area in AREAS if area.name in wanted]
    started = datetime.datetime.now(datetime.UTC)
    shown = "python -m bench all" + (" " + " ".join(argv) if argv else "")
    measured: dict[str, float] = {}
    outcomes = [run_area(area, args.quick, measured) for area in chosen]
    args.output.write_text(render(outcomes, shown, started, measured))
    print(f"wrote {args.output}")
    return 0 if all(outcome.returncode == 0 for outcome in outcomes) else 1
