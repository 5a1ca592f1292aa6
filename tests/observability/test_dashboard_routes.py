"""The dashboard's routes: the page and its assets, unknown or crafted asset names, and the
overview of a stopped node."""

from __future__ import annotations

from types import SimpleNamespace

import aiohttp
import pytest

from foundation_p2p.runtime.dashboard import format_status, overview

pytestmark = pytest.mark.timeout(60)


async def test_the_page_and_its_assets_are_served(make_cluster):
    [n0] = await make_cluster(1, http=True)
    base = f"http://{n0.http_address}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/") as page:
            assert page.status == 200 and page.content_type == "text/html"
            html = await page.text()
        assert '<script src="/static/dashboard.js">' in html
        for asset, kind in (
            ("dashboard.js", "application/javascript"),
            ("dashboard.css", "text/css"),
        ):
            async with session.get(f"{base}/static/{asset}") as response:
                assert response.status == 200 and response.content_type == kind
                assert len(await response.read()) > 100


@pytest.mark.parametrize(
    "path",
    [
        "/static/missing.js",
        "/static/..%2F..%2Fpyproject.toml",
        "/static/%2e%2e%2fmetrics.py",
        "/static/",
    ],
)
async def test_unknown_or_crafted_asset_names_get_404(make_cluster, path):
    [n0] = await make_cluster(1, http=True)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{n0.http_address}{path}") as response:
            assert response.status == 404
            assert "[tool" not in await response.text()


def test_a_stopped_node_is_reported_as_stopped():
    stopped = SimpleNamespace(node_id="x", cluster="obs", address="", engine=None, observer=None)
    data = overview(stopped)
    assert data == {"node": "x", "cluster": "obs", "running": False}
    assert format_status(data) == "node x of cluster 'obs' is stopped"
