"""The shared HTTP layer: retries, deadline, size cap, reasons, redaction, URL safety — against a real server."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from chalicelib.errors import ProviderError
from chalicelib.http import (
    HttpClient,
    JsonMembers,
    Redactor,
    RetryPolicy,
    UnsafeUrlError,
    UrlGuard,
    parse_retry_after,
    provider_message,
)
from chalicelib.http._guard import _WATCHDOG
from chalicelib.logs import JsonFormatter
from tests.fakes import FakeProviderServer

KEY = "sk-live-9f8e7d6c5b4a3210zyxwvut"
EXPECT = "a JSON object with `data`"


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logs() -> Iterator[_Capture]:
    capture = _Capture()
    root = logging.getLogger("model_catalog")
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)




class Harness:
    """An HttpClient with recorded (not real) sleeps and a fixed jitter."""

    def __init__(self, guard: UrlGuard | None = None, **kwargs):
        self.sleeps: list[float] = []
        self.client = HttpClient(
            guard or UrlGuard(allow_private=True), sleep=self.sleeps.append, rng=lambda: 0.5, **kwargs
        )

    def http(self, deadline_s: float = 5.0, timeout_s: float = 10.0, key: str | None = KEY, **kwargs):
        redactor = Redactor([key])
        return self.client.for_provider(
            "p1",
            deadline=time.monotonic() + deadline_s,
            timeout_s=timeout_s,
            redactor=redactor,
            auth="api_key" if key else "none",
            credential_env="P1_API_KEY" if key else None,
            **kwargs,
        )


def failure(call) -> str:
    with pytest.raises(ProviderError) as caught:
        call()
    return caught.value.reason


# ------------------------------------------------------------------------------------------ units


def test_redactor_removes_raw_encoded_and_shaped_secrets():
    redact = Redactor(["s3cr3t/+key=="])
    text = (
        "raw s3cr3t/+key== url s3cr3t%2F%2Bkey%3D%3D plus s3cr3t%2F%2Bkey%3D%3D "
        'header Bearer abc.def-ghi query ?key=AIzaXYZ&x=1 json {"refresh_token": "rt-123"}'
    )
    cleaned = redact(text)
    for secret in ("s3cr3t", "abc.def-ghi", "AIzaXYZ", "rt-123"):
        assert secret not in cleaned
    assert "Bearer [redacted]" in cleaned and "key=[redacted]&x=1" in cleaned


def test_retry_after_forms():
    assert parse_retry_after({"Retry-After": "1"}) == 1.0
    assert parse_retry_after({"retry-after-ms": "1500", "Retry-After": "9"}) == 1.5
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    google = {"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}]}}
    assert parse_retry_after({}, google) == 12.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_is_exponential_with_jitter_and_capped():
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=4.0)
    assert [policy.backoff(n, lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert policy.backoff(3, lambda: 0.0) == 1.0  # half of the step is fixed, half is random


def test_provider_message_shapes():
    assert provider_message({"error": {"message": "Invalid  API\nKey"}}) == "Invalid API Key"
    assert provider_message({"error": "invalid_grant", "error_description": "expired"}) == "expired"
    assert provider_message({"code": "x", "error": "Incorrect API key"}) == "Incorrect API key"
    assert provider_message({"detail": "Unauthorized"}) == "Unauthorized"
    assert provider_message({"message": "m" * 500}).endswith("…")
    assert provider_message(["not", "an", "object"]) is None


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("192.168.0.5", "a private address"),
        ("169.254.169.254", "the cloud metadata address"),
        ("fd00:ec2::254", "the cloud metadata address"),
        ("169.254.10.1", "a link-local address"),
        ("::ffff:127.0.0.1", "a loopback address"),
        ("100.64.0.1", "a reserved address"),
        ("0.0.0.0", "a reserved address"),
    ],
)
def test_guard_refuses_non_public_addresses(address: str, problem: str):
    with pytest.raises(UnsafeUrlError, match=problem):
        UrlGuard(allow_private=False).check_address(address)


def test_guard_checks_scheme_and_every_resolved_address():
    def resolve(host, port, *args):
        table = {"api.example.com": ["93.184.216.34"], "split.example.com": ["93.184.216.34", "10.0.0.7"]}
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in table[host]]

    guard = UrlGuard(allow_private=False, resolve=resolve)
    guard.check_url("https://api.example.com/v1")  # public: fine
    with pytest.raises(UnsafeUrlError, match="does not use https"):
        guard.check_url("http://api.example.com/v1")
    with pytest.raises(UnsafeUrlError, match=r"split.example.com \(10.0.0.7\) is a private address"):
        guard.check_url("https://split.example.com/v1")
    UrlGuard(allow_private=True).check_url("http://127.0.0.1:1/v1")  # the local default allows it


# ------------------------------------------------------------------------------- retries + deadline


def test_429_with_retry_after_then_success(server: FakeProviderServer):
    server.route(
        "GET",
        "/models",
        responses=[(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"}), (200, {"data": []}, None)],
    )
    harness = Harness()
    assert harness.http().get_json(server.url + "/models", expect=EXPECT) == {"data": []}
    assert harness.sleeps == [1.0]
    assert len(server.requests("/models")) == 2


def test_429_with_retry_after_then_success_really_waits(server: FakeProviderServer):
    server.route("GET", "/models", responses=[(429, None, {"Retry-After": "1"}), (200, {"data": [1]}, None)])
    client = HttpClient(UrlGuard(allow_private=True))
    http = client.for_provider("p1", deadline=time.monotonic() + 5)
    started = time.monotonic()
    assert http.get_json(server.url + "/models", expect=EXPECT) == {"data": [1]}
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured, not skipped
    client.close()


def test_retry_after_ms_is_preferred(server: FakeProviderServer):
    server.route("GET", "/m", responses=[(503, None, {"retry-after-ms": "250", "Retry-After": "3"}), (200, {}, None)])
    harness = Harness()
    harness.http().get_json(server.url + "/m", expect=EXPECT)
    assert harness.sleeps == [0.25]


def test_retry_after_beyond_the_cap_fails_at_once(server: FakeProviderServer):
    server.route(
        "GET", "/m", status=429, json={"error": {"message": "Rate limit exceeded"}}, headers={"Retry-After": "60"}
    )
    harness = Harness()
    reason = failure(lambda: harness.http().get_json(server.url + "/m", expect=EXPECT))
    assert reason == "rate limited (HTTP 429); the provider asks to wait 60 s: Rate limit exceeded"
    assert harness.sleeps == [] and len(server.requests("/m")) == 1


def test_persistent_429_gives_up_after_max_attempts_with_backoff(server: FakeProviderServer):
    server.route("GET", "/m", status=429, json={"error": {"message": "Rate limit exceeded"}})
    harness = Harness(retry=RetryPolicy(max_attempts=4, backoff_base_s=0.5))
    reason = failure(lambda: harness.http().get_json(server.url + "/m", expect=EXPECT))
    assert reason == "rate limited (HTTP 429) after 4 attempts: Rate limit exceeded"
    assert harness.sleeps == [0.375, 0.75, 1.5]  # 0.5·2ⁿ × (0.5 + 0.5·jitter 0.5)
    assert len(server.requests("/m")) == 4


def test_retry_never_sleeps_past_the_deadline(server: FakeProviderServer):
    server.route("GET", "/m", status=429, json={}, headers={"Retry-After": "2"})
    harness = Harness()
    reason = failure(lambda: harness.http(deadline_s=1.0).get_json(server.url + "/m", expect=EXPECT))
    assert reason == "rate limited (HTTP 429) and still limited at the deadline"
    assert harness.sleeps == []


@pytest.mark.timeout(15)
def test_hanging_server_is_bounded_by_the_deadline(server: FakeProviderServer):
    server.route("GET", "/m", json={"data": []}, delay=30)
    harness = Harness()
    started = time.monotonic()
    reason = failure(lambda: harness.http(deadline_s=0.6, timeout_s=10).get_json(server.url + "/m", expect=EXPECT))
    assert reason.startswith("timed out after") and "the refresh deadline" in reason
    assert time.monotonic() - started < 5  # 0.6 s deadline; a 10 s read timeout would be far past this


@pytest.mark.timeout(15)
def test_slow_drip_body_is_bounded_by_the_deadline(server: FakeProviderServer):
    # 4 KB at 16 bytes per 0.1 s would take 25 s; every byte arrives well within the read timeout.
    server.route("GET", "/m", body=json.dumps({"data": ["x" * 4000]}), chunk_size=16, chunk_delay=0.1)
    harness = Harness()
    started = time.monotonic()
    reason = failure(lambda: harness.http(deadline_s=0.8, timeout_s=5).get_json(server.url + "/m", expect=EXPECT))
    assert "timed out after" in reason and "the refresh deadline" in reason
    assert time.monotonic() - started < 5


@pytest.mark.timeout(15)
def test_concurrent_requests_share_one_watchdog_and_keep_their_own_deadlines(server: FakeProviderServer):
    server.route("GET", "/slow", json={"data": []}, delay=30)
    server.route("GET", "/fast", json={"data": []})
    deadlines = {"a": 0.4, "b": 0.9, "c": 1.4}
    ended: dict[str, float] = {}
    started = time.monotonic()

    def fetch(name: str) -> None:
        http = Harness().http(deadline_s=deadlines[name], timeout_s=10)
        failure(lambda: http.get_json(server.url + "/slow", expect=EXPECT))
        ended[name] = time.monotonic() - started

    threads = [threading.Thread(target=fetch, args=(name,)) for name in deadlines]
    for thread in threads:
        thread.start()
    assert Harness().http().get_json(server.url + "/fast", expect=EXPECT) == {"data": []}  # its alarm is cancelled
    for thread in threads:
        thread.join()
    for name, deadline in deadlines.items():
        assert deadline <= ended[name] < deadline + 0.4, (name, ended)
    assert sorted(ended, key=ended.__getitem__) == ["a", "b", "c"]
    assert [t.name for t in threading.enumerate()].count("http-watchdog") == 1


def test_the_watchdog_fires_alarms_in_deadline_order_and_never_a_cancelled_one(logs):
    fired: list[str] = []
    done = threading.Event()
    _WATCHDOG.set(0.3, lambda: (fired.append("late"), done.set()))
    _WATCHDOG.set(0.1, lambda: fired.append("early"))
    _WATCHDOG.set(0.2, lambda: fired.append("cancelled")).cancel()
    _WATCHDOG.set(0.15, lambda: 1 / 0)  # a failing alarm stops none of the others
    assert done.wait(5)
    assert fired == ["early", "late"]
    assert [line for line in logs.lines if "deadline action failed" in line and "ZeroDivisionError" in line]


def test_read_timeout_is_retried_then_reported(server: FakeProviderServer):
    server.route("GET", "/m", json={"data": []}, delay=5)
    harness = Harness(retry=RetryPolicy(max_attempts=2))
    reason = failure(lambda: harness.http(deadline_s=10, timeout_s=0.3).get_json(server.url + "/m", expect=EXPECT))
    assert reason == "timed out after 0.3 s after 2 attempts"
    assert len(server.requests("/m")) == 2


def test_connection_refused_is_retried_then_reported():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    harness = Harness(retry=RetryPolicy(max_attempts=3))
    reason = failure(lambda: harness.http().get_json(f"http://127.0.0.1:{port}/m", expect=EXPECT))
    assert reason == "could not reach 127.0.0.1: connection refused after 3 attempts"
    assert len(harness.sleeps) == 2


# ------------------------------------------------------------------------------ bodies and reasons


def test_html_answer_is_a_clear_reason(server: FakeProviderServer):
    server.route(
        "GET", "/m", body="<!DOCTYPE html><html><body>Sign in</body></html>", headers={"Content-Type": "text/html"}
    )
    reason = failure(lambda: Harness().http().get_json(server.url + "/m", expect=EXPECT))
    assert reason == "expected a JSON object with `data`, got HTML"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "expected a JSON object with `data`, got an empty response"),
        (
            "{not json",
            "expected a JSON object with `data`, got invalid JSON (Expecting property name enclosed in "
            "double quotes at line 1 column 2)",
        ),
    ],
)
def test_unparsable_bodies(server: FakeProviderServer, body: str, reason: str):
    server.route("GET", "/m", body=body)
    assert failure(lambda: Harness().http().get_json(server.url + "/m", expect=EXPECT)) == reason


def test_oversized_body_with_content_length_is_refused_before_reading(server: FakeProviderServer):
    server.route("GET", "/m", json={"data": ["x" * 200_000]})
    reason = failure(lambda: Harness(max_body_bytes=64 * 1024).http().get_json(server.url + "/m", expect=EXPECT))
    assert reason.startswith("the response is larger than the 64 KB limit (")


def test_oversized_chunked_body_is_cut_while_streaming(server: FakeProviderServer):
    server.route("GET", "/m", json={"data": ["x" * 200_000]}, chunk_size=8192)
    reason = failure(lambda: Harness(max_body_bytes=64 * 1024).http().get_json(server.url + "/m", expect=EXPECT))
    assert reason == "the response is larger than the 64 KB limit"


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (401, {"error": {"message": "bad key"}}, "the API key was rejected (HTTP 401; check P1_API_KEY): bad key"),
        (403, {"message": "Forbidden"}, "the API key was rejected (HTTP 403; check P1_API_KEY): Forbidden"),
        (402, {"error": {"message": "Insufficient Balance"}}, "insufficient balance (HTTP 402): Insufficient Balance"),
        (
            429,
            {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}},
            "quota exhausted (HTTP 429): You exceeded your current quota",
        ),
        (404, {"error": "not here"}, "not found (HTTP 404); check the provider URL: not here"),
        (
            400,
            {"error": {"message": "bad param"}},
            "the provider refused the request (HTTP 400 Bad Request): bad param",
        ),
    ],
)
def test_status_reasons(server: FakeProviderServer, status: int, body: dict, reason: str):
    server.route("GET", "/m", status=status, json=body)
    harness = Harness()
    assert failure(lambda: harness.http().get_json(server.url + "/m", expect=EXPECT)) == reason
    assert len(server.requests("/m")) == 1  # none of these is retried


def test_unauthorized_without_a_configured_key_says_to_set_one(server: FakeProviderServer):
    server.route("GET", "/m", status=401, json={"error": {"code": 401, "message": "Missing Authentication header"}})
    reason = failure(lambda: Harness().http(key=None).get_json(server.url + "/m", expect=EXPECT))
    assert reason == "the provider requires an API key (HTTP 401; set api_key_env): Missing Authentication header"


def test_echoed_key_never_reaches_reasons_or_logs(server: FakeProviderServer, logs: _Capture):
    echo = {"error": {"message": f"Incorrect API key provided: {KEY}. Authorization: Bearer {KEY}"}}
    server.route("GET", "/bad", status=401, json=echo)
    server.route("GET", "/flaky", status=500, json=echo)
    harness = Harness(retry=RetryPolicy(max_attempts=2))
    http = harness.http()
    reasons = [
        failure(lambda: http.get_json(server.url + "/bad", expect=EXPECT)),
        failure(lambda: http.get_json(server.url + f"/flaky?key={KEY}", expect=EXPECT)),
    ]
    assert (
        reasons[0] == "the API key was rejected (HTTP 401; check P1_API_KEY): Incorrect API key provided: "
        "[redacted]. Authorization: Bearer [redacted]"
    )
    assert reasons[1].startswith("the provider failed (HTTP 500 Internal Server Error) after 2 attempts")
    assert logs.lines, "the retry must have been logged"
    for text in [*reasons, *logs.lines]:
        assert KEY not in text
        assert "9f8e7d6c" not in text


# ----------------------------------------------------------------------------------------- redirects


def test_same_origin_redirect_is_followed_with_credentials(server: FakeProviderServer):
    server.route("GET", "/old/models", status=301, headers={"Location": "/v2/models"})
    server.route("GET", "/v2/models", json={"data": []})
    harness = Harness()
    harness.http().get_json(server.url + "/old/models", expect=EXPECT, headers={"Authorization": f"Bearer {KEY}"})
    assert server.requests("/v2/models")[0].headers["authorization"] == f"Bearer {KEY}"


def test_cross_origin_redirect_drops_credentials(server: FakeProviderServer):
    with FakeProviderServer() as other:
        other.route("GET", "/models", json={"data": []})
        server.route("GET", "/models", status=302, headers={"Location": other.url + "/models"})
        harness = Harness()
        harness.http().get_json(
            server.url + "/models", expect=EXPECT, headers={"x-api-key": KEY, "X-Custom-Auth": f"token {KEY}"}
        )
        received = other.requests("/models")[0].headers
        assert "x-api-key" not in received and "x-custom-auth" not in received


def test_redirect_hops_are_capped(server: FakeProviderServer):
    server.route("GET", "/loop", status=302, headers={"Location": "/loop"})
    reason = failure(lambda: Harness().http().get_json(server.url + "/loop", expect=EXPECT))
    assert reason == f"too many redirects (more than 5) starting at {server.url}/loop"
    assert len(server.requests("/loop")) == 6


def _strict_guard_trusting_loopback(resolve=socket.getaddrinfo) -> UrlGuard:
    """Private URLs refused, except 127.0.0.1 where the fake server lives (it stands in for a public host)."""
    return UrlGuard(allow_private=False, require_https=False, resolve=resolve, exempt_networks=("127.0.0.1/32",))


def test_redirect_to_the_metadata_address_is_refused(server: FakeProviderServer):
    server.route("GET", "/models", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    reason = failure(
        lambda: Harness(_strict_guard_trusting_loopback()).http().get_json(server.url + "/models", expect=EXPECT)
    )
    assert reason.startswith(
        "the provider redirected to http://169.254.169.254/latest/meta-data/, which is refused: "
        "169.254.169.254 is the cloud metadata address"
    )


def test_redirect_to_a_name_resolving_to_a_private_address_is_refused(server: FakeProviderServer):
    def resolve(host, port, *args):
        assert host == "intranet.example.com"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.20.30.40", port))]

    server.route("GET", "/models", status=307, headers={"Location": "http://intranet.example.com/models"})
    harness = Harness(_strict_guard_trusting_loopback(resolve))
    reason = failure(lambda: harness.http().get_json(server.url + "/models", expect=EXPECT))
    assert "intranet.example.com (10.20.30.40) is a private address" in reason
    assert len(server.requests()) == 1


def test_loopback_url_is_refused_when_private_urls_are_not_allowed(server: FakeProviderServer):
    server.route("GET", "/models", json={"data": []})
    strict = Harness(UrlGuard(allow_private=False))
    assert "does not use https" in failure(lambda: strict.http().get_json(server.url + "/models", expect=EXPECT))
    http_ok = Harness(UrlGuard(allow_private=False, require_https=False))
    reason = failure(lambda: http_ok.http().get_json(server.url + "/models", expect=EXPECT))
    assert reason.startswith("127.0.0.1 is a loopback address")
    assert server.requests() == []  # refused before connecting


def test_connected_peer_is_checked_too(server: FakeProviderServer):
    """DNS rebinding: the pre-check's lookup says public, the connection lands on loopback."""

    def lying_resolver(host, port, *args):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]

    server.route("GET", "/models", json={"data": []})
    port = server.url.rsplit(":", 1)[1]
    harness = Harness(UrlGuard(allow_private=False, require_https=False, resolve=lying_resolver))
    reason = failure(lambda: harness.http().get_json(f"http://localhost:{port}/models", expect=EXPECT))
    assert "(127.0.0.1) is a loopback address" in reason
    assert server.requests() == []


