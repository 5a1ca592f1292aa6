"""The dashboard in real headless Chromium: a 3-node loopback cluster, one node crashes, and the
page served by another shows it suspected, then dead. A screenshot is kept as an artifact."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from crdts import PNCounter

pytestmark = pytest.mark.timeout(90)

CHROMIUM = (
    os.environ.get("FOUNDATION_P2P_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
)
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


def status_cell(member: str) -> str:
    return f'#members tr[data-member="{member}"] td.status'


async def test_the_page_shows_a_crashed_member_suspected_then_dead(make_cluster, tmp_path):
    nodes = await make_cluster(3, http=True)
    nodes[0].replica("readings", PNCounter).increment(3)
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(f"http://{nodes[0].http_address}/")
            expect = playwright_api.expect
            for member in ("n0", "n1", "n2"):
                await expect(page.locator(status_cell(member))).to_have_text("alive")
            await expect(page.locator("#replicas tr[data-replica='sys/members']")).to_have_count(1)
            await expect(page.locator("#replicas tr[data-replica='readings']")).to_have_count(1)
            lag = page.locator('#members tr[data-member="n1"] td').nth(6)
            await expect(lag).to_have_text("0.0 s")  # n1 acknowledged our push
            await expect(page.locator("#topology line[data-to='n2']")).to_have_class("link link-ok")
            await expect(page.locator("#cluster-status")).to_have_text("ok")

            await nodes[2].stop(leave=False)  # a crash: no farewell, the process just goes
            await expect(page.locator(status_cell("n2"))).to_have_text("suspect", timeout=10_000)
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "dashboard-suspect.png").write_bytes(await page.screenshot(full_page=True))
            await expect(page.locator(status_cell("n2"))).to_have_text("dead", timeout=20_000)
            await expect(page.locator("#cluster-status")).to_have_text("degraded")
            await expect(page.locator("#recommendations li").first).to_contain_text(
                "1 of 3 members unreachable"
            )
            await expect(page.locator("#events li[data-kind='member_dead']")).to_have_count(1)
            await expect(page.locator(status_cell("n1"))).to_have_text("alive")
            assert errors == []

            shot = await page.screenshot(full_page=True)
            (tmp_path / "dashboard.png").write_bytes(shot)
            (ARTIFACTS / "dashboard.png").write_bytes(shot)
            assert shot.startswith(b"\x89PNG")
        finally:
            await browser.close()
