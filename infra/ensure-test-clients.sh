#!/usr/bin/env bash
# The export tests drive real clients; opencode comes from npm (tests/package.json, pinned by its lock file) into
# tests/node_modules. Idempotent: installs only when the binary is missing or the lock file changed since.
set -u
cd "$(dirname "$0")/../tests"
stamp=node_modules/.installed-lock
if [ -x node_modules/.bin/opencode ] && [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then exit 0; fi
if ! command -v npm >/dev/null 2>&1; then
  echo "warning: npm is missing; the opencode export test will be skipped" >&2
  exit 0
fi
echo "Installing the test-only npm clients (tests/package.json)..."
# `npm install --no-save` rather than `npm ci`: npm records only this platform's optional binary package in the
# lock file, which `npm ci` then refuses as out of sync; --no-save installs what the lock pins and changes nothing.
if log=$(npm install --no-save --no-audit --no-fund --loglevel=error 2>&1); then
  cp package-lock.json "$stamp"
else
  echo "$log" | tail -n 5 >&2
  echo "warning: npm install failed; the opencode export test will be skipped" >&2
fi
exit 0
