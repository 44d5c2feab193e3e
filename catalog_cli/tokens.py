"""``tokens list | create --name N --scope S | revoke ID``: the admin routes of docs/reference.md §7."""

from __future__ import annotations

import argparse
from typing import TextIO
from urllib.parse import quote

from catalog_cli.client import EXIT_OK, ApiClient
from catalog_cli.format import format_table, print_json

SCOPES = ("read", "refresh", "admin")


def add_parser(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    tokens = commands.add_parser("tokens", parents=[common], help="issue, list and revoke API tokens (admin)")
    actions = tokens.add_subparsers(dest="tokens_action", metavar="<action>", required=True)
    listing = actions.add_parser("list", parents=[common], help="every issued token (never a token value)")
    listing.add_argument("--json", action="store_true", help="print the API response as JSON")
    create = actions.add_parser("create", parents=[common], help="issue a token; its value is printed only once")
    create.add_argument("--name", required=True, help="what the token is for (shown in `tokens list`)")
    create.add_argument("--scope", required=True, choices=SCOPES, help="read < refresh < admin")
    create.add_argument("--json", action="store_true", help="print the API response as JSON")
    revoke = actions.add_parser("revoke", parents=[common], help="revoke a token: refused from then on")
    revoke.add_argument("id", help="the token's id (from `tokens list`)")


def cmd_tokens(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    if args.tokens_action == "create":
        created = client.post("/tokens", body={"name": args.name, "scope": args.scope})
        if args.json:
            print_json(created, out)
        else:
            print(f"created {created['scope']} token {created['id']} ({created['name']}); "
                  "it is shown only now:", file=out)
            print(created["token"], file=out)
        return EXIT_OK
    if args.tokens_action == "revoke":
        client.delete(f"/tokens/{quote(args.id, safe='')}")
        print(f"revoked token {args.id}", file=out)
        return EXIT_OK
    body = client.get("/tokens")
    if args.json:
        print_json(body, out)
        return EXIT_OK
    rows = [[t["id"], t["name"], t["scope"], t["created_at"], t.get("last_used_at") or "never"]
            for t in body.get("tokens") or []]
    print(format_table(["ID", "NAME", "SCOPE", "CREATED", "LAST USED"], rows), file=out)
    return EXIT_OK
