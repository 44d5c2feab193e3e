"""The commands: each takes the API client (``tick``: nothing but the service's own settings), the parsed
arguments and the output stream, prints for people or ``--json``, and returns the exit code."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import quote

from catalog_cli.client import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    ApiClient,
    CliError,
    RefreshBusyError,
)
from catalog_cli.format import (
    clip,
    duration,
    format_event,
    format_result,
    format_table,
    number,
    price,
    print_json,
    when,
)
from catalog_cli.reads import CHANGES_PAGE, all_models, changes_since
from catalog_cli.tokens import cmd_tokens
from catalog_cli.watch import Watcher


def _result_exit(result: dict[str, Any] | None) -> int:
    return EXIT_FAILED if result and result.get("failed") else EXIT_OK


def cmd_providers(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    body = client.get("/providers")
    if args.json:
        print_json(body, out)
        return EXIT_OK
    providers = body.get("providers") or []
    rows = [
        [
            p["id"],
            p.get("name") or p["id"],
            p.get("kind") or "",
            number(p.get("model_count")),
            p.get("last_refreshed_at") or "never",
            clip(p["last_error"]) if p.get("last_error") else "-",
        ]
        for p in providers
    ]
    print(format_table(["ID", "NAME", "KIND", "MODELS", "LAST REFRESHED", "LAST ERROR"], rows, right=[3]), file=out)
    return EXIT_OK


def _model_filters(args: argparse.Namespace) -> dict[str, Any]:
    """The ``GET /models`` query of the ``models`` options (docs/reference.md §8); the service checks the values."""
    params: dict[str, Any] = {
        "provider_id": args.provider,
        "capability": args.capability,
        "min_context": None if args.min_context is None else str(args.min_context),
        "q": args.query,
        "status": args.status,
    }
    return {name: value for name, value in params.items() if value is not None}


def cmd_models(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    body = all_models(client, _model_filters(args))  # page by page: one answer carries at most ~20,000 models
    if args.json:
        print_json(body, out)
        return EXIT_OK
    models = body.get("models") or []
    rows = [
        [
            m["provider_id"],
            m["id"],
            number(m.get("context_length")),
            number(m.get("max_output_tokens")),
            ",".join(m.get("capabilities") or []) or "-",
            price(m.get("pricing")),
        ]
        for m in models
    ]
    headers = ["PROVIDER", "MODEL", "CONTEXT", "MAX OUTPUT", "CAPABILITIES", "PRICE IN/OUT ($/M)"]
    print(format_table(headers, rows, right=[2, 3]), file=out)
    print(f"{len(models)} model{'s' if len(models) != 1 else ''}, revision {body.get('revision')}", file=out)
    return EXIT_OK


def cmd_refresh(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    if args.provider:
        path = f"/providers/{quote(args.provider, safe='')}:refresh"
    elif args.oauth:
        path = "/providers:refresh_oauth"
    else:
        path = "/providers:refresh"
    deadline = time.monotonic() + args.wait
    while True:
        try:
            result = client.post(path)
            break
        except RefreshBusyError as busy:
            pause = max(0.5, busy.retry_after_s)
            if time.monotonic() + pause > deadline:
                gave_up = f"{busy.message}; gave up after waiting {args.wait:g} s (see --wait)"
                raise CliError(gave_up, EXIT_FAILED) from None
            print(f"another refresh is running; retrying in {pause:g} s", file=sys.stderr)
            time.sleep(pause)
    if args.json:
        print_json(result, out)
    else:
        print(format_result(result), file=out)
    return _result_exit(result)


def cmd_status(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    body = client.get("/refresh/status")
    if args.json:
        print_json(body, out)
        return EXIT_OK
    interval = body.get("refresh_interval_ms") or 0
    lines = [
        f"refresh interval:  {duration(interval / 1000) + f' ({interval} ms)' if interval else 'off (0 ms)'}",
        f"refresh on start:  {'yes' if body.get('refresh_on_start') else 'no'}",
        f"next due:          {when(body.get('next_due_at')) if body.get('next_due_at') else 'not scheduled'}",
    ]
    last_run = body.get("last_run")
    if last_run:
        lines.append("last run:          " + format_result(last_run).replace("\n", "\n    "))
    else:
        lines.append("last run:          none yet")
    print("\n".join(lines), file=out)
    return EXIT_OK


def tick_service() -> Any:
    """The service as the scheduled function builds it (settings, DynamoDB, lock, engine).

    The only place the CLI builds the service in-process: when the composition root changes, change it here.
    """
    from chalicelib.bootstrap import bootstrap

    return bootstrap().service


def cmd_tick(args: argparse.Namespace, out: TextIO) -> int:
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    from chalicelib.errors import ConfigError

    try:
        outcome = tick_service().tick(trigger="cli")
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except (NoCredentialsError, PartialCredentialsError, NoRegionError) as exc:
        raise CliError(f"AWS credentials/region: {exc}", EXIT_USAGE) from None
    except (EndpointConnectionError, ConnectTimeoutError) as exc:
        raise CliError(f"cannot reach DynamoDB: {exc}", EXIT_UNREACHABLE) from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        message = f"DynamoDB: {code}: {error.get('Message', '')}"
        usage = code in ("ResourceNotFoundException", "AccessDeniedException", "UnrecognizedClientException")
        raise CliError(message, EXIT_USAGE if usage else EXIT_FAILED) from None
    except BotoCoreError as exc:
        raise CliError(f"AWS: {exc}", EXIT_FAILED) from None
    if hasattr(outcome, "model_dump"):
        outcome = outcome.model_dump(mode="json")
    result = outcome.get("result")
    if args.json:
        print_json(outcome, out)
    elif outcome.get("ran"):
        print(f"refreshed: {outcome.get('reason')}", file=out)
        if result:
            print(format_result(result), file=out)
    else:
        print(f"not due: {outcome.get('reason')}", file=out)
    return _result_exit(result)


CHANGES_NEWEST = 100


def cmd_changes(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """``GET /changes``: the newest events, or every event after ``--since`` (following ``has_more``)."""
    if args.since is None:
        wanted = args.limit or CHANGES_NEWEST
        if wanted > CHANGES_PAGE:
            raise CliError(f"--limit without --since is at most {CHANGES_PAGE} (the newest events)", EXIT_USAGE)
        body = client.get("/changes", params={"limit": str(wanted), **({"epoch": args.epoch} if args.epoch else {})})
        feed = {**body, "events": list(body.get("events") or [])}
    else:
        feed = changes_since(client, args.since, args.epoch, args.limit)
    if args.json:
        print_json(feed, out)
        return EXIT_OK
    for event in feed["events"]:
        for line in format_event(event):
            print(line, file=out)
    epoch, seq = feed.get("epoch"), feed.get("seq")
    if feed.get("resync_required"):
        print("resync required: the events after your position are not all kept any more, or the epoch changed; "
              "read the catalog with `models`, then go on from the latest seq", file=out)
    elif not feed["events"]:
        print("no changes" + (f" after #{args.since}" if args.since is not None else ""), file=out)
    # Where to go on from: the last event printed while more follow, else the latest seq.
    after = feed["events"][-1]["seq"] if feed.get("has_more") and feed["events"] else seq
    more = " (more follow)" if feed.get("has_more") else ""
    print(f"latest: #{seq} of epoch {epoch}{more}; next: changes --since {after} --epoch {epoch}", file=out)
    return EXIT_OK


def cmd_watch(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    ws_url = args.ws_url
    if not ws_url:
        ws_url = client.get("/client-config").get("ws_url")
        if not ws_url:
            raise CliError("the service did not announce a WebSocket URL; pass --ws-url", EXIT_USAGE)
    watcher = Watcher(client, ws_url, client.token, out, sys.stderr, as_json=args.json, count=args.count)
    return watcher.run()


def cmd_webhooks(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """``webhooks list|create|delete|attempts|replay`` (docs/reference.md §9)."""
    action = args.webhooks_command
    path = f"/webhooks/{quote(args.id, safe='')}" if getattr(args, "id", None) else "/webhooks"
    if action == "list":
        body = client.get("/webhooks")
        if args.json:
            print_json(body, out)
            return EXIT_OK
        rows = [
            [
                w["id"],
                w["url"],
                "yes" if w["enabled"] else "no",
                f"{w['deliveries']['succeeded']}/{w['deliveries']['failed']}/{w['deliveries']['pending']}",
                ",".join(w.get("provider_ids") or []) or "all",
                clip(w.get("disabled_reason") or w.get("last_error") or "-"),
            ]
            for w in body.get("webhooks") or []
        ]
        print(format_table(["ID", "URL", "ENABLED", "OK/FAILED/PENDING", "PROVIDERS", "LAST ERROR"], rows), file=out)
        return EXIT_OK
    if action == "create":
        request: dict[str, Any] = {"url": args.endpoint}
        if args.description is not None:
            request["description"] = args.description
        if args.provider:
            request["provider_ids"] = args.provider
        created = client.post("/webhooks", request)
        if args.json:
            print_json(created, out)
            return EXIT_OK
        print(f"webhook {created['id']} → {created['url']}", file=out)
        print(f"secret  {created['secret']}  (shown only now: keep it to verify the signatures)", file=out)
        return EXIT_OK
    if action == "delete":
        client.delete(path)
        print(f"webhook {args.id} deleted", file=out)
        return EXIT_OK
    if action == "attempts":
        body = client.get(f"{path}/attempts")
        if args.json:
            print_json(body, out)
            return EXIT_OK
        rows = [[a["at"], a["message_id"], str(a["attempt"]), str(a["status_code"] or "-"), clip(a["error"] or "-")]
                for a in body.get("attempts") or []]
        print(format_table(["AT", "MESSAGE", "ATTEMPT", "STATUS", "ERROR"], rows, right=[2, 3]), file=out)
        return EXIT_OK
    body = client.post(f"{path}/replay", {"since": args.since})
    if args.json:
        print_json(body, out)
    else:
        print(f"{body['replayed']} message(s) queued for delivery again", file=out)
    return EXIT_OK


COMMANDS: dict[str, Callable[[ApiClient, argparse.Namespace, TextIO], int]] = {
    "providers": cmd_providers,
    "models": cmd_models,
    "refresh": cmd_refresh,
    "status": cmd_status,
    "changes": cmd_changes,
    "watch": cmd_watch,
    "webhooks": cmd_webhooks,
    "tokens": cmd_tokens,
}
