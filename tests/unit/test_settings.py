"""Config (docs/reference.md §4) and env overrides (docs/reference.md §1): every accepted spelling, every rejected input."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from chalicelib.catalog_config import DEFAULT_REFRESH_INTERVAL_MS, load_config
from chalicelib.errors import ConfigError
from chalicelib.settings import EXAMPLE_CONFIG, schedule_rate_minutes, settings_from_env

PROVIDER = """
[[providers]]
id = "openai"
kind = "openai"
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None, allow_private: bool = False):
    return load_config(write(tmp_path, text), env or {}, allow_private)


def test_defaults_are_six_hours_and_refresh_on_start(tmp_path: Path) -> None:
    config = load(tmp_path, PROVIDER)
    assert config.model_catalog.refresh_interval_ms == DEFAULT_REFRESH_INTERVAL_MS == 21_600_000
    assert config.model_catalog.refresh_on_start is True
    assert config.providers[0].name is None and config.providers[0].display_name == "openai"


def test_snake_case_section(tmp_path: Path) -> None:
    config = load(tmp_path, "[model_catalog]\nrefresh_interval_ms = 60000\nrefresh_on_start = false\n" + PROVIDER)
    assert (config.model_catalog.refresh_interval_ms, config.model_catalog.refresh_on_start) == (60000, False)


def test_camel_case_section(tmp_path: Path) -> None:
    config = load(tmp_path, "[modelCatalog]\nrefreshIntervalMs = 0\nrefreshOnStart = false\n")
    assert (config.model_catalog.refresh_interval_ms, config.model_catalog.refresh_on_start) == (0, False)


@pytest.mark.parametrize(
    ("env", "interval", "on_start"),
    [
        ({"MODEL_CATALOG_REFRESH_INTERVAL_MS": "1000"}, 1000, False),
        ({"MODEL_CATALOG_REFRESH_INTERVAL_MS": "0"}, 0, False),
        ({"MODEL_CATALOG_REFRESH_ON_START": "yes"}, 60000, True),
        ({"MODEL_CATALOG_REFRESH_ON_START": "TRUE"}, 60000, True),
        ({"MODEL_CATALOG_REFRESH_ON_START": "1"}, 60000, True),
        ({"MODEL_CATALOG_REFRESH_ON_START": "no"}, 60000, False),
    ],
)
def test_env_overrides_win_over_the_file(tmp_path: Path, env, interval, on_start) -> None:
    text = "[model_catalog]\nrefresh_interval_ms = 60000\nrefresh_on_start = false\n"
    config = load(tmp_path, text, env)
    assert (config.model_catalog.refresh_interval_ms, config.model_catalog.refresh_on_start) == (interval, on_start)


def test_env_override_applies_to_camel_case_file(tmp_path: Path) -> None:
    config = load(tmp_path, "[modelCatalog]\nrefreshOnStart = false\n", {"MODEL_CATALOG_REFRESH_ON_START": "true"})
    assert config.model_catalog.refresh_on_start is True


