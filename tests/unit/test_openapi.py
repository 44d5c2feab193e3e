"""The OpenAPI document (chalicelib/entrypoints/openapi.py): fast checks, no stack. tests/e2e/test_schemathesis.py fuzzes the
running service against it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
from chalice.test import Client
from jsonschema import Draft202012Validator

from chalicelib.core.domain import (
    CAPABILITIES,
    Model,
    Pricing,
    Provider,
    ProviderChange,
    ProviderFailure,
    RefreshResult,
    RefreshStatus,
)
from chalicelib.entrypoints import openapi, rest
from chalicelib.entrypoints.query_params import MODEL_PARAMETERS
from chalicelib.errors import LockLost, RefreshInProgress
from tests.conftest import REPO

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
DOMAIN_MODELS = (Model, Pricing, Provider, ProviderChange, ProviderFailure, RefreshResult, RefreshStatus)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi.document()


@pytest.fixture(scope="module")
def chalice_app():
    from app import app

    return app


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def validator(document: dict[str, Any], name: str) -> Draft202012Validator:
    """A validator for ``#/components/schemas/<name>`` that resolves the document's own $refs."""
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": document["components"]})


def response_schema(document: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in response:
        response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response["content"]["application/json"]["schema"]


def test_the_document_is_valid_openapi_3_1(document) -> None:
    validate = pytest.importorskip("openapi_spec_validator").validate
    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_a_broken_document_is_rejected_by_the_validator(document) -> None:
    """Control for the test above: the validator does reject a document with a dangling $ref."""
    spec_validator = pytest.importorskip("openapi_spec_validator")
    broken = json.loads(json.dumps(document))
    broken["paths"]["/api/v1/providers"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = {
        "$ref": "#/components/schemas/Nope"
    }
    with pytest.raises(Exception, match="Nope"):
        spec_validator.validate(broken)


def test_every_route_of_app_py_is_documented_with_its_methods(document, chalice_app) -> None:
    routes = {
        (method, path): entry.view_name for path, methods in chalice_app.routes.items() for method, entry in methods.items()
    }
    documented = operations(document)
    assert set(documented) == set(routes)
    assert {key: op["operationId"] for key, op in documented.items()} == routes


def test_path_parameters_match_the_route_variables(document) -> None:
    for (method, path), operation in operations(document).items():
        variables = set(re.findall(r"{(\w+)}", path))
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == variables, f"{method} {path}"


def test_models_takes_the_filters_and_paging_of_section_8(document) -> None:
    parameters = {p["name"]: p for p in document["paths"]["/api/v1/models"]["get"]["parameters"] if p["in"] == "query"}
    assert set(parameters) == set(MODEL_PARAMETERS)
    assert all(not p.get("required") for p in parameters.values())
    assert all(p["allowEmptyValue"] for p in parameters.values())  # query_params reads "" as absent
    assert parameters["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 5_000}
    assert parameters["capability"]["schema"]["items"]["enum"] == list(CAPABILITIES)
    assert (parameters["capability"]["style"], parameters["capability"]["explode"]) == ("form", True)
    assert parameters["status"]["schema"]["enum"] == ["active", "deprecated"]
    model_list = document["components"]["schemas"]["ModelList"]
    assert model_list["required"] == ["revision", "models"] and "next_cursor" in model_list["properties"]


def test_the_bearer_scheme_protects_every_route_but_the_public_ones(document) -> None:
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert document["security"] == [{"bearer": []}]
    public = {path for (_, path), op in operations(document).items() if op.get("security") == []}
    import app  # noqa: F401 - registers the routes and the scope each declares

    # Routes that take a `read` token in their path lift the bearer requirement too, and answer 401 for a bad one.
    in_url = {path for (_, path) in rest.PATH_TOKEN_ROUTES}
    assert in_url and in_url <= public
    public -= in_url
    assert public == rest.public_paths() == {"/", "/assets/{name}", "/api/v1/health", "/api/v1/openapi.json"}
    for (method, path), operation in operations(document).items():
        if path in in_url:
            assert operation["responses"]["401"] == {"$ref": "#/components/responses/Unauthorized"}
            assert operation["responses"]["403"] == {"$ref": "#/components/responses/UrlTokenRefused"}
        elif path in public:
            assert "401" not in operation["responses"], f"{method} {path}"
        else:
            assert "security" not in operation, f"{method} {path} must inherit the bearer requirement"
            assert operation["responses"]["401"] == {"$ref": "#/components/responses/Unauthorized"}


def test_every_error_answer_uses_the_error_envelope(document) -> None:
    for (method, path), operation in operations(document).items():
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            schema = response_schema(document, response)
            assert schema["allOf"][0] == {"$ref": "#/components/schemas/Error"}, f"{method} {path} {status}"


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"error": {"code": "provider_not_found", "message": "no provider with id 'x' in the config"}}, True),
        ({"error": {"code": "unauthorized", "message": ""}}, True),
        ({"error": {"code": "NotFound", "message": "x"}}, False),  # not snake_case
        ({"error": {"code": "not_found"}}, False),
        ({"error": {"message": "x"}}, False),
        ({"error": "not_found"}, False),
        ({"error": {"code": "not_found", "message": "x"}, "detail": "extra"}, False),
        ({"Message": "Missing Authentication Token"}, False),  # API Gateway's own shape
    ],
)
def test_the_error_envelope_schema(document, body, valid) -> None:
    assert validator(document, "Error").is_valid(body) is valid


