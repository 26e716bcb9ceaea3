"""LanceDB's engine, driven without lancedb's Python layer.

``import lancedb`` runs the package's ``__init__``: its embedding-function
and reranker registries (18 modules), pydantic models, ``pyarrow.dataset``
with its parquet, S3, GCS, Azure, HDFS and Substrait bindings, and the
namespace client. The records table needs none of it: it is a local table
of five plain columns that is opened, appended to, merged into, scanned and
optimised. All of that is done by the Rust extension ``lancedb._lancedb``,
which the Python layer only wraps. Loading the extension alone, measured on
the shared 2-core machine (``python -c``, 3 runs each, load average 0.2-1):
0.08-0.09 s and VmHWM 69 MB (with pyarrow), against 0.43-0.46 s and
125 MB for ``import lancedb`` with its REST client stood in for (the way
this store imported it before), and about 1.0 s for a plain
``import lancedb``. Every daemon start, and so the first recall of a day,
paid that difference.

The extension is loaded under its own name (``lancedb._lancedb``) from the
installed lancedb, so a later ``import lancedb`` anywhere in the process
reuses this very module instead of initialising it twice. Its API is not
lancedb's public one, so ``pyproject.toml`` pins the lancedb release this
module is written against and ``load`` checks, once, that every method used
here exists and takes its arguments where they are passed (``API``, from the
methods' signatures): another release fails at open with a ``StoreError``
naming what differs rather than mid-write.

The engine's methods are coroutines. They run on one event loop in a
daemon thread of this module's own (the way lancedb's synchronous API runs
them), so a caller inside a running event loop (the MCP server's) can still
call the store synchronously, and streamed scans can feed a merge that is
itself running on the engine.
"""
from __future__ import annotations

import asyncio
import importlib.machinery
import inspect
import importlib.util
import os
import sys
import threading
import types
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa

from iai_mcp.errors import StoreError

T = TypeVar("T")

NAME = "lancedb._lancedb"
#: Every method of the extension this module calls, with the parameters it
#: passes by position (in this order) and by name: checked once, at load.
API: dict[tuple[str, str], tuple[tuple[str, ...], tuple[str, ...]]] = {
    ("", "connect"): (("uri",), ()),
    ("Connection", "open_table"): (("name",), ("namespace_path",)),
    ("Connection", "create_empty_table"): (("name", "mode", "schema"), ("namespace_path",)),
    ("Table", "add"): (("data", "mode"), ()),
    ("Table", "execute_merge_insert"): (("data", "parameters"), ()),
    ("Table", "query"): ((), ()),
    ("Table", "take_offsets"): (("offsets",), ()),
    ("Table", "count_rows"): (("filter",), ()),
    ("Table", "version"): ((), ()),
    ("Table", "list_versions"): ((), ()),
    ("Table", "stats"): ((), ()),
    ("Table", "optimize"): ((), ("cleanup_since_ms", "delete_unverified")),
    ("Query", "select_columns"): (("columns",), ()),
    ("Query", "where"): (("predicate",), ()),
    ("Query", "with_row_id"): ((), ()),
    ("Query", "execute"): ((), ("max_batch_length", "timeout")),
}

_lock = threading.Lock()
_module: types.ModuleType | None = None


def load() -> types.ModuleType:
    """The extension module, loaded once without ``lancedb/__init__.py``."""
    global _module
    with _lock:
        if _module is None:
            _module = _check(sys.modules.get(NAME) or _load_extension())
        return _module


def _load_extension() -> types.ModuleType:
    package = importlib.util.find_spec("lancedb")  # finds the package without running it
    if package is None or not package.submodule_search_locations:
        raise StoreError("lancedb is not installed (pip install iai-mcp brings it)")
    finder = importlib.machinery.FileFinder(
        package.submodule_search_locations[0],
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
    )
    spec = finder.find_spec(NAME)
    if spec is None:
        raise StoreError(f"lancedb at {package.submodule_search_locations[0]} has no {NAME} extension")
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module  # a later ``import lancedb`` binds this module, never a second copy
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[NAME]
        raise
    return module


def _check(module: types.ModuleType) -> types.ModuleType:
    wrong = [problem for (owner, name), shape in API.items()
             if (problem := _shape_problem(module, owner, name, *shape))]
    if wrong:
        raise StoreError(f"this lancedb ({getattr(module, '__file__', '?')}) does not fit iai-mcp: "
                         f"{'; '.join(wrong)}. iai-mcp needs the lancedb release pyproject.toml pins")
    return module


def _shape_problem(module: types.ModuleType, owner: str, name: str, positional: tuple[str, ...],
                   named: tuple[str, ...]) -> str | None:
    where = getattr(module, owner, None) if owner else module
    method = getattr(where, name, None)
    label = f"{owner}.{name}" if owner else name
    if method is None:
        return f"{label} is missing"
    try:
        params = [p for p in inspect.signature(method).parameters if p != "self"]
    except (TypeError, ValueError):
        return f"{label} has no signature to check"
    if tuple(params[:len(positional)]) != positional or not set(named) <= set(params):
        return f"{label}{tuple(params)} is not {label}({', '.join(positional + named)}, ...)"
    return None


