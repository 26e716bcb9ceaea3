"""Proof of the passphrase on a passphrase store's daemon connections.

The socket is owner-only (mode 0600 and a peer-uid check), which is all a
store whose key sits in a file or the keyring needs: whoever can reach the
socket can read that key anyway. A passphrase store promises more: nothing
is readable without the passphrase, so its daemon, which holds the store
open, must not serve a client that does not know it.

Handshake (one per connection to a passphrase store's daemon, before any
other request; a client knows a passphrase store by its ``meta.json``, and
the daemon refuses any other first request there)::

    -> {"id": 0, "method": "auth_challenge"}
    <- {"id": 0, "result": {"required": true, "nonce": HEX, "salt": HEX, "kdf": {...},
                            "store_id": ID}}
    -> {"id": 0, "method": "auth", "params": {"proof": HEX}}
    <- {"id": 0, "result": {"authenticated": true}}

``proof = HMAC-SHA256(auth_key, CONTEXT || store_id || 0 || nonce)`` with
``auth_key = scrypt(passphrase, salt)``. The daemon draws the salt when it
starts, derives ``auth_key`` from the passphrase it was handed, and then
keeps only that key: it is derived independently of the store's data key
(Argon2id with another salt), so it reveals neither that key nor the
passphrase, and a fresh nonce per connection makes a recorded proof
useless. Scrypt rather than the store's Argon2id because it is in the
standard library: a client stays a light process (no ``cryptography``,
no store import); n=2**16, r=8 costs 64 MiB, like the store's Argon2id,
and about 0.1-0.2 s once per client (the key is kept per salt).

Any other request on a connection that has not proved the passphrase, or a
wrong proof, gets a typed error (``AuthRequired`` / ``AuthFailed``) and the
connection is closed: nothing of the store is sent. A daemon of a store
without a passphrase answers ``{"required": false}``; a daemon from before
this handshake answers ``unknown_method``, and the client goes on as before.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iai_mcp.daemon import wire
from iai_mcp.errors import AuthFailed, AuthRequired, IaiError, KeyUnavailable

CHALLENGE = "auth_challenge"
AUTH = "auth"
CONTEXT = b"iai-mcp daemon auth v1\0"
NONCE_BYTES = 32
SALT_BYTES = 16
#: scrypt parameters: 128 * r * n bytes = 64 MiB, the memory cost of the store's Argon2id.
KDF = {"name": "scrypt", "n": 2**16, "r": 8, "p": 1}
_MAX_KDF_MEMORY = 256 * 1024 * 1024
#: The store's meta file (``store.meta.META_FILE``), read here as plain JSON
#: so that a client never imports the store package (LanceDB, a second).
META_FILE = "meta.json"


def passphrase_protected(root: Path) -> bool:
    """Whether the store at ``root`` says its key comes from a passphrase."""
    try:
        meta = json.loads((root / META_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    source = meta.get("key_source") if isinstance(meta, dict) else None
    return isinstance(source, dict) and source.get("kind") == "passphrase"


def derive_key(passphrase: str, salt: bytes, kdf: dict[str, Any] = KDF) -> bytes:
    """The auth key for ``passphrase`` (never the store's data key)."""
    if kdf.get("name") != "scrypt":
        raise AuthFailed(f"the daemon asks for an unknown key derivation {kdf.get('name')!r}; "
                         "upgrade iai-mcp on this side")
    try:
        return hashlib.scrypt(passphrase.encode("utf-8"), salt=salt, n=int(kdf["n"]), r=int(kdf["r"]),
                              p=int(kdf["p"]), maxmem=_MAX_KDF_MEMORY, dklen=32)
    except (KeyError, TypeError, ValueError) as exc:
        raise AuthFailed(f"the daemon sent unusable key derivation parameters ({exc})") from None


def proof(key: bytes, store_id: str, nonce: bytes) -> str:
    return hmac.new(key, CONTEXT + store_id.encode("utf-8") + b"\0" + nonce, hashlib.sha256).hexdigest()


# ------------------------------------------------------------------ daemon side


@dataclass
class Guard:
    """The daemon's half: the auth key (None: the store has no passphrase)."""

    store_id: str
    key: bytes | None = field(default=None, repr=False)
    salt: bytes = field(default_factory=lambda: secrets.token_bytes(SALT_BYTES))

    @classmethod
    def for_passphrase(cls, store_id: str, passphrase: str | None) -> Guard:
        guard = cls(store_id)
        if passphrase:
            guard.key = derive_key(passphrase, guard.salt)
        return guard

    @property
    def required(self) -> bool:
        return self.key is not None


@dataclass(eq=False)
class Session:
    """One connection's progress through the handshake."""

    guard: Guard
    authenticated: bool = False
    nonce: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.authenticated = not self.guard.required

    def answer(self, line: bytes) -> tuple[bytes, bool]:
        """The reply to a request on a connection that has not authenticated
        yet, and whether the connection stays open."""
        request_id: Any = None
        try:
            request = wire.decode(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
            request_id = request.get("id")
            method, params = request.get("method"), request.get("params") or {}
        except ValueError:
            method, params = None, {}
        try:
            if method == CHALLENGE:
                return self._reply(request_id, self.challenge()), True
            if method == AUTH and isinstance(params, dict):
                self.verify(params.get("proof"))
                return self._reply(request_id, {"authenticated": True}), True
            raise AuthRequired(
                "this store is protected by a passphrase: prove it first (the iai-mcp client "
                "does, from IAI_MCP_CRYPTO_PASSPHRASE); the connection is closed"
            )
        except IaiError as exc:
            return wire.encode({"id": request_id, "error": wire.error_payload(exc)}), False

    def challenge(self) -> dict[str, Any]:
        if not self.guard.required:
            return {"required": False}
        self.nonce = secrets.token_bytes(NONCE_BYTES)
        return {"required": True, "nonce": self.nonce.hex(), "salt": self.guard.salt.hex(),
                "kdf": dict(KDF), "store_id": self.guard.store_id}

    def verify(self, given: Any) -> None:
        nonce, self.nonce = self.nonce, None  # one proof per challenge
        assert self.guard.key is not None
        if nonce is None or not isinstance(given, str):
            raise AuthFailed("ask for a challenge (auth_challenge), then send its proof")
        if not hmac.compare_digest(given.encode("ascii", "replace"), proof(self.guard.key, self.guard.store_id, nonce).encode()):
            raise AuthFailed("wrong passphrase for this store: check IAI_MCP_CRYPTO_PASSPHRASE")
        self.authenticated = True

    @staticmethod
    def _reply(request_id: Any, result: dict[str, Any]) -> bytes:
        return wire.encode({"id": request_id, "result": result})


# ------------------------------------------------------------------ client side


@dataclass
class Prover:
    """The client's half: answers a challenge with the passphrase it is given."""

    passphrase: Callable[[], str | None]
    _keys: dict[tuple[bytes, str], bytes] = field(default_factory=dict, repr=False)

    def handshake(self, exchange: Callable[[dict[str, Any]], dict[str, Any]], root: Any) -> None:
        """Run the handshake over ``exchange`` (one request -> its reply)."""
        reply = exchange({"id": 0, "method": CHALLENGE})
        error = reply.get("error")
        if isinstance(error, dict) and error.get("code") == "unknown_method":
            return  # a daemon from before the handshake: it asks for nothing
        if error is not None:
            raise wire.error_from_payload(error)
        challenge = reply.get("result")
        if not isinstance(challenge, dict) or not challenge.get("required"):
            return
        passphrase = self.passphrase()
        if not passphrase:
            raise KeyUnavailable(f"the store at {root} is protected by a passphrase: set "
                                 "IAI_MCP_CRYPTO_PASSPHRASE")
        try:
            salt, nonce = bytes.fromhex(challenge["salt"]), bytes.fromhex(challenge["nonce"])
            store_id = str(challenge["store_id"])
        except (KeyError, TypeError, ValueError):
            raise AuthFailed("the daemon sent a malformed challenge") from None
        key = self._keys.get((salt, passphrase))
        if key is None:  # one derivation per daemon (its salt), not per reconnect
            key = self._keys[(salt, passphrase)] = derive_key(passphrase, salt, challenge.get("kdf") or {})
        reply = exchange({"id": 0, "method": AUTH, "params": {"proof": proof(key, store_id, nonce)}})
        if "error" in reply:
            raise wire.error_from_payload(reply["error"])
