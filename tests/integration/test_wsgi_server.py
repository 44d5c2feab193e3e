"""The embedded DynamoDB's HTTP server (``devstack/wsgi_server.py``): keep-alive connections, and nothing served once
it is closed (the final snapshot is taken after that, so a write answered later would be lost)."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.wsgi_server import KeepAliveWSGIServer


def echo_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    answer = json.dumps({
        "port": environ["REMOTE_PORT"], "path": environ["PATH_INFO"], "query": environ["QUERY_STRING"],
        "target": environ.get("HTTP_X_AMZ_TARGET"), "type": environ.get("CONTENT_TYPE"), "body": body.decode(),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [answer]


def serve(server: KeepAliveWSGIServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def server() -> Iterator[KeepAliveWSGIServer]:
    server = KeepAliveWSGIServer(("127.0.0.1", 0), echo_app)
    thread = serve(server)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def post(connection: http.client.HTTPConnection, body: str = "{}") -> dict[str, Any]:
    connection.request("POST", "/?a=1", body=body, headers={
        "X-Amz-Target": "DynamoDB_20120810.GetItem", "Content-Type": "application/x-amz-json-1.0",
    })
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Connection") is None
    return json.loads(response.read())


def test_requests_share_one_connection_and_reach_the_app_whole(server: KeepAliveWSGIServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    first, second = post(connection, '{"Key": 1}'), post(connection, '{"Key": 2}')
    assert first["port"] == second["port"]  # the same client socket: no new TCP connection per call
    assert first == {"port": first["port"], "path": "/", "query": "a=1", "target": "DynamoDB_20120810.GetItem",
                     "type": "application/x-amz-json-1.0", "body": '{"Key": 1}'}
    assert second["body"] == '{"Key": 2}'
    connection.close()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_every_method_reaches_the_app(server: KeepAliveWSGIServer, method: str) -> None:
    """The app decides what to answer to any method (the embedded DynamoDB refuses a browser's OPTIONS preflight
    itself): the server must not answer 501 on its own."""
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    connection.request(method, "/x")
    response = connection.getresponse()
    assert response.status == 200, (method, response.status)
    assert json.loads(response.read())["path"] == "/x"
    connection.close()


def test_a_chunked_request_body_is_refused_with_length_required(server: KeepAliveWSGIServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    connection.request("POST", "/", body=iter([b"{}"]), encode_chunked=True,
                       headers={"Transfer-Encoding": "chunked"})
    assert connection.getresponse().status == 411


def idle_connection_after_close(server: KeepAliveWSGIServer) -> http.client.HTTPConnection:
    """A client that made one call, then the server is stopped; the client's socket stays open."""
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
    post(connection)
    server.shutdown()
    server.server_close()
    return connection


def test_once_closed_an_open_keep_alive_connection_is_served_no_more() -> None:
    server = KeepAliveWSGIServer(("127.0.0.1", 0), echo_app)
    serve(server)
    connection = idle_connection_after_close(server)
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        post(connection)


def test_negative_control_without_ending_open_connections_a_closed_server_still_answers() -> None:
    class Leaky(KeepAliveWSGIServer):
        def server_close(self) -> None:  # only stops listening, as socketserver does
            super(KeepAliveWSGIServer, self).server_close()

    server = Leaky(("127.0.0.1", 0), echo_app)
    serve(server)
    connection = idle_connection_after_close(server)
    assert post(connection)["body"] == "{}"  # a write answered after the final snapshot would be lost
    connection.close()
