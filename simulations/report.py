"""Reports on a scenario run: a text summary, and one self-contained HTML page with a chart.

The page needs nothing but a browser: inline CSS, an SVG chart drawn here, no script, no link
to anything outside the file. Every piece of text goes through html.escape.
"""

from __future__ import annotations

import html
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simulations.scenarios import ScenarioResult

MAX_FAULT_LINES = 12
"""Fault events listed in the text summary (a rolling restart of 50 nodes has 100)."""
MAX_PROBLEMS_SHOWN = 200
"""Problems listed per checker in the HTML page."""

# Chart geometry, in SVG user units.
_WIDTH, _HEIGHT = 960, 380
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 24, 86, 44
_LABEL_ROWS = 4
_LABEL_CHAR_WIDTH = 6.2  # px per character of an 11px label, a generous estimate
_LABEL_MAX_CHARS = 36


def summary(result: ScenarioResult) -> str:
    """A readable multi-line text summary of one run."""
    rows = _rows(result)
    width = max(len(key) for key, _ in rows) + 2
    lines = [f"{key.ljust(width)}{value}" for key, value in rows]
    lines.append("faults")
    for when, label in result.markers[:MAX_FAULT_LINES]:
        lines.append(f"  {when:8.2f} s  {label}")
    if len(result.markers) > MAX_FAULT_LINES:
        lines.append(f"  ... and {len(result.markers) - MAX_FAULT_LINES} more")
    lines.append("checks")
    check_width = max(len(name) for name in result.checks) + 2
    for name, problems in result.checks.items():
        if problems:
            lines.append(
                f"  {name.ljust(check_width)}FAIL, {_count(len(problems), 'problem')}, "
                f"e.g. {problems[0]}"
            )
        else:
            lines.append(f"  {name.ljust(check_width)}ok")
    lines.append(f"{'verdict'.ljust(width)}{'PASS' if result.passed else 'FAIL'}")
    lines.append(f"{'replay'.ljust(width)}{result.replay}")
    return "\n".join(lines)


def write_html(result: ScenarioResult, path: str | Path) -> Path:
    """Write the run's report as one self-contained HTML file at `path`; return the path."""
    target = Path(path)
    target.write_text(render_html(result), encoding="utf-8")
    return target


def render_html(result: ScenarioResult) -> str:
    """The report page as a string."""
    e = html.escape
    verdict = "PASS" if result.passed else "FAIL"
    title = f"{result.name}: {result.nodes} nodes, seed {result.seed}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)} | foundation-p2p simulation</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        f'<h1>Scenario {e(result.name)} <span class="verdict {verdict.lower()}">{verdict}</span>'
        "</h1>",
        f'<p class="lead">{e(result.description)}. {e(str(result.nodes))} nodes, seed '
        f"{e(str(result.seed))}. Replay: <code>{e(result.replay)}</code></p>",
        "<h2>Summary</h2>",
        '<table class="summary">',
        *(f"<tr><th>{e(key)}</th><td>{e(value)}</td></tr>" for key, value in _rows(result)),
        "</table>",
        "<h2>Convergence over virtual time</h2>",
        _chart(result),
        '<p class="note">Shaded: a fault in force. Dashed lines: fault events (hover for the '
        "label). Green line: converged.</p>",
        "<h2>Checkers</h2>",
        _checks_html(result),
        "<h2>Fault events</h2>",
        _faults_html(result),
        "<h2>Traffic per node</h2>",
        _traffic_html(result),
        f"<footer>Trace digest <code>{e(result.trace_digest)}</code>: the same seed gives the "
        "same digest.</footer>",
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


# --- the facts, shared by both formats -------------------------------------------------------


