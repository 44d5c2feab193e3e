"""managed_oauth: token storage (DynamoDB + KMS/local cipher), reuse, rotation, invalid_grant, races."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.catalog_config import ProviderConfig
from chalicelib.ciphers import KmsCipher, LocalCipher, TokenDecryptError
from chalicelib.errors import ProviderError
from chalicelib.oauth import (
    GrantRejected,
    OAuthSession,
    OAuthTokenStore,
    TokenGrant,
    TokenRecord,
    TokenStoreError,
)
from chalicelib.providers import ProviderFetcher
from chalicelib.providers.managed_oauth import parse_grant
from chalicelib.settings import TableNames
from devstack.tables import create_tables
from tests.conftest import FakeClock
from tests.fakes import FakeProviderServer, fixture_json

TABLE = TableNames().catalog
SEED = "rt-1-seed-from-env-abcdef"


class AtomicDynamo:
    """moto's conditional writes are not atomic across threads; DynamoDB's are. This gives moto that guarantee."""

    def __init__(self, client: Any):
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)

        return locked


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(dynamodb, TableNames())
        kms = boto3.client("kms", region_name="us-east-1")
        key_id = kms.create_key(Description="oauth tokens")["KeyMetadata"]["KeyId"]
        yield {"dynamodb": dynamodb, "kms": kms, "key_id": key_id}


@pytest.fixture
def store(aws) -> OAuthTokenStore:
    return OAuthTokenStore(AtomicDynamo(aws["dynamodb"]), TABLE, KmsCipher(aws["kms"], aws["key_id"]))


@pytest.fixture
def server() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as fake:
        fake.route("GET", "/v1/models", json=fixture_json("openai_models.json"))
        yield fake




def provider(server: FakeProviderServer, **extra: Any) -> ProviderConfig:
    return ProviderConfig.model_validate(
        {
            "id": "corp",
            "kind": "managed_oauth",
            "base_url": server.url + "/v1",
            "token_url": server.url + "/oauth/token",
            "client_id": "catalog-client",
            "refresh_token_env": "CORP_REFRESH_TOKEN",
            **extra,
        }
    )


def grant(access: str, refresh: str | None, expires_in: int = 1) -> tuple[int, dict, None]:
    body = {"access_token": access, "token_type": "Bearer", "expires_in": expires_in}
    if refresh:
        body["refresh_token"] = refresh
    return 200, body, None


def fetch(settings, store, config: ProviderConfig, clock=time.time, deadline_s: float = 5.0):
    with ProviderFetcher(settings, store, wall_clock=clock, sleep=lambda _s: None) as fetcher:
        return fetcher.fetch(config, time.monotonic() + deadline_s)


# ----------------------------------------------------------------------------------------- rotation


def test_rotation_across_three_refreshes_with_quickly_expiring_access_tokens(make_settings, aws, store, server, logs):
    server.route(
        "POST",
        "/oauth/token",
        responses=[grant("at-1", "rt-2"), grant("at-2", "rt-3"), grant("at-3", "rt-4"), (500, {}, None)],
    )
    settings = make_settings("", CORP_REFRESH_TOKEN=SEED)
    config = provider(server, scope="models.read")
    clock = FakeClock()

    assert [m["id"] for m in fetch(settings, store, config, clock)] == [
        "gpt-4-0613",
        "gpt-4o-mini",
        "text-embedding-3-small",
    ]
    clock.now += 0.2  # expires_in 1: still valid (with half its lifetime as margin) → reused, no token call
    fetch(settings, store, config, clock)
    for _ in range(2):
        clock.now += 2  # expired → the stored (rotated) refresh token is spent
        fetch(settings, store, config, clock)

    posts = [r.form() for r in server.requests("/oauth/token")]
    assert posts == [
        {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": "catalog-client", "scope": "models.read"}
        for refresh in (SEED, "rt-2", "rt-3")
    ]
    bearers = [r.headers["authorization"] for r in server.requests("/v1/models")]
    assert bearers == ["Bearer at-1", "Bearer at-1", "Bearer at-2", "Bearer at-3"]

    record = store.load("corp")
    assert (record.refresh_token, record.access_token) == ("rt-4", "at-3")
    raw = aws["dynamodb"].get_item(TableName=TABLE, Key={"pk": {"S": "OAUTH#corp"}, "sk": {"S": "TOKEN"}})["Item"]
    stored = repr(raw).encode()
    for secret in (b"rt-4", b"at-3", SEED.encode()):
        assert secret not in stored  # encrypted at rest
    for line in logs:
        for secret in (SEED, "rt-2", "rt-3", "rt-4", "at-1", "at-2", "at-3"):
            assert secret not in line


def test_a_long_lived_access_token_is_reused_until_a_minute_before_expiry(make_settings, store, server):
    server.route("POST", "/oauth/token", responses=[grant("at-1", "rt-2", 3600), grant("at-2", "rt-3", 3600)])
    settings = make_settings("", CORP_REFRESH_TOKEN=SEED)
    clock = FakeClock()
    fetch(settings, store, provider(server), clock)
    clock.now += 3600 - 61
    fetch(settings, store, provider(server), clock)
    assert len(server.requests("/oauth/token")) == 1
    clock.now += 2  # now within 60 s of expiry
    fetch(settings, store, provider(server), clock)
    assert len(server.requests("/oauth/token")) == 2


def test_a_server_that_does_not_rotate_keeps_the_refresh_token(make_settings, store, server):
    server.route("POST", "/oauth/token", responses=[grant("at-1", None), grant("at-2", None)])
    settings = make_settings("", CORP_REFRESH_TOKEN=SEED)
    clock = FakeClock()
    fetch(settings, store, provider(server), clock)
    clock.now += 5
    fetch(settings, store, provider(server), clock)
    assert [r.form()["refresh_token"] for r in server.requests("/oauth/token")] == [SEED, SEED]


def test_an_access_token_revoked_early_is_renewed_once(make_settings, store, server):
    server.route("POST", "/oauth/token", responses=[grant("at-1", "rt-2", 3600), grant("at-2", "rt-3", 3600)])
    server.route(
        "GET", "/v1/models", responses=[(401, {"error": "expired"}, None), (200, {"data": [{"id": "m"}]}, None)]
    )
    models = fetch(make_settings("", CORP_REFRESH_TOKEN=SEED), store, provider(server), FakeClock())
    assert [m["id"] for m in models] == ["m"]
    assert [r.headers["authorization"] for r in server.requests("/v1/models")] == ["Bearer at-1", "Bearer at-2"]


# -------------------------------------------------------------------------------------- sign in again


def test_invalid_grant_says_sign_in_again_until_a_new_refresh_token_is_given(make_settings, store, server, logs):
    server.route("POST", "/oauth/token", status=400, json=fixture_json("errors/oauth_token_invalid_grant"))
    settings = make_settings("", CORP_REFRESH_TOKEN=SEED)
    expected = (
        "sign in again: the refresh token was rejected (invalid_grant); put a new refresh token in CORP_REFRESH_TOKEN"
    )
    for _ in range(2):
        with pytest.raises(ProviderError) as caught:
            fetch(settings, store, provider(server))
        assert caught.value.reason == expected
    assert len(server.requests("/oauth/token")) == 1  # the rejected token is not tried again
    assert server.requests("/v1/models") == []

    server.route("POST", "/oauth/token", responses=[grant("at-new", "rt-new", 3600)])
    signed_in_again = make_settings("", CORP_REFRESH_TOKEN="rt-after-sign-in")
    assert len(fetch(signed_in_again, store, provider(server))) == 3
    assert server.requests("/oauth/token")[-1].form()["refresh_token"] == "rt-after-sign-in"
    assert all(SEED not in line for line in logs)


def test_missing_refresh_token_env_fails_without_network(make_settings, store, server):
    with pytest.raises(ProviderError) as caught:
        fetch(make_settings(""), store, provider(server))
    assert caught.value.reason == "CORP_REFRESH_TOKEN is not set: sign in and put the refresh token there"
    assert server.requests() == []


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (
            400,
            fixture_json("errors/oauth_device_pending"),
            "the token endpoint refused the refresh (authorization_pending)",
        ),
        (401, {"error": "invalid_client"}, "the token endpoint rejected the client (invalid_client); check client_id"),
        (
            200,
            fixture_json("errors/oauth_device_authorization"),
            "expected a JSON object with `access_token`, got a JSON object with keys device_code, user_code, "
            "verification_uri, verification_uri_complete, expires_in, interval",
        ),
    ],
)
def test_other_token_endpoint_answers(make_settings, store, server, status, body, reason):
    server.route("POST", "/oauth/token", status=status, json=body)
    with pytest.raises(ProviderError) as caught:
        fetch(make_settings("", CORP_REFRESH_TOKEN=SEED), store, provider(server))
    assert caught.value.reason == reason
    assert store.load("corp").lease_owner is None  # the lease was released for the next run


def test_rfc_success_response_parses():
    assert parse_grant(fixture_json("errors/oauth_token_success")) == TokenGrant(
        access_token="2YotnFZFEjr1zCsicMWpAA", expires_in=3600.0, refresh_token="tGzv3JOkF0XG5Qx2TlKWIA"
    )
    with pytest.raises(GrantRejected):
        parse_grant({"error": "invalid_grant"})  # an error sent with HTTP 200


def test_managed_oauth_without_a_token_store_is_a_clear_failure(make_settings, server):
    with pytest.raises(ProviderError, match="OAuth token storage is not configured"):
        fetch(make_settings("", CORP_REFRESH_TOKEN=SEED), None, provider(server))


# --------------------------------------------------------------------------------------------- races


def test_two_racing_refreshes_spend_the_refresh_token_once(make_settings, store, server):
    server.route(
        "POST", "/oauth/token", responses=[grant("at-1", "rt-2", 3600), grant("at-X", "rt-X", 3600)], delay=0.4
    )
    settings = make_settings("", CORP_REFRESH_TOKEN=SEED)
    config = provider(server)
    store.put(TokenRecord("corp", 1, refresh_token=SEED, seed_fingerprint=_fp(SEED)), None)
    start = threading.Barrier(2)

    def run(_: int):
        start.wait()
        with ProviderFetcher(settings, store) as fetcher:  # two fetchers: two processes sharing the table
            return fetcher.fetch(config, time.monotonic() + 5)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, range(2)))
    assert [len(r) for r in results] == [3, 3]
    assert [r.form()["refresh_token"] for r in server.requests("/oauth/token")] == [SEED]
    assert [r.headers["authorization"] for r in server.requests("/v1/models")] == ["Bearer at-1"] * 2
    assert store.load("corp").refresh_token == "rt-2"


def test_the_loser_of_a_claim_uses_the_winners_tokens(store):
    """Deterministic interleaving: B refreshes between A's read and claim; A's claim fails, A reuses B's token."""
    store.put(TokenRecord("corp", 1, refresh_token=SEED, seed_fingerprint=_fp(SEED)), None)
    spent: list[str] = []

    def grant_once(refresh_token: str) -> TokenGrant:
        spent.append(refresh_token)
        return TokenGrant(
            access_token=f"at-for-{refresh_token}", expires_in=3600, refresh_token=f"next-{refresh_token}"
        )

    def session(store_: Any) -> OAuthSession:
        return OAuthSession(
            store_, "corp", refresh_token_env="E", read_seed=lambda: SEED, grant=grant_once, time_left=lambda: 5.0
        )

    class InterleavingStore:
        def __init__(self) -> None:
            self.first_put = True

        def load(self, provider_id: str):
            return store.load(provider_id)

        def put(self, record: TokenRecord, expected: int | None) -> bool:
            if self.first_put:
                self.first_put = False
                assert session(store).access_token() == f"at-for-{SEED}"  # B wins the race
            return store.put(record, expected)

    assert session(InterleavingStore()).access_token() == f"at-for-{SEED}"
    assert spent == [SEED]
    assert store.load("corp").refresh_token == f"next-{SEED}"


