#!/usr/bin/env bash
# Prints the path of a Python 3.12+ interpreter, in the order docs/reference.md §1 names:
# $PYTHON, python3.13, python3.12, a python3 that is new enough, then a pyenv-installed 3.13/3.12.
set -u
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
try() { if ok "$1"; then command -v "$1" 2>/dev/null || echo "$1"; exit 0; fi; }
if [ -n "${PYTHON:-}" ]; then
  try "$PYTHON"
  echo "PYTHON=$PYTHON is not a working Python 3.12+ interpreter" >&2; exit 1
fi
for candidate in python3.13 python3.12 python3; do
  command -v "$candidate" >/dev/null 2>&1 && try "$candidate"
done
# pyenv shims refuse versions that are installed but not selected; use the installed binaries directly.
root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for minor in 3.13 3.12; do
  for bin in $(ls -d "$root"/versions/"$minor".*/bin/python"$minor" 2>/dev/null | sort -rV); do try "$bin"; done
done
echo "No Python 3.12+ found. Install Python 3.12 or 3.13 (or set PYTHON=/path/to/python3.12) and run again." >&2
exit 1
