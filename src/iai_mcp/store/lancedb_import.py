"""``import lancedb`` without the REST namespace client it never needs here.

lancedb 0.40 imports ``lance_namespace`` at module import (``lancedb/db.py``),
which imports the generated OpenAPI client ``lance_namespace_urllib3_client``:
218 pydantic models, 9 API modules and urllib3. The store only opens local
tables (``lancedb.connect(path)``), which never touch that client, yet every
daemon start paid for it. Measured on the shared 2-core machine
(``python -c "import lancedb"``, 2 runs each, under load): 3.4-3.7 s and
129 MB RSS with the client, 1.2-1.8 s and 110 MB with it stubbed. pylance
made the same import lazy upstream (lance-format/lance#9273); lancedb has
not yet, and offers no public switch, so the workaround lives here, in one
function, and ``tests/test_cold_start.py`` checks it still holds (the store
works; the client stays unloaded).

The stand-in only answers while the real client is absent: if anything in
the process imported the client first, it is used as is. A stand-in class
refuses to be instantiated with a message that names this module, so a
lancedb code path that does need the client fails loudly, not silently.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any

#: The generated REST client lancedb imports but a local table never uses.
CLIENT = "lance_namespace_urllib3_client"


class _Unavailable:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            f"{type(self).__module__}.{type(self).__name__} is a stand-in: iai_mcp.store.lancedb_import "
            f"keeps {CLIENT} unloaded, and a local LanceDB table should never need it"
        )


class _StandIn(types.ModuleType):
    """A package whose every attribute is a stand-in class, made on first access."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        cls = type(name, (_Unavailable,), {"__module__": self.__name__})
        setattr(self, name, cls)
        return cls


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == CLIENT or fullname.startswith(CLIENT + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _StandIn(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []  # a package, so its "submodules" come from here too


def import_lancedb() -> types.ModuleType:
    """``lancedb``, imported with the REST client stood in for when this is
    the first import of both; otherwise whatever is already loaded."""
    if "lancedb" in sys.modules or CLIENT in sys.modules:
        import lancedb

        return lancedb
    finder = _Finder()
    sys.meta_path.insert(0, finder)
    try:
        import lancedb
    finally:
        # Only lancedb's own import sees the stand-in; a later import of the
        # client by anyone else finds the modules already made, by design.
        sys.meta_path.remove(finder)
    return lancedb
