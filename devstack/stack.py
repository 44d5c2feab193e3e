"""``make run``: the whole service on 127.0.0.1, in the foreground.

Start order (each step only after the previous one worked; a failure stops what already runs):

1. Read the stack's own variables and the app's settings — a config that cannot be used exits 2 at once with
   the ConfigError message (file, key, problem) before anything starts. The log format is chosen here
   (``MODEL_CATALOG_LOG_FORMAT``, ``devstack/logformat.py``: human lines on a terminal, else JSON) and handed
   down to the DynamoDB child.
2. Reserve the listening sockets (HTTP, WebSocket, ``@connections``, demo registry), so that "port in use"
   is reported before anything heavy starts and the URLs are known before the app is imported.
3. The embedded DynamoDB child (``python -m devstack.dynamodb``), unless
   ``MODEL_CATALOG_DYNAMODB_ENDPOINT`` names another one; the tables of ``infra/tables.json`` are created.
4. The app's environment is completed (endpoints, URLs) and the Chalice app is imported.
5. Demo registry, WebSocket gateway, Chalice's local HTTP server, then the scheduler (whose first tick, right
   away, is the start-up refresh). The banner and a ``MODEL_CATALOG_READY {json}`` line go to stdout.

Before serving, a state that may be older than what was served (the embedded DynamoDB reports no clean stop,
or the journal and the manifest disagree) starts a new event epoch (``devstack/recovery.py``).

Ctrl-C / SIGTERM stops it in reverse order: scheduler, gateway (clients closed with 1001), HTTP server, demo
registry, then DynamoDB (final snapshot). Exit status 0; every port is free afterwards. Any number of SIGTERMs
(``make`` forwards the one its process group got: the stack gets two) is one clean stop. A deliberate
repeated Ctrl-C — a third one, or one more than ``FORCE_AFTER_S`` seconds into the stop — forces the exit,
but still lets the embedded DynamoDB write its final snapshot first. Signals are only recorded by their
handlers (``devstack/signals.py``); the stop runs on its own thread while the main thread watches for more.

The stack's own environment variables (docs/reference.md §1) are read here, not in ``chalicelib.settings``: they
configure this development tool, never the deployed functions.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

from chalicelib.errors import ConfigError
from chalicelib.logs import get_logger
from chalicelib.settings import Settings, TableNames, schedule_rate_minutes, settings_from_env
from devstack.dynamodb import DynamoProcess
from devstack.logformat import AUTO, LOG_FORMAT_ENV, install_log_format, log_format_choice
from devstack.signals import StopSignals, signal_name
from devstack.statefiles import open_private, private_directory

log = get_logger("local.stack")

PROJECT_DIR = Path(__file__).resolve().parents[1]
READY_PREFIX = "MODEL_CATALOG_READY "
HOST = "127.0.0.1"
WS_STAGE = "local"
STATE_MARKER = ".model-catalog-state"
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no", ""}
EXIT_CONFIG = 2
EXIT_FAILURE = 1
EXIT_FORCED = 130
# A deliberate forced exit: the third Ctrl-C, or a Ctrl-C this long after the stop began (a quick double press,
# or make's forwarded SIGTERM, is not one).
FORCE_AFTER_S = 2.0
FORCE_AT_INTERRUPTS = 3
FORCED_EXIT_DYNAMODB_WAIT_S = 30.0


class StartupError(Exception):
    """The stack could not start (port in use, DynamoDB failed…); the message says what to do."""


@dataclass(frozen=True)
class LocalOptions:
    """The stack's own settings (the `make run` variables of docs/reference.md §1)."""

    http_port: int = 8000
    ws_port: int = 8001
    tick_seconds: float = 60.0
    state_dir: Path = Path(".local/state")
    reset: bool = False
    dynamodb_endpoint: str | None = None
    test_hooks: bool = False
    log_format: str = AUTO  # auto | human | json; main() resolves auto before the stack starts
    # Test-only negative controls (read only with MODEL_CATALOG_LOCAL_TEST_HOOKS=1): the durability mechanisms
    # switched off one by one, so that tests can prove they would notice their absence.
    write_ahead_log: bool = True
    new_epoch_after_unclean_stop: bool = True
    snapshot_delay_s: float = 0.5

    @property
    def embedded_dynamodb(self) -> bool:
        return self.dynamodb_endpoint is None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> LocalOptions:
        test_hooks = _flag(environ, "MODEL_CATALOG_LOCAL_TEST_HOOKS")
        controls: dict[str, Any] = {}
        if test_hooks:
            controls = {
                "write_ahead_log": not _flag(environ, "MODEL_CATALOG_LOCAL_TEST_NO_WAL"),
                "new_epoch_after_unclean_stop": not _flag(environ, "MODEL_CATALOG_LOCAL_TEST_NO_NEW_EPOCH"),
                "snapshot_delay_s": _positive_seconds(environ, "MODEL_CATALOG_LOCAL_TEST_SNAPSHOT_DELAY", 0.5),
            }
        return cls(
            http_port=_port(environ, "MODEL_CATALOG_HTTP_PORT", 8000),
            ws_port=_port(environ, "MODEL_CATALOG_WS_PORT", 8001),
            tick_seconds=_positive_seconds(environ, "MODEL_CATALOG_TICK_SECONDS", 60.0),
            state_dir=Path(environ.get("MODEL_CATALOG_STATE_DIR") or ".local/state").expanduser().resolve(),
            reset=_flag(environ, "MODEL_CATALOG_RESET"),
            dynamodb_endpoint=(environ.get("MODEL_CATALOG_DYNAMODB_ENDPOINT") or "").strip() or None,
            test_hooks=test_hooks,
            log_format=_log_format(environ),
            **controls,
        )


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = (environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r}: expected a port number (0 picks a free one)") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"environment variable {name}={raw!r}: a port is between 0 and 65535")
    return port


