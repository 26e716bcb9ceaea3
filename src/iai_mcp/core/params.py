"""The building blocks of the method contract: limits, the checked field
types every method shares, and the one translation of a pydantic
``ValidationError`` into this package's errors.

``core.contract`` declares each method's parameters with these; ``parse``
checks a call against them before anything is written. A check that fails
raises ``LimitExceeded`` when a value is past a documented maximum (text
length, k, budget, list sizes) and ``InvalidInput`` otherwise, with a
message that names the parameter and what it should be.

Light on purpose: pydantic and the standard library only (no numpy, no
store), so the CLI and the daemon client can read the contract cheaply.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, TypeVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from iai_mcp.core.limits import MAX_TAG_CHARS
from iai_mcp.errors import InvalidInput, LimitExceeded
from iai_mcp.types import EMBED_DIM, parse_time

#: The error type the checks below raise (their message is already in our words).
INVALID = "iai_invalid"


class Params(BaseModel):
    """Base of every method's parameters: strict (``"5"`` is not an integer,
    ``1`` is not ``true``) and closed (an unknown name is an error, not ignored)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


P = TypeVar("P", bound=Params)


# ------------------------------------------------------------------ checks


def _invalid(message: str) -> PydanticCustomError:
    return PydanticCustomError(INVALID, message)


def _utf8(value: str) -> bool:
    # A lone surrogate (possible in a Python str, never in UTF-8) would fail
    # later, mid-write, as a UnicodeEncodeError.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plain(value: str | None) -> str | None:
    if value is None:
        return value
    if "\x00" in value:  # ends a string in C layers
        raise _invalid("must not contain NUL characters")
    if not _utf8(value):
        raise _invalid("must be valid Unicode (it has a lone surrogate)")
    return value


def _not_blank(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise _invalid("must not be empty")
    return value


def _iso_time(value: str | None) -> str | None:
    if value is not None and parse_time(value) is None:
        raise _invalid("must be an ISO-8601 time such as 2026-05-08T13:56:00Z")
    return value


def _record_id(value: str) -> str:
    try:
        UUID(value)
    except ValueError:
        raise _invalid("must be a record id (a UUID)") from None
    return value


def _tags(value: list[str] | None) -> list[str] | None:
    for tag in value or ():
        if not tag.strip() or len(tag) > MAX_TAG_CHARS or "\x00" in tag or not _utf8(tag):
            raise _invalid(f"must hold tags of 1-{MAX_TAG_CHARS} characters each, got {tag!r:.40}")
    return value


def _vector(value: Any) -> Any:
    """A list of EMBED_DIM numbers that stay finite as float32 (the type they
    are ranked in): an int past float range, or a float past float32 range,
    would otherwise become inf and NaN scores."""
    if value is None:
        return value
    if (
        isinstance(value, (list, tuple))
        and len(value) == EMBED_DIM
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
    ):
        import numpy as np  # only where a vector is checked: the daemon, which has it loaded

        with np.errstate(over="ignore"):
            try:
                vec = np.asarray(value, dtype=np.float32)
            except OverflowError:
                vec = None
        if vec is not None and np.all(np.isfinite(vec)):
            return list(value)
    raise _invalid(f"must be a list of {EMBED_DIM} finite numbers")


def ordered_window(params: P) -> P:
    """A model check for methods with ``since`` and ``until``: a window that
    ends before it starts matches nothing, which is a mistake to say, not an
    empty answer to give."""
    since, until = parse_time(getattr(params, "since", None)), parse_time(getattr(params, "until", None))
    if since is not None and until is not None and since > until:
        raise _invalid(f"since ({params.since}) is after until ({params.until}): no memory "  # type: ignore[attr-defined]
                       "can match; swap them or drop one")
    return params


#: Field types of the contract. Every check sits at the top of the field's
#: annotation (never inside a list or an Optional), so the bare type is what
#: the MCP tool schemas are derived from.
Text = Annotated[str, AfterValidator(_plain), AfterValidator(_not_blank)]
OptionalText = Annotated[str | None, AfterValidator(_plain)]
Time = Annotated[str | None, AfterValidator(_plain), AfterValidator(_iso_time)]
RecordId = Annotated[str, AfterValidator(_plain), AfterValidator(_record_id)]
Tags = Annotated[list[str] | None, AfterValidator(_tags)]
Vector = Annotated[list[float] | None, BeforeValidator(_vector)]


# ------------------------------------------------------------------- parse


def parse(model: type[P], method: str, params: Any) -> P:
    """``params`` checked against ``model``; raises ``InvalidInput`` (or
    ``LimitExceeded``) naming ``method``, the parameter and what it should be.

    ``None`` means "not given": adapters pass their unset options through, and
    the contract's default applies.
    """
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise InvalidInput(f"{method}: params must be an object, got {type(params).__name__}")
    refuse_unknown(method, params, model.model_fields)
    given = {name: value for name, value in params.items() if value is not None}
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        # One message, the first problem in parameter order, as a person would fix them.
        raise error_for(method, exc.errors(include_url=False)[0]) from None


def refuse_unknown(method: str, params: Mapping[str, Any], accepted: Iterable[str]) -> None:
    """``InvalidInput`` naming what ``params`` holds beyond ``accepted``, and what is
    accepted (the MCP server checks against the parameters its tools show)."""
    accepted = set(accepted)
    unknown = [name for name in params if name not in accepted]
    if unknown:
        raise InvalidInput(
            f"{method}: unknown parameter(s) {sorted(map(str, unknown))}; accepted: {sorted(accepted)}"
        )


def _where(loc: tuple[Any, ...]) -> str:
    name = str(loc[0]) if loc else "params"
    return name + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:])


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


#: Pydantic's error types, in this package's words: (limit?, message).
_MESSAGES: dict[str, tuple[bool, str]] = {
    "string_type": (False, "must be a string, got {kind}"),
    "string_unicode": (False, "must be valid Unicode (it has a lone surrogate)"),
    "int_type": (False, "must be an integer, got {kind}"),
    "bool_type": (False, "must be true or false"),
    "list_type": (False, "must be a list, got {kind}"),
    "dict_type": (False, "must be an object, got {kind}"),
    "literal_error": (False, "must be one of {expected}, got {input}"),
    "greater_than_equal": (False, "must be at least {ge}"),
    "less_than_equal": (True, "is {input}; the maximum is {le}"),
    "string_too_long": (True, "is {length} characters; the maximum is {max_length}"),
    "too_long": (True, "has {actual_length} items; send at most {max_length}"),
}


def error_for(method: str, error: Mapping[str, Any]) -> InvalidInput:
    """The ``InvalidInput`` (or ``LimitExceeded``) for one pydantic error."""
    kind, where, value = error["type"], _where(tuple(error["loc"])), error.get("input")
    if kind == "missing":
        return InvalidInput(f"{method}: parameter {where!r} is required")
    if kind == INVALID:
        limit, text = False, error["msg"]
    elif kind in _MESSAGES:
        limit, template = _MESSAGES[kind]
        context = {**error.get("ctx", {}), "input": _short(value), "kind": type(value).__name__}
        if isinstance(value, (str, list)):
            context["length"] = len(value)
        try:
            text = template.format(**context)
        except (KeyError, IndexError):  # a pydantic release that words its context differently
            text = f"is not valid: {error['msg']}"
    else:
        limit, text = False, f"is not valid: {error['msg']}"
    return (LimitExceeded if limit else InvalidInput)(f"{method}: {where!r} {text}")
