"""The text summary and the self-contained HTML report of a scenario run."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from simulations import TimelinePoint
from simulations.report import render_html, summary, write_html
from simulations.scenarios import ScenarioResult, run_scenario


@pytest.fixture(scope="module")
def partition_result() -> ScenarioResult:
    """A real, passing partition-heal run."""
    return run_scenario("partition-heal", 5, 1)


def _failing_result() -> ScenarioResult:
    """A made-up failing run whose texts need escaping."""
    timeline = [
        TimelinePoint(t / 4, 1.0 if t < 8 else 0.5, 1.0 if t < 8 else 0.6, 8 <= t < 20)
        for t in range(40)
    ]
    return ScenarioResult(
        name="evil<script>",
        description='cut "a" & <b>',
        nodes=4,
        seed=9,
        converged=False,
        heal_time=5.0,
        convergence_time=None,
        writes=12,
        checks={
            "replicas_equal": ["n1 differs from n0 on '<online>'"],
            "memberships_agree": [],
        },
        stats={
            "messages_per_node_per_s": 3.5,
            "bytes_per_node_per_s": 2048.0,
            "false_suspicions": 1,
            "false_downs": 0,
            "protocol_errors": {"bad_delta": 2},
            "per_node": {
                "n0": {
                    "messages_per_s": 3.0,
                    "bytes_per_s": 100.0,
                    "sent": 30,
                    "received": 29,
                    "dropped": 1,
                }
            },
        },
        timeline=timeline,
        markers=[(2.0, "crash n1 <x>"), (5.0, "restart n1 <x>")],
        fault_windows=[(2.0, 5.0, "crash n1 <x>")],
        detections={"n1": (1.5, 2.0)},
        trace_digest="abc",
        virtual_seconds=10.0,
        wall_seconds=0.1,
    )


def test_summary_of_a_passing_run(partition_result: ScenarioResult) -> None:
    """The summary names the run, says it converged and when, and lists every checker."""
    text = summary(partition_result)
    assert "partition-heal" in text
    assert re.search(r"^nodes\s+5$", text, re.M)
    assert re.search(r"^seed\s+1$", text, re.M)
    assert re.search(r"^converged\s+yes, \d+\.\d\d s after the last heal", text, re.M)
    assert "messages and" in text and "per node per virtual second" in text
    assert "false positives" in text
    for name in partition_result.checks:
        assert re.search(rf"^  {name}\s+ok$", text, re.M)
    assert re.search(r"^verdict\s+PASS$", text, re.M)
    assert "foundation-p2p simulate partition-heal --nodes 5 --seed 1" in text


def test_summary_of_a_failing_run() -> None:
    """A failing run says so, with the first problem and the detection times."""
    text = summary(_failing_result())
    assert re.search(r"^converged\s+no", text, re.M)
    assert "replicas_equal     FAIL, 1 problem, e.g. n1 differs" in text
    assert "first observer after 1.50 s" in text
    assert "bad_delta: 2" in text
    assert re.search(r"^verdict\s+FAIL$", text, re.M)


def test_html_report_is_one_self_contained_file(
    partition_result: ScenarioResult, tmp_path: Path
) -> None:
    """No script, no stylesheet or image fetched from anywhere: one file a browser can open."""
    path = write_html(partition_result, tmp_path / "report.html")
    assert path.exists()
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"\b(src|href)\s*=", page)
    assert "<script" not in page.lower()
    assert "<style>" in page
    assert "partition-heal" in page
    for _, label in partition_result.markers:
        assert label in page
    for name in partition_result.checks:
        assert name in page


def test_html_chart_plots_both_series_bands_and_markers(partition_result: ScenarioResult) -> None:
    """The SVG is well-formed, with two polylines over the timeline, a band per fault window
    and a marker per fault event, all inside the plot."""
    page = render_html(partition_result)
    svg = re.search(r"<svg.*?</svg>", page, re.S)
    assert svg is not None
    root = ET.fromstring(svg.group(0))
    lines = root.findall("polyline")
    assert len(lines) == 2
    for line in lines:
        points = [tuple(map(float, p.split(","))) for p in line.attrib["points"].split()]
        assert len(points) == len(partition_result.timeline)
        xs = [px for px, _ in points]
        assert xs == sorted(xs)
    assert len(root.findall("rect[@class='band']")) == len(partition_result.fault_windows)
    assert len(root.findall("line[@class='marker']")) == len(partition_result.markers)
    assert len(root.findall("line[@class='converged']")) == 1


def test_html_escapes_every_text() -> None:
    """Names, labels and problems cannot inject markup."""
    page = render_html(_failing_result())
    assert "<script>" not in page
    assert "evil&lt;script&gt;" in page
    assert "crash n1 &lt;x&gt;" in page
    assert "&#x27;&lt;online&gt;&#x27;" in page
    assert "cut &quot;a&quot; &amp; &lt;b&gt;" in page
    svg = re.search(r"<svg.*?</svg>", page, re.S)
    assert svg is not None
    ET.fromstring(svg.group(0))  # still well-formed with the hostile labels
    assert "FAIL" in page
    assert "<details>" in page  # problems fold away without any script
