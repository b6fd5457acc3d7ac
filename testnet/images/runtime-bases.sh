#!/usr/bin/env bash
# Build the base images of Python and JavaScript services without any image registry:
# FROM scratch, holding an interpreter taken from this machine and exactly the shared
# libraries it loads (ldd), at the paths they have here.
#
#   testnet/images/runtime-bases.sh            # both images, when missing or outdated
#   testnet/images/runtime-bases.sh python     # or node, or busybox
#   MESG_RUNTIME_REBUILD=1 testnet/images/runtime-bases.sh
#
# Images:
#   mesg-runtime-python:3.11  python3 (3.11, its standard library without tests, IDLE,
#                             tkinter, ensurepip, site-packages) + ldd of it and of every
#                             extension module in lib-dynload
#   mesg-runtime-node:20      node (20) + ldd of it
#   mesg-runtime-busybox:1    Debian's busybox-static (apt-get download + dpkg-deb -x: the
#                             Debian-package way), with /bin/sh, wget, sed... as links
# Each has /usr/local/bin/python3 (or node) on PATH, /tmp (1777), and the label
# mesg.runtime.version=<exact version>: the image is rebuilt when the host's interpreter
# changes. Interpreters: $MESG_PYTHON (default python3.11, else python3) and $MESG_NODE_BIN_JS
# (default node).
#
# A node refuses a Dockerfile FROM an image it did not build unless its operator allows it
# (docs/security/containers.md): start nodes that run these services with
#   mesg-node --allow-image mesg-runtime-python --allow-image mesg-runtime-node \
#             --allow-image mesg-runtime-busybox
# (or MESG_ALLOW_IMAGES=mesg-runtime-python,mesg-runtime-node,mesg-runtime-busybox).
# docs/sdks.md says how to make such images from Debian packages instead.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
what="${1:-all}"
work="$root/target/runtime-bases"
mkdir -p "$work"
exec 8>"$work/.lock"
flock 8

