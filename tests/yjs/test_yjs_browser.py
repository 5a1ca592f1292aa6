"""The example page (examples/yjs_browser) in real headless Chromium: it shows a value written
in Python on another node, a value set on the page is read by Python on both nodes, and two
tabs see each other's presence."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from yjs_support import eventually_true

pytestmark = pytest.mark.timeout(120)

CHROMIUM = (
    os.environ.get("FOUNDATION_P2P_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "yjs_browser"

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="session")
def vendor(tmp_path_factory: pytest.TempPathFactory, npm_dir: Path) -> Path:
    """The Yjs bundle the page imports, built by the example's own build step."""
    out = tmp_path_factory.mktemp("vendor")
    try:
        done = subprocess.run(
            ["bash", str(EXAMPLE / "build.sh"), str(out)],
            capture_output=True, text=True, timeout=240, check=False,
            env={**os.environ, "FP2P_NPM_DIR": str(npm_dir)},
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.skip("examples/yjs_browser/build.sh took over 240 s")
    if done.returncode != 0:
        pytest.skip(f"examples/yjs_browser/build.sh failed: {done.stderr[-500:]}")
    return out


def load_serve() -> Any:
    spec = importlib.util.spec_from_file_location("yjs_browser_serve", EXAMPLE / "serve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_page_shows_python_writes_and_python_reads_the_page(make_nodes, vendor):
    n0, n1 = await make_nodes(2)
    n1.shared_state("demo")["greeting"] = "hello from python"
    n1.shared_state("demo")["reading"] = {"celsius": 21.0, "raw": b"\x01"}
    runner = web.AppRunner(load_serve().page_app(n0.http_address, vendor), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    page_address = f"{host}:{port}"
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(f"http://{page_address}/?node={n0.http_address}&state=demo")
            expect = playwright_api.expect
            await expect(page.locator("#status")).to_have_text("connected")
            value = page.locator('#entries tr[data-key="greeting"] td.value')
            await expect(value).to_have_text('"hello from python"')
            reading = page.locator('#entries tr[data-key="reading"] td.value')
            await expect(reading).to_have_text('{"celsius": 21.0, "raw": b\'\\x01\'}')

            await page.fill("#key", "from-browser")
            await page.fill("#value", '{"count": 42, "tags": ["a", "b"]}')
            await page.click("button[type=submit]")
            wanted = {"count": 42, "tags": ["a", "b"]}
            await eventually_true(lambda: n1.shared_state("demo").get("from-browser") == wanted)
            assert type(n1.shared_state("demo")["from-browser"]["count"]) is int
            assert n0.shared_state("demo")["from-browser"] == wanted

            n1.shared_state("demo")["greeting"] = "changed in python"  # live, no reload
            await expect(value).to_have_text('"changed in python"')
            await expect(page.locator("#peers")).to_have_text("1")

            # presence: a second tab sees the first through the node's awareness relay
            second = await browser.new_page()
            await second.goto(f"http://{page_address}/?node={n0.http_address}&state=demo")
            await expect(second.locator("#peers")).to_have_text("2")
            await expect(page.locator("#peers")).to_have_text("2")
            await second.close()
            await expect(page.locator("#peers")).to_have_text("1")
            assert errors == []
        finally:
            await browser.close()
            await runner.cleanup()
