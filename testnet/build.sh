#!/usr/bin/env bash
# Build what the testnet, the tests and the benchmarks run, without any image registry:
# static release binaries (glibc, crt-static) packed into FROM-scratch contexts.
#
#   testnet/build.sh services   example services -> target/mesg-services/<name>/
#                               (py-echo and js-echo: their files with the SDK copied
#                               in; their base images come from
#                               testnet/images/runtime-bases.sh)
#   testnet/build.sh node       mesg-node + mesg -> docker image mesg-node:dev
#                               (or the tag in MESG_NODE_IMAGE: a test that must not
#                               run another worktree's build names its own)
#                               (testnet/node.Dockerfile; the host CLI is then
#                               target/x86_64-unknown-linux-gnu/release/mesg)
#   testnet/build.sh all        both (default)
#
# Safe to run again: cargo and docker only redo what changed. Concurrent runs wait on a
# lock, so parallel test binaries can all call it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
what="${1:-all}"
target=x86_64-unknown-linux-gnu
profile="${MESG_BUILD_PROFILE:-release}"
out="$root/target/mesg-services"
mkdir -p "$root/target"
exec 9>"$root/target/.mesg-build.lock"
flock 9

# Only the target artifacts are static; build scripts and proc macros stay dynamic.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
services=(echo kv faulty)

build_services() {
  local args=()
  for s in "${services[@]}"; do args+=(-p "mesg-service-$s"); done
  echo "building services (${services[*]}) [$profile, static]" >&2
  cargo build --quiet --profile "$profile" --target "$target" "${args[@]}"
  for s in "${services[@]}"; do
    local dir="$out/$s"
    mkdir -p "$dir"
    cp "testnet/services/$s/mesg.yml" "testnet/services/$s/Dockerfile" "$dir/"
    # Copy only when changed, so the package hash stays the same across no-op builds.
    if ! cmp -s "target/$target/$profile/$s" "$dir/$s"; then
      cp "target/$target/$profile/$s" "$dir/$s"
    fi
  done
  # Script services: their directory plus the SDK, copied in as the `mesg` module.
  script_service py-echo sdk/python/mesg
  script_service js-echo sdk/js/src
  echo "services ready in $out" >&2
}

# Assemble target/mesg-services/$1 from testnet/services/$1 and the SDK directory $2
# (as $1/mesg/); replaced only when something changed, so the package hash stays put.
script_service() {
  local name="$1" sdk="$2" tmp="$out/.$1.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  cp -r "testnet/services/$name/." "$tmp/"
  mkdir -p "$tmp/mesg"
  (cd "$sdk" && find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -exec cp --parents {} "$tmp/mesg/" \;)
  if diff -rq "$tmp" "$out/$name" >/dev/null 2>&1; then
    rm -rf "$tmp"
  else
    rm -rf "${out:?}/$name"
    mv "$tmp" "$out/$name"
  fi
}

build_node() {
  echo "building mesg-node and mesg [$profile, static]" >&2
  cargo build --quiet --profile "$profile" --target "$target" -p mesg-node -p mesg-cli
  local ctx="$root/target/mesg-node-image"
  mkdir -p "$ctx"
  cp "target/$target/$profile/mesg-node" "target/$target/$profile/mesg" "$ctx/"
  cp testnet/node.Dockerfile "$ctx/Dockerfile"
  # Quiet unless it fails (the legacy builder warns about BuildKit on every build).
  local log
  local image="${MESG_NODE_IMAGE:-mesg-node:dev}"
  if ! log="$(docker build --quiet -t "$image" "$ctx" 2>&1)"; then
    echo "$log" >&2
    return 1
  fi
  echo "image $image ready" >&2
}

case "$what" in
  services) build_services ;;
  node) build_node ;;
  all) build_services; build_node ;;
  *) echo "usage: $0 [services|node|all]" >&2; exit 2 ;;
esac
