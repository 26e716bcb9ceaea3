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

#: Layer of each module (a package counts as one module). Lower = more inward.
LAYERS: dict[str, int] = {
    "errors": 0, "eventlog": 0, "types": 0, "config": 0, "ranking": 0, "redact": 0,
    "store": 1, "embed": 1,
    "recall": 2, "capture": 2, "provenance_queue": 2, "journal": 2, "spill": 2,
    "params": 3, "core": 3, "session_pack": 3, "transfer": 3, "admin": 3, "repair": 3,
    "app": 4, "daemon_protocol": 4, "daemon_client": 4,
    "daemon": 5, "daemon_server": 5, "server": 5, "cli": 5, "hooks": 5, "doctor": 5,
    "__main__": 5, "__init__": 5,
}

#: Upward imports the spec forces, each with its reason.
ALLOWED_UPWARD = {
    # The spec puts enable_provenance_queue() on MemoryStore; imported lazily.
    ("store", "provenance_queue"),
}

STORE_ONLY = ("lancedb", "pyarrow", "cryptography", "keyring", "sqlite3")
ENV_READERS = {"config", "app", "daemon", "server", "cli", "hooks", "__main__"}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        yield rel.parts[0].removesuffix(".py"), path, ast.parse(path.read_text("utf-8"))


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            for alias in node.names:
                yield f"{node.module}.{alias.name}"


def test_every_module_has_a_layer():
    unknown = sorted({m for m, _, _ in _modules()} - set(LAYERS))
    assert not unknown, f"assign these modules a layer in LAYERS: {unknown}"


@pytest.mark.parametrize("module,path,tree", list(_modules()), ids=lambda v: str(v)[-40:] if isinstance(v, Path) else None)
def test_imports_point_inward(module, path, tree):
    for name in _imports(tree):
        parts = name.split(".")
        if parts[0] != "iai_mcp" or len(parts) < 2:
            continue
        target = parts[1]
        if target not in LAYERS or module not in LAYERS or target == module:
            continue
        if (module, target) in ALLOWED_UPWARD:
            continue
        assert LAYERS[target] <= LAYERS[module], (
            f"{path.relative_to(PACKAGE)} imports iai_mcp.{target} (layer {LAYERS[target]}) "
            f"from layer {LAYERS[module]}"
        )


def test_only_store_touches_storage_and_keys():
    for module, path, tree in _modules():
        if module == "store":
            continue
        for name in _imports(tree):
            assert name.split(".")[0] not in STORE_ONLY, (
                f"{path.relative_to(PACKAGE)} imports {name}; only iai_mcp.store may"
            )


def test_environment_read_only_at_the_edges():
    for module, path, tree in _modules():
        if module in ENV_READERS:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "putenv"}:
                raise AssertionError(
                    f"{path.relative_to(PACKAGE)}:{node.lineno} reads the environment; "
                    "take the value as a parameter from iai_mcp.app or iai_mcp.config"
                )


def test_adapters_do_not_open_the_store_themselves():
    for module, path, tree in _modules():
        if module not in {"server", "cli", "hooks"}:
            continue
        for name in _imports(tree):
            assert not name.startswith("iai_mcp.store"), (
                f"{path.relative_to(PACKAGE)} imports {name}: adapters go through iai_mcp.app"
            )
