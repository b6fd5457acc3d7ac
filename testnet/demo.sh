#!/usr/bin/env bash
# The testnet demo, end to end, from nothing:
#   build what is missing (testnet/build.sh all), start the 4-node testnet
#   (docker-compose.yml), then: deploy `echo` on node2, execute it from node3 (routed
#   through the network to node2), watch its event arrive on node4, and verify the result
#   node2 signed. Leaves the testnet running; testnet/down.sh removes it all.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
t0=$(date +%s)

"$root/testnet/up.sh"
t_up=$(date +%s)

say "1. Deploy the echo service on node2 and start it"
info "\$ mesg --node $(url node2) --token $MESG_TESTNET_TOKEN service deploy target/mesg-services/echo --start"
mesg_on node2 service deploy target/mesg-services/echo --start 2>&1 | grep -v '^  ' | sed 's/^/    /'
hash="$(mesg_on node2 --json service show echo | jq -r '.hash // .service.hash')"

say "2. Wait until node3 learns from node2's signed announcements that node2 runs echo"
t=$(date +%s%N)
wait_providers node3 echo 1 60
info "node3 knows a provider of echo after $(( ($(date +%s%N) - t) / 1000000 )) ms:"
api_get node3 /v1/network/services | jq -r --arg h "$hash" \
  '.services[] | select(.service_hash == $h) | .providers[] | "      provider \(.node) (peer \(.peer_id)), \(.in_flight) in flight"'

say "3. Execute echo from node3: node3 does not run it, so it routes the task to node2"
info "\$ mesg --node $(url node3) exec echo echo -d message='hello from node3' --wait"
mesg_on node3 --json exec echo echo -d message="hello from node3" --wait > "$root/target/.demo-exec.json"
id="$(jq -r .id "$root/target/.demo-exec.json")"
jq -r '"    execution \(.id): \(.status) in \(.finished_at - .created_at) ms\n    executor   \(.executor) (node2)\n    requester  \(.requester_node) (node3)\n    outputs    \(.outputs | tojson)"' "$root/target/.demo-exec.json"

say "4. Follow echo's events on node4 while node3 executes echo's tick task"
info "\$ mesg --node $(url node4) events --service echo &"
events="$root/target/.demo-events.log"
: > "$events"
# The binary itself in the background (not the mesg_on function, whose subshell would be
# what `kill` stops): an open event stream would also hold node4's graceful shutdown.
"$MESG" --node "$(url node4)" --token "$MESG_TESTNET_TOKEN" events --service echo > "$events" 2>&1 &
events_pid=$!
trap 'kill $events_pid 2>/dev/null || true' EXIT
sleep 1
got=""
for attempt in 1 2 3 4 5; do
  info "\$ mesg --node $(url node3) exec echo tick -d value=$attempt --wait"
  mesg_on node3 exec echo tick -d value="$attempt" --wait | head -1 | sed 's/^/    /'
  for _ in $(seq 1 20); do
    if grep -q ' tick ' "$events"; then got=1; break; fi
    sleep 0.25
  done
  [ -n "$got" ] && break
done
kill $events_pid 2>/dev/null || true
wait $events_pid 2>/dev/null || true
if [ -z "$got" ]; then
  echo "no tick event reached node4; its stream said:" >&2
  cat "$events" >&2
  exit 1
fi
info "node4 received (emitted by echo's container on node2, gossiped to node4):"
grep ' tick ' "$events" | sed 's/^/      /'

say "5. The result, as node2 signed it, checked on node3"
info "\$ mesg --node $(url node3) executions verify $id"
mesg_on node3 executions verify "$id" | sed 's/^/    /'
info "raw: GET $(url node3)/v1/executions/$id/result"
api_get node3 "/v1/executions/$id/result" \
  | jq -c '{domain: .header.domain, signer: .header.signer, signature: (.signature | .[0:24] + "...")}' | sed 's/^/      /'

t_end=$(date +%s)
say "Done in $(( t_end - t0 ))s (build+up $(( t_up - t0 ))s, demo $(( t_end - t_up ))s). The testnet is still running; try:"
cat <<NEXT
    export MESG_TOKEN=$MESG_TESTNET_TOKEN
    alias mesg=$MESG
    mesg --node $(url node4) exec echo sleep -d ms=500 --wait          # routed to node2
    mesg --node $(url node3) service deploy target/mesg-services/echo --start   # a second provider
    mesg --node $(url node4) executions list
    mesg --node $(url node1) events --service echo                      # Ctrl-C to stop
    mesg --node $(url node2) service logs echo
    curl -s -H 'Authorization: Bearer $MESG_TESTNET_TOKEN' $(url node1)/v1/peers | jq
    ${COMPOSE[*]} logs -f node2
    testnet/down.sh                                                   # remove everything
NEXT
