"""The MCP server's runtime: the backend slot and the MCP server, served over
stdio (``stdio``) or streamable HTTP (``http``).

Every tool is a thin adapter: it passes its typed parameters to the backend
(``backend.connect()``, which ends in ``core.dispatch``), returns the result
as structured content, and turns an ``IaiError`` into a tool error whose
message says what to fix. The server keeps serving after any tool error.

Built from the SDK's public pieces only: ``FastMCP`` is the tool registry
(schemas and validation derived from the tool signatures in ``tools``), and
its public handler methods are served by a low-level ``mcp.server.lowlevel.Server``
we construct ourselves, which takes our version, instructions and lifespan as
constructor arguments and runs on streams we hand it. The one SDK detail with
no public API (registering a notification handler) is ``_on_initialized``.

Start-up is lazy on purpose. The backend (LanceDB, the store, the embedding
model) takes seconds to load, so nothing of it is imported before the
``initialize`` handshake is answered; once the client says ``initialized``
a background thread opens the store and warms the embedder, and a tool call
that comes first simply opens it itself.

Shutdown (stdin closed, SIGTERM, SIGINT) runs the lifespan's ``finally``,
which closes the backend: for an in-process store that drains the
provenance queue, so no recall that returned loses its provenance.
"""
from __future__ import annotations

import os
import threading
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp.types as mcp_types
from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.lowlevel import Server
from pydantic import ValidationError

from iai_mcp import __version__
from iai_mcp.core.params import refuse_unknown
from iai_mcp.errors import IaiError, StoreError
from iai_mcp.log import logger
from iai_mcp.mcp_server.stdio import claim_stdout, serve_stdio
from iai_mcp.mcp_server.tools import register_tools

SERVER_NAME = "iai-mcp"
EXPOSE_EMBEDDINGS_ENV = "IAI_MCP_EXPOSE_EMBEDDINGS"

INSTRUCTIONS = """\
iai-mcp is your long-term memory across conversations. It keeps what was said \
verbatim, encrypted on this machine.
- Before answering anything that may depend on earlier conversations (the user's \
preferences, people, projects, decisions, facts they told you), call memory_recall \
with a short cue describing what you need.
- When the user tells you something worth keeping, or asks you to remember it, call \
memory_capture with the exact words.
- At the start of a conversation, call session_start once for the memories to begin \
with (pinned ones first), unless a hook has already given them to you.
- memory_get shows one memory in full, with when and by which cue it was recalled.
"""


# ----------------------------------------------------------------- backend


_log = logger("iai_mcp.mcp_server")


