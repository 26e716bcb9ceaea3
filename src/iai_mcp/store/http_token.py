"""The bearer token of ``iai-mcp serve --http``, kept in the store directory.

The store owns every file under its root, so the token is kept here, as
``http_token`` (mode 0600), and not by the HTTP server itself. Reading it
needs neither the key nor an open store: the daemon may hold the store
while an HTTP server in another process serves its tools.

The token is made on first use and kept, so a host configured with it keeps
working across restarts; deleting the file makes the next start issue a new
one (and shuts out every host holding the old one).
"""
from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from iai_mcp.errors import StoreError
from iai_mcp.fs import write_atomic

TOKEN_FILE = "http_token"
#: 32 random bytes (256 bits), URL-safe base64: 43 characters.
TOKEN_BYTES = 32


def token_path(root: str | os.PathLike[str]) -> Path:
    return Path(root).expanduser() / TOKEN_FILE


def load_or_create(root: str | os.PathLike[str]) -> tuple[str, bool]:
    """The store's HTTP token, and whether it was made just now.

    ``StoreError`` if the file is readable by others: the token may have
    leaked, and whoever holds it reads every memory, so it is not used.
    """
    path = token_path(root)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        token = path.read_text("ascii").strip()
    except FileNotFoundError:
        token = ""
    if token:
        if mode & 0o077:
            raise StoreError(
                f"{path} has mode {mode:o}: other users may have read the HTTP token. "
                f"Delete it to have a new token made at the next start (hosts then need the new one)"
            )
        return token, False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    write_atomic(path, token + "\n", mode=0o600)
    return token, True
