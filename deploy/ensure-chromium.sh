#!/usr/bin/env bash
# Makes sure Debian's chromium is at /usr/bin/chromium: the console's browser tests drive it with
# Playwright (`executable_path`), never a browser downloaded by `playwright install`.
# Idempotent and quiet when present; installs Debian's package (needs root and apt-get) otherwise.
set -euo pipefail
browser="${TPIPE_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$browser" ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: $browser — install Debian's chromium package (apt-get install chromium) and retry" >&2
  exit 1
fi
echo "installing chromium from Debian's packages ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
