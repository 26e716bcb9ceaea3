"""Key material and authenticated encryption for everything the store writes.

Every piece of user content (memory text, tags, provenance cues, spilled
provenance batches, even the embedding vectors, which can be inverted back
into text) is sealed with AES-256-GCM before it reaches a file. Each sealed
blob carries a fresh 96-bit nonce and is bound to where it lives through the
associated data (record id, entry id, purpose), so a blob copied into
another row does not open there.

Where the key lives, in the order a new store tries them:

1. A passphrase when one is given (``KeySettings.passphrase``, which
   ``config`` reads from ``IAI_MCP_CRYPTO_PASSPHRASE``): the user asked for
   one, so honour it (Argon2id, 64 MiB, 3 passes; salt in meta).
2. The OS keyring, when a real backend is available (not the ``fail`` or
   ``null`` backends a headless Linux box has).
3. A key file with mode 0600 in the store root.

An existing store always uses the source recorded in its meta file, and its
key is checked against a sealed known value before anything is read: a
missing or wrong key is a clear error, never a silent empty store and never
a new key written over the old one.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher as _BlockCipher
from cryptography.hazmat.primitives.ciphers import algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from iai_mcp.config import PASSPHRASE_ENV, KeySettings
from iai_mcp.errors import CorruptData, KeyUnavailable, WrongKey

KEY_BYTES = 32
NONCE_BYTES = 12
#: ``seal_stream`` encrypts this many bytes at a time.
STREAM_CHUNK = 1 << 20
KEY_FILE_NAME = "key"
KEYRING_SERVICE = "iai-mcp"
_KEY_CHECK = b"iai-mcp key check v1"
_ARGON2 = {"iterations": 3, "lanes": 4, "memory_cost": 64 * 1024}


class Cipher:
    """AES-256-GCM with a random nonce per blob: ``nonce || ciphertext+tag``."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("an AES-256 key is 32 bytes")
        self._aead = AESGCM(key)
        self._stream_key = algorithms.AES(key)  # seal_stream's incremental GCM: the same bytes as _aead's
        # A subkey for digests only: a digest never reveals the key, and the
        # key never signs anything else.
        self._digest_key = hmac.new(key, b"iai-mcp log digest v1", hashlib.sha256).digest()

    def digest(self, data: bytes, chars: int = 16) -> str:
        """A short keyed digest of ``data`` (hex): names a record in a log
        line without its id. Stable for this key, so two lines about one
        record match, and whoever holds the key can find which record it is
        (``MemoryStore.log_name``); without the key it says nothing."""
        return hmac.new(self._digest_key, data, hashlib.sha256).hexdigest()[:chars]

    def purpose_digest(self, purpose: str, data: bytes) -> str:
        """A keyed digest of ``data`` under a subkey of its own for ``purpose``
        (hex, 32 chars): stable for this key and purpose, unrelated to the log
        digests (no record id starts with the purpose prefix) and to any
        other purpose. Adapters ask for it (``keyed_digest``) instead of the
        key, so key material never leaves the store."""
        subkey = hmac.new(self._digest_key, b"purpose\0" + purpose.encode("utf-8"), hashlib.sha256).digest()
        return hmac.new(subkey, data, hashlib.sha256).hexdigest()[:32]

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def seal_stream(self, parts: Iterable[bytes | bytearray | memoryview], aad: bytes, out: BinaryIO) -> int:
        """``seal`` of the concatenated ``parts``, written to ``out`` as it is
        encrypted, ``STREAM_CHUNK`` at a time: the same bytes (nonce,
        ciphertext, GCM tag), which ``open`` reads, without the blob ever held
        whole, plain or sealed (a 13 MB cache at 100k records, twice).
        Returns how many bytes were written."""
        nonce = os.urandom(NONCE_BYTES)
        encryptor = _BlockCipher(self._stream_key, modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(aad)
        out.write(nonce)
        written = NONCE_BYTES
        buf = bytearray(STREAM_CHUNK + 15)  # update_into wants a block less one byte of room
        for part in parts:
            view = memoryview(part).cast("B")
            for start in range(0, len(view), STREAM_CHUNK):
                n = encryptor.update_into(view[start:start + STREAM_CHUNK], buf)
                out.write(memoryview(buf)[:n])
                written += n
        tail = encryptor.finalize() + encryptor.tag
        out.write(tail)
        return written + len(tail)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < NONCE_BYTES + 16:
            raise CorruptData("a sealed blob is shorter than its nonce and tag")
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag:
            raise CorruptData(
                "a sealed blob failed authentication (damaged, or moved from elsewhere)"
            ) from None


class Sealer:
    """A ``Cipher`` bound to one purpose's associated data (``MemoryStore.sealer``)."""

    __slots__ = ("_cipher", "_aad")

    def __init__(self, cipher: Cipher, aad: bytes) -> None:
        self._cipher, self._aad = cipher, aad

    def seal(self, data: bytes) -> bytes:
        return self._cipher.seal(data, self._aad)

    def seal_stream(self, parts: Iterable[bytes | bytearray | memoryview], out: BinaryIO) -> int:
        return self._cipher.seal_stream(parts, self._aad, out)

    def open(self, blob: bytes) -> bytes:
        return self._cipher.open(blob, self._aad)


@dataclass(frozen=True)
class KeySource:
    """Where a store's key comes from, as recorded in its meta file."""

    kind: str  # "file" | "keyring" | "passphrase"
    params: dict[str, Any]


def _keyring_usable() -> bool:
    try:
        import keyring
        from keyring.backends import fail
    except Exception:
        return False
    try:
        backend = keyring.get_keyring()
    except Exception:
        return False
    if isinstance(backend, fail.Keyring):
        return False
    name = type(backend).__module__
    return not name.startswith("keyring.backends.null") and getattr(backend, "priority", 1) > 0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _derive_from_passphrase(passphrase: str, salt: bytes) -> bytes:
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    return Argon2id(salt=salt, length=KEY_BYTES, **_ARGON2).derive(passphrase.encode("utf-8"))


def _write_key_file(path: Path, key: bytes) -> None:
    # O_EXCL: never overwrite a key that is already there.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, _b64(key).encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def key_file_mode_problem(root: Path) -> str | None:
    """A sentence saying what is wrong with the key file's permissions, if anything."""
    path = root / KEY_FILE_NAME
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    if mode & 0o077:
        return (
            f"key file {path} has mode {mode:o}; other users may read it. "
            f"Run: chmod 600 {path}"
        )
    return None


def create_key(root: Path, store_id: str, settings: KeySettings) -> tuple[bytes, KeySource]:
    """Make the key of a new store and put it where it will be found again."""
    passphrase = settings.passphrase
    if passphrase:
        salt = secrets.token_bytes(16)
        params = {"kdf": "argon2id", "salt": _b64(salt), **_ARGON2}
        return _derive_from_passphrase(passphrase, salt), KeySource("passphrase", params)
    key = secrets.token_bytes(KEY_BYTES)
    if _keyring_usable():
        import keyring

        try:
            keyring.set_password(KEYRING_SERVICE, store_id, _b64(key))
            return key, KeySource("keyring", {"service": KEYRING_SERVICE, "user": store_id})
        except Exception:
            pass  # a keyring that refuses writes: fall back to the key file
    _write_key_file(root / KEY_FILE_NAME, key)
    return key, KeySource("file", {"name": KEY_FILE_NAME})


def load_key(root: Path, source: KeySource, settings: KeySettings) -> bytes:
    """The key of an existing store; KeyUnavailable when it cannot be found."""
    if source.kind == "passphrase":
        passphrase = settings.passphrase
        if not passphrase:
            raise KeyUnavailable(
                f"store at {root} is protected by a passphrase: set {PASSPHRASE_ENV}"
            )
        return _derive_from_passphrase(passphrase, _unb64(source.params["salt"]))
    if source.kind == "keyring":
        try:
            import keyring

            secret = keyring.get_password(source.params["service"], source.params["user"])
        except Exception as exc:
            raise KeyUnavailable(
                f"store at {root} keeps its key in the OS keyring, which failed: {exc}"
            ) from None
        if not secret:
            raise KeyUnavailable(
                f"store at {root} keeps its key in the OS keyring under "
                f"{source.params['service']}/{source.params['user']}, and it is not there"
            )
        return _unb64(secret)
    if source.kind == "file":
        path = root / source.params.get("name", KEY_FILE_NAME)
        try:
            text = path.read_text("ascii").strip()
        except FileNotFoundError:
            raise KeyUnavailable(
                f"key file {path} is missing; restore it from your backup "
                "(without it the store cannot be read)"
            ) from None
        try:
            key = _unb64(text)
        except ValueError:
            raise KeyUnavailable(f"key file {path} is not a valid key; restore it from backup") from None
        if len(key) != KEY_BYTES:
            raise KeyUnavailable(f"key file {path} holds {len(key)} bytes, not 32; restore it")
        return key
    raise KeyUnavailable(f"store at {root} names an unknown key source {source.kind!r}")


def make_key_check(cipher: Cipher, store_id: str) -> str:
    return _b64(cipher.seal(_KEY_CHECK, store_id.encode()))


def verify_key_check(cipher: Cipher, store_id: str, check: str, root: Path) -> None:
    try:
        ok = cipher.open(_unb64(check), store_id.encode()) == _KEY_CHECK
    except (CorruptData, ValueError):
        ok = False
    if not ok:
        raise WrongKey(
            f"the key found for store {root} does not open it; nothing was changed. "
            "Restore the right key (key file, keyring entry or passphrase)"
        )
