#!/usr/bin/env bash
# Headless Chromium for the dashboard's browser test (node/tests/ui_browser.rs), from
# Debian's packages; installs only when missing. The test fails in CI without it.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  echo "== $(chromium --version 2>/dev/null | head -1)"
  exit 0
fi
echo "== chromium is missing: apt-get install chromium"
export DEBIAN_FRONTEND=noninteractive
sudo_=""
[ "$(id -u)" = 0 ] || sudo_="sudo"
$sudo_ apt-get update -qq
$sudo_ apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "== installed $(chromium --version 2>/dev/null | head -1)"
