#!/usr/bin/env bash
# The SDKs' example services on the running testnet: py-echo (sdk/python) deployed on
# node2, js-echo (sdk/js) on node3, each executed from node4 (routed through the network)
# and their `tick` event seen on node4. Their images are built FROM the registry-free
# runtime bases (testnet/images/runtime-bases.sh), which the testnet's nodes allow
# (MESG_ALLOW_IMAGES in docker-compose.yml). Run by testnet/scenarios.sh after the fault
# scenarios; on its own: testnet/up.sh, then testnet/sdk-services.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need jq curl

say "SDK example services on the testnet (py-echo on node2, js-echo on node3, executed from node4)"
"$root/testnet/images/runtime-bases.sh" python >/dev/null
"$root/testnet/images/runtime-bases.sh" node >/dev/null
[ -d "$root/target/mesg-services/py-echo" ] && [ -d "$root/target/mesg-services/js-echo" ] \
  || "$root/testnet/build.sh" services
for pair in node2:py-echo node3:js-echo; do
  node="${pair%%:*}" sid="${pair#*:}"
  log="$(mktemp)"
  if ! mesg_on "$node" service deploy "$root/target/mesg-services/$sid" --start >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  wait_providers node4 "$sid" 1 60
  out="$(mesg_on node4 --json exec "$sid" echo -d message="hello from node4" --wait)"
  executor="$(jq -r .executor <<<"$out")"
  msg="$(jq -r .outputs.message <<<"$out")"
  lang="$(jq -r .outputs.language <<<"$out")"
  want_executor="$(api_get "$node" /v1/node | jq -r .public_key)"
  if [ "$msg" != "hello from node4" ] || [ "$executor" != "$want_executor" ]; then
    echo "$sid: unexpected answer (wanted it run by $node): $out" >&2
    exit 1
  fi
  info "$sid ($lang) on $node answered node4: \"$msg\""
  # Its event reaches node4 too (node4 follows the service's events while tick runs).
  events="$(mktemp)"
  mesg_on node4 --json events --service "$sid" >"$events" 2>/dev/null &
  follower=$!
  sleep 1
  mesg_on node4 exec "$sid" tick -d value='"from node4"' --wait >/dev/null
  for _ in $(seq 1 50); do
    grep -q '"from node4"' "$events" && break
    sleep 0.2
  done
  kill "$follower" 2>/dev/null || true
  wait "$follower" 2>/dev/null || true
  if ! grep -q '"from node4"' "$events"; then
    echo "$sid: its tick event did not reach node4" >&2
    rm -f "$events"
    exit 1
  fi
  rm -f "$events"
  info "$sid: its tick event reached node4"
done
