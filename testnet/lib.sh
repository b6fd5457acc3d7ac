# Shared by the testnet scripts (sourced, not run). Everything is relative to the
# repository root, where docker-compose.yml and .env (COMPOSE_PROJECT_NAME) live.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# Same defaults as docker-compose.yml; override both together if you change them.
export MESG_TESTNET_TOKEN="${MESG_TESTNET_TOKEN:-mesg-testnet}"
export MESG_TOKEN="$MESG_TESTNET_TOKEN"
NODES=(node1 node2 node3 node4)
declare -A PORT=(
  [node1]="${MESG_TESTNET_PORT_NODE1:-31001}"
  [node2]="${MESG_TESTNET_PORT_NODE2:-31002}"
  [node3]="${MESG_TESTNET_PORT_NODE3:-31003}"
  [node4]="${MESG_TESTNET_PORT_NODE4:-31004}"
)
url() { echo "http://127.0.0.1:${PORT[$1]}"; }

# The host's CLI: the static release binary that testnet/build.sh node builds.
MESG="$root/target/x86_64-unknown-linux-gnu/release/mesg"
mesg_on() { local n="$1"; shift; "$MESG" --node "$(url "$n")" --token "$MESG_TESTNET_TOKEN" "$@"; }

# `docker compose` (v2) when present, else docker-compose (v1).
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  echo "neither \`docker compose\` nor docker-compose is installed" >&2
  exit 1
fi
compose() { "${COMPOSE[@]}" "$@"; }

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
info() { printf '    %s\n' "$*"; }

# GET a node's API path (with the token); empty output when it does not answer.
api_get() {
  curl -fsS --max-time 5 -H "Authorization: Bearer $MESG_TESTNET_TOKEN" "$(url "$1")$2" 2>/dev/null
}

# Wait until every node's container is healthy (its `mesg-node health` passes).
wait_healthy() {
  local deadline=$(( $(date +%s) + ${1:-90} ))
  local n id state
  for n in "${NODES[@]}"; do
    while :; do
      id="$(compose ps -q "$n" 2>/dev/null || true)"
      state="$( [ -n "$id" ] && docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null || echo missing)"
      [ "$state" = healthy ] && break
      if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "$n is not healthy ($state) after ${1:-90}s; its log:" >&2
        [ -n "$id" ] && docker logs --tail 50 "$id" >&2
        return 1
      fi
      sleep 0.5
    done
  done
}

# Wait until `node` knows `want` providers of service `sid` from the network.
wait_providers() {
  local node="$1" sid="$2" want="$3" deadline=$(( $(date +%s) + ${4:-60} )) got
  while :; do
    got="$(api_get "$node" /v1/network/services | jq --arg s "$sid" \
      '[.services[] | select(.sid == $s or .service_hash == $s) | .providers[]] | length' 2>/dev/null || echo 0)"
    [ "${got:-0}" -ge "$want" ] && return 0
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "$node knows ${got:-0} provider(s) of $sid, wanted $want" >&2
      return 1
    fi
    sleep 0.5
  done
}

need() {
  local c missing=()
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  # A fresh machine: install what is missing from Debian's packages when we can.
  local pkgs=()
  for c in "${missing[@]}"; do
    case "$c" in flock) pkgs+=(util-linux) ;; docker) ;; *) pkgs+=("$c") ;; esac
  done
  if [ ${#pkgs[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${pkgs[*]} (needed by the testnet scripts)" >&2
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  fi
  for c in "${missing[@]}"; do
    command -v "$c" >/dev/null 2>&1 || { echo "this script needs \`$c\` (apt-get install $c)" >&2; exit 1; }
  done
}
need docker curl jq flock
