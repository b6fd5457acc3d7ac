#!/usr/bin/env bash
# Fault scenarios on a fresh testnet, start to finish: build the binaries and images,
# bring the testnet up, run testnet/scenarios (mesg-scenarios), and ALWAYS tear the
# testnet down, even on failure. Exit code: the runner's (0 = every promise kept).
#
#   testnet/scenarios.sh                          all six scenarios
#   testnet/scenarios.sh --only kill,pause        some of them (see --list)
#
# The report (a markdown table) goes to target/scenarios-report.md. A testnet that is
# already running is removed first: the scenarios need a known state.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
t0=$(date +%s)
report="$root/target/scenarios-report.md"

say "Building (testnet/build.sh all, and the scenario runner)"
"$root/testnet/build.sh" all
cargo build --quiet -p mesg-scenarios
t_build=$(date +%s)

cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -n "$(compose ps -q 2>/dev/null)" ]; then
    say "Node logs (last 40 lines each), the run failed"
    for n in "${NODES[@]}"; do
      echo "---- $n"
      compose logs --no-color --tail 40 "$n" 2>&1 | grep -v 'listening on' || true
    done
  fi
  say "Tearing the testnet down"
  "$root/testnet/down.sh" || rc=1
  echo "scenarios.sh: build $(( t_build - t0 ))s, up $(( ${t_up:-$t_build} - t_build ))s, scenarios $(( ${t_run:-$(date +%s)} - ${t_up:-$t_build} ))s, total $(( $(date +%s) - t0 ))s" >&2
  exit "$rc"
}
trap cleanup EXIT
trap "exit 130" INT TERM

"$root/testnet/down.sh" >/dev/null 2>&1 || true
MESG_TESTNET_NO_BUILD=1 "$root/testnet/up.sh"
t_up=$(date +%s)

say "Running the scenarios"
set +e
"$root/target/debug/mesg-scenarios" --report "$report" "$@"
rc=$?
set -e
t_run=$(date +%s)
# The SDKs' example services, routed on the same testnet (skipped when only some
# scenarios were asked for).
if [ "$rc" = 0 ] && [ $# = 0 ]; then
  "$root/testnet/sdk-services.sh" || rc=$?
fi
exit "$rc"