def test_env_override_without_a_section(tmp_path: Path) -> None:
    config = load(tmp_path, PROVIDER, {"MODEL_CATALOG_REFRESH_INTERVAL_MS": "5"})
    assert config.model_catalog.refresh_interval_ms == 5


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("[model_catalog]\nrefresh_interval = 5\n", {}, "model_catalog.refresh_interval: unknown key"),
        ("[modelCatalog]\nrefreshEvery = 5\n", {}, "modelCatalog.refreshEvery: unknown key"),
        ("[model_catalog]\nrefresh_interval_ms = -1\n", {}, "model_catalog.refresh_interval_ms: Input should be greater"),
        ('[model_catalog]\nrefresh_interval_ms = "6h"\n', {}, "model_catalog.refresh_interval_ms: Input should be a valid integer"),
        ('[model_catalog]\nrefresh_on_start = "yes"\n', {}, "model_catalog.refresh_on_start: Input should be a valid boolean"),
        ("[model_catalog\n", {}, "not valid TOML"),
        ("[unknown]\nx = 1\n", {}, "unknown: unknown key"),
        (PROVIDER + PROVIDER, {}, "providers[1].id: duplicate provider id 'openai'"),
        (PROVIDER.replace('"OPENAI_API_KEY"', '"OPENAI-KEY"'), {}, "providers[0].api_key_env: String should match"),
        (PROVIDER.replace('kind = "openai"', 'kind = "bedrock"'), {}, "providers[0].kind: unknown kind 'bedrock'"),
        (PROVIDER.replace('id = "openai"', 'id = "open ai"'), {}, "providers[0].id: String should match"),
        (PROVIDER + 'colour = "red"\n', {}, "providers[0].colour: unknown key"),
        (PROVIDER + 'model_filter = "gpt-("\n', {},
         "providers[0].model_filter: Value error, not a regular expression the linear-time engine (RE2) accepts"),
        (PROVIDER + 'model_filter = "(a)\\\\1"\n', {}, "backreferences and lookaround are not supported"),
        (PROVIDER + "timeout_ms = 0\n", {}, "providers[0].timeout_ms: Input should be greater than 0"),
        ('[[providers]]\nid = "r"\nkind = "registry"\n', {}, "providers[0]: Value error, kind 'registry' requires `url`"),
        (
            '[[providers]]\nid = "o"\nkind = "managed_oauth"\nbase_url = "https://x.example/v1"\n',
            {},
            "requires `token_url`",
        ),
        ("[model_catalog]\n", {"MODEL_CATALOG_REFRESH_ON_START": "maybe"}, "MODEL_CATALOG_REFRESH_ON_START='maybe'"),
        ("[model_catalog]\n", {"MODEL_CATALOG_REFRESH_INTERVAL_MS": "6h"}, "MODEL_CATALOG_REFRESH_INTERVAL_MS='6h'"),
        ("[model_catalog]\n", {"MODEL_CATALOG_REFRESH_INTERVAL_MS": "-5"}, "must not be negative"),
        (
            "[model_catalog]\nrefresh_on_start = true\n[modelCatalog]\nrefreshOnStart = true\n",
            {},
            "either [model_catalog] or [modelCatalog]",
        ),
        ('[[providers]]\nid = "r"\nkind = "registry"\nurl = "${NOPE}"\n', {}, "providers[0].url: environment variable NOPE is not set"),
    ],
)
def test_rejected_inputs_name_file_key_and_problem(tmp_path: Path, text, env, expected) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env)
    message = str(caught.value)
    assert expected in message
    if not env:  # an env override error names the variable instead of the file
        assert str(tmp_path / "catalog.toml") in message


def test_http_and_private_urls_need_the_local_switch(tmp_path: Path) -> None:
    text = '[[providers]]\nid = "local"\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
    with pytest.raises(ConfigError, match=r"providers\[0\]\.base_url: .* must use https://"):
        load(tmp_path, text)
    private = text.replace("http://127.0.0.1:9", "https://10.0.0.8")
    with pytest.raises(ConfigError, match="private or reserved address"):
        load(tmp_path, private)
    assert load(tmp_path, text, allow_private=True).providers[0].base_url == "http://127.0.0.1:9/v1"


def test_env_references_expand_with_defaults(tmp_path: Path) -> None:
    text = '[[providers]]\nid = "demo"\nkind = "registry"\nurl = "${DEMO_URL:-http://127.0.0.1:1/api.json}"\n'
    assert load(tmp_path, text, allow_private=True).providers[0].url == "http://127.0.0.1:1/api.json"
    env = {"DEMO_URL": "http://127.0.0.1:2/x.json"}
    assert load(tmp_path, text, env, allow_private=True).providers[0].url == "http://127.0.0.1:2/x.json"


