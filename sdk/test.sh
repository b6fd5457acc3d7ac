#!/usr/bin/env bash
# The SDKs' tests: pytest for sdk/python, node's test runner for sdk/js. Each has unit
# tests against an in-process fake node, and tests of its Application side against a
# real mesg-node (debug build, temp data dir, loopback ports) running the real `echo`
# service (deployed with the `mesg` CLI; needs Docker).
#
#   sdk/test.sh            # both
#   sdk/test.sh python     # or js
#
# Installs pytest (the version pinned in sdk/python/requirements-dev.txt) from PyPI into
# a virtualenv under target/ when it is missing. Uses python3 (3.9+) and node (20+).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
which="${1:-all}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"

echo "== building mesg-node, mesg (debug) and the example services"
cargo build --quiet -p mesg-node -p mesg-cli
testnet/build.sh services
export MESG_NODE_BIN="$target_dir/debug/mesg-node"
export MESG_CLI_BIN="$target_dir/debug/mesg"
export MESG_ECHO_DIR="$target_dir/mesg-services/echo"
export MESG_SDK_REQUIRE_NODE=1

if [ "$which" = all ] || [ "$which" = python ]; then
  venv="${MESG_SDK_VENV:-$target_dir/sdk-venv}"
  want="$(grep -E '^pytest==' sdk/python/requirements-dev.txt)"
  if ! "$venv/bin/python" -m pip freeze 2>/dev/null | grep -qx "$want"; then
    echo "== installing $want into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r sdk/python/requirements-dev.txt
  fi
  echo "== sdk/python: pytest ($("$venv/bin/python" --version))"
  (cd sdk/python && PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider tests)
fi

if [ "$which" = all ] || [ "$which" = js ]; then
  echo "== sdk/js: node --test ($(node --version))"
  (cd sdk/js && node --test test/*.test.js)
fi
