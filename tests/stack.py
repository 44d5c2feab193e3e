"""Test harness for the local stack (``python -m devstack``) and its embedded DynamoDB.

``LocalStack`` runs the real stack as a subprocess on free ports (port 0), with its own state dir, config and
environment, waits for its ``MODEL_CATALOG_READY`` line and for ``/api/v1/health``, and stops it with SIGTERM,
asserting a clean exit (status 0) and that every port it used is free again::

    with LocalStack(tmp_path) as stack:
        assert stack.get("/api/v1/providers").status_code == 200

``LocalStack(..., under_make=True)`` starts it the way ``make run`` does: as the child of ``make`` (the
project's own ``run`` recipe), so that a signal to the process group arrives twice, as it does for users.
``process_tree()``, ``signal_group()`` and ``kill_tree()`` reach every process of the stack.

``EmbeddedDynamo`` starts only the embedded DynamoDB (moto server, requests serialized unless
``serialize=False`` for negative controls)::

    with EmbeddedDynamo() as dynamo:
        client = dynamo.client()
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config as BotoConfig

from devstack.dynamodb import DynamoProcess
from devstack.stack import READY_PREFIX

REPO = Path(__file__).resolve().parents[1]
_INHERITED_PREFIXES = ("MODEL_CATALOG_",)
# The bundled config's real providers must fail fast ("… is not set"), never reach the internet from a test.
_PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY")
# make's own variables: a stack started under `make test` must not join that make's jobserver.
_MAKE_VARIABLES = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR")
_AWS_ISOLATION = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``port`` (bound with SO_REUSEADDR, as the servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def closed_port() -> int:
    """A local port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return status != "Z"
    return True


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it (by parent pid, read from /proc), root first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop(0)
        if pid == root and not pid_alive(pid):
            continue
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def isolated_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test runner's environment without MODEL_CATALOG_* or real AWS credentials, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_INHERITED_PREFIXES)
        and key not in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", *_PROVIDER_KEYS, *_MAKE_VARIABLES)
    }
    env.update(_AWS_ISOLATION)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class _OutputPump:
    """Drains a pipe on a thread (so the child never blocks on a full pipe) and keeps every line."""

    def __init__(self, stream: Any, on_line: Any = None):
        self.lines: list[str] = []
        self._on_line = on_line
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            if self._on_line is not None:
                self._on_line(line)
        stream.close()

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class StackStartError(AssertionError):
    pass