def _rows(result: ScenarioResult) -> list[tuple[str, str]]:
    stats = result.stats
    if result.converged and result.convergence_time is not None:
        converged = (
            f"yes, {result.convergence_time:.2f} s after the last heal "
            f"(at {result.heal_time:.2f} s)"
        )
    elif result.convergence_time is not None:
        converged = "no: it converged, then diverged again"
    else:
        converged = f"no, not within the timeout after the last heal (at {result.heal_time:.2f} s)"
    failing = [name for name, problems in result.checks.items() if problems]
    return [
        ("scenario", f"{result.name}: {result.description}"),
        ("nodes", str(result.nodes)),
        ("seed", str(result.seed)),
        ("converged", converged),
        ("checkers", "all pass" if not failing else "failing: " + ", ".join(failing)),
        ("writes", str(result.writes)),
        ("virtual time", f"{result.virtual_seconds:.1f} s (wall {result.wall_seconds:.1f} s)"),
        (
            "traffic",
            f"{stats.get('messages_per_node_per_s', 0.0):.1f} messages and "
            f"{_bytes(stats.get('bytes_per_node_per_s', 0.0))} per node per virtual second",
        ),
        ("failure detection", _detection(result)),
        (
            "false positives",
            f"{_count(stats.get('false_suspicions', 0), 'suspicion')} and "
            f"{_count(stats.get('false_downs', 0), 'dead verdict')} of live nodes "
            "while the network was whole",
        ),
        ("protocol errors", _protocol_errors(stats.get("protocol_errors", {}))),
    ]


def _detection(result: ScenarioResult) -> str:
    found: dict[str, tuple[float, float | None]] = dict(result.detections)
    for node, seen in result.stats.get("detection", {}).items():
        found.setdefault(node, (seen["first"], seen["all"]))
    crashes = sum(1 for _, label in result.markers if label.startswith("crash"))
    if not found:
        if crashes:
            return f"none: {_count(crashes, 'crashed node')}, each restarted before declared dead"
        return "no node crashed"
    firsts = [first for first, _ in found.values()]
    everyone = [full for _, full in found.values() if full is not None]
    text = (
        f"{len(found)} of {max(crashes, len(found))} crashes declared dead; first observer "
        f"after {statistics.median(firsts):.2f} s median ({max(firsts):.2f} s max)"
    )
    if everyone:
        text += (
            f"; every live node after {statistics.median(everyone):.2f} s median "
            f"({max(everyone):.2f} s max)"
        )
    return text


def _protocol_errors(errors: dict[str, int]) -> str:
    if not errors:
        return "none"
    return ", ".join(f"{reason}: {count}" for reason, count in sorted(errors.items()))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _bytes(value: float) -> str:
    if value >= 1024 * 1024:
        return f"{value / (1024 * 1024):.2f} MiB"
    if value >= 1024:
        return f"{value / 1024:.1f} KiB"
    return f"{value:.0f} B"


# --- HTML pieces --------------------------------------------------------------------------------


