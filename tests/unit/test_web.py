"""The web page's server side: the shell, the asset allowlist, and the headers that keep the page safe."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from chalice.test import Client

from chalicelib.entrypoints import webpage as web

STATIC = web.STATIC_DIR


def _csp(headers: dict[str, str]) -> dict[str, str]:
    directives = [part.strip() for part in headers["Content-Security-Policy"].split(";")]
    return {d.split(" ", 1)[0]: d.split(" ", 1)[1] if " " in d else "" for d in directives}


def test_index_serves_the_page_shell_with_versioned_asset_urls() -> None:
    response = web.index()

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    html = response.body
    assert "{{" not in html  # every placeholder is filled in
    referenced = re.findall(r'(?:src|href)="assets/([^"?]+)\?v=([0-9a-f]{12})"', html)
    assert {name for name, _ in referenced} == {"app.js", "format.js", "app.css", "favicon.svg"}
    # The formatter defines window.CatalogFormat, which the page script reads: it must come first.
    assert html.index("assets/format.js") < html.index("assets/app.js")
    assert set(web.ASSETS) >= {name for name, _ in referenced}


def test_asset_version_changes_with_asset_content(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [*web.ASSETS, "index.html"]:
        shutil.copy(STATIC / name, tmp_path / name)
    monkeypatch.setattr(web, "STATIC_DIR", tmp_path)
    web._page.cache_clear()
    try:
        before = re.search(r"\?v=([0-9a-f]+)", web.index().body).group(1)
        (tmp_path / "app.js").write_text("console.log('changed');\n")
        web._page.cache_clear()
        after = re.search(r"\?v=([0-9a-f]+)", web.index().body).group(1)
    finally:
        web._page.cache_clear()
    assert before != after


def test_index_csp_allows_only_the_hashed_inline_script() -> None:
    response = web.index()
    policy = _csp(response.headers)

    assert policy["default-src"] == "'none'"
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    inline = re.findall(r"<script>(.*?)</script>", response.body, re.DOTALL)
    assert inline, "the trailing-slash redirect is an inline script"
    for body in inline:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy["script-src"]
    assert "ws:" in policy["connect-src"] and "wss:" in policy["connect-src"]
    assert policy["frame-ancestors"] == "'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("app.js", "text/javascript"), ("format.js", "text/javascript"), ("app.css", "text/css"),
     ("favicon.svg", "image/svg+xml")],
)
def test_assets_are_served_with_their_content_type(name: str, content_type: str) -> None:
    response = web.asset(name)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(content_type)
    assert response.body == (STATIC / name).read_text(encoding="utf-8")
    assert "immutable" in response.headers["Cache-Control"]


@pytest.mark.parametrize(
    "name",
    [
        "../web.py",
        "..%2Fweb.py",
        "../../app.py",
        "/etc/passwd",
        "app.js/../../app.py",
        "index.html",  # the shell is served at / only
        "APP.JS",
        "app.js\x00",
        "",
        "static/app.js",
        "..",
    ],
)
def test_unknown_or_traversing_asset_names_are_404(name: str) -> None:
    response = web.asset(name)

    assert response.status_code == 404
    assert json.loads(response.body)["error"]["code"] == "not_found"


SCRIPTS = ("app.js", "format.js")


@pytest.mark.parametrize("name", SCRIPTS)
def test_page_script_never_writes_html_from_strings(name: str) -> None:
    """Provider data must reach the DOM as text only: the scripts may not use any HTML-parsing sink, nor inline
    event handlers or style attributes (the CSP would refuse them)."""
    script = (STATIC / name).read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "setAttribute(\"on", "setAttribute(\"style", "srcdoc"):
        assert sink not in script, sink


def test_page_shell_has_no_inline_handlers_or_styles() -> None:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"\son[a-z]+\s*=", html)
    assert " style=" not in html and "<style" not in html


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed; the browser test parses app.js too")
@pytest.mark.parametrize("name", SCRIPTS)
def test_page_script_parses(name: str) -> None:
    completed = subprocess.run(["node", "--check", str(STATIC / name)], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr


@pytest.fixture
def app_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from chalicelib.bootstrap import bootstrap
    from chalicelib.settings import settings_from_env

    config = tmp_path / "catalog.toml"
    config.write_text('[model_catalog]\nrefresh_on_start = false\n')
    monkeypatch.setenv("MODEL_CATALOG_CONFIG", str(config))
    monkeypatch.setenv("MODEL_CATALOG_API_TOKEN", "web-test-token")
    monkeypatch.setenv("MODEL_CATALOG_WS_URL", "ws://127.0.0.1:1/")
    import app

    # project_dir without .chalice/: the stage's environment_variables must not replace this test's.
    with app.runtime.use(bootstrap(settings_from_env())), Client(app.app, project_dir=str(tmp_path)) as client:
        yield client


def test_page_and_assets_need_no_token_through_the_app(app_client: Client) -> None:
    page = app_client.http.get("/")
    assert page.status_code == 200
    assert b"<title>Model catalog</title>" in page.body

    script = app_client.http.get("/assets/app.js")
    assert script.status_code == 200
    assert script.headers["Content-Type"].startswith("text/javascript")

    missing = app_client.http.get("/assets/secrets.txt")
    assert missing.status_code == 404
    assert json.loads(missing.body)["error"]["code"] == "not_found"


def test_client_config_needs_the_token_and_names_the_ws_url(app_client: Client) -> None:
    assert app_client.http.get("/api/v1/client-config").status_code == 401

    response = app_client.http.get(
        "/api/v1/client-config", headers={"Authorization": "Bearer web-test-token"}
    )
    assert response.status_code == 200
    assert json.loads(response.body) == {"ws_url": "ws://127.0.0.1:1/", "api_prefix": "/api/v1"}