# -------------------------------------------------------------------------------------------- ciphers


def test_kms_cipher_binds_the_provider_id(aws):
    cipher = KmsCipher(aws["kms"], aws["key_id"])
    blob = cipher.encrypt(b"token", "corp")
    assert b"token" not in blob
    assert cipher.decrypt(blob, "corp") == b"token"
    with pytest.raises(TokenDecryptError, match="KMS could not decrypt"):
        cipher.decrypt(blob, "other-provider")


def test_local_cipher_creates_a_private_key_file_once(tmp_path: Path):
    key_file = tmp_path / "state" / "oauth.key"
    first = LocalCipher(key_file)
    blob = first.encrypt(b"refresh-token", "corp")
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert b"refresh-token" not in blob
    assert LocalCipher(key_file).decrypt(blob, "corp") == b"refresh-token"  # the same key, read back
    with pytest.raises(TokenDecryptError):
        first.decrypt(blob, "other-provider")
    with pytest.raises(TokenDecryptError):
        LocalCipher(tmp_path / "another.key").decrypt(blob, "corp")


def test_token_store_with_the_local_cipher_and_version_conditions(aws, tmp_path: Path):
    local = OAuthTokenStore(aws["dynamodb"], TABLE, LocalCipher(tmp_path / "k"))
    assert local.load("corp") is None
    assert local.put(TokenRecord("corp", 1, refresh_token="rt", access_token="at", access_expires_at=5.0), None)
    assert not local.put(TokenRecord("corp", 1, refresh_token="other"), None)  # exists already
    assert not local.put(TokenRecord("corp", 3, refresh_token="other"), 2)  # stale version
    assert local.put(TokenRecord("corp", 2, refresh_token="rt2"), 1)
    loaded = local.load("corp")
    assert (loaded.version, loaded.refresh_token, loaded.access_token) == (2, "rt2", None)
    kms_store = OAuthTokenStore(aws["dynamodb"], TABLE, KmsCipher(aws["kms"], aws["key_id"]))
    unreadable = kms_store.load("corp")
    assert unreadable.decrypt_error == "the stored token was encrypted with the local cipher, this service uses kms"
    assert (unreadable.version, unreadable.refresh_token) == (2, None)


