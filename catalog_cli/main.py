"""The command-line client: ``python -m chalicelib.cli <command>`` (CONTRACT §5) or ``python -m catalog_cli``.

Every command but ``tick`` is a client of the REST/WebSocket API (``--url``/``--token`` or
``MODEL_CATALOG_URL``/``MODEL_CATALOG_API_TOKEN``). ``tick`` runs the scheduled due-check in-process,
against DynamoDB with the caller's AWS credentials and the service's own settings, so any scheduler
(cron, a Kubernetes CronJob…) can drive refreshes.

Exit codes: 0 ok · 1 some providers failed (or the service answered with an error) · 2 usage or
config error (bad arguments, missing/wrong token, bad config) · 3 the service could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

import requests

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "MODEL_CATALOG_URL"
TOKEN_ENV = "MODEL_CATALOG_API_TOKEN"
PROG = "python -m chalicelib.cli"  # the documented name (CONTRACT §5)

READ_TIMEOUT_S = 15.0
# A manual refresh may wait for a running one (lock wait) and then run its own (run deadline).
REFRESH_TIMEOUT_S = 60.0
PING_EVERY_S = 270.0  # API Gateway closes WebSockets idle for 10 min
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0


class CliError(Exception):
    """Stops the command: ``message`` goes to stderr, ``exit_code`` to the shell."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class RefreshBusyError(CliError):
    """409 ``refresh_in_progress``: another refresh holds the lock."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message, EXIT_FAILED)
        self.retry_after_s = retry_after_s


# ---------------------------------------------------------------------------------------------------------
# HTTP client


class ApiClient:
    def __init__(self, base_url: str, token: str, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._session = session or requests.Session()

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return self._request("GET", path, params=params, timeout=READ_TIMEOUT_S)

    def post(self, path: str) -> Any:
        return self._request("POST", path, params=None, timeout=REFRESH_TIMEOUT_S)

    def _request(self, method: str, path: str, params: dict[str, str] | None, timeout: float) -> Any:
        url = f"{self.base_url}/api/v1{path}"
        try:
            response = self._session.request(
                method,
                url,
                params=params,
                timeout=(5.0, timeout),
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise CliError(f"cannot reach the service at {self.base_url}: {_reason(exc)}", EXIT_UNREACHABLE) from None
        except requests.RequestException as exc:
            raise CliError(f"bad service URL {self.base_url!r}: {_short(exc)}", EXIT_USAGE) from None
        if response.status_code < 400:
            try:
                return response.json()
            except ValueError:
                raise CliError(
                    f"{method} {path}: the service answered HTTP {response.status_code} with a body that is not JSON;"
                    f" is {self.base_url} the model-catalog API?",
                    EXIT_FAILED,
                ) from None
        raise _http_error(method, path, response)


def _http_error(method: str, path: str, response: requests.Response) -> CliError:
    status = response.status_code
    code, message = f"http_{status}", response.reason or "request failed"
    try:
        error = response.json().get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or code)
            message = str(error.get("message") or message)
    except (ValueError, AttributeError):
        pass
    text = f"{message} (HTTP {status} {code})"
    if status == 401:
        return CliError(f"{text}; check --token or {TOKEN_ENV}", EXIT_USAGE)
    if status == 409 and code == "refresh_in_progress":
        try:
            retry_after = float(response.headers.get("Retry-After", "2"))
        except ValueError:
            retry_after = 2.0
        return RefreshBusyError(text, retry_after)
    if status in (400, 404, 405, 422):
        return CliError(text, EXIT_USAGE)
    if status in (502, 503, 504):
        return CliError(f"{method} {path}: the service is unavailable: {text}", EXIT_UNREACHABLE)
    return CliError(text, EXIT_FAILED)


def _reason(exc: BaseException) -> str:
    """The innermost cause ("Connection refused", "timed out"), not urllib3's nested repr."""
    seen = exc
    while seen.__context__ is not None or seen.__cause__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    for candidate in (seen, exc):
        errno_text = getattr(candidate, "strerror", None)
        if errno_text:
            return str(errno_text)
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return _short(exc)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# ---------------------------------------------------------------------------------------------------------
# Formatting


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(cells)]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _money(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value >= 0.01 or value == 0 else f"{value:.2g}"


def _price(pricing: dict[str, float] | None) -> str:
    if not pricing:
        return "-"
    return f"{_money(pricing.get('input_per_mtok'))} / {_money(pricing.get('output_per_mtok'))}"


def _clip(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _when(iso: str | None, now: datetime | None = None) -> str:
    if not iso:
        return "never"
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    relative = _duration(abs(seconds))
    suffix = "ago" if seconds >= 0 else "from now"
    return f"{iso} ({'now' if abs(seconds) < 1 else f'{relative} {suffix}'})"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(seconds // 3600, 24)
    return f"{days} d" + (f" {hours} h" if hours else "")


def format_result(result: dict[str, Any]) -> str:
    """A RefreshResult as lines a person reads: a summary, then every diff and failure."""
    changed = result.get("changed") or []
    unchanged = result.get("unchanged") or []
    failed = result.get("failed") or []
    lines = [
        f"revision {result.get('revision')}: {len(changed)} changed, {len(unchanged)} unchanged, {len(failed)} failed"
    ]
    lines.extend(format_changes(changed))
    if unchanged:
        lines.append(f"  unchanged: {', '.join(unchanged)}")
    for failure in failed:
        lines.append(f"  FAILED {failure.get('provider_id')}: {failure.get('reason')}")
    return "\n".join(lines)


def format_changes(changed: Sequence[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for change in changed:
        added, removed, updated = change.get("added") or [], change.get("removed") or [], change.get("updated") or []
        name = change.get("provider_name") or change.get("provider_id")
        counts = f"{len(added)} added, {len(removed)} removed, {len(updated)} updated"
        lines.append(f"  {change.get('provider_id')} ({name}): {counts}")
        lines.extend(f"    + {model_id}" for model_id in added)
        lines.extend(f"    - {model_id}" for model_id in removed)
        lines.extend(f"    ~ {model_id}" for model_id in updated)
    return lines


def _print_json(value: Any, out: TextIO) -> None:
    print(json.dumps(value, indent=2, sort_keys=False), file=out)


def _result_exit(result: dict[str, Any] | None) -> int:
    return EXIT_FAILED if result and result.get("failed") else EXIT_OK


# ---------------------------------------------------------------------------------------------------------
# Commands


def cmd_providers(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    body = client.get("/providers")
    if args.json:
        _print_json(body, out)
        return EXIT_OK
    providers = body.get("providers") or []
    rows = [
        [
            p["id"],
            p.get("name") or p["id"],
            p.get("kind") or "",
            _number(p.get("model_count")),
            p.get("last_refreshed_at") or "never",
            _clip(p["last_error"]) if p.get("last_error") else "-",
        ]
        for p in providers
    ]
    print(format_table(["ID", "NAME", "KIND", "MODELS", "LAST REFRESHED", "LAST ERROR"], rows, right=[3]), file=out)
    return EXIT_OK


def cmd_models(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    body = client.get("/models", params={"provider_id": args.provider} if args.provider else None)
    if args.json:
        _print_json(body, out)
        return EXIT_OK
    models = body.get("models") or []
    rows = [
        [
            m["provider_id"],
            m["id"],
            _number(m.get("context_length")),
            _number(m.get("max_output_tokens")),
            ",".join(m.get("capabilities") or []) or "-",
            _price(m.get("pricing")),
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
        _print_json(result, out)
    else:
        print(format_result(result), file=out)
    return _result_exit(result)


def cmd_status(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    body = client.get("/refresh/status")
    if args.json:
        _print_json(body, out)
        return EXIT_OK
    interval = body.get("refresh_interval_ms") or 0
    lines = [
        f"refresh interval:  {_duration(interval / 1000) + f' ({interval} ms)' if interval else 'off (0 ms)'}",
        f"refresh on start:  {'yes' if body.get('refresh_on_start') else 'no'}",
        f"next due:          {_when(body.get('next_due_at')) if body.get('next_due_at') else 'not scheduled'}",
    ]
    last_run = body.get("last_run")
    if last_run:
        lines.append("last run:          " + format_result(last_run).replace("\n", "\n    "))
    else:
        lines.append("last run:          none yet")
    print("\n".join(lines), file=out)
    return EXIT_OK


def tick_service() -> Any:
    """The service as the scheduled function builds it (settings, DynamoDB, lock, engine)."""
    from chalicelib import wiring

    return wiring.service()


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

    from chalicelib.settings import ConfigError

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
        _print_json(outcome, out)
    elif outcome.get("ran"):
        print(f"refreshed: {outcome.get('reason')}", file=out)
        if result:
            print(format_result(result), file=out)
    else:
        print(f"not due: {outcome.get('reason')}", file=out)
    return _result_exit(result)


# ---------------------------------------------------------------------------------------------------------
# watch


def _with_token(ws_url: str, token: str) -> str:
    parts = urlsplit(ws_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(query), ""))


class Watcher:
    """Subscribes, prints each change, and resumes from the last ``seq``/``epoch`` after a reconnect."""

    def __init__(
        self,
        client: ApiClient,
        ws_url: str,
        token: str,
        out: TextIO,
        err: TextIO,
        as_json: bool = False,
        count: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._client = client
        self._ws_url = ws_url
        self._token = token
        self._out = out
        self._err = err
        self._as_json = as_json
        self._count = count
        self._sleep = sleep
        self.since: int | None = None
        self.epoch: str | None = None
        self.events_seen = 0
        self._subscribed = False

    def run(self) -> int:
        from websockets.exceptions import InvalidStatus, WebSocketException

        attempt = 0
        while True:
            self._subscribed = False
            try:
                if self._session():
                    return EXIT_OK
                reason = "the server closed the connection"
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    # Tells a wrong token (401 over HTTP too → exit 2) from a gateway that refuses this one.
                    self._client.get("/client-config")
                    raise CliError(f"the WebSocket gateway refused the token (HTTP {status})", EXIT_USAGE) from None
                reason = f"the WebSocket handshake failed with HTTP {status}"
            except (OSError, TimeoutError, WebSocketException) as exc:
                reason = _short(exc)
                for secret in (self._token, quote_plus(self._token), quote(self._token, safe="")):
                    reason = reason.replace(secret, "***")  # the token travels in the WS URL's query
            # Back off from the first retry after a connection that worked; grow while none does.
            attempt = 1 if self._subscribed else attempt + 1
            delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
            self._note(f"connection lost ({reason}); reconnecting in {delay:.1f} s")
            self._sleep(delay)

    def _session(self) -> bool:
        """One connection. True when ``--count`` events have been printed."""
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        # Application-level pings: API Gateway counts only data frames as activity.
        with connect(
            _with_token(self._ws_url, self._token),
            open_timeout=10,
            close_timeout=2,
            ping_interval=None,
            max_size=2**22,
        ) as ws:
            ws.send(json.dumps({"action": "subscribe", "since": self.since, "epoch": self.epoch}))
            next_ping = time.monotonic() + PING_EVERY_S
            while True:
                try:
                    raw = ws.recv(timeout=max(0.1, next_ping - time.monotonic()))
                except TimeoutError:
                    ws.send(json.dumps({"action": "ping"}))
                    next_ping = time.monotonic() + PING_EVERY_S
                    continue
                except ConnectionClosed:
                    return False
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(message, dict) and self._handle(message):
                    return True

    def _handle(self, message: dict[str, Any]) -> bool:
        kind = message.get("type")
        if kind == "subscribed":
            self._subscribed = True
            resumed = self.since is not None
            if not resumed:
                self.since, self.epoch = message.get("seq"), message.get("epoch")
            self._note(
                f"{'resubscribed' if resumed else 'subscribed'}: seq {message.get('seq')}, "
                f"revision {message.get('revision')}; waiting for changes (Ctrl-C to stop)"
            )
        elif kind == "resync_required":
            self.since, self.epoch = message.get("seq"), message.get("epoch")
            self._resync("the server no longer has the missed events", message)
        elif kind == "event.model_catalog.changed":
            return self._on_event(message)
        elif kind == "error":
            error = message.get("error") or {}
            self._note(f"server error: {error.get('message') or error.get('code')}")
        return False

    def _on_event(self, message: dict[str, Any]) -> bool:
        seq, epoch = message.get("seq"), message.get("epoch")
        gap = False
        if self.epoch is not None and epoch != self.epoch:
            gap = True
        elif self.since is not None and isinstance(seq, int) and seq <= self.since:
            return False  # a replayed event this client already printed
        elif self.since is not None and seq != self.since + 1:
            gap = True
        self.since, self.epoch = seq, epoch
        self.events_seen += 1
        if self._as_json:
            print(json.dumps(message, separators=(",", ":")), file=self._out, flush=True)
        else:
            payload = message.get("payload") or {}
            stamp = message.get("timestamp") or datetime.now(UTC).isoformat(timespec="seconds")
            print(f"[{stamp}] #{seq} catalog changed, revision {payload.get('revision')}", file=self._out)
            for line in format_changes(payload.get("changed") or []):
                print(line, file=self._out)
            for failure in payload.get("failed") or []:
                print(f"  FAILED {failure.get('provider_id')}: {failure.get('reason')}", file=self._out)
            if message.get("truncated") or payload.get("truncated"):
                print("  (payload truncated; run `models` for the full catalog)", file=self._out)
            self._out.flush()
        if gap:
            self._resync(f"events were missed before #{seq}", None)
        return self._count is not None and self.events_seen >= self._count

    def _resync(self, why: str, message: dict[str, Any] | None) -> None:
        self._note(f"resync: {why}; refetching the catalog")
        try:
            body = self._client.get("/models")
        except CliError as exc:
            if exc.exit_code == EXIT_USAGE:
                raise
            self._note(f"refetching failed: {exc.message}")
            return
        models = body.get("models") or []
        providers = {m.get("provider_id") for m in models}
        summary = {"type": "resync", "revision": body.get("revision"), "models": len(models),
                   "providers": len(providers)}
        if self._as_json:
            print(json.dumps(summary, separators=(",", ":")), file=self._out, flush=True)
        else:
            counts = f"{len(models)} models from {len(providers)} providers"
            print(f"catalog refetched: revision {summary['revision']}, {counts}", file=self._out, flush=True)

    def _note(self, text: str) -> None:
        print(f"watch: {text}", file=self._err, flush=True)


def cmd_watch(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    ws_url = args.ws_url
    if not ws_url:
        ws_url = client.get("/client-config").get("ws_url")
        if not ws_url:
            raise CliError("the service did not announce a WebSocket URL; pass --ws-url", EXIT_USAGE)
    watcher = Watcher(client, ws_url, client_token(args), out, sys.stderr, as_json=args.json, count=args.count)
    return watcher.run()


# ---------------------------------------------------------------------------------------------------------
# Argument parsing and main


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


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

    watch = commands.add_parser("watch", parents=[common], help="print catalog changes as they happen")
    watch.add_argument("--count", type=_positive_int, metavar="N", help="exit after N change events")
    watch.add_argument("--json", action="store_true", help="print each event as one JSON line")
    watch.add_argument("--ws-url", metavar="URL", help="WebSocket URL (default: from the service's client-config)")

    tick = commands.add_parser(
        "tick", help="run the scheduled due-check now, against DynamoDB with your AWS credentials"
    )
    tick.add_argument("--json", action="store_true", help="print the outcome as JSON")
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


COMMANDS: dict[str, Callable[[ApiClient, argparse.Namespace, TextIO], int]] = {
    "providers": cmd_providers,
    "models": cmd_models,
    "refresh": cmd_refresh,
    "status": cmd_status,
    "watch": cmd_watch,
}


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
