"""The command-line client: ``python -m chalicelib.cli <command>`` (docs/reference.md §5) or ``python -m catalog_cli``.

Every command but ``tick`` is a client of the REST/WebSocket API (``--url``/``--token`` or
``MODEL_CATALOG_URL``/``MODEL_CATALOG_API_TOKEN``). ``tick`` runs the scheduled due-check in-process,
against DynamoDB with the caller's AWS credentials and the service's own settings, so any scheduler
(cron, a Kubernetes CronJob…) can drive refreshes.

Exit codes: 0 ok · 1 some providers failed (or the service answered with an error) · 2 usage or
config error (bad arguments, missing/wrong token, bad config) · 3 the service could not be reached.

This module parses the arguments and runs a command. The rest of the package: ``client`` (HTTP client, errors,
exit codes), ``commands`` (one function per command), ``format`` (tables and diffs), ``watch`` (the WebSocket
subscriber). It is a tool, not Lambda code: chalice bundles ``app.py`` and ``chalicelib/`` only.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO
from urllib.parse import urlsplit

from catalog_cli.client import DEFAULT_URL, EXIT_OK, EXIT_USAGE, TOKEN_ENV, URL_ENV, ApiClient, CliError
from catalog_cli.commands import COMMANDS, cmd_tick
from catalog_cli.tokens import add_parser as add_tokens_parser

PROG = "python -m chalicelib.cli"  # the documented name (docs/reference.md §5)


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    return parse


_positive_int = _whole_number(1)
_non_negative_int = _whole_number(0)


def _non_negative_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {raw!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    def connection_options(parser: argparse.ArgumentParser, default: Any) -> None:
        parser.add_argument("--url", default=default, help=f"service base URL (env {URL_ENV}; default {DEFAULT_URL})")
        parser.add_argument("--token", default=default, help=f"API bearer token (env {TOKEN_ENV})")

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Client for the model-catalog service.",
        epilog="exit codes: 0 ok, 1 some providers failed, 2 usage or config error, 3 service unreachable",
    )
    connection_options(parser, None)
    # The options work after the command too (`cli models --url ...`); SUPPRESS keeps the top-level value.
    common = argparse.ArgumentParser(add_help=False)
    connection_options(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    providers = commands.add_parser("providers", parents=[common], help="list providers and their refresh state")
    providers.add_argument("--json", action="store_true", help="print the API response as JSON")

    models = commands.add_parser("models", parents=[common], help="list models")
    models.add_argument("--provider", metavar="ID", help="only this provider's models")
    models.add_argument("--capability", action="append", metavar="NAME",
                        help="only models with this capability (repeat it: models with all of them)")
    models.add_argument("--min-context", type=_non_negative_int, metavar="TOKENS",
                        help="only models whose context length is known and at least this")
    models.add_argument("--query", metavar="TEXT", help="only models whose id or display name contains TEXT (any case)")
    models.add_argument("--status", choices=["active", "deprecated"], help="only models with this status")
    models.add_argument("--json", action="store_true", help="print the API response as JSON")

    refresh = commands.add_parser("refresh", parents=[common], help="refresh now (all providers by default)")
    scope = refresh.add_mutually_exclusive_group()
    scope.add_argument("--provider", metavar="ID", help="refresh only this provider")
    scope.add_argument("--oauth", action="store_true", help="refresh only managed_oauth providers")
    refresh.add_argument("--json", action="store_true", help="print the RefreshResult as JSON")
    refresh.add_argument(
        "--wait", type=_non_negative_float, default=60.0, metavar="SECONDS",
        help="how long to keep retrying while another refresh is running (default 60)",
    )

    status = commands.add_parser("status", parents=[common], help="refresh settings, last run and next due time")
    status.add_argument("--json", action="store_true", help="print the API response as JSON")

    changes = commands.add_parser("changes", parents=[common], help="print the catalog's change events (no socket)")
    changes.add_argument("--since", type=_non_negative_int, metavar="SEQ",
                         help="the events after this seq (default: the newest ones)")
    changes.add_argument("--epoch", metavar="EPOCH",
                         help="the epoch --since belongs to (default: the current one; pass the one you saved)")
    changes.add_argument("--limit", type=_positive_int, metavar="N",
                         help="at most N events (default: every event after --since; the newest 100 without it)")
    changes.add_argument("--json", action="store_true",
                         help="print {epoch, seq, events, has_more, resync_required} as JSON")

    watch = commands.add_parser("watch", parents=[common], help="print catalog changes as they happen")
    watch.add_argument("--count", type=_positive_int, metavar="N", help="exit after N change events")
    watch.add_argument("--json", action="store_true", help="print each event as one JSON line")
    watch.add_argument("--ws-url", metavar="URL", help="WebSocket URL (default: from the service's client-config)")

    webhooks = commands.add_parser("webhooks", parents=[common], help="manage webhook endpoints (admin token)")
    webhook_commands = webhooks.add_subparsers(dest="webhooks_command", metavar="<action>", required=True)
    listing = webhook_commands.add_parser("list", parents=[common], help="endpoints, delivery counts, health")
    listing.add_argument("--json", action="store_true", help="print the API response as JSON")
    create = webhook_commands.add_parser("create", parents=[common], help="add an endpoint (prints its secret once)")
    create.add_argument("endpoint", metavar="URL", help="where to POST the events")
    create.add_argument("--description", help="a note for people")
    create.add_argument("--provider", action="append", metavar="ID",
                        help="only events that change this provider (repeatable)")
    create.add_argument("--json", action="store_true", help="print the API response as JSON")
    delete = webhook_commands.add_parser("delete", parents=[common], help="remove an endpoint")
    delete.add_argument("id")
    attempts = webhook_commands.add_parser("attempts", parents=[common], help="an endpoint's attempts, newest first")
    attempts.add_argument("id")
    attempts.add_argument("--json", action="store_true", help="print the API response as JSON")
    replay = webhook_commands.add_parser("replay", parents=[common], help="deliver again every event after a seq")
    replay.add_argument("id")
    replay.add_argument("--since", type=int, required=True, metavar="SEQ", help="replay the events after this seq")
    replay.add_argument("--json", action="store_true", help="print the API response as JSON")

    tick = commands.add_parser(
        "tick", help="run the scheduled due-check now, against DynamoDB with your AWS credentials"
    )
    tick.add_argument("--json", action="store_true", help="print the outcome as JSON")

    add_tokens_parser(commands, common)
    return parser


def client_token(args: argparse.Namespace) -> str:
    return args.token or os.environ.get(TOKEN_ENV) or ""


def make_client(args: argparse.Namespace) -> ApiClient:
    url = args.url or os.environ.get(URL_ENV) or DEFAULT_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(f"--url / {URL_ENV} must be an http(s) URL, got {url!r}", EXIT_USAGE)
    token = client_token(args)
    if not token:
        raise CliError(f"no API token: pass --token or set {TOKEN_ENV}", EXIT_USAGE)
    return ApiClient(url, token)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, prog: str = PROG) -> int:
    out = out or sys.stdout
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on errors and 0 on --help
        return int(exc.code or 0)
    try:
        if args.command == "tick":
            return cmd_tick(args, out)
        return COMMANDS[args.command](make_client(args), args, out)
    except CliError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        # Ctrl-C is how `watch` is meant to end; elsewhere it is the usual 130.
        return EXIT_OK if args.command == "watch" else 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
