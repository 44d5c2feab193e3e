"""``python -m devstack`` (what ``make run`` runs): the whole stack in the foreground."""

from __future__ import annotations

import sys

from devstack.stack import main

if __name__ == "__main__":
    sys.exit(main())
