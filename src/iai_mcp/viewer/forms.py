"""From what a person typed into a form to a method's parameters.

Fields left empty are not sent, so the contract's defaults apply; ``project``
in particular is sent only when the person set it. What is given goes to
``dispatch`` as it is, and the contract says what is wrong with it.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from iai_mcp.errors import InvalidInput

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def text(form: Mapping[str, Any], name: str) -> str | None:
    value = str(form.get(name) or "").strip()
    return value or None


def words(form: Mapping[str, Any], name: str) -> list[str] | None:
    """A comma-separated field (``tags``) as a list; None when empty."""
    items = [part.strip() for part in str(form.get(name) or "").split(",") if part.strip()]
    return items or None


def number(form: Mapping[str, Any], name: str) -> int | None:
    value = text(form, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number, got {value!r}") from None


def time(form: Mapping[str, Any], name: str, *, end_of_day: bool = False) -> str | None:
    """An ISO-8601 time; a bare date (what a date input sends) means its
    start, or with ``end_of_day`` its last microsecond (an inclusive 'until')."""
    value = text(form, name)
    if value is not None and end_of_day and _DATE.fullmatch(value):
        return f"{value}T23:59:59.999999+00:00"
    return value


def choice(form: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = text(form, name)
    if value is not None and value not in allowed:
        raise InvalidInput(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def given(**params: Any) -> dict[str, Any]:
    """The parameters that have a value."""
    return {name: value for name, value in params.items() if value is not None}


def filters(form: Mapping[str, Any]) -> dict[str, Any]:
    """The filters Search and Browse share: tier, tags, project, time range."""
    return given(
        tier=text(form, "tier"), tags=words(form, "tags"), project=text(form, "project"),
        since=time(form, "since"), until=time(form, "until", end_of_day=True),
    )
