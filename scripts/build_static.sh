#!/usr/bin/env bash
# Copies the official socket.io-client browser bundle, pinned in tests/e2e/js/package-lock.json, into
# herald/static/vendor/ where the gateway serves it. Run after `npm ci --prefix tests/e2e/js`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/tests/e2e/js/node_modules/socket.io-client/dist/socket.io.min.js"
dest="$root/herald/static/vendor"
if [[ ! -f "$src" ]]; then
  echo "missing $src: run 'npm ci --prefix tests/e2e/js' first" >&2
  exit 1
fi
mkdir -p "$dest"
# The bundle starts with its MIT licence header; copy it byte for byte so the header stays.
install -m 0644 "$src" "$dest/socket.io.min.js"
install -m 0644 "$root/tests/e2e/js/node_modules/socket.io-client/LICENSE" "$dest/socket.io-client.LICENSE" 2>/dev/null || true
echo "vendored socket.io-client $(node -p "require('$root/tests/e2e/js/node_modules/socket.io-client/package.json').version" 2>/dev/null || echo '?') into $dest"
