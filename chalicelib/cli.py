"""``python -m chalicelib.cli <command>`` (docs/reference.md §5): the entry point of the command-line client.

The client itself is the top-level package ``catalog_cli`` (``python -m catalog_cli`` works too); it is a
tool for people and schedulers, not Lambda code, so it is not in the deployment bundle.
"""

import sys

if __name__ == "__main__":
    from catalog_cli.main import main

    sys.exit(main())