def test_undecryptable_tokens_need_and_accept_a_new_sign_in(make_settings, aws, store, server, tmp_path: Path):
    other_key = OAuthTokenStore(aws["dynamodb"], TABLE, LocalCipher(tmp_path / "lost.key"))
    other_key.put(TokenRecord("corp", 1, refresh_token=SEED, seed_fingerprint=_fp(SEED)), None)
    with pytest.raises(ProviderError) as caught:
        fetch(make_settings("", CORP_REFRESH_TOKEN=SEED), store, provider(server))
    assert caught.value.reason == (
        "the stored token was encrypted with the local cipher, this service uses kms; "
        "sign in again (put a new refresh token in CORP_REFRESH_TOKEN)"
    )
    server.route("POST", "/oauth/token", responses=[grant("at-1", "rt-2", 3600)])
    assert len(fetch(make_settings("", CORP_REFRESH_TOKEN="rt-fresh"), store, provider(server))) == 3
    assert server.requests("/oauth/token")[0].form()["refresh_token"] == "rt-fresh"


def _fp(token: str) -> str:
    from chalicelib.oauth import fingerprint

    return fingerprint(token)


# ------------------------------------------------------------------- a rotation survives failed writes


class FlakyStore:
    """The real store, whose writes of records holding ``token`` fail (``TokenStoreError``) the first ``failures``
    times — after reaching DynamoDB when ``applied`` (a lost response). Without ``memory`` it offers no place to
    keep an unsaved rotation (the store before issue 12)."""

    def __init__(self, store: OAuthTokenStore, token: str, failures: int, applied: bool = False, memory: bool = True):
        self.store, self.token, self.failures, self.applied = store, token, failures, applied
        self.attempts = 0
        if memory:
            self.remember_unsaved = store.remember_unsaved
            self.unsaved = store.unsaved
            self.forget_unsaved = store.forget_unsaved

    def load(self, provider_id: str) -> TokenRecord | None:
        return self.store.load(provider_id)

    def put(self, record: TokenRecord, expected: int | None) -> bool:
        if record.refresh_token == self.token and self.attempts < self.failures:
            self.attempts += 1
            if self.applied:
                self.store.put(record, expected)
            raise TokenStoreError("could not store the OAuth token (InternalServerError)")
        return self.store.put(record, expected)