def test_kind_defaults_and_camel_case_provider_keys(tmp_path: Path) -> None:
    text = '[[providers]]\nid = "claude"\nkind = "anthropic"\napiKeyEnv = "ANTHROPIC_API_KEY"\ntimeoutMs = 2500\n'
    provider = load(tmp_path, text).providers[0]
    assert provider.base_url == "https://api.anthropic.com/v1"
    assert (provider.api_key_env, provider.timeout_ms) == ("ANTHROPIC_API_KEY", 2500)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "nope.toml", {}, False)


def test_settings_from_env_reads_the_environment_once(tmp_path: Path) -> None:
    path = write(tmp_path, PROVIDER)
    settings = settings_from_env(
        {
            "MODEL_CATALOG_CONFIG": str(path),
            "MODEL_CATALOG_API_TOKEN": "t0ken",
            "MODEL_CATALOG_DYNAMODB_ENDPOINT": "aws",
            "MODEL_CATALOG_CATALOG_TABLE": "cat",
            "OPENAI_API_KEY": "sk-test",
        }
    )
    assert settings.api_token == "t0ken"
    assert settings.dynamodb_endpoint is None  # "aws" means the real service
    assert settings.tables.catalog == "cat"
    assert settings.secret_env("OPENAI_API_KEY") == "sk-test"
    assert settings.allow_private_urls is False
    assert settings.deployment_id.startswith("code-")


def test_bundled_example_config_is_valid() -> None:
    config = load_config(EXAMPLE_CONFIG, {}, allow_private_urls=True)
    kinds = {p.kind for p in config.providers}
    assert {"registry", "openai", "anthropic", "gemini", "openrouter", "ollama"} <= kinds


def test_schedule_rate_is_a_stage_setting() -> None:
    assert schedule_rate_minutes({}) == 1
    assert schedule_rate_minutes({"MODEL_CATALOG_SCHEDULE_RATE_MINUTES": "5"}) == 5
    with pytest.raises(ConfigError, match="minimum is 1 minute"):
        schedule_rate_minutes({"MODEL_CATALOG_SCHEDULE_RATE_MINUTES": "0"})


def test_secrets_never_appear_in_repr_of_settings_or_config(tmp_path) -> None:
    config = tmp_path / "catalog.toml"
    config.write_text(
        '[[providers]]\nid = "x"\nkind = "openai"\n'
        'base_url = "https://user:hunter2@api.example.com/v1?api_key=sk-in-url"\n'
        'headers = { Authorization = "Bearer sk-in-header", X-Team = "research" }\n'
    )
    settings = settings_from_env({"MODEL_CATALOG_CONFIG": str(config), "MODEL_CATALOG_API_TOKEN": "admin-tok-1"})
    for text in (repr(settings), str(settings), repr(settings.config.providers[0]), str(settings.config)):
        for secret in ("admin-tok-1", "hunter2", "sk-in-url", "sk-in-header", "research"):
            assert secret not in text, (secret, text)
    shown = repr(settings.config.providers[0])
    assert "base_url='https://api.example.com/v1?…'" in shown and "headers={'Authorization': '***'" in shown
    # The values themselves are intact for the code that uses them.
    assert settings.api_token == "admin-tok-1"
    assert settings.config.providers[0].headers["Authorization"] == "Bearer sk-in-header"


@pytest.mark.parametrize(
    ("options", "fits"),
    [
        ("", True),  # the defaults: 5 s + 15 s
        ("lock_wait_ms = 2000\nmanual_run_deadline_ms = 20000\n", True),
        ("lock_wait_ms = 8000\nmanual_run_deadline_ms = 18000\n", False),  # version 1's defaults: 26 s + commit
        ("manual_run_deadline_ms = 20000\n", False),
    ],
)
def test_a_manual_refresh_budget_over_the_rest_timeout_is_a_startup_error(tmp_path: Path, options, fits) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[model_catalog]\n" + options)
    if fits:
        load_config(path, {})
        return
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    message = str(caught.value)
    assert message.startswith(f"{path}: model_catalog: lock_wait_ms (")
    assert "manual_run_deadline_ms" in message and "at most 22000 ms" in message and "29 s" in message