def _positive_seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = (environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r}: expected a number of seconds") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ConfigError(f"environment variable {name}={raw!r}: must be a positive number of seconds")
    return value


def _log_format(environ: Mapping[str, str]) -> str:
    try:
        return log_format_choice(environ)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _flag(environ: Mapping[str, str], name: str) -> bool:
    raw = (environ.get(name) or "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"environment variable {name}={environ.get(name)!r}: expected 1/true/yes or 0/false/no")


def base_environment(options: LocalOptions, environ: Mapping[str, str]) -> dict[str, str]:
    """What the stack adds to the app's environment before any port is known (user values win)."""
    added: dict[str, str] = {}

    def default(name: str, value: str) -> None:
        if not environ.get(name):
            added[name] = value

    default("MODEL_CATALOG_ALLOW_PRIVATE_URLS", "1")
    default("MODEL_CATALOG_API_TOKEN", secrets.token_urlsafe(24))
    # A fresh deployment id per start: refresh_on_start refreshes on every `make run`.
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    default("MODEL_CATALOG_DEPLOYMENT_ID", f"local-{started}-{secrets.token_hex(3)}")
    default("MODEL_CATALOG_LOCAL_KEY_FILE", str(options.state_dir / "oauth.key"))
    added["MODEL_CATALOG_WS_STAGE"] = WS_STAGE
    if options.embedded_dynamodb:
        # moto accepts any credentials; fixed dummies also keep a developer's real ones away from it.
        added.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_SESSION_TOKEN="testing",
            AWS_SECURITY_TOKEN="testing",
        )
        default("AWS_REGION", environ.get("AWS_DEFAULT_REGION") or "us-east-1")
        default("AWS_DEFAULT_REGION", added.get("AWS_REGION") or environ.get("AWS_REGION") or "us-east-1")
    return added


def validate(environ: Mapping[str, str]) -> Settings:
    """The app's settings exactly as the app will load them; raises ConfigError."""
    settings = settings_from_env(environ)
    schedule_rate_minutes(environ)
    return settings