def _chart(result: ScenarioResult) -> str:
    """An SVG line chart: the two convergence shares, fault bands and event markers."""
    e = html.escape
    end = max(
        [result.virtual_seconds, 1.0]
        + [p.time for p in result.timeline]
        + [stop for _, stop, _ in result.fault_windows]
    )
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM

    def x(t: float) -> float:
        return _LEFT + plot_w * t / end

    def y(share: float) -> float:
        return _TOP + plot_h * (1.0 - share)

    out = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" width="{_WIDTH}" '
        f'height="{_HEIGHT}" role="img" aria-label="{e(_chart_label(result))}">',
        f"<title>{e(_chart_label(result))}</title>",
    ]
    for start, stop, label in result.fault_windows:
        out.append(
            f'<rect class="band" x="{x(start):.1f}" y="{_TOP}" '
            f'width="{max(0.5, x(stop) - x(start)):.1f}" height="{plot_h}">'
            f"<title>{e(label)}: {start:.2f} s to {stop:.2f} s</title></rect>"
        )
    for share in (0.0, 0.25, 0.5, 0.75, 1.0):
        out.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" '
            f'y1="{y(share):.1f}" y2="{y(share):.1f}"/>'
            f'<text class="tick" x="{_LEFT - 6}" y="{y(share) + 4:.1f}" '
            f'text-anchor="end">{share:g}</text>'
        )
    for t in _ticks(end):
        out.append(
            f'<line class="axis" x1="{x(t):.1f}" x2="{x(t):.1f}" '
            f'y1="{_TOP + plot_h}" y2="{_TOP + plot_h + 5}"/>'
            f'<text class="tick" x="{x(t):.1f}" y="{_TOP + plot_h + 18}" '
            f'text-anchor="middle">{t:g}</text>'
        )
    out.append(
        f'<line class="axis" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" '
        f'y1="{_TOP + plot_h}" y2="{_TOP + plot_h}"/>'
        f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{_TOP + plot_h}"/>'
        f'<text class="axis-label" x="{_LEFT + plot_w / 2:.1f}" y="{_HEIGHT - 6}" '
        'text-anchor="middle">virtual seconds</text>'
        f'<text class="axis-label" x="14" y="{_TOP + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_TOP + plot_h / 2:.1f})">share of nodes</text>'
    )
    row_ends = [-1e9] * _LABEL_ROWS  # where the last label placed in each row ends
    for when, label in result.markers:
        out.append(
            f'<line class="marker" x1="{x(when):.1f}" x2="{x(when):.1f}" '
            f'y1="{_TOP - 4}" y2="{_TOP + plot_h}">'
            f"<title>{when:.2f} s: {e(label)}</title></line>"
        )
        # A label goes in the first row where it overlaps nothing; a crowded event keeps
        # only its line and tooltip (every event is also listed in the table below).
        text = _short(label)
        width = _LABEL_CHAR_WIDTH * len(text)
        start = x(when) + 3
        if start + width > _WIDTH:  # near the right edge: the label ends at its line
            start = x(when) - 3 - width
        for row in range(_LABEL_ROWS):
            if start >= row_ends[row] + 8:
                row_ends[row] = start + width
                out.append(
                    f'<text class="marker-label" x="{start:.1f}" '
                    f'y="{_TOP - 8 - 14 * row}">{e(text)}</text>'
                )
                break
    if result.converged and result.convergence_time is not None:
        done = result.heal_time + result.convergence_time
        out.append(
            f'<line class="converged" x1="{x(done):.1f}" x2="{x(done):.1f}" '
            f'y1="{_TOP}" y2="{_TOP + plot_h}"><title>converged at {done:.2f} s</title></line>'
        )
    series = (
        ("members", "membership views agreeing", [p.members_agreeing for p in result.timeline]),
        ("replicas", "nodes with equal replicas", [p.replicas_equal for p in result.timeline]),
    )
    for css, _, values in series:
        points = " ".join(
            f"{x(p.time):.1f},{y(v):.1f}" for p, v in zip(result.timeline, values, strict=True)
        )
        out.append(f'<polyline class="series {css}" points="{points}"/>')
    legend_x = _WIDTH - _RIGHT - 250
    out.append(
        f'<rect class="legend-box" x="{legend_x - 8}" y="{_TOP + plot_h - 52}" '
        'width="238" height="44"/>'
    )
    for i, (css, label, _) in enumerate(series):
        ly = _TOP + plot_h - 40 + 18 * i
        out.append(
            f'<line class="series {css}" x1="{legend_x}" x2="{legend_x + 24}" '
            f'y1="{ly}" y2="{ly}"/>'
            f'<text class="legend" x="{legend_x + 30}" y="{ly + 4}">{e(label)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def _chart_label(result: ScenarioResult) -> str:
    return (
        f"Convergence of {result.name} over {result.virtual_seconds:.0f} virtual seconds: "
        "share of membership views agreeing and of nodes with equal replicas"
    )


def _ticks(end: float) -> list[float]:
    """Round x-axis ticks: about eight of them."""
    step = next((s for s in (1, 2, 5, 10, 15, 20, 30, 60, 120, 300) if end / s <= 10), 600)
    return [float(t) for t in range(0, int(end) + 1, step)]


def _short(label: str, limit: int = _LABEL_MAX_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


def _checks_html(result: ScenarioResult) -> str:
    e = html.escape
    out = ['<table class="checks">']
    for name, problems in result.checks.items():
        if not problems:
            out.append(f'<tr><th>{e(name)}</th><td class="ok">ok</td><td></td></tr>')
            continue
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        items = "".join(f"<li>{e(p)}</li>" for p in shown)
        if more:
            items += f"<li>... and {more} more</li>"
        out.append(
            f'<tr><th>{e(name)}</th><td class="fail">FAIL</td><td><details><summary>'
            f"{e(_count(len(problems), 'problem'))}: {e(problems[0])}</summary>"
            f"<ul>{items}</ul></details></td></tr>"
        )
    out.append("</table>")
    return "\n".join(out)


def _faults_html(result: ScenarioResult) -> str:
    e = html.escape
    if not result.markers:
        return "<p>No fault events.</p>"
    rows = "".join(
        f'<tr><td class="num">{when:.2f} s</td><td>{e(label)}</td></tr>'
        for when, label in result.markers
    )
    return f'<table class="events"><tr><th>virtual time</th><th>event</th></tr>{rows}</table>'


def _traffic_html(result: ScenarioResult) -> str:
    e = html.escape
    per_node: dict[str, dict[str, Any]] = result.stats.get("per_node", {})
    if not per_node:
        return "<p>No traffic recorded.</p>"
    header = _tr(["node", "messages/s", "bytes/s", "sent", "received", "dropped"], "th")
    rows = "".join(
        _tr(
            [
                e(node),
                f"{s['messages_per_s']:.1f}",
                _bytes(s["bytes_per_s"]),
                str(s["sent"]),
                str(s["received"]),
                str(s["dropped"]),
            ],
            "td",
        )
        for node, s in per_node.items()
    )
    return (
        f"<details><summary>{len(per_node)} nodes</summary>"
        f'<table class="traffic">{header}{rows}</table></details>'
    )


def _tr(cells: Sequence[str], tag: str) -> str:
    return "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; color: #1d2430; background: #fafafa; margin: 0; }
main { max-width: 1000px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.15em; margin: 28px 0 8px; border-bottom: 1px solid #d8dce3; }
.lead { color: #4a5568; margin-top: 0; }
code { font-family: ui-monospace, monospace; font-size: 0.92em; background: #eef0f4;
       padding: 1px 4px; border-radius: 3px; }
.verdict { font-size: 0.6em; vertical-align: middle; padding: 3px 10px; border-radius: 4px;
           color: #fff; }
.verdict.pass { background: #2f855a; }
.verdict.fail { background: #c53030; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 4px 12px 4px 0; vertical-align: top; }
.summary th, .checks th { font-weight: 600; white-space: nowrap; }
.events td.num, .traffic td { font-variant-numeric: tabular-nums; }
.ok { color: #2f855a; font-weight: 600; }
.fail { color: #c53030; font-weight: 600; }
details ul { margin: 6px 0; padding-left: 20px; font-size: 0.9em; }
.note { color: #4a5568; font-size: 0.9em; }
footer { margin-top: 32px; color: #4a5568; font-size: 0.9em; }
svg.chart { max-width: 100%; height: auto; background: #fff; border: 1px solid #d8dce3; }
.band { fill: #f6ad55; fill-opacity: 0.18; }
.grid { stroke: #e2e8f0; stroke-width: 1; }
.axis { stroke: #4a5568; stroke-width: 1; }
.tick, .legend { font-size: 12px; fill: #4a5568; }
.legend-box { fill: #fff; fill-opacity: 0.85; stroke: #d8dce3; }
.axis-label { font-size: 12px; fill: #1d2430; }
.marker { stroke: #c05621; stroke-width: 1; stroke-dasharray: 4 3; }
.marker-label { font-size: 11px; fill: #9c4221; }
.converged { stroke: #2f855a; stroke-width: 1.5; }
.series { fill: none; stroke-width: 2; }
.series.members { stroke: #2b6cb0; }
.series.replicas { stroke: #38a169; stroke-dasharray: 6 3; }
"""
