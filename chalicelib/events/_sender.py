"""Sending to one WebSocket connection through API Gateway's ``@connections`` management API.

The sender owns its management-API client (created on first send, from the factory it is given) and turns API
Gateway's 410 into ``ConnectionGone``. Deployed, the endpoint is the WebSocket API's stage URL; locally, the local
gateway's management endpoint.

The client the service uses is ``SignedConnectionsClient``: ``PostToConnection`` as one SigV4-signed HTTPS request
on a pooled connection (botocore's signer, urllib3's pool), without a botocore client call around it. A fan-out is
one such request per connection, and a botocore call costs about four times the CPU of the request itself (its
event hooks, endpoint rules and parsers): for 1,000 connections that is most of a Lambda's CPU time.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlsplit

from botocore.exceptions import ClientError

from chalicelib.errors import ConnectionGone

# botocore's standard retry mode: transient failures (5xx, a dropped connection) are tried again, 3 attempts in all;
# throttling is left to the fan-out's own backoff (``Fanout``), which sees it as a ClientError.
_ATTEMPTS = 3
_TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})


class GoneException(ClientError):
    """410: the connection is closed or unknown (``client.exceptions.GoneException``, as a boto3 client has it)."""


class SignedConnectionsClient:
    """``post_to_connection`` of the ``apigatewaymanagementapi`` client, as one signed request.

    ``endpoint`` is the stage URL (``https://{api}.execute-api.{region}.amazonaws.com/{stage}``, or the local
    gateway's); ``credentials()`` returns botocore credentials (refreshed by the session when they expire). Errors
    are ``ClientError``s with the code API Gateway names (``x-amzn-ErrorType``), 410 a ``GoneException``; transient
    failures are retried like botocore's standard mode. Thread-safe."""

    exceptions = SimpleNamespace(GoneException=GoneException)

    def __init__(
        self,
        endpoint: str,
        region: str,
        credentials: Callable[[], Any],
        pool_size: int = 64,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        import urllib3
        from botocore.httpsession import get_cert_path

        self._endpoint = endpoint.rstrip("/")
        self._path = urlsplit(self._endpoint).path
        self._region = region
        self._credentials = credentials
        self._sleep = sleep
        # One host: its connection pool itself, not a PoolManager (which parses and keys every URL to find it).
        # Verified against the CA bundle botocore verifies AWS endpoints with.
        https = self._endpoint.startswith("https:")
        tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": get_cert_path(True)} if https else {}
        self._pool = urllib3.connection_from_url(
            self._endpoint,
            maxsize=pool_size,
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            retries=False,
            **tls,
        )

    @classmethod
    def of(cls, client: Any, credentials: Callable[[], Any]) -> SignedConnectionsClient:
        """The same endpoint and region as a boto3 ``apigatewaymanagementapi`` ``client`` (which resolved them)."""
        return cls(client.meta.endpoint_url, client.meta.region_name, credentials)

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> None:  # noqa: N803 (boto3's names)
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        resource = f"/@connections/{quote(ConnectionId, safe='-._~')}"
        path, url = self._path + resource, self._endpoint + resource
        for attempt in range(1, _ATTEMPTS + 1):
            request = AWSRequest(method="POST", url=url, data=Data)
            SigV4Auth(self._credentials().get_frozen_credentials(), "execute-api", self._region).add_auth(request)
            try:
                response = self._pool.urlopen(
                    "POST", path, body=Data, headers=dict(request.headers.items()), preload_content=True, redirect=False
                )
            except Exception as exc:  # a dropped or refused connection, a timeout
                if attempt == _ATTEMPTS:
                    raise _client_error(0, "RequestError", f"{type(exc).__name__}: {exc}"[:200]) from None
                self._backoff(attempt)
                continue
            if response.status < 300:
                return
            if response.status in _TRANSIENT_STATUSES and attempt < _ATTEMPTS:
                self._backoff(attempt)
                continue
            raise _error_of(response.status, response.headers, response.data)

    def _backoff(self, attempt: int) -> None:
        self._sleep(random.uniform(0, min(20.0, 0.05 * 2**attempt)))  # botocore's full jitter, base 50 ms


def _error_of(status: int, headers: Any, body: bytes) -> ClientError:
    code = (headers.get("x-amzn-ErrorType") or "").split(":", 1)[0]
    message = ""
    try:
        import json

        data = json.loads(body or b"{}")
        message = str(data.get("message") or data.get("Message") or "")
        code = code or str(data.get("__type") or "").rpartition("#")[2]
    except (ValueError, AttributeError):
        pass
    code = code or {410: "GoneException", 413: "PayloadTooLargeException", 429: "LimitExceededException",
                    403: "ForbiddenException"}.get(status, f"HTTP{status}")
    return _client_error(status, code, message)


def _client_error(status: int, code: str, message: str) -> ClientError:
    error_class = GoneException if code == "GoneException" else ClientError
    return error_class(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PostToConnection",
    )


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
