"""``SignedConnectionsClient`` (chalicelib/events/_sender.py): ``PostToConnection`` as one SigV4-signed request, the
way the fan-out sends. Against the local gateway (real WebSockets) it behaves like the boto3 client it stands in for;
against a recording server, its request is the one botocore would send, and its signature verifies."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from websockets.asyncio.client import connect

from chalicelib.errors import ConnectionGone
from chalicelib.events import Fanout, SignedConnectionsClient, WebsocketSender
from devstack.gateway import MAX_MESSAGE_BYTES, LocalWebSocketGateway
from tests.integration.test_gateway import GOOD, FakeApp, app, connected_id, make_gateway, management_client, run

__all__ = ["app", "make_gateway"]  # fixtures
CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token")


@pytest.fixture
def gateway(make_gateway) -> LocalWebSocketGateway:
    return make_gateway()


def signed(gateway: LocalWebSocketGateway, **options: Any) -> SignedConnectionsClient:
    return SignedConnectionsClient(gateway.management_endpoint, "us-east-1", lambda: CREDENTIALS, **options)


def test_it_delivers_and_reports_what_api_gateway_answers(app: FakeApp, gateway: LocalWebSocketGateway) -> None:
    client = signed(gateway)
    base = gateway.management_endpoint.rsplit("/", 1)[0]

    async def scenario() -> list[str]:
        async with connect(f"{gateway.ws_url}/?token={GOOD}", max_size=None) as websocket:
            connection_id = await connected_id(app)
            await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data='{"é": 1}'.encode())
            with pytest.raises(ClientError) as too_large:
                await asyncio.to_thread(
                    client.post_to_connection, ConnectionId=connection_id, Data=b"a" * (MAX_MESSAGE_BYTES + 1)
                )
            assert too_large.value.response["Error"]["Code"] == "PayloadTooLargeException"
            await asyncio.to_thread(management_client(gateway).post_to_connection, ConnectionId=connection_id,
                                    Data=b"x")  # the boto3 client, for comparison: the same connection, the same API
            import requests

            requests.post(f"{base}/_test/limit_exceeded?count=1", timeout=10).raise_for_status()
            with pytest.raises(ClientError) as throttled:
                await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b"y")
            assert throttled.value.response["Error"]["Code"] == "LimitExceededException"
            assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            return [await websocket.recv(), await websocket.recv()]

    assert run(scenario()) == ['{"é": 1}', "x"]
    with pytest.raises(client.exceptions.GoneException) as gone:
        client.post_to_connection(ConnectionId="doesNotExist1=", Data=b"x")
    assert gone.value.response["Error"]["Code"] == "GoneException"
    with pytest.raises(ConnectionGone):
        WebsocketSender(lambda: client).send("doesNotExist1=", "{}")


def test_a_fan_out_through_it_retries_throttling_and_prunes_gone_connections(
    app: FakeApp, gateway: LocalWebSocketGateway, dynamodb: Any
) -> None:
    from chalicelib.settings import TableNames
    from chalicelib.storage.connections import ConnectionStore
    from tests.integration.test_connections import event_message

    store = ConnectionStore(dynamodb, TableNames().connections)
    base = gateway.management_endpoint.rsplit("/", 1)[0]

    async def scenario() -> tuple[Any, list[str]]:
        async with connect(f"{gateway.ws_url}/?token={GOOD}") as one, connect(f"{gateway.ws_url}/?token={GOOD}") as two:
            ids = [await connected_id(app), None]
            ids[1] = await connected_id(app, known={ids[0]})
            for connection_id in [*ids, "vanished0001="]:
                store.add(connection_id)
            import requests

            requests.post(f"{base}/_test/limit_exceeded?count=2", timeout=10).raise_for_status()
            fanout = Fanout(store, WebsocketSender(lambda: signed(gateway)).send, sleep=lambda _s: None)
            stats = await asyncio.to_thread(fanout.broadcast, event_message())
            return stats, [await one.recv(), await two.recv()]

    stats, received = run(scenario())
    assert (stats.sent, stats.gone, stats.failed) == (2, 1, 0)
    assert all('"seq"' in text for text in received)
    assert "vanished0001=" not in store.ids()


class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, dict[str, str], bytes]] = []
    statuses: list[int] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append((self.path, dict(self.headers), body))
        status = type(self).statuses.pop(0) if type(self).statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def recorder() -> Any:
    Recorder.seen, Recorder.statuses = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/prod"
    server.shutdown()
    server.server_close()


def test_its_request_is_botocores_and_its_signature_verifies(recorder: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = SignedConnectionsClient(recorder, "eu-west-1", lambda: CREDENTIALS)
    client.post_to_connection(ConnectionId="Gyv+AmdM/zoA=", Data=b'{"a":1}')
    boto = boto3.client("apigatewaymanagementapi", endpoint_url=recorder, region_name="eu-west-1",
                        aws_access_key_id=CREDENTIALS.access_key, aws_secret_access_key=CREDENTIALS.secret_key,
                        aws_session_token=CREDENTIALS.token)
    boto.post_to_connection(ConnectionId="Gyv+AmdM/zoA=", Data=b'{"a":1}')
    (path, headers, body), (boto_path, boto_headers, boto_body) = Recorder.seen
    assert (path, body) == (boto_path, boto_body) == ("/prod/@connections/Gyv%2BAmdM%2FzoA%3D", b'{"a":1}')
    assert headers["X-Amz-Security-Token"] == boto_headers["X-Amz-Security-Token"] == "session-token"
    scope = "/eu-west-1/execute-api/aws4_request"
    assert scope in headers["Authorization"] and scope in boto_headers["Authorization"]
    # The signature is right: signing the received request again, at the date it was sent, gives the same one.
    sent_at = datetime.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: sent_at)
    again = AWSRequest(method="POST", url=f"{recorder.rsplit('/', 1)[0]}{path}", data=body)
    SigV4Auth(CREDENTIALS, "execute-api", "eu-west-1").add_auth(again)
    assert again.headers["Authorization"] == headers["Authorization"]
    wrong = AWSRequest(method="POST", url=f"{recorder.rsplit('/', 1)[0]}{path}", data=b'{"a":2}')
    SigV4Auth(CREDENTIALS, "execute-api", "eu-west-1").add_auth(wrong)
    assert wrong.headers["Authorization"] != headers["Authorization"]  # the check can fail


def test_transient_failures_are_tried_three_times(recorder: str) -> None:
    sleeps: list[float] = []
    client = SignedConnectionsClient(recorder, "us-east-1", lambda: CREDENTIALS, sleep=sleeps.append)
    Recorder.statuses = [503, 500]
    client.post_to_connection(ConnectionId="a=", Data=b"x")
    assert len(Recorder.seen) == 3 and len(sleeps) == 2
    Recorder.seen, Recorder.statuses = [], [502, 503, 504]
    with pytest.raises(ClientError) as failed:
        client.post_to_connection(ConnectionId="a=", Data=b"x")
    assert len(Recorder.seen) == 3 and failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 504


def test_a_deployed_endpoint_is_reached_over_verified_tls_on_one_pool() -> None:
    from botocore.httpsession import get_cert_path

    client = SignedConnectionsClient("https://abc123.execute-api.eu-west-1.amazonaws.com/prod", "eu-west-1",
                                     lambda: CREDENTIALS)
    pool = client._pool
    assert (pool.scheme, pool.host, pool.port) == ("https", "abc123.execute-api.eu-west-1.amazonaws.com", 443)
    assert pool.cert_reqs == "CERT_REQUIRED" and pool.ca_certs == get_cert_path(True)
