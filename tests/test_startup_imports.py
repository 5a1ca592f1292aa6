"""Start-up cost: the command line and a node load only the libraries they use (each of
zeroconf, dnspython, aiohttp and the simulator costs ~0.1-0.3 s of CPU per process)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("aiohttp", "dns", "hypothesis", "pycrdt", "simulations", "zeroconf")


def loaded_after(code: str) -> set[str]:
    """The HEAVY top-level modules a fresh interpreter holds after running `code`."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return set(done.stdout.split())


def test_the_command_line_loads_nothing_heavy_before_a_command_runs() -> None:
    assert loaded_after("import foundation_p2p, foundation_p2p.cli") == set()


def test_a_node_with_seeds_loads_no_discovery_library_http_or_simulator() -> None:
    code = "from foundation_p2p.node import Node\nNode(cluster='c', seeds=['127.0.0.1:1'])"
    assert loaded_after(code) <= {"pycrdt"}  # pycrdt: crdts.YDoc is a replica type


def test_public_names_still_resolve() -> None:
    import foundation_p2p
    from foundation_p2p.config import Config
    from foundation_p2p.engine import RemoteProtocolError

    assert foundation_p2p.Config is Config
    assert foundation_p2p.RemoteProtocolError is RemoteProtocolError
    for name in foundation_p2p.__all__:
        assert getattr(foundation_p2p, name) is not None


def test_environment_service_account_dir_is_the_kubernetes_one() -> None:
    from foundation_p2p import environment
    from transport.discovery import kubernetes

    assert environment.SERVICE_ACCOUNT_DIR == kubernetes.SERVICE_ACCOUNT_DIR
