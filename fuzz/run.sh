#!/usr/bin/env bash
# Bounded fuzzing run of every cargo-fuzz target in fuzz/, on the STABLE toolchain.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]        (default 30)
#   fuzz/run.sh --runs N [MAX_SECONDS]      (N inputs per target, libFuzzer -runs=N; the long
#                                            run: fuzz/run.sh --runs 10000000; MAX_SECONDS,
#                                            default 0 = no limit, stops a target earlier)
#
# - installs cargo-fuzz (`cargo install --locked cargo-fuzz`) only when it is missing;
# - builds the targets with AddressSanitizer; cargo-fuzz passes `-Zsanitizer=address`,
#   which stable rustc accepts under RUSTC_BOOTSTRAP=1 (set below). If that build fails,
#   it falls back to `--sanitizer none` (coverage-guided libFuzzer without ASan; Rust
#   panics and aborts are still caught) and says so;
# - copies fuzz/seeds/<target>/ into the scratch corpus fuzz/corpus/<target>/ (ignored by
#   git; it grows across local runs, CI starts from the seeds) and runs each target for
#   SECONDS_PER_TARGET seconds (libFuzzer -max_total_time), or for N inputs (--runs N);
# - prints per target the executions, exec/s, new corpus units and whether it crashed
#   (the full libFuzzer log is fuzz/artifacts/<target>.log); a crashing input is left in
#   fuzz/artifacts/<target>/ and printed in hex;
# - exits non-zero if any target crashed (or failed to run).
#
# Environment: MESG_FUZZ_SANITIZER=address|none (skip the ASan attempt),
# MESG_FUZZ_TARGETS="a b" (subset), MESG_FUZZ_TARGET_DIR (default fuzz/target).
set -euo pipefail

usage="usage: fuzz/run.sh [SECONDS_PER_TARGET] | fuzz/run.sh --runs N [MAX_SECONDS]"
runs=""
if [ "${1:-}" = "--runs" ]; then
  runs="${2:-}"
  secs="${3:-0}"
  case "$runs" in
    '' | *[!0-9]*) echo "$usage" >&2; exit 2 ;;
  esac
else
  secs="${1:-30}"
fi
case "$secs" in
  '' | *[!0-9]*) echo "$usage" >&2; exit 2 ;;
esac
# libFuzzer stops at whichever limit comes first; -max_total_time=0 means no time limit.
limits=(-max_total_time="$secs")
if [ -n "$runs" ]; then
  limits+=(-runs="$runs")
  budget="$runs inputs"
  if [ "$secs" -gt 0 ]; then
    budget="$budget or ${secs}s"
  fi
else
  budget="${secs}s"
fi

fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
cd "$fuzz_dir"
target_dir="${MESG_FUZZ_TARGET_DIR:-$fuzz_dir/target}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== cargo-fuzz is missing: cargo install --locked cargo-fuzz"
  t0=$(date +%s)
  cargo install --locked cargo-fuzz
  echo "== installed $(cargo fuzz --version) in $(( $(date +%s) - t0 ))s"
fi
echo "== $(cargo fuzz --version), $(rustc --version)"

# cargo-fuzz passes nightly-only -Z flags to rustc (-Zsanitizer=...); this lets the stable
# compiler accept them. No nightly toolchain is needed.
export RUSTC_BOOTSTRAP=1

build() { # sanitizer
  cargo fuzz build --fuzz-dir "$fuzz_dir" --target-dir "$target_dir" --sanitizer "$1"
}

sanitizer="${MESG_FUZZ_SANITIZER:-address}"
t0=$(date +%s)
if ! build "$sanitizer"; then
  if [ "$sanitizer" = none ]; then
    echo "== FAILED: the fuzz targets do not build" >&2
    exit 1
  fi
  echo "== the $sanitizer-sanitizer build failed on $(rustc --version); falling back to --sanitizer none"
  sanitizer=none
  build none
fi
echo "== built the fuzz targets (sanitizer: $sanitizer) in $(( $(date +%s) - t0 ))s"

if [ -n "${MESG_FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$MESG_FUZZ_TARGETS"
else
  mapfile -t targets < <(cargo fuzz list --fuzz-dir "$fuzz_dir")
fi

# Pull "stat::NAME: VALUE" out of a libFuzzer log (-print_final_stats=1).
stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

failed=0
summary=()
for target in "${targets[@]}"; do
  corpus="$fuzz_dir/corpus/$target"
  artifacts="$fuzz_dir/artifacts/$target"
  log="$fuzz_dir/artifacts/$target.log"
  mkdir -p "$corpus" "$artifacts"
  if [ -d "$fuzz_dir/seeds/$target" ]; then
    cp -f "$fuzz_dir/seeds/$target"/* "$corpus"/
  fi
  extra=()
  if [ -f "$fuzz_dir/dicts/$target.dict" ]; then
    extra+=("-dict=$fuzz_dir/dicts/$target.dict")
  fi
  marker="$fuzz_dir/artifacts/.$target.start"
  touch "$marker"
  echo
  echo "== fuzzing $target for $budget (corpus: $(find "$corpus" -type f | wc -l) inputs)"
  t0=$(date +%s)
  set +e
  cargo fuzz run --fuzz-dir "$fuzz_dir" --target-dir "$target_dir" --sanitizer "$sanitizer" \
    "$target" "$corpus" -- \
    "${limits[@]}" -timeout=20 -print_final_stats=1 "${extra[@]}" >"$log" 2>&1
  rc=$?
  set -e
  took=$(( $(date +%s) - t0 ))
  # The full libFuzzer log (every new coverage unit) is in $log; show its outline here.
  grep -E '^(INFO: (Seed|Loaded|-max_len|A corpus)|#[0-9]+[[:space:]]+(INITED|DONE|pulse)|Done [0-9]+ runs|stat::)' "$log" |
    grep -v 'pulse' | sed 's/^/   /' || true
  execs=$(stat number_of_executed_units "$log")
  speed=$(stat average_exec_per_sec "$log")
  added=$(stat new_units_added "$log")
  rss=$(stat peak_rss_mb "$log")
  # libFuzzer names failing inputs crash-*, leak-*, timeout-*, oom-* (slow-unit-* is not a failure).
  crash=$(find "$artifacts" -type f -newer "$marker" \( -name 'crash-*' -o -name 'leak-*' \
    -o -name 'timeout-*' -o -name 'oom-*' \) | head -1)
  if [ "$rc" -eq 0 ] && [ -z "$crash" ]; then
    status="ok, no crash"
  else
    failed=1
    status="CRASHED (exit $rc)"
    if [ -n "$crash" ]; then
      status="$status, input: $crash"
      echo "== crashing input ($(wc -c <"$crash") bytes), hex:"
      head -c 4096 "$crash" | od -An -v -tx1 | tr -d ' \n'
      echo
    fi
    echo "== last lines of $log:"
    grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|RELOAD)|^"' "$log" | tail -60
    echo "== first failure report:"
    grep -m1 -A2 -E "panicked at|ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)" "$log" || true
  fi
  summary+=("$(printf '%-16s %10s execs  %7s exec/s  %5s new units  %5s MB peak  %6ss  %s' \
    "$target" "${execs:-?}" "${speed:-?}" "${added:-?}" "${rss:-?}" "$took" "$status")")
done

echo
echo "== fuzz summary ($budget per target, sanitizer: $sanitizer)"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "== FAILED: a fuzz target crashed; inputs are in fuzz/artifacts/<target>/," \
    "replay with: RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $sanitizer <target> <input>" >&2
  exit 1
fi