# Copy a file or symlink chain to the same absolute path under $1.
copy_path() {
  local dest="$1" path="$2"
  while [ -n "$path" ]; do
    mkdir -p "$dest$(dirname "$path")"
    if [ -L "$path" ]; then
      cp -P "$path" "$dest$path"
      local next
      next="$(readlink "$path")"
      case "$next" in /*) path="$next" ;; *) path="$(dirname "$path")/$next" ;; esac
    else
      cp -p "$path" "$dest$path"
      path=""
    fi
  done
}

# Every shared library (and the loader) that the given ELF files load.
copy_libs() {
  local dest="$1"; shift
  ldd "$@" 2>/dev/null | awk '/=> \// {print $3} /^\t\// {print $1}' | sort -u | while read -r lib; do
    copy_path "$dest" "$lib"
  done
}

image_version() {
  docker image inspect -f '{{ index .Config.Labels "mesg.runtime.version" }}' "$1" 2>/dev/null || true
}

build_image() {
  local tag="$1" ctx="$2"
  local log
  if ! log="$(docker build --quiet -t "$tag" "$ctx" 2>&1)"; then
    echo "$log" >&2
    return 1
  fi
  echo "image $tag ready ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))" >&2
}

python_base() {
  local py="${MESG_PYTHON:-}"
  [ -n "$py" ] || py="$(command -v python3.11 || command -v python3)"
  local info exe stdlib dynload version
  info="$("$py" -c 'import sys, sysconfig; print(sys.executable); print(sysconfig.get_paths()["stdlib"]); print(sysconfig.get_paths()["platstdlib"] + "/lib-dynload"); print(sys.version.split()[0])')"
  exe="$(readlink -f "$(sed -n 1p <<<"$info")")"
  stdlib="$(sed -n 2p <<<"$info")"
  dynload="$(sed -n 3p <<<"$info")"
  version="$(sed -n 4p <<<"$info")"
  case "$version" in 3.11.*) ;; *) echo "python $version: the image is python 3.11; set MESG_PYTHON" >&2; return 1 ;; esac
  local tag=mesg-runtime-python:3.11
  if [ "${MESG_RUNTIME_REBUILD:-0}" != 1 ] && [ "$(image_version "$tag")" = "$version" ]; then
    echo "image $tag is up to date (python $version)" >&2
    return 0
  fi
  echo "assembling $tag from $exe (python $version)" >&2
  local ctx="$work/python" rootfs="$work/python/rootfs"
  rm -rf "$ctx"; mkdir -p "$rootfs/tmp" "$rootfs/usr/local/bin"
  chmod 1777 "$rootfs/tmp"
  copy_path "$rootfs" "$exe"
  mkdir -p "$rootfs$stdlib"
  tar -C "$stdlib" -cf - \
    --exclude=__pycache__ --exclude=site-packages --exclude=./test --exclude=tests \
    --exclude=idlelib --exclude=tkinter --exclude=turtledemo --exclude=ensurepip \
    --exclude=lib2to3 --exclude='config-3.11*' --exclude='*.a' . | tar -C "$rootfs$stdlib" -xf -
  mkdir -p "$rootfs$stdlib/site-packages"
  copy_libs "$rootfs" "$exe" "$dynload"/*.so
  ln -s "$exe" "$rootfs/usr/local/bin/python3"
  cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
LABEL mesg.runtime=python mesg.runtime.version=$version
ENTRYPOINT ["/usr/local/bin/python3"]
DOCKERFILE
  build_image "$tag" "$ctx"
  docker run --rm "$tag" -c 'import json, ssl, http.client, asyncio, contextvars, sqlite3; print("python ok")' >&2
}

node_base() {
  local nodejs="${MESG_NODE_BIN_JS:-node}"
  local exe version
  exe="$(readlink -f "$(command -v "$nodejs")")"
  version="$("$exe" --version | tr -d v)"
  case "$version" in 2[0-9].*) ;; *) echo "node $version: the image is node 20+; set MESG_NODE_BIN_JS" >&2; return 1 ;; esac
  local tag=mesg-runtime-node:20
  if [ "${MESG_RUNTIME_REBUILD:-0}" != 1 ] && [ "$(image_version "$tag")" = "$version" ]; then
    echo "image $tag is up to date (node $version)" >&2
    return 0
  fi
  echo "assembling $tag from $exe (node $version)" >&2
  local ctx="$work/node" rootfs="$work/node/rootfs"
  rm -rf "$ctx"; mkdir -p "$rootfs/tmp" "$rootfs/usr/local/bin"
  chmod 1777 "$rootfs/tmp"
  copy_path "$rootfs" "$exe"
  copy_libs "$rootfs" "$exe"
  [ "$exe" = /usr/local/bin/node ] || ln -s "$exe" "$rootfs/usr/local/bin/node"
  cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8
LABEL mesg.runtime=node mesg.runtime.version=$version
ENTRYPOINT ["/usr/local/bin/node"]
DOCKERFILE
  build_image "$tag" "$ctx"
  docker run --rm "$tag" -e 'require("node:http"); require("node:async_hooks"); console.log("node ok")' >&2
}

busybox_base() {
  local tag=mesg-runtime-busybox:1 ctx="$work/busybox"
  local version
  version="$(apt-cache policy busybox-static 2>/dev/null | awk '/Candidate:/ {print $2}')"
  [ -n "$version" ] && [ "$version" != "(none)" ] || { echo "apt has no busybox-static (Debian/Ubuntu only)" >&2; return 1; }
  if [ "${MESG_RUNTIME_REBUILD:-0}" != 1 ] && [ "$(image_version "$tag")" = "$version" ]; then
    echo "image $tag is up to date (busybox-static $version)" >&2
    return 0
  fi
  echo "assembling $tag from Debian's busybox-static $version" >&2
  rm -rf "$ctx"; mkdir -p "$ctx/deb" "$ctx/rootfs/tmp" "$ctx/rootfs/bin"
  chmod 1777 "$ctx/rootfs/tmp"
  (cd "$ctx/deb" && apt-get download "busybox-static=$version" >/dev/null 2>&1) || { echo "apt-get download busybox-static failed" >&2; return 1; }
  dpkg-deb -x "$ctx"/deb/*.deb "$ctx/deb/x"
  cp "$ctx/deb/x/bin/busybox" "$ctx/rootfs/bin/busybox"
  local applet
  for applet in $("$ctx/rootfs/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$ctx/rootfs/bin/$applet"
  done
  cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
LABEL mesg.runtime=busybox mesg.runtime.version=$version
ENTRYPOINT ["/bin/sh"]
DOCKERFILE
  build_image "$tag" "$ctx"
  docker run --rm "$tag" -c 'wget --help 2>&1 | head -1; echo busybox ok' >&2
}

case "$what" in
  python) python_base ;;
  node) node_base ;;
  busybox) busybox_base ;;
  all) python_base; node_base; busybox_base ;;
  *) echo "usage: $0 [python|node|busybox|all]" >&2; exit 2 ;;
esac