def test_each_error_status_names_its_codes(document) -> None:
    responses = document["components"]["responses"]

    def codes(name: str) -> list[str]:
        return responses[name]["content"]["application/json"]["schema"]["allOf"][1]["properties"]["error"][
            "properties"
        ]["code"]["enum"]

    assert codes("Unauthorized") == ["unauthorized"]
    assert set(codes("NotFound")) == {"not_found", "provider_not_found"}
    assert set(codes("BadRequest")) == {"bad_request", "invalid_parameter", "page_required", "unknown_action"}
    assert codes("RefreshInProgress") == ["refresh_in_progress"]
    assert "internal_error" in codes("InternalError")


def test_refresh_routes_document_409_with_a_required_retry_after(document) -> None:
    conflict = document["components"]["responses"]["RefreshInProgress"]
    assert conflict["headers"]["Retry-After"]["required"] is True
    assert conflict["headers"]["Retry-After"]["schema"]["type"] == "integer"
    posts = {path for (method, path), op in operations(document).items() if method == "POST" and "refresh" in op["tags"]}
    assert len(posts) == 5
    for path in posts:
        responses = document["paths"][path]["post"]["responses"]
        assert responses["409"] == {"$ref": "#/components/responses/RefreshInProgress"}, path
        assert responses["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/RefreshResult"
        }


def test_documented_statuses_per_route(document) -> None:
    statuses = {key: set(op["responses"]) for key, op in operations(document).items()}
    assert statuses[("GET", "/api/v1/models")] == {"200", "304", "400", "401", "500", "503"}
    assert statuses[("GET", "/api/v1/providers")] == {"200", "304", "401", "500", "503"}
    assert statuses[("GET", "/api/v1/changes")] == {"200", "400", "401", "500", "503"}
    assert statuses[("GET", "/api/v1/changes.atom")] == {"200", "304", "401", "500", "503"}
    refresh = {"403"}  # a `read` token is refused from refreshing (insufficient_scope)
    assert statuses[("POST", "/api/v1/providers/{provider_id}")] == {"200", "400", "401", "404", "409", "500", "503"} | refresh
    assert statuses[("POST", "/api/v1/{resource}")] == {"200", "400", "401", "404", "409", "500", "503"} | refresh
    assert statuses[("POST", "/api/v1/providers/{provider_id}/refresh")] == {"200", "401", "404", "409", "500", "503"} | refresh
    assert statuses[("POST", "/api/v1/providers:refresh")] == {"200", "401", "409", "500", "503"} | refresh
    assert statuses[("POST", "/api/v1/tokens")] == {"201", "400", "401", "403", "500", "503"}
    assert statuses[("DELETE", "/api/v1/tokens/{token_id}")] == {"204", "401", "403", "404", "500", "503"}
    assert statuses[("GET", "/api/v1/export/litellm.json")] == {"200", "304", "401", "500", "503"}
    assert statuses[("GET", "/api/v1/feeds/{token}/models.dev")] == {"200", "304", "401", "403", "500", "503"}
    assert statuses[("GET", "/api/v1/health")] == {"200", "500"}


def test_component_schemas_come_from_the_domain_models(document) -> None:
    schemas = document["components"]["schemas"]
    # Only on a result too big to store or send whole: the flag and the lengths of the lists that had to go.
    optional = {"RefreshResult": {"truncated", "changed_count", "unchanged_count", "failed_count"},
                "ProviderChange": {"added_count", "removed_count", "updated_count"}}
    for model in DOMAIN_MODELS:
        schema = schemas[model.__name__]
        assert set(schema["properties"]) == set(model.model_fields) | optional.get(model.__name__, set()), model.__name__
        assert schema["required"] == list(model.model_fields)  # the service always sends every field
        assert schema["additionalProperties"] is False
    assert schemas["Model"]["properties"]["capabilities"]["items"]["enum"] == list(CAPABILITIES)
    assert not any("$defs" in schema for schema in schemas.values())


def test_every_ref_resolves(document) -> None:
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    assert refs
    for ref in refs:
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        assert isinstance(target, dict), ref


