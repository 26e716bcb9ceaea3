"""Every error iai-mcp raises on purpose.

One root, so an adapter can catch everything of ours with a single clause and
translate it once, by type, at the edge (CLI: one line and a non-zero exit;
MCP: a tool error)::

    IaiError
    ├── InvalidInput          bad parameters: nothing was written
    │   ├── UnknownMethod     dispatch got a method it does not know
    │   └── LimitExceeded     text, k or budget past the documented maximum
    ├── NotFound              an id that is not in the store
    ├── StoreError            the store cannot be used as it is
    │   ├── StoreLocked       another process owns the store (use the daemon)
    │   ├── KeyUnavailable    no key where the store says its key lives
    │   │   └── AuthRequired  a passphrase store's daemon was asked before the passphrase was proved
    │   ├── WrongKey          a key was found but it does not open this store
    │   │   └── AuthFailed    a wrong proof of the passphrase to a passphrase store's daemon
    │   ├── CorruptData       a record or log entry failed authentication or parsing
    │   ├── StoreBehind       the records table is older or smaller than the store last wrote
    │   └── EmbedderMismatch  the store's vectors came from another embedder
    └── EmbedderError         the embedding model cannot be loaded or run

``InvalidInput`` also subclasses ``ValueError`` so that plain Python callers
(and the data model's own validation) keep their usual idiom.
"""
from __future__ import annotations


class IaiError(Exception):
    """Root of every error iai-mcp raises on purpose."""

    #: A short stable name for the kind of error, used in structured output.
    code = "error"


class InvalidInput(IaiError, ValueError):
    """The caller's input is wrong; nothing was written."""

    code = "invalid_input"


class UnknownMethod(InvalidInput):
    code = "unknown_method"


class LimitExceeded(InvalidInput):
    code = "limit_exceeded"


class NotFound(IaiError, LookupError):
    code = "not_found"


class StoreError(IaiError):
    code = "store_error"


class StoreLocked(StoreError):
    """Another process holds the store's owner lock; ``holder_pid`` names it when known."""

    code = "store_locked"

    def __init__(self, message: str, holder_pid: int | None = None) -> None:
        super().__init__(message)
        self.holder_pid = holder_pid


class KeyUnavailable(StoreError):
    code = "key_unavailable"


class WrongKey(StoreError):
    code = "wrong_key"


class AuthRequired(KeyUnavailable):
    code = "auth_required"


class AuthFailed(WrongKey):
    code = "auth_failed"


class CorruptData(StoreError):
    code = "corrupt_data"


class StoreBehind(StoreError):
    """The records table is at an older version, or holds other rows, than the
    store recorded at its last commit (a lost manifest, a restored copy):
    refused rather than shown as a silently smaller store."""

    code = "store_behind"


class EmbedderMismatch(StoreError):
    code = "embedder_mismatch"


class EmbedderError(IaiError):
    code = "embedder_error"
