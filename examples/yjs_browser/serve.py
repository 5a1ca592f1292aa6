"""A node whose SharedState "demo" a browser page edits live, through Yjs.

Run `examples/yjs_browser/build.sh` once (it bundles the npm packages `yjs` and `y-websocket`
into vendor/), then:

    python examples/yjs_browser/serve.py [--http 127.0.0.1:8081] [--port 8000] [--seed HOST:PORT]

and open http://127.0.0.1:8000/ in a browser (two tabs show each other's writes). The node writes
the key "clock" every second; anything the page sets replicates to the cluster (--seed joins a
running node). Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from aiohttp import web

from foundation_p2p import Node
from foundation_p2p.runtime.yjs import client_token
from transport import load_key_file

HERE = Path(__file__).resolve().parent


def page_app(node_http: str, vendor: Path = HERE / "vendor", token: str = "") -> web.Application:
    """The page (index.html, pointed at the node's HTTP address) and the vendored bundle."""

    async def index(request: web.Request) -> web.Response:
        if "node" not in request.query:
            query = f"node={node_http}&state=demo" + (f"&token={token}" if token else "")
            raise web.HTTPFound(f"/?{query}")
        return web.FileResponse(HERE / "index.html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_static("/vendor/", vendor)
    return app


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", default="127.0.0.1:8081", help="the node's HTTP address")
    parser.add_argument("--port", type=int, default=8000, help="the page's port on 127.0.0.1")
    parser.add_argument("--seed", action="append", default=[], help="a node to join")
    parser.add_argument("--key-file", help="the cluster key (the page then needs a token)")
    options = parser.parse_args()
    if not (HERE / "vendor" / "yjs-bundle.mjs").exists():
        raise SystemExit("run examples/yjs_browser/build.sh first (it vendors the Yjs bundle)")
    node = Node(
        cluster="yjs-demo",
        listen="127.0.0.1:0",
        http=options.http,
        seeds=options.seed,
        discovery="static" if options.seed else None,
        key_file=options.key_file,
    )
    async with node:
        token = ""
        if options.key_file:
            token = client_token(load_key_file(options.key_file))
        runner = web.AppRunner(page_app(node.http_address, token=token), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", options.port).start()
        print(f"open http://127.0.0.1:{options.port}/  (node {node.node_id}, {node.http_address})")
        state = node.shared_state("demo")
        try:
            while True:
                state["clock"] = time.strftime("%H:%M:%S")
                await asyncio.sleep(1.0)
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
