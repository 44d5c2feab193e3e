#!/usr/bin/env bash
# The browser test drives Debian's Chromium (a browser download is not possible here). Install it once, as root.
set -u
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser test (one time)..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the browser test will be skipped" >&2
else
  echo "warning: /usr/bin/chromium is missing and this is not root; the browser test will be skipped" >&2
fi
exit 0
