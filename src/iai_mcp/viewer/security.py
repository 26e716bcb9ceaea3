"""Who may talk to the viewer: only the browser the launch's link was opened in.

An ASGI middleware in front of every route (static files included):

- ``Host`` must be ``127.0.0.1:PORT`` or ``localhost:PORT``, so a page that
  rebinds its own DNS name to 127.0.0.1 (DNS rebinding) is refused;
- ``Origin``, when sent, must be this same origin, and a request that can
  change something (anything but GET and HEAD) must send it, so a form on
  another site cannot post here (CSRF); ``Sec-Fetch-Site``, when sent, must
  not say ``cross-site`` or ``same-site`` (a page on another port of this
  machine is the same *site*, and would carry a ``SameSite`` cookie);
- the token, random per launch, arrives once in the URL the command opens:
  it is then set as an ``HttpOnly`` ``SameSite=Strict`` cookie (named after
  the port: cookies are not kept apart by port) and the browser is sent to
  the same address without it, out of the address bar and history. Anything
  without the cookie gets 401 and no data.

Every answer, refusals included, carries a strict Content-Security-Policy
(same-origin scripts and styles only, nothing inline, no framing),
``nosniff``, a ``same-origin`` referrer policy and ``no-store``.
"""
from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qsl, quote, urlencode

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    # Not ``no-referrer``: under it Chromium sends ``Origin: null`` on the
    # viewer's own form posts (Fetch, "serializing a request origin"), which
    # the Origin check must refuse. ``same-origin`` still gives no other
    # origin a referrer (and the pages link nowhere else).
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
#: Methods that only read; every other one must name its origin.
SAFE_METHODS = frozenset({"GET", "HEAD"})
TOKEN_PARAM = "token"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def cookie_name(port: int) -> str:
    return f"iai_mcp_ui_{port}"


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


class Guard:
    """The checks above, around ``app``, for the viewer on ``port`` with ``token``."""

    def __init__(self, app: ASGIApp, *, port: int, token: str) -> None:
        self.app, self.token, self.cookie = app, token, cookie_name(port)
        self.hosts = frozenset({f"127.0.0.1:{port}", f"localhost:{port}"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no websockets here
            await send({"type": "websocket.close", "code": 1008})
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.decode("latin-1").lower() not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, secured)
        else:
            await self.app(scope, receive, secured)

    def _refusal(self, scope: Scope) -> Response | None:
        """The answer that stops this request here, or None to let it through."""
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if host not in self.hosts:
            return PlainTextResponse("403 Forbidden: unknown Host; open the address iai-mcp ui printed", 403)
        origin = headers.get("origin")
        if origin is not None and origin != f"http://{host}":
            return PlainTextResponse("403 Forbidden: request from another origin", 403)
        if origin is None and scope["method"] not in SAFE_METHODS:
            return PlainTextResponse("403 Forbidden: a change must come from the viewer's own pages", 403)
        if headers.get("sec-fetch-site") in ("cross-site", "same-site"):
            return PlainTextResponse("403 Forbidden: request from another site", 403)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        offered = [value for name, value in query if name == TOKEN_PARAM]
        if offered:
            if len(offered) != 1 or not _same(offered[0], self.token):
                return _unauthorized()
            rest = urlencode([(name, value) for name, value in query if name != TOKEN_PARAM])
            # One leading slash: "//host" would send the browser to another site.
            path = "/" + quote(scope["path"]).lstrip("/")
            response = RedirectResponse(path + (f"?{rest}" if rest else ""), status_code=303)
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict", path="/")
            return response
        # Starlette's lenient parser, as browsers parse: cookies for 127.0.0.1
        # are shared by every port, and another local app's cookie that
        # SimpleCookie cannot read (JSON in it, say) must not hide ours.
        given = cookie_parser(headers.get("cookie", "")).get(self.cookie)
        if given is None or not _same(given, self.token):
            return _unauthorized()
        return None


def _unauthorized() -> Response:
    return PlainTextResponse(
        "401 Unauthorized: open the address that 'iai-mcp ui' printed; it carries this launch's token", 401
    )
