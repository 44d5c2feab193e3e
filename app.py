"""model-catalog: routes only. The service is wired in chalicelib/bootstrap.py (README, "Architecture")."""

from collections.abc import Callable
from typing import Any

from chalice import Chalice, Rate

from chalicelib.bootstrap import Runtime
from chalicelib.entrypoints import openapi as openapi_document
from chalicelib.entrypoints import rest, webpage
from chalicelib.exports import export_paths, route_id
from chalicelib.settings import schedule_rate_minutes

app = Chalice(app_name="model-catalog")
# WebSocket handlers are an opt-in feature in Chalice 1.34: `chalice package`/`deploy` refuse them otherwise.
app.experimental_feature_flags.update(["WEBSOCKETS"])
runtime = Runtime()  # built on first use: `import app` creates no AWS client
app.register_middleware(rest.http_middleware(runtime), "http")
route = rest.router(app)  # app.route + the error envelope
PREFIX = "/api/v1"


@route("/", scope=None, methods=["GET"])
def web_page():
    return webpage.index()


@route("/assets/{name}", scope=None, methods=["GET"])
def web_asset(name):
    return webpage.asset(name)


@route(f"{PREFIX}/health", scope=None, methods=["GET"])
def health():
    return {"status": "ok"}


@route(f"{PREFIX}/client-config", scope="read", methods=["GET"])
def client_config():
    return rest.client_config(runtime())


@route(f"{PREFIX}/openapi.json", scope=None, methods=["GET"])
def openapi():
    return openapi_document.document()


@route(f"{PREFIX}/providers", scope="read", methods=["GET"])
def list_providers():
    return rest.list_providers(runtime().service, app.current_request)


@route(f"{PREFIX}/models", scope="read", methods=["GET"])
def list_models():
    return rest.list_models(runtime().service, app.current_request)


@route(f"{PREFIX}/changes", scope="read", methods=["GET"])
def list_changes():
    return rest.changes(runtime().changes, app.current_request)


@route(f"{PREFIX}/changes.atom", scope="read", methods=["GET"])
def changes_atom():
    return rest.changes_atom(runtime().changes, app.current_request)


@route(f"{PREFIX}/refresh/status", scope="read", methods=["GET"])
def refresh_status():
    return runtime().service.refresh_status()


@route(f"{PREFIX}/providers:refresh", scope="refresh", methods=["POST"])
def refresh_all():
    return runtime().service.refresh(scope="all", trigger="manual")


@route(f"{PREFIX}/providers:refresh_oauth", scope="refresh", methods=["POST"])
def refresh_oauth():
    return runtime().service.refresh(scope="oauth", trigger="manual")


@route(f"{PREFIX}/{{resource}}", scope="refresh", methods=["POST"])
def collection_action(resource):
    return rest.collection_action(runtime().service, resource)


# `{provider_id}` holds "<id>:<action>" here: API Gateway allows one variable name per path level, and the
# route below already uses {provider_id} under /providers.
@route(f"{PREFIX}/providers/{{provider_id}}", scope="refresh", methods=["POST"])
def provider_action(provider_id):
    return rest.provider_action(runtime().service, provider_id)


@route(f"{PREFIX}/providers/{{provider_id}}/refresh", scope="refresh", methods=["POST"])
def refresh_provider(provider_id):
    return rest.refresh_one(runtime().service, provider_id)


@route(f"{PREFIX}/whoami", scope="read", methods=["GET"])
def whoami():
    return rest.whoami(runtime(), app.current_request.headers)


@route(f"{PREFIX}/tokens", scope="admin", methods=["POST"])
def create_token():
    return rest.create_token(runtime(), app.current_request.raw_body)


@route(f"{PREFIX}/tokens", scope="admin", methods=["GET"])
def list_tokens():
    return runtime().tokens.list()


@route(f"{PREFIX}/tokens/{{token_id}}", scope="admin", methods=["DELETE"])
def revoke_token(token_id):
    return rest.revoke_token(runtime(), token_id)


def export_routes(path: str, serve: Callable[[], Any]) -> None:
    """``GET /api/v1/export/<path>`` (bearer token) and ``GET /api/v1/feeds/{token}/<path>`` (a `read` token in the
    URL, for tools that can only be given one), both answered by ``serve()``. Chalice has no greedy paths: one pair
    of routes per export, named export_<path> and feed_<path> (the OpenAPI operation ids)."""

    def export():
        return serve()

    def feed(token):
        return serve()

    export.__name__, feed.__name__ = f"export_{route_id(path)}", f"feed_{route_id(path)}"
    route(f"{PREFIX}/export/{path}", scope="read", methods=["GET"])(export)
    route(f"{PREFIX}/feeds/{{token}}/{path}", scope="read", token_param="token", methods=["GET"])(feed)


def catalog_export(name: str) -> Callable[[], Any]:
    return lambda: rest.export(runtime(), name, app.current_request.headers)


for _path, _name in export_paths().items():
    export_routes(_path, catalog_export(_name))
export_routes("changes.atom", lambda: rest.changes_atom(runtime().changes, app.current_request))
@route(f"{PREFIX}/webhooks", scope="admin", methods=["POST"])
def create_webhook():
    return rest.created(runtime().webhooks.create(rest.json_body(app.current_request)))


@route(f"{PREFIX}/webhooks", scope="admin", methods=["GET"])
def list_webhooks():
    return runtime().webhooks.list()


@route(f"{PREFIX}/webhooks/{{webhook_id}}", scope="admin", methods=["GET"])
def get_webhook(webhook_id):
    return runtime().webhooks.get(webhook_id)


@route(f"{PREFIX}/webhooks/{{webhook_id}}", scope="admin", methods=["DELETE"])
def delete_webhook(webhook_id):
    runtime().webhooks.delete(webhook_id)
    return rest.no_content()


@route(f"{PREFIX}/webhooks/{{webhook_id}}/attempts", scope="admin", methods=["GET"])
def webhook_attempts(webhook_id):
    return runtime().webhooks.attempts(webhook_id)


@route(f"{PREFIX}/webhooks/{{webhook_id}}/replay", scope="admin", methods=["POST"])
def replay_webhook(webhook_id):
    return rest.accepted(runtime().webhooks.replay(webhook_id, rest.json_body(app.current_request)))


@app.lambda_function(name="webhook_dispatch")
def webhook_dispatch(event, context):
    """Invoked asynchronously after a commit (and after a replay): relay the event, send what is due."""
    return runtime().webhook_dispatcher.handle(event)


@app.schedule(Rate(schedule_rate_minutes(), unit=Rate.MINUTES))
def scheduled_tick(event):
    return runtime().service.tick(trigger="scheduled")


@app.on_ws_connect()
def ws_connect(event):
    return runtime().websocket.on_connect(event)


@app.on_ws_message()
def ws_message(event):
    return runtime().websocket.on_message(event)


@app.on_ws_disconnect()
def ws_disconnect(event):
    return runtime().websocket.on_disconnect(event)
