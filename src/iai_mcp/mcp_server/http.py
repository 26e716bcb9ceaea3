"""``iai-mcp serve --http``: the same MCP server over streamable HTTP.

The low-level server ``runtime.build_server`` makes is run by the SDK's
``StreamableHTTPSessionManager`` (one ``server.run`` per MCP session), served
by uvicorn at ``http://HOST:PORT/mcp``. What keeps others out:

- **Loopback by default** (``127.0.0.1:8731``). Any other address exposes
  every memory to the network, so it is refused unless ``--allow-remote``
  says it is meant.
- **A bearer token on every request**, compared in constant time; without
  it, or with another, the answer is 401 and nothing else. The token is made
  on first use, printed once, and kept mode 0600 in the store
  (``store.http_token``), so a configured host keeps working across restarts.
- **Unreadable requests answered**: a body with a lone surrogate, invalid
  UTF-8 or broken JSON gets a JSON-RPC error (``ReadableBodies``).
- **Host and Origin checked** by the SDK's transport security (DNS
  rebinding): on loopback only ``127.0.0.1``, ``localhost``, ``[::1]`` and
  the bound address (``127.0.0.2``) at our port; on a named address, that address. Bound to a wildcard address
  (``0.0.0.0``, ``::``) the names a client will use are unknown, so the
  Host check is off and the token alone guards.

Every session shares one backend (the daemon's client, by default); it is
closed when the app stops, not when a session ends.
"""
from __future__ import annotations

import hmac
import ipaddress
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE, TransportSecuritySettings
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iai_mcp import __version__
from iai_mcp.errors import InvalidInput
from iai_mcp.log import logger
from iai_mcp.mcp_server.messages import parse_line
from iai_mcp.mcp_server.runtime import BackendSlot, backend_connector, build_server, expose_embeddings_default

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "MCP_PATH", "Address", "build_app", "parse_address", "serve_http"]

DEFAULT_HOST = "127.0.0.1"
#: Unassigned by IANA and unlike the usual development ports (8000, 8080, 8765).
DEFAULT_PORT = 8731
MCP_PATH = "/mcp"
#: Seconds shutdown waits for open streams (an idle SSE stream never ends by itself).
SHUTDOWN_GRACE_S = 5

_log = logger("iai_mcp.mcp_server")


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name: it may resolve anywhere

    @property
    def wildcard(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            return False

    @property
    def url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def authority(self, port: int | None = None) -> str:
        return f"{self.url_host}:{self.port if port is None else port}"


def parse_address(text: str | None) -> Address:
    """``HOST:PORT``, ``HOST``, ``:PORT`` or ``PORT`` (IPv6 as ``[::1]:PORT``);
    what is left out is the default, 127.0.0.1:8731."""
    text = (text or "").strip()
    host, port = DEFAULT_HOST, str(DEFAULT_PORT)
    if text.startswith("["):
        inside, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise InvalidInput(f"--http {text!r}: write an IPv6 address as [ADDRESS]:PORT")
        host, port = inside, rest[1:] or port
    elif text.isdigit():
        port = text
    elif text.count(":") == 1:
        host, port = text.split(":")
        host, port = host or DEFAULT_HOST, port or str(DEFAULT_PORT)
    elif text.count(":") > 1:
        raise InvalidInput(f"--http {text!r}: write an IPv6 address as [ADDRESS]:PORT")
    elif text:
        host = text
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidInput(f"--http {text!r}: the port must be a number from 0 to 65535")
    if not host:
        raise InvalidInput(f"--http {text!r}: give a host, e.g. {DEFAULT_HOST}:{DEFAULT_PORT}")
    return Address(host, int(port))


def refuse_remote(address: Address, allow_remote: bool) -> None:
    if address.loopback or allow_remote:
        return
    raise InvalidInput(
        f"refusing to serve on {address.authority()}: it is not a loopback address, so other machines "
        "could reach every memory in this store (the bearer token would be all that stops them, sent "
        "over plain HTTP). Bind to 127.0.0.1 (the default), or pass --allow-remote if that is what you "
        "want (put TLS in front of it)"
    )


def security_settings(address: Address, port: int) -> TransportSecuritySettings:
    """Host/Origin checks against DNS rebinding, for a server bound to ``address`` at ``port``."""
    if address.wildcard:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    # The bound address itself too: 127.0.0.2 is loopback, and a client of it sends that Host.
    names = ["127.0.0.1", "localhost", "[::1]"] if address.loopback else []
    names += [address.url_host] if address.url_host not in names else []
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{name}:{port}" for name in names],
        allowed_origins=[f"http://{name}:{port}" for name in names],
    )


