"""The layering of STYLE.md, checked by parsing every module's imports.

Dependencies point inward: a module may import iai_mcp modules of its own
layer or below, never above. Only the store touches LanceDB, Arrow and key
material; only the composition root and the adapters read the environment
(besides ``config``, which reads the variables the spec fixes).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "iai_mcp"

#: Layer of each module or package, by dotted name under iai_mcp; the longest
#: matching name wins (``daemon.client`` sits below the rest of ``daemon``).
#: Lower = more inward. The README's architecture section draws the same table.
LAYERS: dict[str, int] = {
    "errors": 0, "types": 0, "config": 0, "log": 0, "fs": 0, "retrieval": 0, "project": 0, "heap": 0,
    "fs_modes": 0,
    "embed": 1, "model_graph": 1, "int8_kernel": 1, "provenance_queue": 1,
    "store": 2,
    "core": 3, "importers": 3,
    "backend": 4, "daemon.wire": 4, "daemon.client": 4, "daemon.auth": 4,
    "daemon": 5, "mcp_server": 5, "cli": 5, "hooks": 5, "doctor": 5, "__main__": 5, "__init__": 5,
    "viewer": 5,
}

#: Upward imports the spec forces, each with its reason.
ALLOWED_UPWARD: set[tuple[str, str]] = set()

STORE_ONLY = ("lancedb", "pyarrow", "cryptography", "keyring", "sqlite3")
ENV_READERS = {"config", "backend", "daemon", "mcp_server", "cli", "hooks", "__main__"}


def _layer_key(dotted: str) -> str | None:
    """The LAYERS key that owns ``dotted`` (a module path under iai_mcp)."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return key
    return None


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = rel.parts[:-1] if rel.parts[-1] == "__init__" and len(rel.parts) > 1 else rel.parts
        yield ".".join(parts), path, ast.parse(path.read_text("utf-8"))


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # Each imported name with its module: ``from iai_mcp.daemon import wire``
            # is an import of ``iai_mcp.daemon.wire``, which may sit in its own layer.
            for alias in node.names:
                yield f"{node.module}.{alias.name}"


def test_every_module_has_a_layer():
    unknown = sorted(m for m, _, _ in _modules() if _layer_key(m) is None)
    assert not unknown, f"assign these modules a layer in LAYERS: {unknown}"


@pytest.mark.parametrize("module,path,tree", list(_modules()), ids=lambda v: str(v)[-40:] if isinstance(v, Path) else None)
def test_imports_point_inward(module, path, tree):
    for name in _imports(tree):
        parts = name.split(".")
        if parts[0] != "iai_mcp" or len(parts) < 2:
            continue
        target, source = _layer_key(".".join(parts[1:])), _layer_key(module)
        if target is None or source is None or target == source:
            continue
        if (source, target) in ALLOWED_UPWARD:
            continue
        assert LAYERS[target] <= LAYERS[source], (
            f"{path.relative_to(PACKAGE)} imports iai_mcp.{target} (layer {LAYERS[target]}) "
            f"from layer {LAYERS[source]}"
        )


def test_only_store_touches_storage_and_keys():
    for module, path, tree in _modules():
        if module.split(".")[0] == "store":
            continue
        for name in _imports(tree):
            assert name.split(".")[0] not in STORE_ONLY, (
                f"{path.relative_to(PACKAGE)} imports {name}; only iai_mcp.store may"
            )


def test_environment_read_only_at_the_edges():
    for module, path, tree in _modules():
        if module.split(".")[0] in ENV_READERS:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "putenv"}:
                raise AssertionError(
                    f"{path.relative_to(PACKAGE)}:{node.lineno} reads the environment; "
                    "take the value as a parameter from iai_mcp.backend or iai_mcp.config"
                )


def test_adapters_do_not_open_the_store_themselves():
    for module, path, tree in _modules():
        if module.split(".")[0] not in {"mcp_server", "cli", "hooks"}:
            continue
        for name in _imports(tree):
            assert not name.startswith("iai_mcp.store"), (
                f"{path.relative_to(PACKAGE)} imports {name}: adapters go through iai_mcp.backend"
            )
