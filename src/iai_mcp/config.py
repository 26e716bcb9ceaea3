"""What the environment says, for the variables the spec fixes.

This is the one module below the composition root that reads the
environment, and it reads only the names the project documents:
``IAI_MCP_STORE`` (store root, default ``~/.iai-mcp``), ``HOME`` (through
``Path.home()``, for the provenance overflow directory the spec places under
``~/.iai-mcp/.provenance-overflow``) and ``IAI_MCP_CRYPTO_PASSPHRASE`` (the
one thing the store's key handling needs, handed over as ``KeySettings``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

STORE_ENV = "IAI_MCP_STORE"
PASSPHRASE_ENV = "IAI_MCP_CRYPTO_PASSPHRASE"
OVERFLOW_DIR_NAME = ".provenance-overflow"


@dataclass(frozen=True)
class KeySettings:
    """What opening a store needs to know about its key, and nothing more.

    ``passphrase``: derive the key from it (a new store then records that it
    is passphrase-protected). Left out of ``repr`` so that no log line or
    traceback that shows the settings shows the secret.
    """

    passphrase: str | None = field(default=None, repr=False)


def default_store_path() -> Path:
    configured = os.environ.get(STORE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".iai-mcp"


def overflow_dir() -> Path:
    """Spill directory for provenance batches that found the queue full."""
    return Path.home() / ".iai-mcp" / OVERFLOW_DIR_NAME


def key_settings() -> KeySettings:
    """``KeySettings`` from ``IAI_MCP_CRYPTO_PASSPHRASE`` (empty counts as unset)."""
    return KeySettings(passphrase=os.environ.get(PASSPHRASE_ENV) or None)
