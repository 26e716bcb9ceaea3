"""HTML built by hand, escaped by default.

Every value that goes into a page passes through ``h``: a plain ``str`` (a
memory's text, a cue, a tag, an id) is escaped, quotes included; only an
``Html`` (markup this package built) goes in as it is. So a memory holding
``<script>`` shows as those characters, in an element body or an attribute.
No template engine: the pages are small, and the project has none installed.
"""
from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any
from urllib.parse import urlencode


class Html(str):
    """Markup that is safe to insert as it is (built by ``h`` or ``join``)."""


def _piece(value: Any) -> str:
    if isinstance(value, Html):
        return value
    if value is None:
        return ""
    return escape(str(value), quote=True)


def h(template: str, *args: Any, **kwargs: Any) -> Html:
    """``template`` (trusted markup, ``str.format`` fields) with every
    argument escaped unless it is ``Html``."""
    return Html(template.format(*map(_piece, args), **{k: _piece(v) for k, v in kwargs.items()}))


def join(parts: Iterable[Any], sep: str = "") -> Html:
    return Html(sep.join(_piece(part) for part in parts))


def url(path: str, **query: Any) -> str:
    """``path`` with the query parameters that have a value (escaped when inserted)."""
    given = {k: v for k, v in query.items() if v not in (None, "", False)}
    return f"{path}?{urlencode(given)}" if given else path


def options(choices: Iterable[tuple[str, str]], selected: str | None) -> Html:
    return join(h('<option value="{}"{}>{}</option>', value, Html(" selected") if value == (selected or "") else "", label)
                for value, label in choices)


def hidden_fields(fields: dict[str, Any]) -> Html:
    return join(h('<input type="hidden" name="{}" value="{}">', name, value)
                for name, value in fields.items() if value not in (None, ""))


NAV = (("/", "Overview"), ("/search", "Search"), ("/browse", "Browse"))


def page(title: str, body: Html, *, active: str = "", status_line: Html | str = "") -> Html:
    """A whole page: the shared head (only same-origin CSS and JS, as the
    CSP allows), the navigation, and ``body``."""
    nav = join(h('<a href="{}"{}>{}</a>', href, Html(' aria-current="page"') if href == active else "", label)
               for href, label in NAV)
    return h(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>{title} · iai-mcp</title><link rel="stylesheet" href="/static/viewer.css">'
        '<script src="/static/viewer.js" defer></script></head>'
        '<body><header><strong class="brand">iai-mcp</strong><nav>{nav}</nav></header>'
        '<main><h1>{title}</h1>{status}{body}</main></body></html>',
        title=title, nav=nav, body=body, status=h('<p class="notice" role="status">{}</p>', status_line) if status_line else "",
    )
