"""The edges the outside world calls through ``app.py``: REST (``rest``), WebSocket (``websocket``), the OpenAPI
document (``openapi``) and the web page (``webpage``). Domain errors become HTTP responses here and only here."""