def test_post_is_not_redirected(server: FakeProviderServer):
    server.route("POST", "/token", status=307, headers={"Location": "/elsewhere"})
    harness = Harness()
    reason = failure(lambda: harness.http().post_form(server.url + "/token", {"a": "b"}, expect="a token"))
    assert (
        reason == f"the endpoint {server.url}/token redirected (HTTP 307) to {server.url}/elsewhere; "
        "configure the final URL"
    )


def test_a_body_that_stalls_is_a_read_timeout(server: FakeProviderServer):
    server.route("GET", "/m", body=json.dumps({"data": ["x" * 100]}), chunk_size=20, chunk_delay=2.0)
    harness = Harness(retry=RetryPolicy(max_attempts=2))
    reason = failure(lambda: harness.http(deadline_s=10, timeout_s=0.3).get_json(server.url + "/m", expect=EXPECT))
    assert reason == "timed out after 0.3 s after 2 attempts"


# -- a large JSON object read member by member --------------------------------------------------------------------

MEMBER_DOCUMENTS = [
    '{}',
    ' \n{ "a" : 1 , "b":[1,2,{"c":"\\u00e9\\"}"}],"empty":{}, "n": null, "f": -1.5e3, "t": true}\n ',
    '{"dup": 1, "dup": 2}',
    '{"ünïcode": "x\\u2028y", "nan": NaN}',
]


