#!/usr/bin/env bash
# Vendor the Yjs client for the example page: install the npm packages `yjs` and `y-websocket`
# (plus `esbuild`) into a cache folder and bundle them into one ES module the page imports.
#   examples/yjs_browser/build.sh [OUTPUT_DIR]     (default: examples/yjs_browser/vendor)
# The cache folder is $FP2P_NPM_DIR, else ~/.cache/foundation-p2p-npm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/vendor}"
npm_dir="${FP2P_NPM_DIR:-$HOME/.cache/foundation-p2p-npm}"
mkdir -p "$npm_dir" "$out"
for package in yjs y-websocket esbuild; do
  if [ ! -f "$npm_dir/node_modules/$package/package.json" ]; then
    npm install --prefix "$npm_dir" --no-audit --no-fund yjs y-websocket ws esbuild
    break
  fi
done
NODE_PATH="$npm_dir/node_modules" "$npm_dir/node_modules/.bin/esbuild" "$here/yjs-entry.mjs" \
  --bundle --format=esm --minify --log-level=warning --outfile="$out/yjs-bundle.mjs"
echo "wrote $out/yjs-bundle.mjs"
