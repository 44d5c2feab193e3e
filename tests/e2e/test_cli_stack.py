"""The CLI end to end: ``python -m chalicelib.cli`` as a subprocess against the local stack (``python -m devstack``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import catalog_cli as cli
from tests.conftest import REPO
from tests.stack import closed_port

INTERVAL_MS = 6000  # long enough that a loaded machine's CLI start-up (~1 s each) never spans it
DEPLOYMENT_ID = "cli-e2e-deployment"


def registry_document(*model_keys: str) -> dict[str, Any]:
    models = {key: {"id": key, "name": key, "limit": {"context": 32_000, "output": 4_000},
                    "cost": {"input": 1, "output": 2}} for key in model_keys}
    return {"acme": {"id": "acme", "name": "Acme", "models": models}}


@dataclass
class Live:
    stack: Any
    fake: Any
    config: Path
    keys: list[str]

    def client_env(self, **extra: str) -> dict[str, str]:
        from tests.stack import isolated_env

        return isolated_env({cli.URL_ENV: self.stack.http_url, cli.TOKEN_ENV: self.stack.token, **extra})

    def tick_env(self, **extra: str) -> dict[str, str]:
        """What an operator's cron job would set: the service's settings and AWS access, no URL or token."""
        from tests.stack import isolated_env

        return isolated_env({
            "MODEL_CATALOG_CONFIG": str(self.config),
            "MODEL_CATALOG_ALLOW_PRIVATE_URLS": "1",
            "MODEL_CATALOG_DYNAMODB_ENDPOINT": self.stack.dynamodb_endpoint,
            "MODEL_CATALOG_WS_MANAGEMENT_ENDPOINT": self.stack.management_endpoint,
            "MODEL_CATALOG_DEPLOYMENT_ID": DEPLOYMENT_ID,
            "MODEL_CATALOG_LOCAL_KEY_FILE": str(self.stack.state_dir / "oauth.key"),
            **extra,
        })

    def run(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "chalicelib.cli", *argv], cwd=REPO,
                              env=env or self.client_env(), capture_output=True, text=True, timeout=120)

    def publish(self, *added: str) -> None:
        self.keys.extend(added)
        self.fake.route("GET", "/api.json", json=registry_document(*self.keys))

    def refresh_from_outside(self) -> dict[str, Any]:
        response = self.stack.post("/api/v1/providers/registry:refresh")
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from tests.fakes.provider_server import FakeProviderServer
    from tests.stack import LocalStack

    tmp = tmp_path_factory.mktemp("cli-stack")
    keys = ["one", "two"]
    with FakeProviderServer() as fake:
        fake.route("GET", "/api.json", json=registry_document(*keys))
        fake.route("GET", "/flaky/v1/models", status=401, json={"error": {"message": "bad key"}})
        config = tmp / "catalog.toml"
        config.write_text(
            f"[model_catalog]\nrefresh_interval_ms = {INTERVAL_MS}\nrefresh_on_start = false\n\n"
            '[[providers]]\nid = "registry"\nname = "Acme registry"\nkind = "registry"\n'
            f'url = "{fake.url}/api.json"\n\n'
            f'[[providers]]\nid = "flaky"\nkind = "openai"\nbase_url = "{fake.url}/flaky/v1"\n'
        )
        # The stack's own scheduler stays quiet (tick_seconds=3600): only the CLI's `tick` drives the schedule.
        with LocalStack(tmp, config=config, env={"MODEL_CATALOG_DEPLOYMENT_ID": DEPLOYMENT_ID}) as stack:
            current = Live(stack, fake, config, keys)
            current.refresh_from_outside()  # every test starts from a filled catalog, whatever ran before
            yield current


@pytest.mark.stack
def test_stack_refresh_providers_models_and_status(live: Live) -> None:
    live.publish("cli-added")
    one = live.run("refresh", "--provider", "registry")
    assert one.returncode == cli.EXIT_OK, one.stderr
    assert "+ acme/cli-added" in one.stdout

    everything = live.run("refresh")
    assert everything.returncode == cli.EXIT_FAILED, everything.stderr
    assert "FAILED flaky:" in everything.stdout and "unchanged: registry" in everything.stdout

    providers = live.run("providers")
    assert providers.returncode == 0, providers.stderr
    flaky = next(line for line in providers.stdout.splitlines() if line.startswith("flaky"))
    assert "401" in flaky  # its last error names what went wrong
    registry = next(line for line in providers.stdout.splitlines() if line.startswith("registry"))
    assert registry.split()[registry.split().index("registry") + 1 :][:4] == ["Acme", "registry", "registry",
                                                                              str(len(live.keys))]

    models = live.run("models", "--provider", "registry", "--json")
    assert models.returncode == 0, models.stderr
    assert {m["id"] for m in json.loads(models.stdout)["models"]} == {f"acme/{k}" for k in live.keys}
    table = live.run("models")
    assert any(line.split()[:2] == ["registry", "acme/cli-added"] for line in table.stdout.splitlines())

    status = live.run("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["refresh_interval_ms"] == INTERVAL_MS


@pytest.mark.stack
def test_stack_usage_and_auth_errors(live: Live) -> None:
    unknown = live.run("refresh", "--provider", "nope")
    assert unknown.returncode == cli.EXIT_USAGE
    assert "no provider with id 'nope'" in unknown.stderr

    wrong = live.run("providers", env=live.client_env(**{cli.TOKEN_ENV: "not-the-token"}))
    assert wrong.returncode == cli.EXIT_USAGE
    assert "HTTP 401" in wrong.stderr


class _Lines:
    """Collects a subprocess pipe's lines on a thread; ``wait_for`` blocks until one contains a text."""

    def __init__(self, stream: Any):
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, text: str, count: int = 1, timeout: float = 30) -> None:
        with self._changed:
            found = self._changed.wait_for(lambda: sum(text in line for line in self.lines) >= count, timeout)
        assert found, f"never saw {text!r} ({count}x) in:\n" + "\n".join(self.lines)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _watch(live: Live, *argv: str) -> tuple[subprocess.Popen[str], _Lines, _Lines]:
    process = subprocess.Popen([sys.executable, "-m", "chalicelib.cli", "watch", *argv], cwd=REPO,
                               env=live.client_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, _Lines(process.stdout), _Lines(process.stderr)


@pytest.mark.stack
def test_stack_watch_prints_the_diff_of_an_outside_refresh(live: Live) -> None:
    process, out, err = _watch(live, "--count", "1")
    try:
        err.wait_for("subscribed:")
        live.publish("watched-1")
        live.refresh_from_outside()
        assert process.wait(timeout=30) == cli.EXIT_OK, err.text
    finally:
        process.kill()
    assert "catalog changed" in out.text
    assert "  registry (Acme registry): 1 added, 0 removed, 0 updated" in out.text
    assert "    + acme/watched-1" in out.text


@pytest.mark.stack
def test_stack_watch_resumes_after_the_connection_drops(live: Live) -> None:
    process, out, err = _watch(live, "--count", "2", "--json")
    try:
        err.wait_for("subscribed:")
        live.publish("before-drop")
        live.refresh_from_outside()
        out.wait_for("acme/before-drop")
        for connection_id in live.stack.connection_ids():
            live.stack.drop_connection(connection_id)  # the TCP connection vanishes, no close frame
        live.publish("after-drop")
        live.refresh_from_outside()
        assert process.wait(timeout=60) == cli.EXIT_OK, err.text
    finally:
        process.kill()
    events = [json.loads(line) for line in out.lines]
    assert [e["payload"]["changed"][0]["added"] for e in events] == [["acme/before-drop"], ["acme/after-drop"]]
    assert events[1]["seq"] == events[0]["seq"] + 1
    assert "reconnecting" in err.text and "resubscribed:" in err.text


def _tick(live: Live, **env: str) -> tuple[dict[str, Any], int, float, float]:
    started = time.monotonic()
    completed = live.run("tick", "--json", env=live.tick_env(**env))
    assert completed.returncode in (cli.EXIT_OK, cli.EXIT_FAILED), completed.stderr
    return json.loads(completed.stdout), completed.returncode, started, time.monotonic()


@pytest.mark.stack
def test_stack_tick_honours_the_due_time(live: Live) -> None:
    first, code, first_started, _ = _tick(live)
    if first["ran"]:  # the stack's start-up tick anchored the interval long enough ago: this one was due
        first, code, first_started, _ = _tick(live)
    assert first["ran"] is False and code == cli.EXIT_OK, first
    # Either the interval starts now (nothing on record) or a countdown from an earlier tick runs.
    match = re.search(r"next refresh in (\d+) ms", first["reason"])
    wait_ms = int(match.group(1)) if match else INTERVAL_MS
    assert match or "interval starts now" in first["reason"], first["reason"]

    live.publish("ticked")
    deadline = time.monotonic() + INTERVAL_MS / 1000 + 30
    outcome, code, _, ended = _tick(live)
    while not outcome["ran"] and time.monotonic() < deadline:
        assert "next refresh in" in outcome["reason"], outcome
        time.sleep(0.2)
        outcome, code, _, ended = _tick(live)
    assert outcome["ran"] is True, outcome
    # Not early: the due-check that ran came at least the announced wait after the first check.
    assert ended - first_started >= wait_ms / 1000
    assert "interval elapsed" in outcome["reason"]
    assert code == cli.EXIT_FAILED  # the result carries the flaky provider's failure
    registry_change = next(c for c in outcome["result"]["changed"] if c["provider_id"] == "registry")
    assert "acme/ticked" in registry_change["added"]

    again, code, _, _ = _tick(live)
    assert again["ran"] is False and code == cli.EXIT_OK, (again, outcome)
    remaining = int(re.search(r"next refresh in (\d+) ms", again["reason"]).group(1))
    assert 0 < remaining <= INTERVAL_MS

    # The scheduled run also reached the service: GET /models has the new model.
    models = live.stack.get("/api/v1/models", params={"provider_id": "registry"}).json()["models"]
    assert "acme/ticked" in {m["id"] for m in models}


@pytest.mark.stack
def test_stack_tick_refreshes_once_for_a_new_deployment_with_refresh_on_start(live: Live) -> None:
    new_deployment = {"MODEL_CATALOG_DEPLOYMENT_ID": "cli-e2e-next", "MODEL_CATALOG_REFRESH_ON_START": "1",
                      "MODEL_CATALOG_REFRESH_INTERVAL_MS": "0"}

    started, _, _, _ = _tick(live, **new_deployment)
    assert started["ran"] is True and "refresh_on_start" in started["reason"], started

    repeat, code, _, _ = _tick(live, **new_deployment)
    assert repeat["ran"] is False and code == cli.EXIT_OK, repeat
    assert "disabled" in repeat["reason"]


@pytest.mark.stack
def test_stack_tick_without_dynamodb_exits_3(live: Live) -> None:
    completed = live.run("tick", env=live.tick_env(MODEL_CATALOG_DYNAMODB_ENDPOINT=f"http://127.0.0.1:{closed_port()}"))
    assert completed.returncode == cli.EXIT_UNREACHABLE, completed.stderr
    assert "cannot reach DynamoDB" in completed.stderr
