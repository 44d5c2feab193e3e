"""Webhooks (docs/reference.md §9) against moto and real HTTP receivers on 127.0.0.1: the REST routes through
``chalice.test.Client``, signing checked with the reference ``standardwebhooks`` library, retries on a clock the
test moves, 410, the provider filter, replay, the attempt log, the relay's catch-up, EventBridge (moto) and the
asynchronous kick. The relay runs inline here (``webhook_kick``); the local stack runs it on a thread
(tests/e2e/test_webhooks_e2e.py)."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from chalice.test import Client
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from chalicelib.core.domain import Model
from chalicelib.events import LambdaKick, ThreadKick, WebhookChannel
from chalicelib.events._bus import MAX_DETAIL_BYTES, detail_text
from chalicelib.http import UrlGuard
from tests.conftest import FakeClock, wired
from tests.fakes.engine import FakeFetcher
from tests.fakes.webhook_receiver import WebhookReceiver

TOKEN = "test-token-webhooks"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
CONFIG = """
[model_catalog]
refresh_interval_ms = 0
refresh_on_start = false
webhook_retry_schedule_s = [1, 1]
webhook_disable_after_s = 3600

[[providers]]
id = "alpha"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[providers]]
id = "beta"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
"""


class World:
    """The app wired on moto, a fake fetcher, a clock starting now that the test moves, a REST client."""

    def __init__(self, container: Any, http: Any, fetcher: FakeFetcher, clock: FakeClock):
        self.container = container
        self.http = http
        self.fetcher = fetcher
        self.clock = clock
        self._models = {"alpha": [], "beta": []}

    def create(self, url: str, **fields: Any) -> dict[str, Any]:
        response = self.http.post("/api/v1/webhooks", headers=AUTH, body=json.dumps({"url": url, **fields}))
        assert response.status_code == 201, response.body
        return json.loads(response.body)

    def get(self, path: str) -> tuple[int, Any]:
        response = self.http.get(path, headers=AUTH)
        return response.status_code, json.loads(response.body or b"null")

    def change(self, provider_id: str = "alpha") -> dict[str, Any]:
        """Add a model to ``provider_id`` and refresh: one event."""
        self._models[provider_id].append(f"{provider_id}-{len(self._models[provider_id]) + 1}")
        self.fetcher.set(provider_id, *self._models[provider_id])
        result = self.container.service.refresh("all")
        assert [c["provider_id"] for c in result["changed"]] == [provider_id], result
        return result

    def event(self, seq: int) -> dict[str, Any]:
        _, epoch, _ = self.container.service.position()
        (message,) = self.container.journal.replay(epoch, seq - 1, seq)
        return message

    def tick(self) -> dict[str, Any]:
        return self.container.service.tick()


@pytest.fixture
def world(make_settings, dynamodb_client, tmp_path):
    settings = make_settings(
        CONFIG, MODEL_CATALOG_API_TOKEN=TOKEN, MODEL_CATALOG_LOCAL_KEY_FILE=str(tmp_path / "secrets.key")
    )
    fetcher = FakeFetcher()
    clock = FakeClock(time.time())
    container = wired(
        settings, dynamodb_client, fetcher_factory=fetcher, clock=clock, send=lambda *_: None,
        webhook_kick=lambda handle: handle,
    )
    import app

    with app.runtime.use(container), Client(app.app, project_dir=str(tmp_path)) as client:
        yield World(container, client.http, fetcher, clock)


@pytest.fixture
def receiver():
    with WebhookReceiver() as running:
        yield running


def verify(secret: str, request) -> dict[str, Any]:
    return Webhook(secret).verify(request.body, request.headers)


# --- management ---------------------------------------------------------------------------------------------


def test_create_shows_the_secret_once_and_stores_it_encrypted(world, receiver, dynamodb_client):
    created = world.create(receiver.url, description="billing", provider_ids=["beta", "alpha"])
    secret = created.pop("secret")
    assert secret.startswith("whsec_") and len(Webhook(secret)._whsecret) == 32
    assert created["id"].startswith("wh_")
    assert created == {
        "id": created["id"], "url": receiver.url, "description": "billing", "provider_ids": ["alpha", "beta"],
        "enabled": True, "created_at": created["created_at"],
        "deliveries": {"succeeded": 0, "failed": 0, "pending": 0}, "last_error": None,
        "failing_since": None, "disabled_reason": None,
    }
    status, listed = world.get("/api/v1/webhooks")
    assert status == 200 and listed == {"webhooks": [created]}
    assert world.get(f"/api/v1/webhooks/{created['id']}") == (200, created)
    stored = json.dumps(dynamodb_client.scan(TableName=world.container.settings.tables.webhooks)["Items"], default=str)
    assert secret not in stored and secret.removeprefix("whsec_") not in stored


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("not json", "invalid_request"),
        ("[1, 2]", "invalid_request"),
        ("{}", "invalid_request"),
        ('{"url": 5}', "invalid_request"),
        ('{"url": "http://127.0.0.1:1/", "colour": "red"}', "invalid_request"),
        ('{"url": "http://127.0.0.1:1/", "provider_ids": []}', "invalid_request"),
        ('{"url": "http://127.0.0.1:1/", "provider_ids": ["a b"]}', "invalid_request"),
        ('{"url": "http://127.0.0.1:1/", "description": 7}', "invalid_request"),
        ('{"url": "ftp://example.com/hook"}', "invalid_webhook_url"),
        ('{"url": "not a url"}', "invalid_webhook_url"),
    ],
)
def test_a_bad_body_is_refused_with_a_clear_error(world, body, code):
    response = world.http.post("/api/v1/webhooks", headers=AUTH, body=body)
    assert response.status_code == 400, response.body
    error = json.loads(response.body)["error"]
    assert error["code"] == code and error["message"]


def test_unknown_ids_answer_webhook_not_found(world):
    for method, path in [("get", "/api/v1/webhooks/wh_nope"), ("delete", "/api/v1/webhooks/wh_nope"),
                         ("get", "/api/v1/webhooks/wh_nope/attempts")]:
        response = getattr(world.http, method)(path, headers=AUTH)
        assert response.status_code == 404 and json.loads(response.body)["error"]["code"] == "webhook_not_found"
    response = world.http.post("/api/v1/webhooks/wh_nope/replay", headers=AUTH, body='{"since": 0}')
    assert response.status_code == 404


def test_the_routes_need_an_admin_token(world):
    assert world.http.get("/api/v1/webhooks").status_code == 401
    assert world.http.get("/api/v1/webhooks", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_delete_removes_the_endpoint_and_its_records(world, receiver, dynamodb_client):
    created = world.create(receiver.url)
    world.change()
    assert world.http.delete(f"/api/v1/webhooks/{created['id']}", headers=AUTH).status_code == 204
    assert world.get(f"/api/v1/webhooks/{created['id']}")[0] == 404
    items = dynamodb_client.scan(TableName=world.container.settings.tables.webhooks)["Items"]
    assert [item["pk"]["S"] for item in items] == ["relay"]


# --- delivery -----------------------------------------------------------------------------------------------


def test_a_change_is_delivered_signed_as_the_websocket_event(world, receiver):
    secret = world.create(receiver.url)["secret"]
    result = world.change()
    (request,) = receiver.wait_for(1)
    body = verify(secret, request)
    event = world.event(body["data"]["seq"])
    assert body == {"type": "model_catalog.changed", "timestamp": event["timestamp"], "data": event}
    assert body["data"]["payload"] == result and body["data"]["type"] == "event.model_catalog.changed"
    assert request.headers["webhook-id"] == f"msg_{event['epoch']}_{event['seq']}"
    assert abs(int(request.headers["webhook-timestamp"]) - world.clock.now) <= 1
    assert request.headers["webhook-signature"].startswith("v1,")
    assert request.headers["content-type"] == "application/json"
    tampered = request.body.replace(b'"added":[', b'"added":["evil",', 1)
    assert tampered != request.body
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, request.headers)
    with pytest.raises(WebhookVerificationError):  # another endpoint's secret does not verify it either
        Webhook(world.create(receiver.url)["secret"]).verify(request.body, request.headers)


def test_no_delivery_for_a_refresh_that_changed_nothing(world, receiver):
    world.create(receiver.url)
    world.change()
    receiver.wait_for(1)
    result = world.container.service.refresh("all")
    assert result["changed"] == []
    world.tick()
    assert len(receiver.requests()) == 1


def test_an_endpoint_gets_only_the_events_after_its_creation(world, receiver):
    world.change()
    world.create(receiver.url)
    world.clock.now += 60  # past the relay's grace: the tick would relay anything owed
    world.tick()
    assert receiver.requests() == []


def test_500_then_503_then_200_on_the_schedule_with_one_webhook_id(world, receiver):
    receiver.answers = [500, 503]
    created = world.create(receiver.url)
    world.change()
    assert len(receiver.wait_for(1)) == 1
    world.tick()  # not due yet: the schedule says 1 s
    assert len(receiver.requests()) == 1
    pending = world.get(f"/api/v1/webhooks/{created['id']}")[1]
    assert pending["deliveries"] == {"succeeded": 0, "failed": 0, "pending": 1}
    assert pending["last_error"] == "HTTP 500" and pending["failing_since"]
    world.clock.now += 1
    world.tick()
    world.clock.now += 1
    world.tick()
    requests = receiver.wait_for(3)
    assert [r.status for r in requests] == [500, 503, 200]
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert [int(r.headers["webhook-timestamp"]) - int(requests[0].headers["webhook-timestamp"]) for r in requests] \
        == [0, 1, 2]
    for request in requests:
        verify(created["secret"], request)
    done = world.get(f"/api/v1/webhooks/{created['id']}")[1]
    assert done["deliveries"] == {"succeeded": 1, "failed": 0, "pending": 0}
    assert done["last_error"] is None and done["failing_since"] is None
    attempts = world.get(f"/api/v1/webhooks/{created['id']}/attempts")[1]["attempts"]
    assert [(a["attempt"], a["status_code"], a["error"]) for a in attempts] == [
        (3, 200, None), (2, 503, "HTTP 503"), (1, 500, "HTTP 500")]
    assert {a["message_id"] for a in attempts} == {requests[0].headers["webhook-id"]}


def test_exhausted_retries_leave_the_message_failed(world, receiver):
    receiver.default = 500
    created = world.create(receiver.url)
    world.change()
    for _ in range(4):
        world.clock.now += 1
        world.tick()
    assert len(receiver.requests()) == 3  # the first attempt and the two of the schedule, no more
    webhook = world.get(f"/api/v1/webhooks/{created['id']}")[1]
    assert webhook["deliveries"] == {"succeeded": 0, "failed": 1, "pending": 0}
    assert webhook["enabled"] is True
    (last, *_) = world.get(f"/api/v1/webhooks/{created['id']}/attempts")[1]["attempts"]
    assert last["attempt"] == 3 and last["error"] == "HTTP 500; gave up after 3 attempts"


def test_retry_after_lengthens_a_delay(world, receiver):
    receiver.answers = [(429, {"Retry-After": "5"})]
    world.create(receiver.url)
    world.change()
    receiver.wait_for(1)
    world.clock.now += 1
    world.tick()
    assert len(receiver.requests()) == 1  # the schedule says 1 s, the endpoint asked for 5
    world.clock.now += 4
    world.tick()
    assert [r.status for r in receiver.wait_for(2)] == [429, 200]


def test_410_disables_the_endpoint(world, receiver):
    receiver.answers = [410]
    created = world.create(receiver.url)
    world.change()
    receiver.wait_for(1)
    webhook = world.get(f"/api/v1/webhooks/{created['id']}")[1]
    assert webhook["enabled"] is False and webhook["disabled_reason"] == "the endpoint answered 410 Gone"
    assert webhook["deliveries"] == {"succeeded": 0, "failed": 1, "pending": 0}
    world.change()
    world.clock.now += 5
    world.tick()
    assert len(receiver.requests()) == 1
    response = world.http.post(f"/api/v1/webhooks/{created['id']}/replay", headers=AUTH, body='{"since": 0}')
    assert response.status_code == 409 and json.loads(response.body)["error"]["code"] == "webhook_disabled"


def test_an_endpoint_failing_for_too_long_is_disabled_with_a_reason(world, receiver):
    receiver.default = 503
    created = world.create(receiver.url)
    world.change()
    receiver.wait_for(1)
    world.clock.now += 3600  # webhook_disable_after_s
    world.tick()
    webhook = world.get(f"/api/v1/webhooks/{created['id']}")[1]
    assert webhook["enabled"] is False
    assert webhook["disabled_reason"].startswith("every attempt failed since ")
    assert "more than 0.0416667 days" in webhook["disabled_reason"]


def test_the_provider_filter(world, receiver):
    with WebhookReceiver() as everything:
        only_beta = world.create(receiver.url, provider_ids=["beta"])
        world.create(everything.url)
        world.change("alpha")
        beta = world.change("beta")
        everything.wait_for(2)
        (request,) = receiver.wait_for(1)
        assert verify(only_beta["secret"], request)["data"]["payload"] == beta


def test_replay_delivers_again_with_the_same_ids(world, receiver):
    created = world.create(receiver.url, provider_ids=["alpha"])
    position, _, _ = world.container.service.position()
    world.change("alpha")
    world.change("beta")
    world.change("alpha")
    first = receiver.wait_for(2)
    response = world.http.post(f"/api/v1/webhooks/{created['id']}/replay", headers=AUTH,
                               body=json.dumps({"since": position}))
    assert response.status_code == 202, response.body
    replayed = json.loads(response.body)
    assert replayed["replayed"] == 2
    again = receiver.wait_for(4)[2:]  # sent concurrently: in any order
    assert sorted(r.headers["webhook-id"] for r in again) == sorted(r.headers["webhook-id"] for r in first)
    assert sorted(verify(created["secret"], r)["data"]["seq"] for r in again) == [position + 1, position + 3]
    assert world.get(f"/api/v1/webhooks/{created['id']}")[1]["deliveries"]["succeeded"] == 4
    for body in ('{"since": -1}', '{"since": "3"}', "{}", '{"since": true}'):
        bad = world.http.post(f"/api/v1/webhooks/{created['id']}/replay", headers=AUTH, body=body)
        assert bad.status_code == 400 and json.loads(bad.body)["error"]["code"] == "invalid_request", body


def test_a_lost_kick_is_relayed_by_the_tick_after_the_grace_period(world, receiver):
    created = world.create(receiver.url)
    lost: list[dict] = []
    world.container.publisher._channels = (WebhookChannel(lost.append),)  # the kick never runs
    world.change()
    assert lost and receiver.requests() == []
    world.tick()
    assert receiver.requests() == []  # still young: its own relay may be running
    world.clock.now += 31
    world.tick()
    (request,) = receiver.wait_for(1)
    verify(created["secret"], request)
    world.clock.now += 31
    world.tick()
    assert len(receiver.requests()) == 1  # relayed once: the cursor moved on


def test_a_relay_that_runs_twice_delivers_once(world, receiver):
    world.create(receiver.url)
    world.change()
    _, epoch, _ = world.container.service.position()
    receiver.wait_for(1)
    world.container.webhook_dispatcher.handle({"relay": {"epoch": epoch, "seq": 1}})
    world.clock.now += 60
    world.tick()
    assert len(receiver.requests()) == 1


def test_a_redirect_is_a_failed_attempt_not_followed(world):
    with WebhookReceiver(default=200) as target, WebhookReceiver() as redirecting:
        redirecting.answers = [(307, {"Location": target.url})]
        created = world.create(redirecting.url)
        world.change()
        redirecting.wait_for(1)
        assert target.requests() == []
        webhook = world.get(f"/api/v1/webhooks/{created['id']}")[1]
        assert webhook["last_error"] == f"HTTP 307: redirected to {target.url}; redirects are not followed"


def test_the_attempt_log_is_trimmed_by_count_never_below_the_newest_100(world, receiver):
    from chalicelib.storage.webhooks import TRIM_EVERY

    receiver.default = 500
    created = world.create(receiver.url)
    store = world.container.webhook_dispatcher._store
    for _ in range(7):
        world.change()
    for _ in range(40):
        world.clock.now += 1
        world.tick()
    endpoint = store.endpoint(created["id"])
    assert len(store.attempts(created["id"], limit=1000)) == 21  # 7 events × 3 attempts
    assert int(endpoint["attempts_since_trim"]) == 21 < TRIM_EVERY
    shown = world.get(f"/api/v1/webhooks/{created['id']}/attempts")[1]["attempts"]
    assert len(shown) == 21 and [a["at"] for a in shown] == sorted((a["at"] for a in shown), reverse=True)
    assert store.trim_attempts({**endpoint, "attempts_since_trim": TRIM_EVERY}, keep=5) == 16
    assert len(store.attempts(created["id"], limit=1000)) == 5


# --- URL rules at send time ---------------------------------------------------------------------------------


def test_dns_rebinding_to_a_private_address_is_refused_at_send(world, receiver):
    created = world.create(receiver.url.replace("127.0.0.1", "localhost"))

    def lying_resolver(host, port, *args):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]

    dispatcher = world.container.webhook_dispatcher
    dispatcher._guard = UrlGuard(allow_private=False, require_https=False, resolve=lying_resolver,
                                 subject="webhook URLs")
    world.change()
    assert receiver.requests() == []
    webhook = world.get(f"/api/v1/webhooks/{created['id']}")[1]
    assert webhook["last_error"].startswith("refused: localhost (127.0.0.1) is a loopback address, which webhook URLs")


def test_private_urls_are_refused_at_create_when_not_allowed(make_settings, dynamodb_client, tmp_path):
    settings = make_settings(CONFIG.replace("http://127.0.0.1:9/v1", "https://api.example.com/v1"),
                             MODEL_CATALOG_ALLOW_PRIVATE_URLS="0",
                             MODEL_CATALOG_LOCAL_KEY_FILE=str(tmp_path / "k"))
    service = wired(settings, dynamodb_client, webhook_kick=lambda handle: handle).webhooks
    from chalicelib.errors import InvalidWebhookUrl

    for url, why in [
        ("http://hooks.example.com/x", "does not use https://"),
        ("https://127.0.0.1/x", "127.0.0.1 is a loopback address"),
        ("https://10.1.2.3/x", "10.1.2.3 is a private address"),
        ("https://169.254.169.254/latest", "the cloud metadata address"),
        ("https://[::1]/x", "::1 is a loopback address"),
    ]:
        with pytest.raises(InvalidWebhookUrl) as refused:
            service.create({"url": url})
        assert why in refused.value.message, (url, refused.value.message)


# --- the kick, EventBridge ----------------------------------------------------------------------------------


def test_the_lambda_kick_is_one_asynchronous_invoke_naming_the_event():
    client = boto3.client("lambda", region_name="us-east-1")
    stubber = Stubber(client)
    expected = {"FunctionName": "model-catalog-webhook_dispatch", "InvocationType": "Event",
                "Payload": json.dumps({"relay": {"epoch": "e1", "seq": 7}}).encode()}
    stubber.add_response("invoke", {"StatusCode": 202}, expected)
    with stubber:
        WebhookChannel(LambdaKick(lambda: client, "model-catalog-webhook_dispatch")).broadcast(
            {"epoch": "e1", "seq": 7, "payload": {"changed": []}}
        )
    stubber.assert_no_pending_responses()


def test_the_thread_kick_runs_the_request_off_the_callers_thread():
    import threading

    ran = threading.Event()
    threads: list[str] = []

    def work(request):
        threads.append(threading.current_thread().name)
        ran.set()

    ThreadKick(work)({"due": True})
    assert ran.wait(5) and threads[0].startswith("webhook-relay-")


def test_every_event_goes_on_the_event_bus(make_settings, dynamodb_client, tmp_path):
    events = boto3.client("events", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    events.create_event_bus(Name="catalog-bus")
    queue_url = sqs.create_queue(QueueName="catalog-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all", EventBusName="catalog-bus",
                    EventPattern=json.dumps({"source": ["model-catalog"], "detail-type": ["model_catalog.changed"]}))
    events.put_targets(Rule="all", EventBusName="catalog-bus", Targets=[{"Id": "q", "Arn": queue_arn}])
    settings = make_settings(CONFIG, MODEL_CATALOG_EVENT_BUS="catalog-bus",
                             MODEL_CATALOG_LOCAL_KEY_FILE=str(tmp_path / "k"))
    fetcher = FakeFetcher()
    container = wired(settings, dynamodb_client, fetcher_factory=fetcher, send=lambda *_: None,
                      webhook_kick=lambda handle: handle)
    fetcher.catalog["alpha"] = [Model(provider_id="alpha", id="m1")]
    result = container.service.refresh("all")
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    (entry,) = [json.loads(m["Body"]) for m in messages]
    assert entry["source"] == "model-catalog" and entry["detail-type"] == "model_catalog.changed"
    _, epoch, _ = container.service.position()
    assert entry["detail"] == container.journal.replay(epoch, 0, 1)[0]
    assert entry["detail"]["payload"] == result


def test_a_huge_event_is_truncated_to_fit_eventbridge():
    from chalicelib.events import EventBusChannel

    huge = {"type": "event.model_catalog.changed", "seq": 1, "epoch": "e", "timestamp": "2026-01-01T00:00:00.000Z",
            "payload": {"revision": 1, "changed": [{"provider_id": "p", "provider_name": "p",
                                                    "added": [f"model-{i:06d}" for i in range(40_000)],
                                                    "removed": [], "updated": []}],
                        "unchanged": [], "failed": []}}
    assert len(detail_text(huge)) > MAX_DETAIL_BYTES
    entry = EventBusChannel(lambda: None, "b").entry(huge)
    detail = json.loads(entry["Detail"])
    assert len(entry["Detail"].encode()) <= MAX_DETAIL_BYTES and detail["truncated"] is True
    assert detail["payload"]["changed"][0]["added_count"] == 40_000


def test_negative_control_an_inline_relay_holds_the_refresh_up_a_kicked_one_does_not(world):
    """The control for tests/e2e/test_webhooks_load_e2e.py: were the relay on the request's path, a hanging
    endpoint would hold the refresh's answer up by its timeout; kicked onto a worker (as the stack runs it), not."""
    from dataclasses import replace

    dispatcher = world.container.webhook_dispatcher
    dispatcher.options = replace(dispatcher.options, timeout_s=1.0)
    with WebhookReceiver(hang=True) as hanging:
        world.create(hanging.url)
        started = time.perf_counter()
        world.change()  # this world runs the relay inline
        inline = time.perf_counter() - started
        world.container.publisher._channels = (WebhookChannel(ThreadKick(dispatcher.handle)),)
        started = time.perf_counter()
        world.change()
        kicked = time.perf_counter() - started
        hanging.wait_for(2)
    assert inline >= 1.0 > kicked, (inline, kicked)