# -- sockets ----------------------------------------------------------------------------------------------
def listen(port: int, what: str, variable: str | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = f"; set {variable} to a free port (0 picks one)" if variable else ""
        raise StartupError(f"the {what} cannot listen on {HOST}:{port}: {exc.strerror or exc}{hint}") from None
    return sock


def _bound_port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


# -- state directory ----------------------------------------------------------------------------------------
class StateDir:
    """``MODEL_CATALOG_STATE_DIR``: owned by one running stack at a time; RESET wipes only a dir we created.

    Private: 0700, its files 0600 (an existing directory is tightened).
    """

    def __init__(self, path: Path):
        self.path = path
        self._lock_handle: Any = None

    def prepare(self, reset: bool) -> None:
        if reset and self.path.exists():
            if any(self.path.iterdir()) and not (self.path / STATE_MARKER).exists():
                raise ConfigError(
                    f"MODEL_CATALOG_STATE_DIR={self.path}: refusing to wipe a directory that the local stack did "
                    f"not create (no {STATE_MARKER} file in it)"
                )
            self._acquire()  # never wipe under a running stack
            self._release()
            shutil.rmtree(self.path)
            log.info("local state wiped (RESET=1)", extra={"state_dir": str(self.path)})
        try:
            private_directory(self.path)
            with os.fdopen(open_private(self.path / STATE_MARKER, os.O_WRONLY | os.O_TRUNC), "w") as marker:
                marker.write("model-catalog local stack state (safe to delete)\n")
        except OSError as exc:
            raise StartupError(f"cannot use the state directory {self.path}: {exc.strerror or exc}") from None
        self._acquire()

    def _acquire(self) -> None:
        private_directory(self.path)
        # Held open for the stack's lifetime.
        handle = os.fdopen(open_private(self.path / ".lock", os.O_RDWR | os.O_APPEND), "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise StartupError(
                f"another local stack is using {self.path}; stop it or set MODEL_CATALOG_STATE_DIR"
            ) from None
        self._lock_handle = handle

    def _release(self) -> None:
        if self._lock_handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def release(self) -> None:
        self._release()


# -- the Chalice HTTP server ----------------------------------------------------------------------------------
def chalice_config(app_object: Any) -> Any:
    """Stage ``dev`` of ``.chalice/config.json`` (its environment variables are the deployed stage's, not ours)."""
    from chalice.config import Config

    config_file = PROJECT_DIR / ".chalice" / "config.json"
    config_from_disk = json.loads(config_file.read_text()) if config_file.exists() else {}
    return Config(
        chalice_stage="dev",
        user_provided_params={"chalice_app": app_object, "project_dir": str(PROJECT_DIR)},
        config_from_disk=config_from_disk,
        default_params={"app_name": getattr(app_object, "app_name", "model-catalog")},
    )


def http_server(app_object: Any, sock: socket.socket) -> Any:
    """chalice.local's LocalDevServer (threaded: one thread per connection) on a socket we already bound."""
    from chalice.local import (
        ChaliceRequestHandler,
        CustomLocalChalice,
        LocalChalice,
        LocalDevServer,
        ThreadedHTTPServer,
    )

    class PreboundServer(ThreadedHTTPServer):
        def __init__(self, _address: Any, handler: Any):
            super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
            self.socket.close()
            self.socket = sock
            self.server_address = sock.getsockname()[:2]
            self.server_name, self.server_port = self.server_address[0], self.server_address[1]

    class LoggingHandler(ChaliceRequestHandler):
        # chalice.local writes a response's headers and body separately: with Nagle's algorithm on, the body waits
        # for the client's delayed ACK of the headers, 40 ms on every request of a keep-alive connection.
        disable_nagle_algorithm = True

        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            status = int(code) if str(code).isdigit() else 0
            path = self.path.split("?", 1)[0]  # no query strings in logs
            log.log(
                logging.WARNING if status >= 500 else logging.DEBUG,
                "http request",
                extra={"method": self.command, "path": path, "status": status},
            )

        def log_error(self, format: str, *args: Any) -> None:
            log.warning("http server error", extra={"detail": format % args})

    # What chalice.local.create_local_server does: current_request becomes thread-local, so concurrent
    # requests on the threaded server do not see each other's request.
    CustomLocalChalice.__bases__ = (LocalChalice, app_object.__class__)
    app_object.__class__ = CustomLocalChalice
    host, port = sock.getsockname()[:2]
    return LocalDevServer(
        app_object, chalice_config(app_object), host, port, handler_cls=LoggingHandler, server_cls=PreboundServer
    )


def import_app() -> Any:
    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))
    return importlib.import_module("app")


def dynamodb_client(endpoint: str | None, region: str) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=region,
        config=BotoConfig(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 3}),
    )


