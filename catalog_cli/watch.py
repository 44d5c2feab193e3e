"""``watch``: a WebSocket subscriber that prints each change and resumes from its last ``seq``/``epoch``."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

from catalog_cli.client import EXIT_OK, EXIT_USAGE, ApiClient, CliError, short_error
from catalog_cli.format import format_event

PING_EVERY_S = 270.0  # API Gateway closes WebSockets idle for 10 min
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0


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
                reason = short_error(exc)
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
            for line in format_event(message):
                print(line, file=self._out)
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