class BackendSlot:
    """The backend, opened once on first need and closed once at shutdown.

    Calls are serialised: one conversation at a time needs nothing more, and
    capture's check-then-insert must not interleave with itself.
    """

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._backend: Any = None
        self._lock = threading.Lock()
        self._closed = False
        self._warming = threading.Lock()
        self._warm_started = False

    def call(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self._closed:
                raise StoreError("the server is shutting down; try again after it restarts")
            if self._backend is None:
                self._backend = self._connect()
            return self._backend.call(method, dict(params))

    def warm_in_background(self) -> None:
        """Start ``warm`` on a daemon thread, once per server."""
        with self._warming:
            if self._warm_started:
                return
            self._warm_started = True
        threading.Thread(target=self.warm, name="iai-mcp-warmup", daemon=True).start()

    def warm(self) -> None:
        """Open the store and load the embedder now."""
        try:
            result = self.call("warmup", {})
            _log("warm", embedder=result.get("embedder"), seconds=result.get("seconds"))
        except Exception as exc:  # the first tool call will report it to the client
            _log.warning("warm_failed", error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()


def _typed(exc: IaiError) -> ToolError:
    """An ``IaiError`` as the tool error the model reads: its code, then what to fix."""
    return ToolError(f"{exc.code}: {exc}")


def _tool_error(method: str, exc: Exception) -> ToolError:
    if isinstance(exc, IaiError):
        return _typed(exc)
    # A bug, not the caller's fault: keep the details on stderr, serve on.
    _log.warning("tool_failed", method=method, error=f"{type(exc).__name__}: {exc}",
         trace=traceback.format_exc(limit=5))
    return ToolError(f"internal error in {method} ({type(exc).__name__}); the server log has details")


# ------------------------------------------------------------------- tools


def build_server(connect: Callable[[], Any], *, expose_embeddings: bool = False,
                 close_after_run: bool = True, project: str | None = None) -> tuple[Server, BackendSlot]:
    """The MCP server with the memory tools, over a backend ``connect()`` opens lazily.

    ``expose_embeddings`` shows ``tools.EMBEDDING_PARAMS`` to the model.
    ``project``: the project of a ``session_start`` that names none (stdio:
    the server runs in the host's working directory, so its project is the
    session's; a host that passes ``project`` wins).
    ``close_after_run``: the lifespan of ``server.run`` closes the backend,
    right for stdio (one run per process); over HTTP every session is a run,
    so the HTTP app closes the slot itself when it stops.
    """
    slot = BackendSlot(connect)

    @asynccontextmanager
    async def lifespan(_server: Server) -> AsyncIterator[BackendSlot]:
        try:
            yield slot
        finally:
            if close_after_run:
                # Blocking on purpose: shutdown must wait for the queue to drain.
                slot.close()

    async def call(method: str, params: dict[str, Any]) -> Any:
        given = {name: value for name, value in params.items() if value is not None}
        if method == "session_start" and project is not None:
            given.setdefault("project", project)
        try:
            return await anyio.to_thread.run_sync(slot.call, method, given)
        except Exception as exc:
            raise _tool_error(method, exc) from exc

    fastmcp = FastMCP(SERVER_NAME, log_level="WARNING")
    shown = register_tools(fastmcp, call, expose_embeddings=expose_embeddings)
    server: Server = Server(SERVER_NAME, version=__version__, instructions=INSTRUCTIONS, lifespan=lifespan)
    _serve_registry(server, fastmcp, shown)

    async def on_initialized(_notification: mcp_types.InitializedNotification) -> None:
        slot.warm_in_background()

    _on_initialized(server, on_initialized)
    return server, slot


def _in_our_words(name: str, arguments: dict[str, Any], error: ToolError) -> ToolError:
    """Every tool error in one form, ``<code>: <method>: <what to fix>``.

    FastMCP wraps whatever a tool raises as "Error executing tool <name>:
    ..."; the errors our tools raise are already in that form (``_typed``),
    so they are passed on unwrapped. And FastMCP checks a tool's arguments
    against its schema before our code runs, in pydantic's words; dispatch's
    check of the same arguments (``core.contract``) names the parameter, the
    limit and what to do, as the CLI and the daemon say it."""
    if isinstance(error.__cause__, ToolError):
        return error.__cause__
    if not isinstance(error.__cause__, ValidationError):
        return error
    from iai_mcp.core import contract

    try:
        contract.parse(name, arguments or {})
    except IaiError as ours:
        return _typed(ours)
    return error


def _serve_registry(server: Server, fastmcp: FastMCP, shown: Mapping[str, frozenset[str]]) -> None:
    """Serve FastMCP's tools (and its empty resource and prompt lists) from ``server``.

    The same handlers, with the same ``validate_input=False``, that FastMCP
    registers on the server it builds for itself, so the handshake and every
    answer are what ``FastMCP.run`` would give: resources and prompts stay
    advertised (empty), as they always were.
    """
    server.list_tools()(fastmcp.list_tools)

    async def call_tool(name: str, arguments: dict[str, Any]) -> Any:
        if name in shown:
            # FastMCP drops arguments its schema does not name; a misspelt
            # filter would then widen a recall or a forget without a word.
            try:
                refuse_unknown(name, arguments or {}, shown[name])
            except IaiError as exc:
                raise _typed(exc) from None
        try:
            return await fastmcp.call_tool(name, arguments)
        except ToolError as exc:
            raise _in_our_words(name, arguments, exc) from exc

    # FastMCP validates (and coerces) arguments itself, against the same schema.
    server.call_tool(validate_input=False)(call_tool)
    server.list_resources()(fastmcp.list_resources)
    server.read_resource()(fastmcp.read_resource)
    server.list_resource_templates()(fastmcp.list_resource_templates)
    server.list_prompts()(fastmcp.list_prompts)
    server.get_prompt()(fastmcp.get_prompt)


def _on_initialized(server: Server, handler: Callable[[mcp_types.InitializedNotification], Awaitable[None]]) -> None:
    """Call ``handler`` when the client's ``notifications/initialized`` arrives.

    The SDK has request decorators but no public way to register a
    notification handler (modelcontextprotocol/python-sdk#2135). In 1.x the
    low-level ``Server.notification_handlers`` dict, keyed by notification
    type, is what its own ``progress_notification`` decorator fills and what
    ``Server.run`` dispatches from; 2.x moves handlers into constructor
    arguments. ``tests/test_server.py::test_initialized_hook_still_holds``
    fails if this stops being true.
    """
    server.notification_handlers[mcp_types.InitializedNotification] = handler


# ------------------------------------------------------------------ serve


def expose_embeddings_default() -> bool:
    """``IAI_MCP_EXPOSE_EMBEDDINGS=1``: a host that computes embeddings itself
    opts in to seeing ``cue_embedding`` (``serve --expose-embeddings`` too)."""
    return os.environ.get(EXPOSE_EMBEDDINGS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def backend_connector(store: str | Path | None) -> Callable[[], Any]:
    def connect() -> Any:
        from iai_mcp import backend

        return backend.connect(store)

    return connect


def _own_project() -> str | None:
    """The project of this process's working directory: a host starts a
    stdio server in the directory it works in (None if that is gone)."""
    from iai_mcp.project import project_of

    try:
        return project_of(os.getcwd())
    except OSError:
        return None


def serve(store: str | Path | None = None, *, expose_embeddings: bool | None = None) -> None:
    """Serve MCP on stdin/stdout until stdin closes, SIGTERM or SIGINT."""
    if expose_embeddings is None:
        expose_embeddings = expose_embeddings_default()
    server, _ = build_server(backend_connector(store), expose_embeddings=expose_embeddings,
                             project=_own_project())
    rpc_out = claim_stdout()
    _log("serving", version=__version__, pid=os.getpid())
    anyio.run(serve_stdio, server, rpc_out)
    _log("stopped")