# -- the stack ------------------------------------------------------------------------------------------------
class LocalStack:
    def __init__(self, options: LocalOptions, environ: dict[str, str]):
        self.options = options
        self.environ = environ  # the complete environment the app will run with (grows during start)
        self.state = StateDir(options.state_dir)
        self.dynamo: DynamoProcess | None = None
        self.dynamodb_endpoint: str | None = None
        self.registry: Any = None
        self.gateway: Any = None
        self.http: Any = None
        self.http_thread: threading.Thread | None = None
        self.scheduler: Any = None
        self.sockets: dict[str, socket.socket] = {}
        self.urls: dict[str, str] = {}
        self.new_epoch_reason: str | None = None

    def start(self) -> None:
        options = self.options
        self.state.prepare(options.reset and options.embedded_dynamodb)
        if options.reset and not options.embedded_dynamodb:
            log.warning("RESET=1 has no effect on an external DynamoDB; nothing was deleted")
        self.sockets["http"] = listen(options.http_port, "HTTP API", "MODEL_CATALOG_HTTP_PORT")
        self.sockets["ws"] = listen(options.ws_port, "WebSocket gateway", "MODEL_CATALOG_WS_PORT")
        self.sockets["management"] = listen(0, "@connections API", None)
        self.sockets["registry"] = listen(0, "demo registry", None)
        http_url = f"http://{HOST}:{_bound_port(self.sockets['http'])}"
        ws_url = f"ws://{HOST}:{_bound_port(self.sockets['ws'])}"
        management = f"http://{HOST}:{_bound_port(self.sockets['management'])}/{WS_STAGE}"
        registry_url = f"http://{HOST}:{_bound_port(self.sockets['registry'])}/api.json"

        if options.embedded_dynamodb:
            # The child writes its log lines to our stderr, in the format we chose.
            child_env = {**os.environ, **self.environ, LOG_FORMAT_ENV: options.log_format}
            self.dynamo = DynamoProcess(
                state_dir=options.state_dir,
                env=child_env,
                wal=options.write_ahead_log,
                snapshot_delay_s=options.snapshot_delay_s,
                # The WebSocket connections end with this process: their rows need not survive it (and a connect
                # then waits for no fsync).
                ephemeral_tables=[child_env.get("MODEL_CATALOG_CONNECTIONS_TABLE") or TableNames.connections],
            )
            try:
                self.dynamo.start()
            except RuntimeError as exc:
                raise StartupError(str(exc)) from None
            self.dynamodb_endpoint = self.dynamo.endpoint
            self.environ["MODEL_CATALOG_DYNAMODB_ENDPOINT"] = self.dynamodb_endpoint
        else:
            self.dynamodb_endpoint = options.dynamodb_endpoint
        self.environ["MODEL_CATALOG_WS_MANAGEMENT_ENDPOINT"] = management
        self.environ["MODEL_CATALOG_WS_URL"] = ws_url
        if not self.environ.get("MODEL_CATALOG_DEMO_REGISTRY_URL"):
            self.environ["MODEL_CATALOG_DEMO_REGISTRY_URL"] = registry_url
        settings = validate(self.environ)  # the final environment, as the app will read it
        os.environ.update(self.environ)
        endpoint = None if self.dynamodb_endpoint == "aws" else self.dynamodb_endpoint
        from devstack.recovery import ensure_unused_cursor
        from devstack.tables import create_tables

        client = dynamodb_client(endpoint, settings.region)
        try:
            create_tables(client, settings.tables)
        except Exception as exc:
            raise StartupError(f"cannot create the DynamoDB tables at {self.dynamodb_endpoint}: {exc}") from None
        try:
            self.new_epoch_reason = ensure_unused_cursor(
                client,
                settings.tables,
                self.dynamo.restored if self.dynamo is not None else None,
                rotate=options.new_epoch_after_unclean_stop,
            )
        except Exception as exc:
            raise StartupError(f"cannot check the event journal at {self.dynamodb_endpoint}: {exc}") from None

        try:
            app_module = import_app()
        except Exception as exc:
            log.exception("importing app.py failed")
            raise StartupError(f"importing app.py failed: {exc}") from None

        from devstack.demo_registry import DemoRegistryServer
        from devstack.gateway import LocalWebSocketGateway
        from devstack.scheduler import LocalScheduler

        self.registry = DemoRegistryServer(sock=self.sockets.pop("registry"), test_hooks=options.test_hooks)
        self.registry.start()
        self.gateway = LocalWebSocketGateway(
            app_module,
            host=HOST,
            sock=self.sockets.pop("ws"),
            management_sock=self.sockets.pop("management"),
            stage=WS_STAGE,
            test_hooks=options.test_hooks,
        )
        self.gateway.start()
        self.http = http_server(app_module.app, self.sockets.pop("http"))
        self.http_thread = threading.Thread(target=self.http.server.serve_forever, name="http", daemon=True)
        self.http_thread.start()
        token = self.environ["MODEL_CATALOG_API_TOKEN"]
        self.urls = {
            "http_url": http_url,
            "ws_url": ws_url,
            "web_url": f"{http_url}/#token={quote(token, safe='')}",
            "ws_connect_url": f"{ws_url}/?token={quote(token, safe='')}",
            "management_endpoint": management,
            "demo_registry_url": self.registry.url,  # what is served (the app may be pointed elsewhere)
            "dynamodb_endpoint": self.dynamodb_endpoint or "",
        }
        self.scheduler = LocalScheduler(app_module.scheduled_tick, options.tick_seconds, region=settings.region)
        self.scheduler.start()

    def dynamodb_alive(self) -> bool:
        return self.dynamo is None or self.dynamo.alive()

    def stop(self) -> bool:
        """Stop everything that started, in reverse order; True when every part stopped cleanly."""
        clean = True
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("scheduler", lambda: self.scheduler and self.scheduler.stop()),
            ("gateway", lambda: self.gateway and self.gateway.stop()),
            ("http", self._stop_http),
            ("demo registry", lambda: self.registry and self.registry.stop()),
        ]
        for name, step in steps:
            try:
                step()
            except Exception:
                clean = False
                log.exception("stopping a part of the stack failed", extra={"part": name})
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()
        if self.dynamo is not None:
            code = self.dynamo.stop()
            if code not in (0, None):
                clean = False
                log.error("the embedded DynamoDB exited with an error", extra={"status": code})
        self.state.release()
        return clean

    def _stop_http(self) -> None:
        if self.http is None:
            return
        self.http.server.shutdown()
        self.http.server.server_close()
        if self.http_thread is not None:
            self.http_thread.join(timeout=5)


