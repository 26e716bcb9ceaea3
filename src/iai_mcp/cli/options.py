"""What every ``iai-mcp`` command shares: the backend it talks to, and the
options derived from the method contract.

Standard library only at import: ``--help`` and the hooks stay fast. The
contract (pydantic, ~90 ms of start-up) loads when a command whose options
it gives is parsed or asked for help (``CommandParser``).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from iai_mcp.cli.format import print_json


@contextmanager
def connected(args: argparse.Namespace, *, create: bool = False) -> Iterator[Any]:
    """The backend of ``--store`` (``backend.connect``), closed after use.
    Only the commands that add memories (capture, import, init) pass
    ``create``; any other on a path with no store is an error that creates nothing."""
    from iai_mcp import backend

    connection = backend.connect(args.store, create=create)
    try:
        yield connection
    finally:
        connection.close()


def call_and_show(
    args: argparse.Namespace, method: str, params: dict[str, Any], show: Callable[[dict[str, Any]], None],
    *, create: bool = False,
) -> int:
    """What most commands are: one backend call, then the result as JSON
    (``--json``) or as ``show`` prints it for a person."""
    with connected(args, create=create) as backend:
        result = backend.call(method, params)
    if args.json:
        print_json(result)
    else:
        show(result)
    return 0


def store_path(args: argparse.Namespace) -> Path:
    from iai_mcp import backend

    return backend.store_path(args.store)


def text_argument(text: str | None) -> str:
    """TEXT as given, or stdin when it is '-' or absent."""
    if text is None or text == "-":
        text = sys.stdin.read()
        # The newline a shell pipe adds is not part of what was said.
        text = text.removesuffix("\n")
    return text


def method_params(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The options given for ``method``'s parameters (``contract_options``);
    one not given is left out, so the contract's default applies."""
    from iai_mcp.cli.contract_snapshot import param_names

    names = param_names(method)
    params = {name: value for name, value in vars(args).items() if name in names and value is not None}
    if isinstance(params.get("project"), str):
        from iai_mcp.project import as_given

        # Stored projects are git roots: `--project .` in a subdirectory means that root.
        params["project"] = as_given(params["project"])
    return params


def json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def batch_size(value: str) -> int:
    from iai_mcp.core.limits import MAX_PAGE

    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 1 <= size <= MAX_PAGE:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_PAGE}")
    return size


class CommandParser(argparse.ArgumentParser):
    """A command's parser whose contract-derived options are added on first
    use (parsing or help). The contract imports pydantic, ~90 ms of start-up
    that ``--help``, ``hook`` and every other command would otherwise pay on
    each run for options they never show."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deferred: list[Callable[[argparse.ArgumentParser], None]] = []

    def defer(self, add: Callable[[argparse.ArgumentParser], None]) -> None:
        self._deferred.append(add)

    def _complete(self) -> None:
        while self._deferred:
            self._deferred.pop(0)(self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self._complete()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._complete()
        return super().format_help()


#: How a command module registers a command: name, function, help -> its parser.
AddCommand = Callable[[str, Callable[[argparse.Namespace], int], str], CommandParser]


def contract_options(parser: argparse.ArgumentParser, method: str, *, skip: tuple[str, ...] = ()) -> None:
    """One option per parameter of ``method``'s contract (``core.contract``),
    except ``skip``; how each is shaped is ``contract_snapshot._spec``. From
    the shipped snapshot when it is current, so the contract (pydantic) is
    not imported just to parse a command line."""
    from iai_mcp.cli import contract_snapshot

    contract_snapshot.add_options(parser, method, skip)
