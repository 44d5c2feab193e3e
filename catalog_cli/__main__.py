"""``python -m catalog_cli <command>``: the same client as ``python -m chalicelib.cli`` (docs/reference.md §5)."""

from __future__ import annotations

import sys

from catalog_cli.main import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m catalog_cli"))
