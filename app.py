"""model-catalog: routes and wiring only. The work lives in chalicelib/ (see README "Architecture")."""

from chalice import Chalice, Rate

from chalicelib import api, settings, wiring

app = Chalice(app_name="model-catalog")
# WebSocket handlers are an opt-in feature in Chalice 1.34: `chalice package`/`deploy` refuse them otherwise.
app.experimental_feature_flags.update(["WEBSOCKETS"])
app.register_middleware(api.http_middleware, "http")
wiring.use_websocket_api(app.websocket_api)
route = api.router(app)  # app.route + the error envelope
PREFIX = "/api/v1"


@route("/", methods=["GET"])
def web_page():
    return api.web_page()


@route("/assets/{name}", methods=["GET"])
def web_asset(name):
    return api.web_asset(name)


@route(f"{PREFIX}/health", methods=["GET"])
def health():
    return {"status": "ok"}


@route(f"{PREFIX}/client-config", methods=["GET"])
def client_config():
    return api.client_config(app.current_request)


@route(f"{PREFIX}/openapi.json", methods=["GET"])
def openapi():
    return api.openapi_document()


@route(f"{PREFIX}/providers", methods=["GET"])
def list_providers():
    return api.service().list_providers()


@route(f"{PREFIX}/models", methods=["GET"])
def list_models():
    return api.list_models(app.current_request.query_params or {})


@route(f"{PREFIX}/refresh/status", methods=["GET"])
def refresh_status():
    return api.service().refresh_status()


@route(f"{PREFIX}/providers:refresh", methods=["POST"])
def refresh_all():
    return api.service().refresh(scope="all", trigger="manual")


@route(f"{PREFIX}/providers:refresh_oauth", methods=["POST"])
def refresh_oauth():
    return api.service().refresh(scope="oauth", trigger="manual")


@route(f"{PREFIX}/{{resource}}", methods=["POST"])
def collection_action(resource):
    return api.collection_action(resource)


# `{provider_id}` holds "<id>:<action>" here: API Gateway allows one variable name per path level, and the
# route below already uses {provider_id} under /providers.
@route(f"{PREFIX}/providers/{{provider_id}}", methods=["POST"])
def provider_action(provider_id):
    return api.provider_action(provider_id)


@route(f"{PREFIX}/providers/{{provider_id}}/refresh", methods=["POST"])
def refresh_provider(provider_id):
    return api.refresh_one(provider_id)


@app.schedule(Rate(settings.schedule_rate_minutes(), unit=Rate.MINUTES))
def scheduled_tick(event):
    return api.service().tick(trigger="scheduled")


@app.on_ws_connect()
def ws_connect(event):
    return api.websocket().on_connect(event)


@app.on_ws_message()
def ws_message(event):
    return api.websocket().on_message(event)


@app.on_ws_disconnect()
def ws_disconnect(event):
    return api.websocket().on_disconnect(event)