# --- the published JSON Schema of the event (docs/event.schema.json) ------------------------------------------


def _event_validator(definition: str | None = None):
    import sys

    from jsonschema import Draft202012Validator

    from tests.conftest import REPO

    sys.path.insert(0, str(REPO / "infra"))
    import event_schema

    schema = json.loads(event_schema.SCHEMA_FILE.read_text())
    assert schema == event_schema.build(), "docs/event.schema.json is out of date: python infra/event_schema.py"
    Draft202012Validator.check_schema(schema)
    if definition:
        schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_real_messages_of_every_channel_validate_against_the_published_schema(world, receiver):
    from chalicelib.events import EventBusChannel

    world.create(receiver.url)
    world.change("alpha")
    world.fetcher.catalog["beta"] = RuntimeError("boom")  # a failed provider in the payload too
    world.change("alpha")
    validator = _event_validator()
    event: dict = {}
    for request in receiver.wait_for(2):
        body = json.loads(request.body)
        _event_validator("WebhookMessage").validate(body)
        validator.validate(body["data"])
        event = body["data"]
    validator.validate(json.loads(EventBusChannel(lambda: None, "b").entry(event)["Detail"]))
    huge = {**event, "payload": {**event["payload"], "changed": [
        {"provider_id": "p", "provider_name": "p", "added": [f"m-{i:06d}" for i in range(40_000)], "removed": [],
         "updated": []}]}}
    cut = json.loads(EventBusChannel(lambda: None, "b").entry(huge)["Detail"])
    assert cut["truncated"] is True
    validator.validate(cut)
    # The schema is closed: a message that drifted from it fails.
    for drifted in ({**event, "extra": 1}, {k: v for k, v in event.items() if k != "seq"},
                    {**event, "payload": {**event["payload"], "changed": [{"provider_id": "p"}]}},
                    {**event, "timestamp": "yesterday"}):
        assert not validator.is_valid(drifted), drifted


def test_relays_that_finish_out_of_order_are_not_relayed_again(world, receiver):
    class Bus:
        def __init__(self):
            self.seqs: list[int] = []

        def broadcast(self, message):
            self.seqs.append(message["seq"])

    bus = Bus()
    dispatcher = world.container.webhook_dispatcher
    dispatcher._bus = bus
    world.create(receiver.url)
    kicks: list[dict] = []
    world.container.publisher._channels = (WebhookChannel(kicks.append),)
    world.change()
    world.change()
    first, second = kicks
    dispatcher.handle(second)  # the later event's relay finishes first: the cursor cannot pass it yet
    dispatcher.handle(first)
    _, epoch, _ = world.container.service.position()
    store = dispatcher._store
    assert store.relayed(epoch) == first["relay"]["seq"]
    world.clock.now += 60
    world.tick()
    assert store.relayed(epoch) == second["relay"]["seq"]
    assert sorted(bus.seqs) == [first["relay"]["seq"], second["relay"]["seq"]]  # each put on the bus once
    assert len(receiver.wait_for(2)) == 2
