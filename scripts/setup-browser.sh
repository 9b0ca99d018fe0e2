#!/usr/bin/env bash
# Idempotent setup of the console's browser tests (make test-console): Debian's
# chromium (apt) and the test dependencies of console/package-lock.json
# (playwright-core, axe-core) from npm into console/node_modules. The console
# itself has no build step and no dependency; `make run` does not need this.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  echo "setup: installing chromium (Debian package, once)"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y --no-install-recommends chromium >/dev/null; then
    $SUDO apt-get update >/dev/null
    $SUDO apt-get install -y --no-install-recommends chromium >/dev/null
  fi
fi

stamp=console/node_modules/.package-lock.sha256
want=$(sha256sum console/package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing the console's test dependencies (npm ci, once)"
  (cd console && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$stamp"
fi
