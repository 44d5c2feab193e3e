from __future__ import annotations

import sys

from tests.bench.runner import main

if __name__ == "__main__":
    sys.exit(main())