def test_what_the_service_sends_validates_and_a_drifted_body_does_not(document) -> None:
    result = RefreshResult(
        revision=3,
        changed=[ProviderChange(provider_id="openai", provider_name="OpenAI", added=["gpt-x"])],
        unchanged=["groq"],
        failed=[ProviderFailure(provider_id="broken", reason="the provider requires an API key")],
    ).model_dump(mode="json")
    assert validator(document, "RefreshResult").is_valid(result)
    status = RefreshStatus(refresh_interval_ms=0, refresh_on_start=False, last_run=result).model_dump(mode="json")
    assert validator(document, "RefreshStatus").is_valid(status)
    model = Model(provider_id="openrouter", id="a/b", capabilities=("tools", "vision"),
                  pricing=Pricing(input_per_mtok=0.5, output_per_mtok=1.5)).model_dump(mode="json")
    models = validator(document, "ModelList")
    assert models.is_valid({"revision": 3, "models": [model]})
    assert models.is_valid({"revision": 3, "models": [model], "next_cursor": None})
    # Drift the checks must catch: a missing field, an undocumented one, a wrong type, an unknown capability.
    assert not models.is_valid({"revision": 3, "models": [{k: v for k, v in model.items() if k != "pricing"}]})
    assert not models.is_valid({"revision": 3, "models": [{**model, "api_key": "sk-..."}]})
    assert not models.is_valid({"revision": "3", "models": [model]})
    assert not models.is_valid({"revision": 3, "models": [{**model, "capabilities": ["telepathy"]}]})
    assert not validator(document, "RefreshResult").is_valid({**result, "changed": [{"provider_id": "x"}]})


def test_the_document_is_served_without_a_token(chalice_app, tmp_path) -> None:
    with Client(chalice_app, project_dir=str(tmp_path)) as client:
        response = client.http.get("/api/v1/openapi.json")
    assert response.status_code == 200  # no token configured, none sent
    assert json.loads(response.body) == openapi.document()


def test_the_server_url_resolves_against_the_document_url(document) -> None:
    from urllib.parse import urljoin

    (server,) = document["servers"]
    assert urljoin("http://127.0.0.1:8000/api/v1/openapi.json", server["url"]) == "http://127.0.0.1:8000/"
    assert urljoin("https://x.example/api/api/v1/openapi.json", server["url"]) == "https://x.example/api/"


def test_document_returns_a_fresh_copy_of_one_cached_build(monkeypatch) -> None:
    first = openapi.document()
    first["paths"].clear()
    monkeypatch.setattr(openapi, "_build", lambda: pytest.fail("the document was built twice"))
    assert openapi.document()["paths"]


def test_importing_the_module_does_not_import_pydantic() -> None:
    code = "import sys, chalicelib.entrypoints.openapi; print('pydantic' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.parametrize(
    ("error", "retry_after"),
    [(RefreshInProgress(7), "7"), (LockLost("the refresh lock was taken over; nothing written"), "1")],
)
def test_every_409_of_the_edge_carries_the_documented_retry_after(document, error, retry_after) -> None:
    views: dict[str, Any] = {}

    class RecordingApp:
        def route(self, path: str, **_: Any) -> Any:
            return lambda view: views.setdefault(path, view)

    @rest.router(RecordingApp())("/refresh", scope="refresh")
    def refresh() -> None:
        raise error

    response = views["/refresh"]()
    assert response.status_code == 409
    assert response.headers["Retry-After"] == retry_after
    assert validator(document, "Error").is_valid(response.body)


def test_lifecycle_modalities_cache_prices_and_field_changes_are_documented(document) -> None:
    """docs/reference.md §10: the new Model fields and RefreshResult's changes, as the service sends them."""
    from datetime import date

    from chalicelib.core.domain import FieldChange, Modalities

    model = Model(
        provider_id="or", id="a/b", status="deprecated", retires_at=date(2026, 10, 23),
        modalities=Modalities(input=("text", "image"), output=("text",)),
        pricing=Pricing(input_per_mtok=3.0, output_per_mtok=15.0, cache_read_per_mtok=0.3),
    ).model_dump(mode="json")
    assert model["retires_at"] == "2026-10-23" and model["pricing"]["cache_write_per_mtok"] is None
    models = validator(document, "ModelList")
    assert models.is_valid({"revision": 1, "models": [model]})
    assert not models.is_valid({"revision": 1, "models": [{**model, "status": "retired"}]})
    assert not models.is_valid({"revision": 1, "models": [{**model, "status": None}]})  # never null
    assert not models.is_valid({"revision": 1, "models": [{**model, "modalities": {"input": ["smell"], "output": []}}]})
    assert not models.is_valid({"revision": 1, "models": [{k: v for k, v in model.items() if k != "status"}]})
    change = ProviderChange(provider_id="or", provider_name="OpenRouter", updated=["a/b"], changes=[
        FieldChange(model_id="a/b", field="context_length", before=128_000, after=200_000),
        FieldChange(model_id="a/b", field="pricing", before=None, after=model["pricing"]),
    ])
    result = RefreshResult(revision=2, changed=[change]).model_dump(mode="json")
    results = validator(document, "RefreshResult")
    assert results.is_valid(result)
    drifted = {**result["changed"][0], "changes": [{**result["changed"][0]["changes"][0], "field": "colour"}]}
    assert not results.is_valid({**result, "changed": [drifted]})