def rotating_server(server: FakeProviderServer) -> None:
    """The token endpoint rotates once (SEED → rt-2); spending SEED again is refused, as real servers do."""
    server.route("POST", "/oauth/token", responses=[grant("at-1", "rt-2", 3600),
                                                    (400, {"error": "invalid_grant"}, None)])


def test_a_rotation_survives_failed_writes_of_the_rotated_token(make_settings, store, server, logs):
    rotating_server(server)
    flaky = FlakyStore(store, "rt-2", failures=3)
    assert len(fetch(make_settings("", CORP_REFRESH_TOKEN=SEED), flaky, provider(server))) == 3
    assert flaky.attempts == 3 and store.load("corp").refresh_token == "rt-2"
    assert [r.form()["refresh_token"] for r in server.requests("/oauth/token")] == [SEED]
    assert sum("storing the rotated OAuth token failed; retrying" in line for line in logs) == 3


def test_a_lost_answer_to_the_rotation_write_is_recognized(make_settings, store, server):
    rotating_server(server)
    flaky = FlakyStore(store, "rt-2", failures=1, applied=True)  # written, but the caller saw an error
    assert len(fetch(make_settings("", CORP_REFRESH_TOKEN=SEED), flaky, provider(server))) == 3
    record = store.load("corp")
    assert (record.refresh_token, record.access_token, record.lease_owner) == ("rt-2", "at-1", None)