def banner(stack: LocalStack, token_generated: bool) -> str:
    urls = stack.urls
    options = stack.options
    token = stack.environ["MODEL_CATALOG_API_TOKEN"]
    if options.embedded_dynamodb:
        dynamodb = f"{urls['dynamodb_endpoint']} (embedded moto; state in {options.state_dir})"
    else:
        dynamodb = f"{urls['dynamodb_endpoint']} (external)"
    lines = [
        "",
        "model-catalog is running locally",
        f"  Web page    {urls['web_url']}",
        f"  HTTP API    {urls['http_url']}/api/v1",
        f"  WebSocket   {urls['ws_connect_url']}",
        f"  API token   {token}"
        + ("  (generated: set MODEL_CATALOG_API_TOKEN to keep one)" if token_generated else ""),
        f"  DynamoDB    {dynamodb}",
        f"  Scheduler   a tick now, then every {options.tick_seconds:g} s",
        f"  CLI         MODEL_CATALOG_URL={urls['http_url']} MODEL_CATALOG_API_TOKEN={token} "
        ".venv/bin/python -m chalicelib.cli models",
        "Press Ctrl-C to stop.",
        "",
    ]
    return "\n".join(lines)


def _configure_log_level(level_name: str) -> None:
    level = logging.getLevelName(level_name)
    if isinstance(level, int):
        get_logger("local")  # makes sure the JSON handler is installed
        logging.getLogger("model_catalog").setLevel(level)