class _Loop:
    """One asyncio loop in a daemon thread; ``call`` waits for an engine method on it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def call(self, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``await method(*args, **kwargs)`` on the loop: the engine's methods
        find the running loop when they are called, not when awaited."""
        loop = self._running()
        if threading.current_thread() is self._thread:
            # Waiting here for the loop this thread runs would never return.
            raise RuntimeError("a LanceDB call from the engine's own loop thread")
        future = asyncio.run_coroutine_threadsafe(_await(method, args, kwargs), loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name="iai-lance-loop", daemon=True)
                self._thread.start()
                self._loop = loop
            return self._loop

    def forget(self) -> None:
        """After ``fork`` the thread is gone in the child: the next call starts another."""
        self._guard = threading.Lock()
        self._loop = None
        self._thread = None


async def _await(method: Callable[..., Awaitable[T]], args: tuple, kwargs: dict[str, Any]) -> T:
    return await method(*args, **kwargs)


_LOOP = _Loop()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_LOOP.forget)


@dataclass(frozen=True)
class _Source:
    """Rows to add, in the shape the extension's ``add`` reads (a table it may scan twice)."""

    schema: pa.Schema
    num_rows: int | None
    reader: Any
    rescannable: bool = True


class Connection:
    """A local LanceDB database directory."""

    def __init__(self, uri: str) -> None:
        self._inner = _LOOP.call(load().connect, uri)

    def open_table(self, name: str) -> Table:
        """The table; ValueError (the engine's "was not found") when there is none."""
        return Table(_LOOP.call(self._inner.open_table, name, namespace_path=[]))

    def create_table(self, name: str, schema: pa.Schema) -> Table:
        """An empty table, or the existing one of that name."""
        return Table(_LOOP.call(self._inner.create_empty_table, name, "exist_ok", schema, namespace_path=[]))


class Table:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def version(self) -> int:
        return int(_LOOP.call(self._inner.version))

    def count_rows(self) -> int:
        return int(_LOOP.call(self._inner.count_rows, None))

    def list_versions(self) -> list[dict[str, Any]]:
        return list(_LOOP.call(self._inner.list_versions))

    def fragment_count(self) -> int:
        return int(_LOOP.call(self._inner.stats)["fragment_stats"]["num_fragments"])

    def add(self, rows: pa.Table) -> None:
        """Append ``rows`` in one commit."""
        source = _Source(rows.schema, rows.num_rows, lambda: pa.RecordBatchReader.from_batches(rows.schema, rows.to_batches()))
        _LOOP.call(self._inner.add, source, "append")

    def merge_insert(self, on: str, rows: pa.RecordBatchReader, *, insert_unmatched: bool,
                     delete_unmatched_where: str | None = None) -> None:
        """One commit: rows matching ``on`` are replaced; unmatched new rows are
        inserted when ``insert_unmatched``; table rows no new row matches are
        deleted when they satisfy ``delete_unmatched_where``."""
        params = {
            "on": [on],
            "when_matched_update_all": True,
            "when_matched_update_all_condition": None,
            "when_not_matched_insert_all": insert_unmatched,
            "when_not_matched_by_source_delete": delete_unmatched_where is not None,
            "when_not_matched_by_source_condition": delete_unmatched_where,
            "when_not_matched_by_source_condition_expr": None,
            "timeout": None,
            "use_index": True,
            "use_lsm": None,
            "validate_single_shard": None,
        }
        _LOOP.call(self._inner.execute_merge_insert, rows, params)

    def scan(self, columns: list[str] | None = None, where: str | None = None, *, with_row_id: bool = False,
             batch_rows: int | None = None) -> Iterator[pa.RecordBatch]:
        """Every row (or those ``where`` selects), streamed batch by batch."""
        query = self._inner.query()
        if columns is not None:
            query.select_columns(columns)
        if where is not None:
            query.where(where)
        if with_row_id:
            query.with_row_id()
        return _batches(_LOOP.call(query.execute, max_batch_length=batch_rows, timeout=None))

    def take_offsets(self, offsets: list[int]) -> pa.Table:
        """The rows at these storage offsets."""
        stream = _LOOP.call(self._inner.take_offsets(offsets).execute, max_batch_length=None, timeout=None)
        return pa.Table.from_batches(list(_batches(stream)), schema=stream.schema)

    def optimize(self, *, delete_unverified: bool = False) -> None:
        """Fold small fragments and remove every version but the newest (and,
        with ``delete_unverified``, every file no version names, however new).
        Safe only for the table's one user: the store holds its lock."""
        _LOOP.call(self._inner.optimize, cleanup_since_ms=0, delete_unverified=delete_unverified)


def _batches(stream: Any) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            yield _LOOP.call(stream.__anext__)
        except StopAsyncIteration:
            return
