"""Where things live on disk, from the environment variables the spec fixes.

This is the one module below the composition root that reads the
environment, and it reads only the names the project documents:
``IAI_MCP_STORE`` (store root, default ``~/.iai-mcp``), ``HOME`` (through
``Path.home()``, for the provenance overflow directory the spec places under
``~/.iai-mcp/.provenance-overflow``) and, in ``store.crypto``,
``IAI_MCP_CRYPTO_PASSPHRASE``.
"""
from __future__ import annotations

import os
from pathlib import Path

STORE_ENV = "IAI_MCP_STORE"
OVERFLOW_DIR_NAME = ".provenance-overflow"


def default_store_path() -> Path:
    configured = os.environ.get(STORE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".iai-mcp"


def overflow_dir() -> Path:
    """Spill directory for provenance batches that found the queue full."""
    return Path.home() / ".iai-mcp" / OVERFLOW_DIR_NAME


def environment() -> dict[str, str]:
    return dict(os.environ)
