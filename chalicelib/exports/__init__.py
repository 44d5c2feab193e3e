"""Exports of the catalog in formats other tools read by URL (docs/reference.md §11). Pure: no I/O.

``EXPORTS`` maps an export's name (the last part of ``/api/v1/export/<name>``) to how it is rendered from a
``CatalogSnapshot``. A new format is one module here and one entry below; app.py serves every entry at
``/api/v1/export/<name>`` and ``/api/v1/feeds/{token}/<name>``. An export rendered elsewhere (the Atom change feed
of section 8, built from the event journal) gets its routes in app.py directly.
"""

from __future__ import annotations

from chalicelib.exports.litellm_json import render_litellm
from chalicelib.exports.models_dev import render_models_dev
from chalicelib.exports.openai_models import render_openai_models
from chalicelib.exports.snapshot import CatalogSnapshot, Export

EXPORTS: dict[str, Export] = {
    "models.dev/api.json": Export("models.dev/api.json", render_models_dev),
    "litellm.json": Export("litellm.json", render_litellm),
    "openai/models": Export("openai/models", render_openai_models),
}
# Other paths of the same document. opencode fetches `$OPENCODE_MODELS_URL/api.json`, so the URL users give it
# ends in `/models.dev`; that URL itself answers the document too.
ALIASES: dict[str, str] = {"models.dev": "models.dev/api.json"}



def route_id(path: str) -> str:
    """A name for the routes of an export path (``models.dev/api.json`` → ``models_dev_api_json``): the handlers'
    names in app.py and the operation ids of the OpenAPI document."""
    return "".join(char if char.isalnum() else "_" for char in path.lower())


def export_paths() -> dict[str, str]:
    """Every path an export is served at (after ``/export/`` or ``/feeds/{token}/``) → the export's name."""
    return {**{name: name for name in EXPORTS}, **ALIASES}


__all__ = ["ALIASES", "EXPORTS", "CatalogSnapshot", "Export", "export_paths", "route_id"]
