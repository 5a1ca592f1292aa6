"""Every code block in README.md and docs/ is checked, and the benchmarks run to completion.

The convention, by a fence's language:
  ```python   executed (its asserts are its checks).
  ```bash     every command is validated without running it: `foundation-p2p ...` (or
              `python -m foundation_p2p ...`) must parse with the real argparse parser (usage
              brackets, `[--overwrite]`, are parsed as if given), a
              `curl` URL must name a route the node serves with that method, `python -m bench`
              must name a benchmark, a script path must exist; any other command must be in
              SHELL_COMMANDS (commands of the host, not of this project).
  ```toml     parsed, and a block with a `profile` or Config fields is loaded by Config.from_file.
  ```json     parsed.
  ```text     (and a bare fence) shown, never run: output, diagrams, files in other languages,
              and code that needs what the tests lack (root and network namespaces).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from foundation_p2p import Config

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((str(path.relative_to(ROOT)), line, match.group(1)))
    return found


BLOCKS = _blocks()
FENCE = re.compile(r"^```(bash|toml|json)\n(.*?)^```$", re.S | re.M)
# Host commands a shell block may use besides this project's own (not checked beyond the name).
SHELL_COMMANDS = {
    "pip",
    "cd",
    "export",
    "mkdir",
    "chmod",
    "cat",
    "echo",
    "kill",
    "sudo",
    "systemctl",
    "kubectl",
    "docker",
    "apt-get",
    "ip",
    "nft",
    "dig",
    "openssl",
    "chronyc",
    "timedatectl",
    "ss",
    "journalctl",
    "pytest",
    "sqlite3",
    "cp",
    "mv",
    "ls",
    "head",
    "tail",
    "grep",
    "jq",
    "sleep",
    "wait",
    "set",
    "for",
    "do",
    "done",
}


def _fenced() -> list[tuple[str, int, str, str]]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((str(path.relative_to(ROOT)), line, match.group(1), match.group(2)))
    return found


FENCED = _fenced()


def _commands(script: str) -> list[list[str]]:
    """Each simple command in a shell block: continuations joined, comments dropped, split on
    `&&`, `||`, `;` and `|`, a trailing `&` and leading VAR=value assignments removed."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        current: list[str] = []
        for word in [*words, ";"]:
            if word in ("&&", "||", ";", "|", "&"):
                while current and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", current[0]):
                    current.pop(0)
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(word.rstrip(";"))
    return commands


def _route_patterns() -> list[tuple[str, re.Pattern[str]]]:
    from foundation_p2p.runtime.http import build_app

    app = build_app(object())  # type: ignore[arg-type]  # routes need the node only when called
    patterns = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = str(info.get("path") or info.get("formatter"))
        regex = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path))
        patterns.append((route.method, re.compile(regex + "$")))
    return patterns


def _check_curl(words: list[str]) -> None:
    method = "GET"
    urls = [word for word in words if word.startswith("http")]
    assert len(urls) == 1, f"one URL per curl: {words}"
    if "-X" in words:
        method = words[words.index("-X") + 1]
    elif "-d" in words or "--data" in words:
        method = "POST"
    path = urlsplit(urls[0]).path
    assert any(m == method and p.match(path) for m, p in _route_patterns()), (
        f"no route {method} {path}"
    )


def _check_command(words: list[str]) -> None:
    from foundation_p2p.cli import build_parser

    program = words[0].rsplit("/", 1)[-1]
    if program in ("python", "python3") and words[1:3] == ["-m", "foundation_p2p"]:
        program, words = "foundation-p2p", ["foundation-p2p", *words[3:]]
    if program == "foundation-p2p":
        # usage-style optional parts, `[--node-id ID]`, are checked as if given
        arguments = [word.strip("[]") for word in words[1:] if word.strip("[]")]
        try:
            build_parser().parse_args(arguments)
        except SystemExit as exit:
            assert exit.code == 0, f"foundation-p2p does not accept: {shlex.join(words[1:])}"
    elif program == "curl":
        _check_curl(words)
    elif program in ("python", "python3"):
        if words[1:3] == ["-m", "bench"]:
            from bench.report import AREA_NAMES

            assert words[3] == "all" or words[3] in AREA_NAMES, words
        elif words[1:2] == ["-m"]:
            assert words[2] in ("pytest", "venv", "pip", "http.server") or words[2].startswith(
                "bench."
            ), words
        elif len(words) > 1 and words[1].endswith(".py"):
            assert (ROOT / words[1]).exists(), f"no such script: {words[1]}"
    else:
        assert program in SHELL_COMMANDS, (
            f"unknown command {program!r}: add it to SHELL_COMMANDS or fence the block as text"
        )


