"""An OpenAI ``GET /v1/models`` list: what the OpenAI SDK's ``models.list()`` (and every OpenAI-compatible gateway
that lists upstream models) reads from ``{base_url}/models``.

Ids are ``<provider id>/<model id>``, ``owned_by`` the provider id. ``created`` is when the model was created, which
the catalog does not know: ``0``.
"""

from __future__ import annotations

from typing import Any

from chalicelib.exports.snapshot import CatalogSnapshot

UNKNOWN_CREATED = 0


def render_openai_models(snapshot: CatalogSnapshot) -> dict[str, Any]:
    data = [
        {"id": f"{pid}/{record['id']}", "object": "model", "created": UNKNOWN_CREATED, "owned_by": pid}
        for pid, record in snapshot.all_models()
    ]
    return {"object": "list", "data": data}
