"""Sending to one WebSocket connection through API Gateway's ``@connections`` management API.

The sender owns its ``apigatewaymanagementapi`` client (created on first send, from the factory it is given) and
turns API Gateway's 410 into ``ConnectionGone``. Deployed, the endpoint is the WebSocket API's stage URL; locally,
the local gateway's management endpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from chalicelib.errors import ConnectionGone


class WebsocketSender:
    def __init__(self, client_factory: Callable[[], Any]):
        self._factory = client_factory
        self._client: Any = None
        self._lock = threading.Lock()

    def _connected(self) -> Any:
        with self._lock:  # the fan-out sends from many threads; the client is created once
            if self._client is None:
                self._client = self._factory()
            return self._client

    def send(self, connection_id: str, text: str) -> None:
        """Send one text message; ``ConnectionGone`` when the connection no longer exists."""
        client = self._connected()
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=text.encode("utf-8"))
        except client.exceptions.GoneException:
            raise ConnectionGone(connection_id) from None

    __call__ = send