def test_docs_have_python_blocks() -> None:
    """The extractor finds the blocks (so the test below cannot pass by finding none)."""
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize(("path", "line", "code"), BLOCKS, ids=[f"{p}:{n}" for p, n, _ in BLOCKS])
def test_python_block_runs(path: str, line: int, code: str) -> None:
    """A documented snippet executes without error (its asserts are its checks)."""
    exec(compile(code, f"{path}:{line}", "exec"), {"__name__": "__doc__"})


def test_docs_have_checked_shell_blocks() -> None:
    """The shell-block checker finds blocks to check."""
    assert sum(1 for _, _, kind, _ in FENCED if kind == "bash") >= 5


@pytest.mark.parametrize(
    ("path", "line", "kind", "code"), FENCED, ids=[f"{p}:{n}" for p, n, _, _ in FENCED]
)
def test_fenced_block_is_valid(
    path: str, line: int, kind: str, code: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bash block's commands exist and parse; a toml block loads as a Config; json parses."""
    if kind == "json":
        json.loads(code)
    elif kind == "toml":
        data = tomllib.loads(code)
        if "profile" in data or set(data) & set(Config.__dataclass_fields__):
            config_file = tmp_path / "config.toml"
            config_file.write_text(code)
            Config.from_file(config_file)
    else:
        commands = _commands(code)
        assert commands, f"{path}:{line}: an empty shell block"
        for words in commands:
            _check_command(words)
    capsys.readouterr()  # argparse prints --help/--version output; not part of the check


def test_shell_checker_refuses_bad_commands() -> None:
    """The checker fails on a wrong option, an unknown route and an unknown command."""
    for bad in (
        "foundation-p2p node --no-such-option",
        "curl -X PUT http://127.0.0.1:8001/nowhere",
        "curl -X POST http://127.0.0.1:8001/state/a/b",
        "frobnicate --now",
    ):
        with pytest.raises(AssertionError):
            for words in _commands(bad):
                _check_command(words)


def test_crdt_benchmark_runs() -> None:
    """bench/crdts.py --quick prints its full table (speed targets live in the bench, not here)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "crdts.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) >= 14, result.stdout
    assert "YDoc / raw pycrdt" in result.stdout


def test_crdt_example_converges() -> None:
    """examples/crdt_replicas.py ends with every replica equal and every write counted."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "crdt_replicas.py"), "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip().endswith("converged")


SAMPLE_OUTPUT = """# CRDT benchmark (n=500)
progress: a line that is not a caption

| operation | ops/s |
|---|---:|
| GCounter.increment | 857,783 |
| raw pycrdt map set | 89,839 |

YDoc / raw pycrdt map-set throughput: 0.57x

caption right above
row          | ours | beside      | ratio / check
-------------+------+-------------+--------------
local sets/s | 100  | pycrdt 200  | 0.50x (goal >= 0.7x)
"""

SERVICES_OUTPUT = """registry: 10000 instances under 2000 names, one node
  lookup (hit)                          163 ns/op
  pick round_robin                      601 ns/op

pub/sub: 5000 messages of ~93 bytes, node -> node
  foundation-p2p pubsub                 91412 msg/s
  raw asyncio msgpack loop             182824 msg/s   ours/raw   0.50
  zenoh (peer mode)                    427656 msg/s   ours/zenoh 0.21

call: 300 sequential round trips, p50 / p99 in µs
  foundation-p2p call              p50      259   p99      583
  raw asyncio request/response     p50       28   p99      155
"""


def test_bench_report_parses_both_table_styles() -> None:
    """Markdown tables and shared_state's `a | b` over `--+--` tables become rows; ratio lines
    stay as notes."""
    from bench.report import parse_tables

    tables, notes = parse_tables(SAMPLE_OUTPUT)
    assert [t.title for t in tables] == [
        "CRDT benchmark (n=500)",
        "caption right above",
    ]
    assert tables[0].rows == [["GCounter.increment", "857,783"], ["raw pycrdt map set", "89,839"]]
    assert tables[1].header == ["row", "ours", "beside", "ratio / check"]
    assert tables[1].rows == [["local sets/s", "100", "pycrdt 200", "0.50x (goal >= 0.7x)"]]
    assert "YDoc / raw pycrdt map-set throughput: 0.57x" in notes


def test_bench_report_turns_services_lines_into_ratio_rows() -> None:
    """bench/services.py's printed lines become tables with the ratio to each peer."""
    from bench.report import services_tables

    measured = {"global_lookup_ns": 326.0, "pg_node_to_node_msgs_per_s": 91412.0}
    registry, pubsub, call = services_tables(SERVICES_OUTPUT, measured)
    assert registry.rows[0] == ["lookup (hit)", "163", "326", "0.50x", "0.40x"]
    assert registry.rows[1][0] == "pick round_robin" and registry.rows[1][2:] == ["", "", ""]
    assert pubsub.rows[1] == ["raw asyncio msgpack loop (same run)", "182,824", "0.50x"]
    assert pubsub.rows[-2] == ["BEAM pg node -> node (same run)", "91,412", "1.00x"]
    assert pubsub.rows[-1][0] == "BEAM Phoenix.PubSub (quoted)"
    assert call.rows[1] == ["raw asyncio request/response", "28", "155", "9.25x"]


def test_bench_all_writes_a_report(tmp_path: Path) -> None:
    """`python -m bench all --quick --only crdts` writes a report with its header and table."""
    report = tmp_path / "REPORT.md"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "all",
            "--quick",
            "--only",
            "crdts",
            "--output",
            str(report),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    text = report.read_text()
    assert text.startswith("# Benchmark report\n\n- date: ")
    assert "- command: `python -m bench all --quick --only crdts --output" in text
    assert "| GCounter.increment |" in text and "<details>" in text


def test_bench_all_refuses_an_unknown_area() -> None:
    """A misspelt area is a usage error, not a silently empty report."""
    result = subprocess.run(
        [sys.executable, "-m", "bench", "all", "--only", "crdt"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "unknown area 'crdt'" in result.stderr


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file (outside code blocks)."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def _links() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
        for target in LINK.findall(text):
            if not target.startswith(("http://", "https://", "mailto:")):
                found.append((str(path.relative_to(ROOT)), target))
    return found


def test_relative_links_resolve() -> None:
    """Every relative link in README.md and docs/ names an existing file, and its #anchor (if
    any) a heading of that file."""
    links = _links()
    assert len(links) >= 30
    broken = []
    for source, target in links:
        file_part, _, anchor = target.partition("#")
        path = (ROOT / source).parent / file_part if file_part else ROOT / source
        if not path.exists():
            broken.append(f"{source}: {target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{source}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_bench_report_lists_ratios_at_a_glance() -> None:
    """Rows with a ratio to a peer are gathered; a floor measured against a floor is not."""
    from bench.report import AREAS, Outcome, Table, ratios_at_a_glance

    outcome = Outcome(AREAS[0], ["x"], 0.0, 0, "")
    outcome.tables = [
        Table(
            "",
            ["mode", "msg/s", "vs raw unbatched"],
            [["raw batched", "10", "2.00x"], ["Transport burst", "20", "4.00x"]],
        )
    ]
    outcome.notes = ["YDoc / raw pycrdt map-set throughput: 0.57x", "progress 3 s"]
    glance = ratios_at_a_glance([outcome])
    assert [row[1:] for row in glance.rows] == [
        ["Transport burst", "vs raw unbatched: 4.00x"],
        ["YDoc / raw pycrdt map-set throughput", "0.57x"],
    ]