class LocalStack:
    """``python -m devstack`` as a subprocess, on free ports, with the test's state dir and config."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        config: Path | str | None = None,
        env: dict[str, str] | None = None,
        token: str | None = "test-token-0123456789",
        tick_seconds: float = 3600,
        test_hooks: bool = True,
        state_dir: Path | None = None,
        startup_timeout_s: float = 90.0,
        under_make: bool = False,
    ):
        self.tmp_path = Path(tmp_path)
        self.state_dir = Path(state_dir) if state_dir else self.tmp_path / "state"
        self.config = Path(config) if config else None
        self.extra_env = dict(env or {})
        self.fixed_token = token
        self.tick_seconds = tick_seconds
        self.test_hooks = test_hooks
        self.startup_timeout_s = startup_timeout_s
        self.under_make = under_make
        self.tree_at_ready: list[int] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] = {}
        self.stdout: _OutputPump | None = None
        self.stderr: _OutputPump | None = None
        self.returncode: int | None = None
        self._ready_event = threading.Event()
        self._session = requests.Session()

    # -- lifecycle ------------------------------------------------------------------------------------
    def environment(self, **overrides: str) -> dict[str, str]:
        extra = {
            "MODEL_CATALOG_HTTP_PORT": "0",
            "MODEL_CATALOG_WS_PORT": "0",
            "MODEL_CATALOG_STATE_DIR": str(self.state_dir),
            "MODEL_CATALOG_TICK_SECONDS": str(self.tick_seconds),
            "MODEL_CATALOG_LOCAL_TEST_HOOKS": "1" if self.test_hooks else "0",
        }
        if self.fixed_token:
            extra["MODEL_CATALOG_API_TOKEN"] = self.fixed_token
        if self.config is not None:
            extra["MODEL_CATALOG_CONFIG"] = str(self.config)
        extra.update(self.extra_env)
        extra.update(overrides)
        return isolated_env(extra)

    def launch(self, **env_overrides: str) -> subprocess.Popen[bytes]:
        """Start the subprocess without waiting (see ``start``); for tests of failing starts."""
        self.ready = {}
        self.returncode = None
        self._ready_event.clear()
        self.tree_at_ready = []
        # Under make: the project's `run` recipe with this interpreter; `-o` keeps make from (re)installing the venv.
        command = (
            ["make", "--no-print-directory", "-o", ".venv/.installed", "run", f"PY={sys.executable}"]
            if self.under_make
            else [sys.executable, "-m", "devstack"]
        )
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env=self.environment(**env_overrides),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # so a failed test can kill whatever it started, and nothing else
        )
        self.stdout = _OutputPump(self.process.stdout, self._watch_ready)
        self.stderr = _OutputPump(self.process.stderr)
        return self.process

    def _watch_ready(self, line: str) -> None:
        if line.startswith(READY_PREFIX):
            self.ready = json.loads(line[len(READY_PREFIX) :])
            self._ready_event.set()

    def start(self, **env_overrides: str) -> LocalStack:
        process = self.launch(**env_overrides)
        deadline = time.monotonic() + self.startup_timeout_s
        while not self._ready_event.wait(0.1):
            if process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise StackStartError(
                    f"the local stack did not start (status {process.returncode}).\n"
                    f"--- stdout ---\n{self.stdout_text}\n--- stderr ---\n{self.stderr_text}"
                )
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if self._session.get(self.http_url + "/api/v1/health", timeout=2).status_code == 200:
                    self.tree_at_ready = self.process_tree()
                    return self
            time.sleep(0.1)
        self.kill()
        raise StackStartError(f"/api/v1/health never answered 200\n{self.stderr_text}")

    def wait_exit(self, timeout_s: float = 60.0) -> int:
        assert self.process is not None
        try:
            self.returncode = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the local stack did not exit within {timeout_s} s\n{self.stderr_text}") from None
        for pump in (self.stdout, self.stderr):
            if pump is not None:
                pump.join()
        return self.returncode

    def stop(
        self, expect_clean: bool = True, timeout_s: float = 60.0, signal_number: int = signal.SIGTERM,
        group: bool = False,
    ) -> int:
        """SIGTERM (or Ctrl-C's SIGINT) to the stack, or with ``group`` to its whole process group; with
        ``expect_clean`` assert the stack's exit status 0, that every port is free and no process of it is left.
        Returns the stack's own exit status (under make, read from its last log line)."""
        assert self.process is not None, "not started"
        if self.process.poll() is None:
            if group:
                self.signal_group(signal_number)
            else:
                self.process.send_signal(signal_number)
        self.wait_exit(timeout_s)
        code = self.stack_exit_code()
        if expect_clean:
            assert code == 0, f"the local stack exited with status {code}\n{self.stderr_text}"
            self.assert_nothing_left()
        return code

    def stack_exit_code(self) -> int | None:
        """The exit status of ``python -m devstack`` itself: make (when in between) dies of the signal it got."""
        if not self.under_make:
            return self.returncode
        for entry in reversed(self.log_entries()):
            if entry.get("message") in ("local stack stopped", "local stack forced exit"):
                return int(entry["exit_code"])
        return None

    def assert_nothing_left(self, timeout_s: float = 20.0) -> None:
        """No process of the stack is alive (all of them, as seen when it was ready) and every port is free."""
        deadline = time.monotonic() + timeout_s
        while True:
            alive = [pid for pid in self.tree_at_ready if pid_alive(pid)]
            busy = [port for port in self.ports() if not port_is_free(port)] if self.ready else []
            if not alive and not busy:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"outlived the stack: processes {alive}, ports {busy}\n{self.stderr_text}")
            time.sleep(0.1)

    def process_tree(self) -> list[int]:
        """Every process of the stack: make (if any), ``python -m devstack``, its embedded DynamoDB."""
        assert self.process is not None
        return process_tree(self.process.pid)

    def signal_group(self, signal_number: int) -> None:
        """``kill -<signal> -- -<pgid>``: the stack's process group (make and the stack, as a terminal or a
        supervisor would signal them; the embedded DynamoDB has its own session)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal_number)

    def kill_tree(self) -> list[int]:
        """A crash of everything at once: every process of the tree is frozen (SIGSTOP, so none can react to
        another's death), then SIGKILLed. Returns the pids."""
        pids = self.process_tree()
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        assert self.process is not None
        self.returncode = self.process.wait(timeout=30)
        for pump in (self.stdout, self.stderr):
            if pump is not None:
                pump.join()
        return pids

    def log_entries(self) -> list[dict[str, Any]]:
        """The stack's JSON log lines (its own and its DynamoDB child's)."""
        entries = []
        for line in self.stderr_text.splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    entries.append(json.loads(line))
        return entries

    def restart(self, **env_overrides: str) -> LocalStack:
        self.stop()
        return self.start(**env_overrides)

    def kill(self) -> None:
        """SIGKILL the stack's process group (a crash); its DynamoDB child must then exit on its own."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        self.returncode = self.process.returncode if self.process else None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if exc_type is None:
            self.stop()
        else:  # the test already failed: stop without piling up a second assertion
            with contextlib.suppress(Exception):
                self.stop(expect_clean=False, timeout_s=30)
            self.kill()

    # -- what the stack reported ----------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return self.ready["http_url"]

    @property
    def ws_url(self) -> str:
        return self.ready["ws_url"]

    @property
    def token(self) -> str:
        return self.ready["token"]

    @property
    def ws_connect_url(self) -> str:
        return f"{self.ws_url}/?token={self.token}"

    @property
    def management_endpoint(self) -> str:
        return self.ready["management_endpoint"]

    @property
    def management_base(self) -> str:
        return self.management_endpoint.rsplit("/", 1)[0]

    @property
    def demo_registry_url(self) -> str:
        return self.ready["demo_registry_url"]

    @property
    def dynamodb_endpoint(self) -> str:
        return self.ready["dynamodb_endpoint"]

    def ports(self) -> list[int]:
        urls = [self.http_url, self.ws_url, self.management_endpoint, self.demo_registry_url]
        if self.ready.get("dynamodb_pid"):
            urls.append(self.dynamodb_endpoint)
        return [int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]) for url in urls]

    @property
    def stdout_text(self) -> str:
        return self.stdout.text if self.stdout else ""

    @property
    def stderr_text(self) -> str:
        return self.stderr.text if self.stderr else ""

    # -- HTTP helpers ---------------------------------------------------------------------------------
    def auth_headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def get(self, path: str, token: str | bool | None = True, **kwargs: Any) -> requests.Response:
        """``token=True``: the stack's token; ``False``/``None``: no Authorization header; a str: that token."""
        return self._request("GET", path, token, **kwargs)

    def post(self, path: str, token: str | bool | None = True, **kwargs: Any) -> requests.Response:
        return self._request("POST", path, token, **kwargs)

    def delete(self, path: str, token: str | bool | None = True, **kwargs: Any) -> requests.Response:
        return self._request("DELETE", path, token, **kwargs)

    def _request(self, method: str, path: str, token: str | bool | None, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if token is True:
            headers.update(self.auth_headers())
        elif isinstance(token, str):
            headers.update(self.auth_headers(token))
        kwargs.setdefault("timeout", 60)
        return self._session.request(method, self.http_url + path, headers=headers, **kwargs)

    # -- AWS-side helpers -----------------------------------------------------------------------------
    def dynamodb_client(self) -> Any:
        return dynamodb_client(self.dynamodb_endpoint)

    def dynamodb_write_counts(self) -> dict[str, int]:
        """Successful write calls per table seen by the embedded DynamoDB since it started."""
        response = requests.get(self.dynamodb_endpoint + "/_stats/writes", timeout=10)
        response.raise_for_status()
        return response.json()

    def management_client(self) -> Any:
        """A real boto3 ``apigatewaymanagementapi`` client pointed at the local gateway."""
        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=self.management_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    # -- test hooks (MODEL_CATALOG_LOCAL_TEST_HOOKS=1) ------------------------------------------------
    def connection_ids(self) -> list[str]:
        response = requests.get(self.management_base + "/_test/connections", timeout=10)
        response.raise_for_status()
        return response.json()["connections"]

    def drop_connection(self, connection_id: str) -> None:
        """The client vanishes: its TCP connection is cut and ``$disconnect`` is never called."""
        requests.post(f"{self.management_base}/_test/drop/{connection_id}", timeout=10).raise_for_status()

    def limit_exceeded(self, count: int) -> None:
        """The next ``count`` POSTs to @connections answer 429 LimitExceededException."""
        requests.post(f"{self.management_base}/_test/limit_exceeded?count={count}", timeout=10).raise_for_status()

    def set_registry(self, document: dict[str, Any]) -> None:
        """Replace what the demo registry serves (a registry whose models changed)."""
        requests.put(self.demo_registry_url, data=json.dumps(document), timeout=10).raise_for_status()

    def fail_registry(self, status: int) -> None:
        """Make the demo registry answer ``status`` (0: serve again)."""
        base = self.demo_registry_url.rsplit("/", 1)[0]
        requests.post(f"{base}/_test/fail?status={status}", timeout=10).raise_for_status()

    def reset_registry(self) -> None:
        base = self.demo_registry_url.rsplit("/", 1)[0]
        requests.post(f"{base}/_test/reset", timeout=10).raise_for_status()


def dynamodb_client(endpoint: str, **config: Any) -> Any:
    options = {"max_pool_connections": 64, "retries": {"mode": "standard", "total_max_attempts": 1}, **config}
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=BotoConfig(**options),
    )


class EmbeddedDynamo:
    """Only the embedded DynamoDB (the same child process the stack runs), for tests of DynamoDB semantics.

    ``serialize=False`` removes the request lock — a negative control showing the race it prevents;
    ``widen_races=True`` makes the server switch threads very often so that such races show up quickly.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        serialize: bool = True,
        widen_races: bool = False,
        ttl_sweep_s: float | None = None,
        snapshot_delay_s: float = 0.5,
        wal: bool = True,
        ephemeral_tables: tuple[str, ...] = (),
    ):
        self._process = DynamoProcess(
            state_dir=state_dir,
            serialize=serialize,
            ttl_sweep_s=ttl_sweep_s,
            snapshot_delay_s=snapshot_delay_s,
            env=isolated_env(),
            switch_interval_s=1e-6 if widen_races else None,
            wal=wal,
            ephemeral_tables=ephemeral_tables,
        )

    @property
    def endpoint(self) -> str:
        return self._process.endpoint

    @property
    def pid(self) -> int:
        assert self._process.process is not None
        return self._process.process.pid

    @property
    def restored(self) -> dict[str, Any]:
        """What the server reported about the state it loaded: ``clean``, ``state``, ``reason``, ``replayed``."""
        return self._process.restored

    @property
    def returncode(self) -> int | None:
        assert self._process.process is not None
        return self._process.process.returncode

    def client(self, **config: Any) -> Any:
        return dynamodb_client(self.endpoint, **config)

    def resource(self) -> Any:
        return boto3.resource(
            "dynamodb",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def create_tables(self) -> Any:
        """The tables of infra/tables.json (default names); returns their TableNames."""
        from chalicelib.settings import TableNames
        from devstack.tables import create_tables

        names = TableNames()
        create_tables(self.client(), names)
        return names

    def start(self) -> EmbeddedDynamo:
        self._process.start()
        return self

    def stop(self) -> int | None:
        return self._process.stop()

    def kill(self) -> None:
        """SIGKILL: a crash, so no final snapshot."""
        assert self._process.process is not None
        self._process.process.kill()
        self._process.process.wait(10)
        self._process.stop()

    def __enter__(self) -> EmbeddedDynamo:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()