@pytest.mark.parametrize("text", MEMBER_DOCUMENTS)
def test_members_read_one_at_a_time_are_what_json_loads_reads(server: FakeProviderServer, text: str):
    server.route("GET", "/m", body=text, headers={"Content-Type": "application/json"})
    members = Harness().http().get_json(server.url + "/m", expect=EXPECT, members=True)
    assert isinstance(members, JsonMembers)
    read = list(members.items())
    objects: list[list[tuple[str, object]]] = []  # every object's pairs, the outermost last
    json.loads(text, object_pairs_hook=lambda pairs: objects.append(pairs) or dict(pairs))
    assert read == objects[-1] and members.keys == [key for key, _ in read]


@pytest.mark.parametrize("text", [
    '{"a": 1 "b": 2}', '{"a": 1,}', '{"a" 1}', '{"a": [1, 2}', '{"a": 1} trailing', '{"a": 1', '{"a": 1,', '{1: 2}',
])
def test_a_broken_member_fails_the_read_with_the_reason_json_loads_gives(server: FakeProviderServer, text: str):
    server.route("GET", "/m", body=text, headers={"Content-Type": "application/json"})
    whole = failure(lambda: Harness().http().get_json(server.url + "/m", expect=EXPECT))
    members = Harness().http().get_json(server.url + "/m", expect=EXPECT, members=True)
    assert failure(lambda: list(members.items())) == whole
    assert whole.startswith("expected a JSON object with `data`, got invalid JSON (")


def test_members_of_an_answer_that_is_no_object_are_its_parsed_value(server: FakeProviderServer):
    server.route("GET", "/m", body='  [1, {"a": 2}]', headers={"Content-Type": "application/json"})
    assert Harness().http().get_json(server.url + "/m", expect=EXPECT, members=True) == [1, {"a": 2}]
