#!/usr/bin/env bash
# Property-based tests of the Application API against its own OpenAPI document, with
# schemathesis, on a real mesg-node (debug build, fresh temp data dir, loopback ports,
# real Docker engine). Fails on any 5xx, any answer that does not match docs/openapi.json
# (status, content type, headers, body schema) and every other schemathesis check.
#
#   testnet/schemathesis.sh
#
# - installs schemathesis $SCHEMATHESIS_VERSION (pinned) with pip into a virtualenv
#   (target/schemathesis-venv) unless that version is already there;
# - builds mesg-node (`cargo build -p mesg-node`, debug) and starts it with its own data
#   dir, `--api-token` set explicitly (so it works whether or not a token is the default),
#   the API, service API and peer port on free loopback ports;
# - runs `schemathesis run` on http://127.0.0.1:PORT/v1/openapi.json with all checks, the
#   bearer token, at most $MESG_SCHEMATHESIS_EXAMPLES examples per operation and a fixed
#   seed (reproducible CI; set MESG_SCHEMATHESIS_SEED to explore), within
#   $MESG_SCHEMATHESIS_MAX_TIME seconds;
# - excludes the two endless streams (GET /v1/executions/stream, GET /v1/events/stream):
#   they answer 200 and then never end, so no check can complete on them (their 400/404
#   answers are covered by the node's API tests);
# - always stops the node and removes its data dir; the node log and the schemathesis
#   reports (JUnit, and a pytest file reproducing each failure) are in target/schemathesis/.
#
# Environment: MESG_SCHEMATHESIS_EXAMPLES (default 25), MESG_SCHEMATHESIS_SEED (default 1),
# MESG_SCHEMATHESIS_MAX_TIME (default 240), MESG_SCHEMATHESIS_VENV, CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

# 4.x, the newest when this was written; checked with Python 3.11.
SCHEMATHESIS_VERSION=4.32.5
examples="${MESG_SCHEMATHESIS_EXAMPLES:-25}"
seed="${MESG_SCHEMATHESIS_SEED:-1}"
max_time="${MESG_SCHEMATHESIS_MAX_TIME:-240}"
venv="${MESG_SCHEMATHESIS_VENV:-$repo/target/schemathesis-venv}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
out="$target_dir/schemathesis"
mkdir -p "$out"

st="$venv/bin/schemathesis"
if ! "$st" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
  echo "== installing schemathesis==$SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
echo "== $("$st" --version), $(python3 --version)"

echo "== building mesg-node (debug)"
cargo build -p mesg-node --bin mesg-node
node_bin="$target_dir/debug/mesg-node"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
api_port=$(free_port)
service_port=$(free_port)
p2p_port=$(free_port)
token=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
data_dir=$(mktemp -d "${TMPDIR:-/tmp}/mesg-schemathesis.XXXXXX")
log="$out/node.log"
base="http://127.0.0.1:$api_port"

node_pid=""
cleanup() {
  if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
    kill "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
  fi
  rm -rf "$data_dir"
}
trap cleanup EXIT

echo "== starting mesg-node: API $base, data dir $data_dir, log $log"
MESG_LOG="${MESG_LOG:-info}" "$node_bin" \
  --data-dir "$data_dir" \
  --api "127.0.0.1:$api_port" \
  --api-token "$token" \
  --service-api "127.0.0.1:$service_port" \
  --listen "/ip4/127.0.0.1/tcp/$p2p_port" \
  >"$log" 2>&1 &
node_pid=$!

ready=0
for _ in $(seq 1 120); do
  if ! kill -0 "$node_pid" 2>/dev/null; then
    echo "== FAILED: mesg-node exited; its log:" >&2
    tail -50 "$log" >&2
    exit 1
  fi
  if curl -fsS -o /dev/null -H "Authorization: Bearer $token" "$base/v1/openapi.json" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.5
done
if [ "$ready" != 1 ]; then
  echo "== FAILED: mesg-node's API did not answer within 60s; its log:" >&2
  tail -50 "$log" >&2
  exit 1
fi

echo "== schemathesis: all checks, at most $examples examples per operation, seed $seed"
t0=$(date +%s)
set +e
"$st" run "$base/v1/openapi.json" \
  --url "$base" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --max-examples "$examples" \
  --seed "$seed" \
  --max-time "$max_time" \
  --workers 2 \
  --request-timeout 20 \
  --exclude-path /v1/executions/stream \
  --exclude-path /v1/events/stream \
  --suppress-health-check too_slow,filter_too_much \
  --report junit,pytest \
  --report-dir "$out" \
  --output-truncate false \
  --generation-database none \
  --no-color
rc=$?
set -e
echo "== schemathesis finished in $(( $(date +%s) - t0 ))s (exit $rc); node log: $log"
if ! kill -0 "$node_pid" 2>/dev/null; then
  echo "== FAILED: mesg-node died during the run; its log:" >&2
  tail -50 "$log" >&2
  exit 1
fi
if grep -qE 'panicked at' "$log"; then
  echo "== FAILED: mesg-node panicked during the run:" >&2
  grep -m5 -A3 'panicked at' "$log" >&2
  exit 1
fi
exit "$rc"
