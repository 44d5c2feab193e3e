"""Feeds of the catalog's changes for readers that poll a URL: ``render_changes_atom`` (Atom 1.0, RFC 4287).

Pure renderers: they take the event messages (docs/reference.md §3) and return the document; routes and exports
decide which events and which URL.
"""

from chalicelib.feeds.atom import ATOM_CONTENT_TYPE, entry_id, entry_title, render_changes_atom

__all__ = ["ATOM_CONTENT_TYPE", "entry_id", "entry_title", "render_changes_atom"]
