"""The model-catalog command-line client (``python -m catalog_cli`` or, as documented, ``python -m chalicelib.cli``).

Outside ``chalicelib/`` on purpose: it is a tool for people and schedulers, so it is not in the Lambda bundle.
"""

from catalog_cli.client import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    TOKEN_ENV,
    URL_ENV,
    ApiClient,
    CliError,
)
from catalog_cli.main import main

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "TOKEN_ENV",
    "URL_ENV",
    "ApiClient",
    "CliError",
    "main",
]
