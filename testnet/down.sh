#!/usr/bin/env bash
# Tear the local testnet down, leaving nothing behind: the node containers, their network
# and data volumes (docker-compose down -v), and every container, network and volume the
# nodes created for their Services (labelled mesg.node=<node public key>).
#
#   testnet/down.sh            everything but images (they are rebuilt cheaply)
#   testnet/down.sh --images   also the service images the nodes built
#
# The nodes' public keys come from their APIs, or, for a node that is not running, from
# its data volume (mesg-node identity), and from target/testnet/node-keys (written by
# testnet/up.sh). Safe to run when nothing is up.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
images=0
[ "${1:-}" = "--images" ] && images=1

project="${COMPOSE_PROJECT_NAME:-$(sed -n 's/^COMPOSE_PROJECT_NAME=//p' "$root/.env")}"
keys=()
for n in "${NODES[@]}"; do
  key="$(api_get "$n" /v1/node | jq -r '.public_key // empty' 2>/dev/null || true)"
  vol="${project}_${n}-data"
  if [ -z "$key" ] && docker volume inspect "$vol" >/dev/null 2>&1 \
     && docker image inspect "${MESG_NODE_IMAGE:-mesg-node:dev}" >/dev/null 2>&1; then
    key="$(docker run --rm -v "$vol:/data" "${MESG_NODE_IMAGE:-mesg-node:dev}" identity 2>/dev/null \
      | sed -n 's/^public key: *//p')"
  fi
  [ -n "$key" ] && keys+=("$key")
done

# Keys recorded by testnet/up.sh (nodes whose volumes are already gone).
keyfile="$root/target/testnet/node-keys"
if [ -f "$keyfile" ]; then
  while read -r key; do
    [ -n "$key" ] && [[ " ${keys[*]} " != *" $key "* ]] && keys+=("$key")
  done < "$keyfile"
fi

say "Stopping the testnet: ${COMPOSE[*]} down -v"
compose down -v --remove-orphans -t 5

# Containers of the Services the nodes ran, then their networks and volumes.
for key in "${keys[@]}"; do
  f="label=mesg.node=$key"
  c="$(docker ps -aq --filter "$f")"
  [ -n "$c" ] && docker rm -f -v $c >/dev/null && info "removed $(echo $c | wc -w) service container(s) of node ${key:0:8}"
  nets="$(docker network ls -q --filter "$f")"
  for net in $nets; do
    for i in 1 2 3 4 5; do docker network rm "$net" >/dev/null 2>&1 && break; sleep 0.5; done
  done
  [ -n "$nets" ] && info "removed $(echo $nets | wc -w) network(s) of node ${key:0:8}"
  v="$(docker volume ls -q --filter "$f")"
  [ -n "$v" ] && docker volume rm -f $v >/dev/null && info "removed $(echo $v | wc -w) volume(s) of node ${key:0:8}"
  if [ "$images" = 1 ]; then
    im="$(docker images -q --filter "$f" | sort -u)"
    [ -n "$im" ] && docker rmi -f $im >/dev/null 2>&1 && info "removed the images built by node ${key:0:8}"
  fi
done

# Anything still carrying the testnet's label (e.g. from a half-failed `up`).
for kind in network volume; do
  left="$(docker $kind ls -q --filter label=mesg.testnet)"
  [ -n "$left" ] && docker $kind rm $left >/dev/null 2>&1
done
left="$(docker ps -aq --filter label=mesg.testnet)"
[ -n "$left" ] && docker rm -f -v $left >/dev/null 2>&1

rest="$(docker ps -aq --filter label=mesg.testnet; for key in "${keys[@]}"; do
  docker ps -aq --filter "label=mesg.node=$key"
  docker network ls -q --filter "label=mesg.node=$key"
  docker volume ls -q --filter "label=mesg.node=$key"; done
  docker network ls -q --filter label=mesg.testnet; docker volume ls -q --filter label=mesg.testnet)"
if [ -n "$rest" ]; then
  echo "left behind: $rest" >&2
  exit 1
fi
rm -f "$keyfile"
say "Testnet removed (${#keys[@]} node key(s) swept)"
