"""The composition root: ``bootstrap()`` wires the whole service once, from settings and AWS clients.

``app.py`` keeps one ``Runtime`` (built on first use, so ``import app`` creates no AWS client and touches no
network; a warm Lambda reuses it). Tests call ``bootstrap(settings, aws=...)`` with moto clients or fakes and hand
the result to ``Runtime.use``; nothing else holds global state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chalicelib.settings import Settings, get_settings

if TYPE_CHECKING:
    from chalicelib.auth import Authenticator
    from chalicelib.change_feed import ChangeFeed
    from chalicelib.entrypoints.websocket import WebsocketHandlers
    from chalicelib.events import EventPublisher, WebhookDispatcher, WebsocketSender
    from chalicelib.http import KeptSession
    from chalicelib.oauth import OAuthTokenStore
    from chalicelib.refresh import Fetcher, RefreshEngine
    from chalicelib.secrets import SecretResolver
    from chalicelib.service import CatalogService
    from chalicelib.storage.catalog import CatalogStore
    from chalicelib.storage.connections import ConnectionStore
    from chalicelib.storage.journal import EventJournal
    from chalicelib.storage.lock import LeaseLock
    from chalicelib.storage.state import RefreshStateStore
    from chalicelib.tokens import TokenService
    from chalicelib.webhook_service import WebhookService


class AwsClients:
    """boto3 clients, each created on first use and then shared (boto3 clients are thread-safe; creating them is
    not, hence the lock). ``overrides`` hands in ready clients by service name (tests, or another endpoint)."""

    def __init__(self, settings: Settings, overrides: Mapping[str, Any] | None = None, session: Any = None):
        self._settings = settings
        self._clients: dict[str, Any] = dict(overrides or {})
        self._overridden = frozenset(self._clients)
        self._session = session
        self._lock = threading.RLock()

    def client(self, service: str, config: Any = None) -> Any:
        """The client of ``service`` (DynamoDB at the configured endpoint; the WebSocket management API at the
        gateway's), created with ``config`` or ``client_config()`` the first time it is asked for."""
        with self._lock:
            if service not in self._clients:
                if self._session is None:
                    import boto3

                    self._session = boto3.session.Session(region_name=self._settings.region)
                self._clients[service] = self._session.client(
                    service, endpoint_url=self._endpoint(service), config=config or client_config()
                )
            return self._clients[service]

    def management_client(self, config: Any = None) -> Any:
        """What sends to WebSocket connections: a ``SignedConnectionsClient`` at the endpoint and region the boto3
        ``apigatewaymanagementapi`` client resolves (an override is used as it is)."""
        from chalicelib.events import SignedConnectionsClient

        client = self.client("apigatewaymanagementapi", config)
        if "apigatewaymanagementapi" in self._overridden:
            return client
        return SignedConnectionsClient.of(client, self._session.get_credentials)

    def factory(self, service: str, config: Any = None) -> Callable[[], Any]:
        """A zero-argument function that returns the client (created when first called)."""
        return lambda: self.client(service, config)

    def _endpoint(self, service: str) -> str | None:
        settings = self._settings
        if service == "dynamodb":
            return settings.dynamodb_endpoint
        if service == "apigatewaymanagementapi":
            if settings.ws_management_endpoint:  # the local gateway speaks plain http
                return settings.ws_management_endpoint
            if not settings.ws_api_id:
                raise RuntimeError("MODEL_CATALOG_WS_API_ID is not set: cannot reach WebSocket clients")
            return management_endpoint(settings.ws_api_id, settings.region, settings.ws_stage)
        return None


def management_endpoint(api_id: str, region: str, stage: str) -> str:
    """The ``@connections`` endpoint of a deployed WebSocket API stage."""
    return f"https://{api_id}.execute-api.{region}.amazonaws.com/{stage}"


def client_config() -> Any:
    """Short timeouts and standard retries (with throttling backoff) keep a run well inside its deadline; 64
    pooled connections serve the fan-out's and the store's threads."""
    from botocore.config import Config

    return Config(
        connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=64
    )


@dataclass(frozen=True)
class Container:
    """Everything the entry points use, built once."""

    settings: Settings
    aws: AwsClients
    secrets: SecretResolver
    catalog: CatalogStore
    lock: LeaseLock
    state: RefreshStateStore
    journal: EventJournal
    connections: ConnectionStore
    sender: WebsocketSender
    publisher: EventPublisher
    engine: RefreshEngine
    service: CatalogService
    websocket: WebsocketHandlers
    authenticator: Authenticator
    fetcher_factory: Callable[[], Fetcher]
    changes: ChangeFeed
    tokens: TokenService
    webhooks: WebhookService
    webhook_dispatcher: WebhookDispatcher

    def public_ws_url(self) -> str | None:
        current = self.settings
        if current.ws_public_url:
            return current.ws_public_url
        if current.ws_api_id:
            return f"wss://{current.ws_api_id}.execute-api.{current.region}.amazonaws.com/{current.ws_stage}"
        return None


def bootstrap(
    settings: Settings | None = None,
    *,
    aws: AwsClients | None = None,
    fetcher_factory: Callable[[], Fetcher] | None = None,
    send: Callable[[str, str], None] | None = None,
    clock: Callable[[], float] = time.time,
    webhook_kick: Callable[[Callable[[dict[str, Any]], Any]], Callable[[dict[str, Any]], None]] | None = None,
) -> Container:
    """Wire the service. Every argument has a production default; tests pass moto clients (``aws``), a fake
    fetcher, a fake ``send``, a fake ``clock`` and ``webhook_kick`` (given the relay's entry point, returns what
    runs it: e.g. ``lambda handle: handle`` runs it inline)."""
    from chalicelib.auth import Authenticator
    from chalicelib.change_feed import ChangeFeed
    from chalicelib.entrypoints.websocket import WebsocketHandlers
    from chalicelib.events import (
        DeliveryOptions,
        EventBusChannel,
        EventPublisher,
        Fanout,
        LambdaKick,
        ThreadKick,
        WebhookChannel,
        WebhookDispatcher,
        WebsocketSender,
    )
    from chalicelib.http import UrlGuard
    from chalicelib.refresh import RefreshEngine
    from chalicelib.secrets import SecretResolver
    from chalicelib.service import CatalogService
    from chalicelib.storage.catalog import CatalogStore
    from chalicelib.storage.commit import CatalogCommit
    from chalicelib.storage.connections import ConnectionStore
    from chalicelib.storage.journal import EventJournal
    from chalicelib.storage.lock import LeaseLock
    from chalicelib.storage.state import RefreshStateStore
    from chalicelib.storage.tokens import TokenStore
    from chalicelib.storage.webhooks import WebhookStore
    from chalicelib.tokens import TokenService
    from chalicelib.webhook_service import WebhookService

    settings = settings or get_settings()
    aws = aws or AwsClients(settings)
    dynamodb = aws.client("dynamodb")
    tables = settings.tables
    secrets = SecretResolver.from_settings(
        settings, ssm_client=aws.factory("ssm"), secretsmanager_client=aws.factory("secretsmanager")
    )
    catalog = CatalogStore(dynamodb, tables.catalog)
    lock = LeaseLock(dynamodb, tables.locks, clock=clock)
    state = RefreshStateStore(lock)
    journal = EventJournal(dynamodb, tables.events, clock=clock)
    connections = ConnectionStore(dynamodb, tables.connections, clock=clock)
    sender = WebsocketSender(lambda: aws.management_client(_send_config()))
    deliver = send or sender.send
    options = settings.config.model_catalog
    webhook_store = WebhookStore(dynamodb, tables.webhooks, clock=clock)
    cipher = _lazy(lambda: _secret_cipher(settings, aws))
    webhook_guard = UrlGuard(allow_private=settings.allow_private_urls, subject="webhook URLs")
    webhook_dispatcher = WebhookDispatcher(
        webhook_store,
        journal,
        cipher,
        webhook_guard,
        DeliveryOptions(
            schedule=tuple(options.webhook_retry_schedule_s),
            disable_after_s=options.webhook_disable_after_s,
            concurrency=options.webhook_concurrency,
        ),
        bus=EventBusChannel(aws.factory("events"), settings.event_bus) if settings.event_bus else None,
        clock=clock,
    )
    if webhook_kick is not None:
        kick = webhook_kick(webhook_dispatcher.handle)
    elif settings.webhook_function:
        kick = LambdaKick(aws.factory("lambda"), settings.webhook_function)
    else:
        kick = ThreadKick(webhook_dispatcher.handle)
    publisher = EventPublisher(
        journal, Fanout(connections, deliver), count_connections=connections.count_up_to,
        channels=[WebhookChannel(kick)],
    )
    if fetcher_factory is None:
        fetcher_factory = _provider_fetcher_factory(settings, aws, secrets)
    engine = RefreshEngine(
        config=settings.config,
        deployment_id=settings.deployment_id,
        catalog=catalog,
        lock=lock,
        commit=CatalogCommit(dynamodb, lock, catalog, journal),
        fetcher_factory=fetcher_factory,
        publisher=publisher,
        clock=clock,
    )
    service = CatalogService(
        config=settings.config,
        deployment_id=settings.deployment_id,
        store=catalog,
        state=state,
        engine=engine,
        publish_pending=publisher.publish_pending,
        clock=clock,
        webhook_tick=webhook_dispatcher.tick,
    )
    webhooks = WebhookService(
        store=webhook_store,
        journal=journal,
        position=service.position,
        cipher=cipher,
        guard=webhook_guard,
        kick=kick,
        clock=clock,
    )
    tokens = TokenService(TokenStore(dynamodb, tables.catalog), clock=clock)
    authenticator = Authenticator(_api_token_source(settings, secrets), tokens)
    websocket = WebsocketHandlers(
        token_check=lambda presented: authenticator.identify(presented) is not None,
        connections=connections,
        journal=journal,
        position=service.position,
        send=deliver,
    )
    return Container(
        settings=settings,
        aws=aws,
        secrets=secrets,
        catalog=catalog,
        lock=lock,
        state=state,
        journal=journal,
        connections=connections,
        sender=sender,
        publisher=publisher,
        engine=engine,
        service=service,
        websocket=websocket,
        authenticator=authenticator,
        fetcher_factory=fetcher_factory,
        changes=ChangeFeed(journal, service.position, code_version=settings.deployment_id),
        tokens=tokens,
        webhooks=webhooks,
        webhook_dispatcher=webhook_dispatcher,
    )


def _send_config() -> Any:
    """The fan-out sends from many threads: a bigger pool than boto3's default 10, short timeouts."""
    from botocore.config import Config

    return Config(
        max_pool_connections=64, connect_timeout=3, read_timeout=5, retries={"mode": "standard", "max_attempts": 3}
    )


def _provider_fetcher_factory(settings: Settings, aws: AwsClients, secrets: SecretResolver) -> Callable[[], Fetcher]:
    token_store: OAuthTokenStore | None = None
    lock = threading.Lock()

    def oauth_tokens() -> OAuthTokenStore:
        nonlocal token_store
        with lock:
            if token_store is None:
                token_store = _oauth_token_store(settings, aws)
            return token_store

    kept_session: KeptSession | None = None

    def create() -> Fetcher:
        """A new fetcher per run; the HTTP session (its open connections) is kept from one run to the next."""
        nonlocal kept_session
        from chalicelib.http import KeptSession
        from chalicelib.providers import ProviderFetcher

        with lock:
            if kept_session is None:
                kept_session = KeptSession(settings.options.fetch_concurrency)
        return ProviderFetcher(settings, oauth_tokens(), secrets=secrets, kept_session=kept_session)

    return create


def _oauth_token_store(settings: Settings, aws: AwsClients) -> OAuthTokenStore:
    from chalicelib.oauth import OAuthTokenStore

    return OAuthTokenStore(aws.client("dynamodb"), settings.tables.catalog, _secret_cipher(settings, aws))


def _secret_cipher(settings: Settings, aws: AwsClients) -> Any:
    """What encrypts secrets at rest (OAuth tokens, webhook secrets): KMS deployed, a local key file locally."""
    from chalicelib.ciphers import KmsCipher, LocalCipher

    if settings.kms_key_id:
        return KmsCipher(aws.client("kms"), settings.kms_key_id)
    return LocalCipher(settings.local_key_file or Path(".local/state/oauth.key"))


def _lazy(create: Callable[[], Any]) -> Callable[[], Any]:
    """``create()`` on first call, then the same object (thread-safe)."""
    made: list[Any] = []
    lock = threading.Lock()

    def get() -> Any:
        with lock:
            if not made:
                made.append(create())
            return made[0]

    return get


def _api_token_source(settings: Settings, secrets: SecretResolver) -> Callable[[], str | None]:
    """The admin bearer token: ``MODEL_CATALOG_API_TOKEN`` (a value or a secret reference), or deployed the
    Secrets Manager secret ``MODEL_CATALOG_API_TOKEN_SECRET_ID`` names; resolved (and cached) by ``secrets``."""

    def api_token() -> str | None:
        if settings.api_token:
            return secrets.resolve_value("MODEL_CATALOG_API_TOKEN", settings.api_token)
        if settings.api_token_secret_id:
            reference = "secretsmanager:" + settings.api_token_secret_id
            return secrets.resolve_value("MODEL_CATALOG_API_TOKEN_SECRET_ID", reference)
        return None

    return api_token


class Runtime:
    """The one container of a process, built by ``build`` on first use (thread-safe)."""

    def __init__(self, build: Callable[[], Container] = bootstrap):
        self._build = build
        self._container: Container | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Container:
        container = self._container
        if container is None:
            with self._lock:
                if self._container is None:
                    self._container = self._build()
                container = self._container
        return container

    @contextmanager
    def use(self, container: Container) -> Iterator[Container]:
        """Serve ``container`` inside the block (tests), then go back to what was there."""
        with self._lock:
            previous, self._container = self._container, container
        try:
            yield container
        finally:
            with self._lock:
                self._container = previous