class BearerGuard:
    """Every HTTP request needs ``Authorization: Bearer <token>``; anything
    else gets 401 before the MCP app sees it."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self._app = app
        self._expected = b"bearer " + token.encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._authorized(scope):
            response = JSONResponse(
                {"error": "unauthorized", "message": "send the token from the store's http_token file "
                                                     "as 'Authorization: Bearer <token>'"},
                status_code=401, headers={"WWW-Authenticate": 'Bearer realm="iai-mcp"'},
            )
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
                break
        # The scheme is case-insensitive; the token is compared in constant time.
        given = given[:7].lower() + given[7:]
        return hmac.compare_digest(given, self._expected)


class ReadableBodies:
    """A POST body the SDK could not read gets the JSON-RPC error reply stdio
    gives the same message (``messages.parse_line``), with status 400; the
    SDK would pass a lone surrogate on and then fail to write the reply,
    answering with an empty body. The body is read once (at most the SDK's
    limit) and handed on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > DEFAULT_MAX_REQUEST_BODY_SIZE:
                await Response("request body too large", status_code=413)(scope, receive, send)
                return
        body = b"".join(chunks)
        parsed = parse_line(body)
        if isinstance(parsed, str):
            _log.warning("unreadable_message", reply=parsed, bytes=len(body))
            await Response(parsed, status_code=400, media_type="application/json")(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: the disconnect, when it comes
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self._app(scope, replay, send)


class _SessionEndpoint:
    """The session manager as an ASGI endpoint (a Starlette ``Route`` serves
    a non-function endpoint as a raw ASGI app, so /mcp is not redirected)."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self._manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._manager.handle_request(scope, receive, send)


def build_app(server: Server, slot: BackendSlot, token: str, address: Address, port: int) -> ASGIApp:
    """The ASGI app serving ``server`` at /mcp behind ``token``; stopping it closes ``slot``."""
    manager = StreamableHTTPSessionManager(app=server, security_settings=security_settings(address, port))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            async with manager.run():
                yield
        finally:
            # Blocking on purpose: an in-process store drains its provenance queue here.
            await anyio.to_thread.run_sync(slot.close)

    app = Starlette(routes=[Route(MCP_PATH, endpoint=_SessionEndpoint(manager))], lifespan=lifespan)
    return BearerGuard(ReadableBodies(app), token)


def _bind(address: Address) -> socket.socket:
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    try:
        return socket.create_server((address.host, address.port), family=family)
    except OSError as exc:
        raise InvalidInput(f"cannot listen on {address.authority()}: {exc.strerror or exc}; "
                           "choose another HOST:PORT with --http") from None


def serve_http(store: str | Path | None = None, where: str | None = None, *, allow_remote: bool = False,
               expose_embeddings: bool | None = None) -> None:
    """Serve MCP over streamable HTTP until SIGTERM or SIGINT."""
    import uvicorn

    from iai_mcp import backend

    address = parse_address(where)
    refuse_remote(address, allow_remote)
    sock = _bind(address)  # first: a token made for a server that never started would never be shown
    port = sock.getsockname()[1]  # the one the system chose, for port 0
    try:
        token, made, token_file = backend.http_token(store)
    except BaseException:
        sock.close()
        raise
    if expose_embeddings is None:
        expose_embeddings = expose_embeddings_default()
    server, slot = build_server(backend_connector(store), expose_embeddings=expose_embeddings, close_after_run=False)
    app = build_app(server, slot, token, address, port)
    print(f"iai-mcp {__version__}: MCP over streamable HTTP at http://{address.authority(port)}{MCP_PATH}")
    if made:
        print(f"bearer token (new, kept in {token_file}, mode 0600): {token}", flush=True)
    else:
        print(f"bearer token: the one in {token_file}", flush=True)
    _log("serving_http", version=__version__, host=address.host, port=port, remote=not address.loopback)
    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    # uvicorn stops gracefully on SIGTERM, then raises it again for the
    # handler it found: make that a clean exit (status 0), as on stdio.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        _log("stopped")


def _exit_cleanly(signum: int, _frame: Any) -> None:
    _log("shutdown", signal=signal.Signals(signum).name)
    raise SystemExit(0)