def test_a_rotation_that_cannot_be_stored_now_is_kept_and_stored_by_the_next_refresh(make_settings, store, server):
    from chalicelib.oauth._session import ROTATION_WRITE_ATTEMPTS

    rotating_server(server)
    settings = make_settings("", CORP_REFRESH_TOKEN=SEED)
    flaky = FlakyStore(store, "rt-2", failures=ROTATION_WRITE_ATTEMPTS)  # the store is down for the whole budget
    with pytest.raises(ProviderError) as caught:
        fetch(settings, flaky, provider(server))
    assert caught.value.reason.endswith("the renewed token is kept and stored at the next refresh")
    assert "rt-2" not in caught.value.reason and store.load("corp").refresh_token == SEED  # spent, not replaced yet
    # The store is back: the next refresh in this process stores the kept tokens first, and uses them.
    assert len(fetch(settings, flaky, provider(server))) == 3
    assert store.load("corp").refresh_token == "rt-2" and store.unsaved("corp") is None
    assert [r.form()["refresh_token"] for r in server.requests("/oauth/token")] == [SEED]  # never spent twice


def test_negative_control_without_retries_or_memory_a_failed_write_strands_the_user(
    make_settings, store, server, monkeypatch
):
    import chalicelib.oauth._session as session_module

    monkeypatch.setattr(session_module, "ROTATION_WRITE_ATTEMPTS", 1)
    rotating_server(server)
    settings = make_settings("", CORP_REFRESH_TOKEN=SEED)
    clock = FakeClock()
    flaky = FlakyStore(store, "rt-2", failures=1, memory=False)
    with pytest.raises(ProviderError):
        fetch(settings, flaky, provider(server), clock)
    clock.now += 3_600  # the dead session's lease expires; the next refresh spends the stored (spent) token
    with pytest.raises(ProviderError) as caught:
        fetch(settings, flaky, provider(server), clock)
    assert caught.value.reason.startswith("sign in again")
    assert [r.form()["refresh_token"] for r in server.requests("/oauth/token")] == [SEED, SEED]


class ThrottlingKms:
    """KMS answering ThrottlingException to the first ``throttled`` Encrypt calls."""

    def __init__(self, kms: Any, throttled: int):
        self._kms, self.throttled, self.calls = kms, throttled, 0

    def encrypt(self, **request: Any) -> Any:
        from botocore.exceptions import ClientError

        self.calls += 1
        if self.calls <= self.throttled:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "Encrypt")
        return self._kms.encrypt(**request)

    def decrypt(self, **request: Any) -> Any:
        return self._kms.decrypt(**request)


def test_kms_throttling_while_encrypting_the_rotated_token_is_retried(make_settings, aws, server):
    rotating_server(server)
    sleeps: list[float] = []
    kms = ThrottlingKms(aws["kms"], throttled=4)
    throttled = OAuthTokenStore(AtomicDynamo(aws["dynamodb"]), TABLE,
                                KmsCipher(kms, aws["key_id"], sleep=sleeps.append))
    assert len(fetch(make_settings("", CORP_REFRESH_TOKEN=SEED), throttled, provider(server))) == 3
    assert throttled.load("corp").refresh_token == "rt-2"
    assert len(sleeps) == 4 and all(0 < s <= 2.0 for s in sleeps)


def test_negative_control_kms_throttling_without_retries_fails_the_write(aws):
    kms = ThrottlingKms(aws["kms"], throttled=1)
    no_retries = OAuthTokenStore(aws["dynamodb"], TABLE, KmsCipher(kms, aws["key_id"], attempts=1))
    with pytest.raises(TokenStoreError, match=r"could not encrypt the OAuth token \(ThrottlingException\)"):
        no_retries.put(TokenRecord("corp", 1, refresh_token="rt"), None)


def test_tokens_never_appear_in_repr():
    record = TokenRecord("corp", 1, refresh_token="rt-secret-1", access_token="at-secret-1")
    grant_ = TokenGrant(access_token="at-secret-2", refresh_token="rt-secret-2")
    for text in (repr(record), repr(grant_)):
        assert "secret" not in text
