"""The CLI's contract-derived options, without importing the contract.

``iai-mcp recall`` talking to a warm daemon spent most of its own start-up
importing ``core.contract`` (pydantic, pydantic_core, annotated_types):
about 200 ms of a 430 ms run measured with ``python -X importtime`` under
load, where the daemon's answer took a few milliseconds. The options a
command takes are a pure function of the contract's source, so they are
kept in ``data/cli-options.json`` with a digest of that source; when the
digest still matches, the CLI builds its parser from the file and never
loads pydantic. When it does not (the contract changed and the file was not
regenerated), the options are derived live as before: slower, never wrong.
``tests/test_cold_start.py`` fails while the file is stale; regenerate it
with ``python -m iai_mcp.cli.contract_snapshot``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any

#: The modules the contract's parameters are declared in: a change to any
#: of them may change an option, so all of them are in the digest.
SOURCES = ("core/contract.py", "core/params.py", "core/limits.py", "types.py")
FILE = "cli-options.json"
#: JSON cannot hold an argparse action class or a type: these names stand in.
_ACTIONS = {"optional_bool": argparse.BooleanOptionalAction}
_TYPES = {"int": int}

_cache: dict[str, Any] | None = None


def _package() -> Path:
    return Path(__file__).resolve().parent.parent


def sources_digest() -> str:
    """sha256 over the contract's source files (~0.1 ms: no import)."""
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update(name.encode() + b"\0" + (_package() / name).read_bytes() + b"\0")
    return digest.hexdigest()


def live() -> dict[str, Any]:
    """Every method's parameter names and option specs, from the contract itself."""
    from iai_mcp.core import contract

    methods = {}
    for name in sorted(contract.METHODS):
        fields = contract.method(name).params.model_fields
        methods[name] = {"params": list(fields), "options": [_spec(n, f) for n, f in fields.items()]}
    return {"digest": sources_digest(), "methods": methods}


def _spec(name: str, field: Any) -> dict[str, Any]:
    """One option per parameter: ``--session-id`` for ``session_id``, choices
    from a ``Literal``, a flag for a bool, a repeatable singular option for a
    list (``--tag``), the description (and default) as help. No option has an
    argparse default: one not given is not sent, and the contract's applies."""
    kind = field.annotation
    optional = isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union
    if optional:
        kind = next(t for t in typing.get_args(kind) if t is not type(None))  # X | None
    flag = "--" + name.replace("_", "-")
    help = (field.description or "").replace("%", "%%")
    if field.default not in (None, False):
        help = f"{help.rstrip('.')} (default {field.default})"
    options: dict[str, Any] = {"dest": name, "help": help}
    if kind is bool:
        # A yes/no that may be left unsaid (``pinned: bool | None``) gets
        # --x and --no-x; a plain switch (default false) only --x.
        options["action"] = "optional_bool" if optional else "store_true"
        options["default"] = None  # not given: not sent (so --no-x, False, is)
    elif typing.get_origin(kind) is list:
        flag = flag.removesuffix("s")
        options.update(action="append", metavar=flag[2:].upper(), help=f"{help.rstrip('.')}; repeat for several")
    elif typing.get_origin(kind) is typing.Literal:
        options["choices"] = list(typing.get_args(kind))
    elif kind is int:
        options["type"] = "int"
    return {"name": name, "flag": flag, "options": options}


def snapshot() -> dict[str, Any] | None:
    """The shipped snapshot when it matches the contract's source, else None."""
    try:
        saved = json.loads((resources.files("iai_mcp") / "data" / FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) and saved.get("digest") == sources_digest() else None


def methods() -> dict[str, Any]:
    """Each method's ``params`` and ``options``: the snapshot, or live."""
    global _cache
    if _cache is None:
        _cache = (snapshot() or live())["methods"]
    return _cache


def param_names(method: str) -> list[str]:
    if method not in methods():
        from iai_mcp.core import contract

        contract.method(method)  # raises UnknownMethod with the list of known ones
    return methods()[method]["params"]


def add_options(parser: argparse.ArgumentParser, method: str, skip: tuple[str, ...] = ()) -> None:
    """Add ``method``'s options (all but ``skip``) to ``parser``."""
    param_names(method)
    for spec in methods()[method]["options"]:
        if spec["name"] in skip:
            continue
        options = dict(spec["options"])
        options["action"] = _ACTIONS.get(options.get("action"), options.get("action"))
        if "type" in options:
            options["type"] = _TYPES[options["type"]]
        parser.add_argument(spec["flag"], **{k: v for k, v in options.items() if v is not None or k == "default"})


def write(path: Path | None = None) -> Path:
    """Regenerate the snapshot from the contract (run after changing it)."""
    target = path or _package() / "data" / FILE
    target.write_text(json.dumps(live(), indent=1, sort_keys=True) + "\n", "utf-8")
    return target


if __name__ == "__main__":
    print(f"wrote {write()}")
