"""The pure webhook rules (chalicelib/core/webhooks.py): signatures the reference library accepts, the filter, the
retry delays; and the config keys of docs/reference.md §9."""

from __future__ import annotations

import base64
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from chalicelib.core.webhooks import (
    format_secret,
    is_after,
    message_id,
    next_delay,
    secret_key,
    signed_headers,
    wants,
    webhook_body,
)
from chalicelib.errors import ConfigError

EVENT = {"type": "event.model_catalog.changed", "seq": 7, "epoch": "e1", "timestamp": "2026-11-30T05:00:00.000Z",
         "payload": {"revision": 3, "changed": [{"provider_id": "openai", "provider_name": "OpenAI",
                                                 "added": ["gpt-5 ✓"], "removed": [], "updated": []}],
                     "unchanged": [], "failed": []}}


def test_the_reference_library_verifies_what_we_sign_and_refuses_a_tampered_body():
    key = bytes(range(32))
    secret = format_secret(key)
    assert secret == "whsec_" + base64.b64encode(key).decode() and secret_key(secret) == key
    body = webhook_body(EVENT)
    headers = signed_headers(key, message_id("e1", 7), int(time.time()), body)
    assert headers["webhook-id"] == "msg_e1_7"
    assert json.loads(body) == {"type": "model_catalog.changed", "timestamp": EVENT["timestamp"], "data": EVENT}
    assert Webhook(secret).verify(body, headers)["data"] == EVENT
    for forged in (body.replace(b"gpt-5", b"gpt-6"), body + b" "):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(forged, headers)
    with pytest.raises(WebhookVerificationError):  # another id, same body and signature
        Webhook(secret).verify(body, {**headers, "webhook-id": "msg_e1_8"})
    stale = signed_headers(key, "msg_e1_7", int(time.time()) - 3600, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, stale)


@pytest.mark.parametrize("bad", ["abc", "whsec_", "whsec_!!!", "whsec_YWJj===="])
def test_a_malformed_secret_is_refused(bad):
    with pytest.raises(ValueError):
        secret_key(bad)


def test_the_provider_filter_and_truncated_events():
    assert wants(None, EVENT) and wants(["openai", "x"], EVENT) and not wants(["anthropic"], EVENT)
    cut = {**EVENT, "payload": {"revision": 3, "truncated": True, "changed": [], "changed_count": 1}}
    assert wants(["anthropic"], cut)  # it no longer says which providers changed: delivered to everyone


def test_an_endpoint_gets_only_what_came_after_it():
    assert not is_after(("e1", 7), "e1", 7) and is_after(("e1", 7), "e1", 8) and is_after(("e1", 9), "e2", 1)


def test_retry_delays_follow_the_schedule_and_retry_after_only_lengthens_them():
    schedule = (5, 300)
    assert [next_delay(schedule, n, None, 86400) for n in (1, 2, 3)] == [5, 300, None]
    assert next_delay(schedule, 1, 1, 86400) == 5
    assert next_delay(schedule, 1, 60, 86400) == 60
    assert next_delay(schedule, 1, 10**9, 86400) == 86400


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ("webhook_retry_schedule_s = [5, -1]", "webhook_retry_schedule_s[1]"),
        ("webhook_retry_schedule_s = [5, \"1\"]", "webhook_retry_schedule_s[1]"),
        ("webhook_retry_schedule_s = 5", "webhook_retry_schedule_s"),
        ("webhook_retry_schedule_s = [1000000]", "webhook_retry_schedule_s[0]"),
        ("webhook_disable_after_s = 10", "webhook_disable_after_s"),
        ("webhook_concurrency = 0", "webhook_concurrency"),
    ],
)
def test_bad_webhook_config_is_a_startup_error_naming_the_key(make_settings, toml, problem):
    with pytest.raises(ConfigError) as error:
        make_settings(f"[model_catalog]\n{toml}\n")
    assert f"model_catalog.{problem}" in str(error.value)


def test_webhook_config_defaults_and_values(make_settings):
    options = make_settings("").config.model_catalog
    assert options.webhook_retry_schedule_s == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert options.webhook_disable_after_s == 5 * 24 * 3600
    custom = make_settings("[model_catalog]\nwebhookRetryScheduleS = [1, 1]\n").config.model_catalog
    assert custom.webhook_retry_schedule_s == [1, 1]
    assert make_settings("[model_catalog]\nwebhook_retry_schedule_s = []\n").options.webhook_retry_schedule_s == []