def main(argv: list[str] | None = None) -> int:
    environ = dict(os.environ)
    try:
        options = LocalOptions.from_environ(environ)
        added = base_environment(options, environ)
        app_environ = {**environ, **added}
        # The demo registry's port is only known once bound; a config may reference its URL without a default.
        settings = validate({"MODEL_CATALOG_DEMO_REGISTRY_URL": "http://127.0.0.1:8002/api.json", **app_environ})
    except ConfigError as exc:
        print(f"model-catalog: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    options = replace(options, log_format=install_log_format(options.log_format))
    _configure_log_level(settings.log_level)

    os.umask(0o077)  # whatever the stack creates (state files, the OAuth key) is private to this user
    signals = StopSignals().install()
    stack = LocalStack(options, app_environ)

    try:
        stack.start()
    except ConfigError as exc:
        print(f"model-catalog: {exc}", file=sys.stderr, flush=True)
        stack.stop()
        return EXIT_CONFIG
    except StartupError as exc:
        print(f"model-catalog: {exc}", file=sys.stderr, flush=True)
        stack.stop()
        return EXIT_FAILURE
    except BaseException:
        log.exception("the local stack failed to start")
        stack.stop()
        return EXIT_FAILURE

    print(banner(stack, token_generated="MODEL_CATALOG_API_TOKEN" in added), flush=True)
    ready = {
        **stack.urls,
        "token": app_environ["MODEL_CATALOG_API_TOKEN"],
        "state_dir": str(options.state_dir),
        "pid": os.getpid(),
        "dynamodb_pid": stack.dynamo.process.pid if stack.dynamo and stack.dynamo.process else None,
    }
    print(READY_PREFIX + json.dumps(ready), flush=True)
    log.info("local stack ready", extra={"http_url": stack.urls["http_url"], "ws_url": stack.urls["ws_url"]})

    exit_code = 0
    while not signals.received:
        signals.wait(0.5)
        if not stack.dynamodb_alive():
            log.error("the embedded DynamoDB exited unexpectedly; stopping the stack")
            exit_code = EXIT_FAILURE
            break
    return stop_stack(stack, signals, exit_code)


def forced_exit_due(received: list[tuple[int, float]]) -> bool:
    """A deliberate repeated Ctrl-C: the third SIGINT, or a SIGINT ``FORCE_AFTER_S`` after the stop began.

    SIGTERM never forces: ``make`` forwards the SIGTERM its process group got, so ``kill -TERM -- -<pgid>`` of
    ``make run`` delivers two at once, and systemd or a container runtime follow theirs with SIGKILL anyway.
    """
    if len(received) < 2:
        return False
    began = received[0][1]
    interrupts = sum(1 for number, _ in received if number == signal.SIGINT)
    late = any(number == signal.SIGINT and at - began >= FORCE_AFTER_S for number, at in received[1:])
    return interrupts >= FORCE_AT_INTERRUPTS or late


def stop_stack(stack: LocalStack, signals: StopSignals, exit_code: int) -> int:
    """Stop the stack on a thread; the main thread keeps reading signals (logged; a forced exit if due)."""
    outcome: dict[str, bool] = {}
    stopper = threading.Thread(target=lambda: outcome.update(clean=stack.stop()), name="stop", daemon=True)
    log.info("stopping the local stack")
    stopper.start()
    logged = 0
    hinted = False
    while True:
        received = list(signals.received)
        for index in range(logged, len(received)):
            name = signal_name(received[index][0])
            log.info("stop signal received", extra={"signal": name, "count": index + 1})
        logged = len(received)
        if forced_exit_due(received):
            forced_exit(stack)
        if not hinted and sum(1 for number, _ in received if number == signal.SIGINT) >= 2:
            hinted = True
            print("model-catalog: still stopping cleanly; press Ctrl-C again to force the exit",
                  file=sys.stderr, flush=True)
        if not stopper.is_alive():
            break
        signals.wait(0.2)
    if not outcome.get("clean"):
        exit_code = exit_code or EXIT_FAILURE
    log.info("local stack stopped", extra={"exit_code": exit_code})
    return exit_code


def forced_exit(stack: LocalStack) -> NoReturn:
    """Exit now, leaving the stop half done — but only once the embedded DynamoDB wrote its final snapshot."""
    print("model-catalog: forced exit; the embedded DynamoDB writes its final snapshot first", file=sys.stderr,
          flush=True)
    if stack.dynamo is not None and not stack.dynamo.stop_from_signal_context(FORCED_EXIT_DYNAMODB_WAIT_S):
        log.error("the embedded DynamoDB did not stop in time; killing it (its write-ahead log keeps every write)")
        with contextlib.suppress(OSError):
            os.kill(stack.dynamo.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
    log.warning("local stack forced exit", extra={"exit_code": EXIT_FORCED})
    os._exit(EXIT_FORCED)
