"""The WebSocket edge (docs/reference.md#3-websocket-protocol): ``$connect`` checks the token, ``$disconnect``
forgets the connection, ``$default`` answers ``subscribe`` (with replay or ``resync_required``), ``ping``, and an
``error`` frame for anything else. Handlers always return 200 after connect so the connection stays open.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import ConnectionGone
from chalicelib.events import encode_for_wire, wire_text
from chalicelib.logs import get_logger
from chalicelib.storage.connections import ConnectionStore
from chalicelib.storage.journal import EventJournal

log = get_logger("websocket")

OK = {"statusCode": 200}
UNAUTHORIZED = {"statusCode": 401}
SERVER_ERROR = {"statusCode": 500}
ACTIONS = ("subscribe", "ping")


class _FrameError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _raw(event: Any) -> dict[str, Any]:
    return event.to_dict() if hasattr(event, "to_dict") else dict(event)


class WebsocketHandlers:
    """``token_check(presented) -> bool``; ``position() -> (seq, epoch, revision)`` from the catalog manifest;
    ``send(connection_id, text)`` is ``WebsocketSender.send``."""

    def __init__(
        self,
        token_check: Callable[[str | None], bool],
        connections: ConnectionStore,
        journal: EventJournal,
        position: Callable[[], tuple[int, str, int]],
        send: Callable[[str, str], None],
    ):
        self._token_check = token_check
        self._connections = connections
        self._journal = journal
        self._position = position
        self._send = send

    # $connect ---------------------------------------------------------------------------------------------
    def on_connect(self, event: Any) -> dict[str, int]:
        raw = _raw(event)
        params = raw.get("queryStringParameters") or {}
        identity = (raw.get("requestContext") or {}).get("identity") or {}
        source_ip = identity.get("sourceIp")
        try:
            known = self._token_check(params.get("token"))
        except Exception:  # the token store cannot be read: a server fault, not a bad token
            log.exception("websocket connect refused: cannot verify the token", extra={"source_ip": source_ip})
            return SERVER_ERROR
        if not known:
            log.warning("websocket connect refused: missing or invalid token", extra={"source_ip": source_ip})
            return UNAUTHORIZED
        try:
            self._connections.add(event.connection_id, source_ip)
        except (ClientError, BotoCoreError):
            # Refuse rather than accept a connection that would never receive events.
            log.exception("storing the connection failed", extra={"connection_id": event.connection_id})
            return SERVER_ERROR
        log.info("websocket connected", extra={"connection_id": event.connection_id, "source_ip": source_ip})
        return OK

    # $disconnect ------------------------------------------------------------------------------------------
    def on_disconnect(self, event: Any) -> dict[str, int]:
        try:
            self._connections.remove(event.connection_id)
        except (ClientError, BotoCoreError) as exc:
            # The row's TTL and the next broadcast's 410 clean it up anyway.
            log.warning(
                "removing the connection failed", extra={"connection_id": event.connection_id, "error": str(exc)}
            )
        log.info("websocket disconnected", extra={"connection_id": event.connection_id})
        return OK

    # $default ---------------------------------------------------------------------------------------------
    def on_message(self, event: Any) -> dict[str, int]:
        connection_id = event.connection_id
        try:
            request = self._parse(_raw(event).get("body"))
            if request["action"] == "ping":
                self._reply(connection_id, {"type": "pong"})
            else:
                self._subscribe(connection_id, request.get("since"), request.get("epoch"))
        except _FrameError as exc:
            log.info("bad websocket message", extra={"connection_id": connection_id, "code": exc.code})
            self._reply_quietly(connection_id, {"type": "error", "error": {"code": exc.code, "message": exc.message}})
        except ConnectionGone:
            self._forget(connection_id)
        except Exception:  # a server fault answers with an error frame; the connection stays
            log.exception("websocket message failed", extra={"connection_id": connection_id})
            self._reply_quietly(
                connection_id,
                {"type": "error", "error": {"code": "internal_error", "message": "internal error; try again"}},
            )
        return OK

    @staticmethod
    def _parse(body: Any) -> dict[str, Any]:
        if isinstance(body, bytes):
            body = body.decode("utf-8", errors="replace")
        if not isinstance(body, str) or not body.strip():
            raise _FrameError("bad_message", "expected a JSON object text frame, got an empty message")
        try:
            request = json.loads(body)
        except ValueError:
            raise _FrameError("bad_message", "the message is not valid JSON") from None
        if not isinstance(request, dict):
            raise _FrameError("bad_message", 'expected a JSON object like {"action": "ping"}')
        action = request.get("action")
        if not isinstance(action, str):
            raise _FrameError("bad_message", 'the message needs a string "action": subscribe or ping')
        if action not in ACTIONS:
            raise _FrameError("unknown_action", f"unknown action {action[:64]!r}; expected one of: subscribe, ping")
        if action == "subscribe":
            since = request.get("since")
            if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
                raise _FrameError("invalid_field", '"since" must be a non-negative whole number or null')
            epoch = request.get("epoch")
            if epoch is not None and not isinstance(epoch, str):
                raise _FrameError("invalid_field", '"epoch" must be a string or null')
        return request

    def _subscribe(self, connection_id: str, since: int | None, epoch: str | None) -> None:
        # One read and the reply: nothing is written (the connection was stored at $connect, and every connection
        # gets the fan-out), so a burst of subscribes costs no write capacity.
        seq, current_epoch, revision = self._position()
        self._reply(connection_id, {"type": "subscribed", "seq": seq, "epoch": current_epoch, "revision": revision})
        if since is None:
            return
        replay = None
        if epoch == current_epoch and since <= seq:
            # Bounded by the seq just announced: later events reach this connection through the fan-out.
            replay = self._journal.replay(current_epoch, since, until=seq)
        if replay is None:
            log.info(
                "resync required",
                extra={"connection_id": connection_id, "since": since, "epoch_matches": epoch == current_epoch},
            )
            self._reply(connection_id, {"type": "resync_required", "seq": seq, "epoch": current_epoch})
            return
        for message in replay:
            self._send(connection_id, encode_for_wire(message))
        if replay:
            log.info("replayed events", extra={"connection_id": connection_id, "since": since, "count": len(replay)})

    def _reply(self, connection_id: str, message: dict[str, Any]) -> None:
        self._send(connection_id, wire_text(message))

    def _reply_quietly(self, connection_id: str, message: dict[str, Any]) -> None:
        """For error frames: the client may be gone, or sending itself may be what failed."""
        try:
            self._send(connection_id, wire_text(message))
        except ConnectionGone:
            self._forget(connection_id)
        except Exception as exc:  # best effort
            log.warning("sending an error frame failed", extra={"connection_id": connection_id, "error": str(exc)})

    def _forget(self, connection_id: str) -> None:
        try:
            self._connections.remove(connection_id)
        except (ClientError, BotoCoreError):
            pass  # TTL removes it
