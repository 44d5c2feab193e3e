"""``watch``: a WebSocket subscriber that prints each change and resumes from its last ``seq``/``epoch``.

It never downloads the catalog for a change it can be told about: events it missed while connected (a ``seq`` gap)
are read from the change feed (``GET /changes``) and printed in order; an event too large for a WebSocket message
(``truncated``) is completed by reading only the providers it names. Only when the journal no longer has the
missed events (``resync_required``, a new epoch) is the catalog read again, page by page. From then on watch keeps
that copy (``LocalCatalog``) current by applying each event's diff, reading only the providers where models were
added (an event names them, not their fields).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

from catalog_cli.client import EXIT_OK, EXIT_USAGE, ApiClient, CliError, short_error
from catalog_cli.format import format_event
from catalog_cli.reads import all_models, changes_since

PING_EVERY_S = 270.0  # API Gateway closes WebSockets idle for 10 min
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0


def _with_token(ws_url: str, token: str) -> str:
    parts = urlsplit(ws_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", urlencode(query), ""))


class LocalCatalog:
    """The catalog as watch last read it, ``{provider id: {model id: model}}``, kept current event by event."""

    def __init__(self, revision: Any, models: list[dict[str, Any]]):
        self.revision = revision
        self.providers: dict[str, dict[str, dict[str, Any]]] = {}
        for model in models:
            self.providers.setdefault(str(model.get("provider_id")), {})[str(model.get("id"))] = model

    @property
    def model_count(self) -> int:
        return sum(len(models) for models in self.providers.values())

    def stale_providers(self, payload: dict[str, Any]) -> list[str] | None:
        """The providers an event changed in a way its diff cannot say (models added: only their ids are sent; ids
        cut from a truncated event), to read again; None when the event does not even name them."""
        if payload.get("changed_count") and not payload.get("changed"):
            return None
        stale = []
        for change in payload.get("changed") or []:
            cut = any(change.get(f"{kind}_count") for kind in ("added", "removed", "updated", "changes"))
            if change.get("added") or cut:
                stale.append(str(change.get("provider_id")))
        return stale

    def apply(self, payload: dict[str, Any], fresh: dict[str, list[dict[str, Any]]]) -> None:
        """Apply an event's diff; ``fresh`` holds the providers ``stale_providers`` named, read again."""
        for change in payload.get("changed") or []:
            provider_id = str(change.get("provider_id"))
            if provider_id in fresh:
                self.providers[provider_id] = {str(m.get("id")): m for m in fresh[provider_id]}
                continue
            models = self.providers.setdefault(provider_id, {})
            for model_id in change.get("removed") or []:
                models.pop(str(model_id), None)
            for field_change in change.get("changes") or []:
                model = models.get(str(field_change.get("model_id")))
                if model is not None:
                    model[str(field_change.get("field"))] = field_change.get("after")
            if not models:
                self.providers.pop(provider_id, None)
        self.revision = payload.get("revision", self.revision)


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
        self.catalog: LocalCatalog | None = None  # once the catalog was read (a resync): kept current
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
        if self.epoch is not None and epoch != self.epoch:
            self.since, self.epoch = None, epoch  # a new epoch: nothing of the old one can be replayed
            return self._accept(message, resync="the event journal started a new epoch")
        if self.since is not None and isinstance(seq, int) and seq <= self.since:
            return False  # a replayed event this client already printed
        # A gap: the events in between come from the change feed, in order; if it cannot give them, a resync.
        if self.since is not None and isinstance(seq, int) and seq != self.since + 1 and not self._catch_up(seq):
            return self._accept(message, resync=f"events were missed before #{seq}")
        return self._accept(message)

    def _accept(self, message: dict[str, Any], resync: str | None = None) -> bool:
        """Print one event (and apply it to the local copy); with ``resync``, then read the whole catalog."""
        self.since, self.epoch = message.get("seq"), message.get("epoch")
        self.events_seen += 1
        self._print_event(message)
        if resync is not None:
            self._resync(resync, None)
        else:
            self._apply(message)
        return self._count is not None and self.events_seen >= self._count

    def _catch_up(self, seq: int) -> bool:
        """Print the events between ``since`` and ``seq`` from the change feed. False when it cannot give them all."""
        assert self.since is not None
        try:
            feed = changes_since(self._client, self.since, self.epoch, limit=seq - self.since - 1)
        except CliError as exc:
            if exc.status in (401, 403):
                raise
            self._note(f"reading the missed events failed: {exc.message}")  # e.g. a service without the feed
            return False
        missed = [e for e in feed.get("events") or [] if isinstance(e.get("seq"), int) and self.since < e["seq"] < seq]
        if feed.get("resync_required") or [e["seq"] for e in missed] != list(range(self.since + 1, seq)):
            return False
        self._note(f"read {len(missed)} missed event{'s' if len(missed) != 1 else ''} from the change feed")
        for event in missed:
            self.since = event["seq"]
            self.events_seen += 1
            self._print_event(event)
            self._apply(event)
        return True

    def _print_event(self, message: dict[str, Any]) -> None:
        if self._as_json:
            print(json.dumps(message, separators=(",", ":")), file=self._out, flush=True)
        else:
            for line in format_event(message):
                print(line, file=self._out)
            self._out.flush()

    def _apply(self, message: dict[str, Any]) -> None:
        """Keep the local copy current (when there is one): the diff as sent, and the providers it cannot tell
        about read again (only those)."""
        payload = message.get("payload") or {}
        truncated = bool(message.get("truncated") or payload.get("truncated"))
        if self.catalog is None and not truncated:
            return
        stale = LocalCatalog({}, []).stale_providers(payload) if self.catalog is None else (
            self.catalog.stale_providers(payload))
        if stale is None:
            self._resync("the event was too large to name the changed providers", None)
            return
        try:
            fresh = {pid: all_models(self._client, {"provider_id": pid})["models"] for pid in stale}
        except CliError as exc:
            if exc.exit_code == EXIT_USAGE:
                raise
            self._note(f"reading the changed providers failed: {exc.message}")
            self.catalog = None  # no longer known to be current: the next resync reads it again
            return
        if self.catalog is not None:
            self.catalog.apply(payload, fresh)
        if truncated:
            counts = ", ".join(f"{pid}: {len(models):,} models" for pid, models in fresh.items())
            summary = {"type": "providers_read", "revision": payload.get("revision"),
                       "models": {pid: len(models) for pid, models in fresh.items()}}
            if self._as_json:
                print(json.dumps(summary, separators=(",", ":")), file=self._out, flush=True)
            else:
                print(f"  read the changed providers again: {counts or 'none'}", file=self._out, flush=True)

    def _resync(self, why: str, message: dict[str, Any] | None) -> None:
        self._note(f"resync: {why}; reading the catalog again")
        try:
            body = all_models(self._client)
        except CliError as exc:
            if exc.exit_code == EXIT_USAGE:
                raise
            self._note(f"refetching failed: {exc.message}")
            self.catalog = None
            return
        models = body.get("models") or []
        self.catalog = LocalCatalog(body.get("revision"), models)
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
