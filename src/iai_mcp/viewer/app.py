"""The viewer's web app and the server that runs it.

``create_app`` builds the Starlette app around any backend (the daemon
client in ``serve``, a local store in tests) behind the ``Guard``;
``serve`` binds 127.0.0.1 (never another address), prints the link with
this launch's token, opens it in a browser if asked (from a thread, once
the server answers), and serves until interrupted.

Handlers are plain functions, so Starlette runs them in its thread pool;
backend calls go one at a time through ``Viewer.call`` (the daemon client
serialises them anyway, and a local store is not shared between threads).
"""
from __future__ import annotations

import socket
import threading
import time
import webbrowser
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from iai_mcp.errors import IaiError, InvalidInput, NotFound
from iai_mcp.viewer.actions import act
from iai_mcp.viewer.markup import h, page
from iai_mcp.viewer.overview import overview_page
from iai_mcp.viewer.pages import browse_page, memory_page, search_page
from iai_mcp.viewer.security import Guard, new_token

STATIC = Path(__file__).resolve().parent / "static"
HOST = "127.0.0.1"


class Viewer:
    """What the pages share: the backend (one call at a time) and the health checks."""

    def __init__(self, backend: Any, checks: Callable[[Any], list[Any]]) -> None:
        self.backend, self._checks, self._lock = backend, checks, threading.Lock()

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        with self._lock:
            return self.backend.call(method, params)

    def checks(self) -> list[Any]:
        return self._checks(self)


def _status(exc: IaiError) -> int:
    if isinstance(exc, NotFound):
        return 404
    return 400 if isinstance(exc, InvalidInput) else 500


def create_app(viewer: Viewer, *, port: int, token: str) -> Guard:
    def html(render: Callable[[Request], Any]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                result = render(request)
            except IaiError as exc:
                # Not ours to hide: the method's own message says what to do next.
                result = page("Something went wrong", h('<p class="error" role="alert">{}</p>', str(exc)))
                return HTMLResponse(result, status_code=_status(exc))
            return result if isinstance(result, Response) else HTMLResponse(result)
        return endpoint

    async def action(request: Request) -> Response:
        form = await request.form()
        rid, name = request.path_params["record_id"], request.path_params["action"]
        return await run_in_threadpool(html(lambda _: act(rid, name, form, viewer.call)), request)

    routes = [
        Route("/", html(lambda r: overview_page(viewer.call, viewer.checks()))),
        Route("/search", html(lambda r: search_page(r.query_params, viewer.call))),
        Route("/browse", html(lambda r: browse_page(r.query_params, viewer.call))),
        Route("/memory/{record_id}", html(lambda r: memory_page(r.path_params["record_id"], r.query_params, viewer.call))),
        Route("/memory/{record_id}/{action}", action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Guard(Starlette(routes=routes), port=port, token=token)


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` (0: any free port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


#: How long the browser waits for the server to come up before giving up.
BROWSER_WAIT_S = 30.0


def open_when_up(server: Any, link: str, wait_s: float = BROWSER_WAIT_S) -> threading.Thread:
    """Open ``link`` in a browser once ``server`` (a ``uvicorn.Server``)
    answers, from a thread: the first page must not race the server start."""
    def wait_then_open() -> None:
        deadline = time.monotonic() + wait_s
        # uvicorn sets ``started`` and offers no event to wait on.
        while not server.started and not server.should_exit and time.monotonic() < deadline:
            time.sleep(0.05)
        if server.started and not server.should_exit:
            webbrowser.open(link)

    thread = threading.Thread(target=wait_then_open, name="iai-mcp-ui-browser", daemon=True)
    thread.start()
    return thread


def serve(store: str | None, port: int, *, open_browser: bool, say: Callable[[str], None]) -> None:
    """Serve the viewer of ``store`` until interrupted; ``say`` gets the link."""
    import uvicorn

    from iai_mcp import backend as backends
    from iai_mcp.doctor import backend_checks

    sock = bind(port)
    port = sock.getsockname()[1]
    token = new_token()
    connection = backends.connect(store, create=False)
    try:
        viewer = Viewer(connection, lambda b: backend_checks(b, backends.store_path(store)))
        app = create_app(viewer, port=port, token=token)
        link = f"http://{HOST}:{port}/?token={token}"
        say(link)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
        if open_browser:
            open_when_up(server, link)
        server.run(sockets=[sock])
    finally:
        sock.close()
        connection.close()
