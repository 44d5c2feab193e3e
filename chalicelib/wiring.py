"""The one place that wires dependencies. Everything is built lazily on first use and cached per
process (a warm Lambda reuses it), so ``import app`` creates no AWS client and touches no network.
"""

from __future__ import annotations

import threading
import time
from functools import cache, lru_cache
from typing import Any

from chalicelib.settings import Settings, get_settings

_lock = threading.RLock()
_websocket_api: Any = None
_token_cache: dict[str, Any] = {}


def settings() -> Settings:
    return get_settings()


@lru_cache(maxsize=1)
def boto_session() -> Any:
    import boto3

    return boto3.session.Session(region_name=settings().region)


def _client_config() -> Any:
    from botocore.config import Config

    # Short timeouts and standard retries (with throttling backoff) keep a run well inside its deadline.
    return Config(
        connect_timeout=3,
        read_timeout=10,
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=64,
    )


@cache
def client(service_name: str) -> Any:
    with _lock:
        endpoint = settings().dynamodb_endpoint if service_name == "dynamodb" else None
        return boto_session().client(service_name, endpoint_url=endpoint, config=_client_config())


def dynamodb() -> Any:
    return client("dynamodb")


@lru_cache(maxsize=1)
def store() -> Any:
    from chalicelib.store import CatalogStore

    return CatalogStore(dynamodb(), settings().tables.catalog)


@lru_cache(maxsize=1)
def lock() -> Any:
    from chalicelib.lock import LeaseLock

    return LeaseLock(dynamodb(), settings().tables.locks)


@lru_cache(maxsize=1)
def token_store() -> Any:
    from chalicelib.ciphers import KmsCipher, LocalCipher
    from chalicelib.oauth import OAuthTokenStore

    current = settings()
    if current.kms_key_id:
        cipher: Any = KmsCipher(client("kms"), current.kms_key_id)
    else:
        from pathlib import Path

        cipher = LocalCipher(current.local_key_file or Path(".local/state/oauth.key"))
    return OAuthTokenStore(dynamodb(), current.tables.catalog, cipher)


def fetcher() -> Any:
    """A new fetcher per run (it owns that run's HTTP session)."""
    from chalicelib.providers import ProviderFetcher
    from chalicelib.secrets import SecretResolver

    secrets = SecretResolver.from_settings(
        settings(), ssm_client=lambda: client("ssm"), secretsmanager_client=lambda: client("secretsmanager")
    )
    return ProviderFetcher(settings(), token_store(), secrets=secrets)


@lru_cache(maxsize=1)
def connections() -> Any:
    from chalicelib.connections import ConnectionStore

    return ConnectionStore(dynamodb(), settings().tables.connections)


@lru_cache(maxsize=1)
def journal() -> Any:
    from chalicelib.events import EventJournal

    return EventJournal(dynamodb(), settings().tables.events)


@lru_cache(maxsize=1)
def publisher() -> Any:
    from chalicelib.events import EventPublisher, Fanout

    return EventPublisher(journal(), Fanout(connections(), websocket_send))


@lru_cache(maxsize=1)
def engine() -> Any:
    from chalicelib.refresh import RefreshEngine

    return RefreshEngine(settings(), store(), lock(), fetcher, publisher(), settings().tables.events)


@lru_cache(maxsize=1)
def service() -> Any:
    from chalicelib.service import CatalogService

    return CatalogService(settings(), store(), lock(), engine(), publish_pending=publisher().publish_pending)


@lru_cache(maxsize=1)
def websocket_handlers() -> Any:
    from chalicelib.websocket import WebsocketHandlers

    return WebsocketHandlers(
        token_check=lambda presented: _token_matches(presented),
        connections=connections(),
        journal=journal(),
        position=lambda: service().position(),
        send=websocket_send,
    )


def _token_matches(presented: str | None) -> bool:
    from chalicelib.auth import token_matches

    return token_matches(presented, api_token())


# -- WebSocket management API ---------------------------------------------------------------
def use_websocket_api(websocket_api: Any) -> None:
    """app.py hands over ``app.websocket_api``; it is configured on first send, not at import."""
    global _websocket_api
    _websocket_api = websocket_api


def _configured_websocket_api() -> Any:
    global _websocket_api
    current = settings()
    with _lock:
        if _websocket_api is None:  # outside the app (the CLI's tick): Chalice's own client class
            from chalice.app import WebsocketAPI

            _websocket_api = WebsocketAPI()
        api = _websocket_api
        if current.ws_management_endpoint:
            # The local gateway speaks plain http; Chalice's configure() only builds https endpoints,
            # and its WS handlers call configure_from_api_id() (a no-op once an endpoint is set).
            if api._endpoint != current.ws_management_endpoint:
                api._endpoint = current.ws_management_endpoint
                api._client = None
        elif api._endpoint is None:
            if not current.ws_api_id:
                raise RuntimeError("MODEL_CATALOG_WS_API_ID is not set: cannot reach WebSocket clients")
            api.configure_from_api_id(current.ws_api_id, current.ws_stage)
        if api.session is None:
            api.session = boto_session()
        if api._client is None:
            # Chalice's default client pools 10 connections; fan-out sends from up to 16+ threads.
            api._client = api.session.client(
                "apigatewaymanagementapi", endpoint_url=api._endpoint, config=_send_config()
            )
    return api


def _send_config() -> Any:
    from botocore.config import Config

    return Config(max_pool_connections=64, connect_timeout=3, read_timeout=5,
                  retries={"mode": "standard", "max_attempts": 3})


def websocket_send(connection_id: str, message: str) -> None:
    """Send one text message; raises chalice's WebsocketDisconnectedError on 410 Gone."""
    _configured_websocket_api().send(connection_id, message)


def public_ws_url(request: Any = None) -> str | None:
    current = settings()
    if current.ws_public_url:
        return current.ws_public_url
    if current.ws_api_id:
        return f"wss://{current.ws_api_id}.execute-api.{current.region}.amazonaws.com/{current.ws_stage}"
    return None


# -- API token ------------------------------------------------------------------------------
def api_token() -> str | None:
    """The bearer token: from the environment, or from Secrets Manager (cached for 5 minutes)."""
    current = settings()
    if current.api_token:
        return current.api_token
    if not current.api_token_secret_id:
        return None
    cached = _token_cache.get("value")
    if cached is not None and time.monotonic() - _token_cache["at"] < 300:
        return cached
    value = client("secretsmanager").get_secret_value(SecretId=current.api_token_secret_id)["SecretString"]
    _token_cache.update(value=value.strip(), at=time.monotonic())
    return _token_cache["value"]


def reset() -> None:
    """Forget everything built so far (tests switch environments between cases)."""
    cached = (boto_session, client, store, lock, token_store, connections, journal, publisher, engine, service)
    for function in (*cached, websocket_handlers):
        function.cache_clear()
    get_settings.cache_clear()
    _token_cache.clear()
