"""The MCP server: iai-mcp's memory tools over stdio.

Every tool is a thin adapter: it passes its typed parameters to the backend
(``app.connect()``, which ends in ``core.dispatch``), returns the result as
structured content, and turns an ``IaiError`` into a tool error whose
message says what to fix. The server keeps serving after any tool error.

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

import contextlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from io import TextIOWrapper
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

import anyio
import anyio.from_thread
import anyio.lowlevel
import mcp.types as mcp_types
from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.stdio import stdio_server
from pydantic import Field
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from iai_mcp import __version__
from iai_mcp.errors import IaiError, StoreError
from iai_mcp.log import logger

SERVER_NAME = "iai-mcp"

#: Mirrors ``iai_mcp.types.TIERS`` and ``ROLES`` (a test keeps them equal).
Tier = Literal["working", "episodic", "semantic", "procedural"]
Role = Literal["user", "assistant", "system", "tool", "note"]

#: Mirrors ``params.MAX_K`` and ``params.MAX_BUDGET_TOKENS`` (a test keeps them equal).
MAX_K = 200
MAX_BUDGET_TOKENS = 100_000

INSTRUCTIONS = """\
iai-mcp is your long-term memory across conversations. It keeps what was said \
verbatim, encrypted on this machine.
- Before answering anything that may depend on earlier conversations (the user's \
preferences, people, projects, decisions, facts they told you), call memory_recall \
with a short cue describing what you need.
- When the user tells you something worth keeping, or asks you to remember it, call \
memory_capture with the exact words.
- memory_get shows one memory in full, with when and by which cue it was recalled.
"""


# ----------------------------------------------------------------- results


class CaptureResult(TypedDict):
    status: Literal["inserted", "reinforced", "skipped"]
    record_id: str
    reason: str
    redacted: list[str]


class MemorySummary(TypedDict):
    """What every result says about a memory (``params.row_summary``)."""

    record_id: str
    literal_surface: str
    tier: str
    tags: list[str]
    session_id: str | None
    role: str | None
    ts: str


class RecallHit(MemorySummary):
    score: float
    reason: str


class RecallResult(TypedDict):
    hits: list[RecallHit]
    anti_hits: list[RecallHit]
    budget_used: int


class Memory(MemorySummary):
    pinned: bool
    language: str
    created_at: str
    updated_at: str
    reinforcements: int
    provenance: list[dict[str, Any]]


class PackedMemory(MemorySummary):
    pinned: bool
    why: Literal["pinned", "recalled", "reinforced", "captured"]
    at: str


class SessionPack(TypedDict):
    text: str
    budget_used: int
    memories: list[PackedMemory]


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
            _log("warm_failed", error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()


def _tool_error(method: str, exc: Exception) -> ToolError:
    if isinstance(exc, IaiError):
        return ToolError(f"{exc.code}: {exc}")
    # A bug, not the caller's fault: keep the details on stderr, serve on.
    _log("tool_failed", method=method, error=f"{type(exc).__name__}: {exc}",
         trace=traceback.format_exc(limit=5))
    return ToolError(f"internal error in {method} ({type(exc).__name__}); the server log has details")


# ------------------------------------------------------------------- tools


def build_server(connect: Callable[[], Any]) -> tuple[FastMCP, BackendSlot]:
    """The FastMCP app with the memory tools, over a backend ``connect()`` opens lazily."""
    slot = BackendSlot(connect)

    @asynccontextmanager
    async def lifespan(_app: FastMCP) -> AsyncIterator[BackendSlot]:
        try:
            yield slot
        finally:
            # Blocking on purpose: shutdown must wait for the queue to drain.
            slot.close()

    app = FastMCP(SERVER_NAME, instructions=INSTRUCTIONS, lifespan=lifespan, log_level="WARNING")
    # FastMCP has no "after the handshake" hook; the low-level server's
    # notification handlers see the client's `initialized`.
    lowlevel = app._mcp_server
    lowlevel.version = __version__

    async def on_initialized(_notification: mcp_types.InitializedNotification) -> None:
        slot.warm_in_background()

    lowlevel.notification_handlers[mcp_types.InitializedNotification] = on_initialized

    async def call(method: str, params: dict[str, Any]) -> Any:
        given = {name: value for name, value in params.items() if value is not None}
        try:
            return await anyio.to_thread.run_sync(slot.call, method, given)
        except Exception as exc:
            raise _tool_error(method, exc) from exc

    @app.tool()
    async def memory_capture(
        text: Annotated[str, Field(description="The exact words to remember, verbatim.")],
        session_id: Annotated[str | None, Field(description="The current conversation's id, if known.")] = None,
        role: Annotated[Role | None, Field(description="Who said it.")] = None,
        cue: Annotated[str | None, Field(description="What prompted keeping it (a question, a topic).")] = None,
        tier: Annotated[Tier, Field(description="episodic: something said or done; semantic: a lasting fact or preference; procedural: how to do something; working: short-lived.")] = "episodic",
        tags: Annotated[list[str] | None, Field(description="Short labels to filter by later.")] = None,
        ts: Annotated[str | None, Field(description="When it was said, ISO-8601 (e.g. 2026-05-08T13:56:00Z); default now.")] = None,
        pinned: Annotated[bool, Field(description="Always include it in the memories a new session starts with.")] = False,
        language: Annotated[str, Field(description="Language code of the text.")] = "en",
    ) -> CaptureResult:
        """Remember something verbatim, for this and future conversations.

        Use it when the user states a preference, a fact about themselves or
        others, a decision, or asks you to remember something. Pass the words
        exactly as said; do not summarise. Saying the same text again
        reinforces the existing memory instead of duplicating it (status
        "reinforced"); the same turn sent twice is "skipped".
        """
        return await call("memory_capture", {
            "text": text, "session_id": session_id, "role": role, "cue": cue, "tier": tier,
            "tags": tags, "ts": ts, "pinned": pinned, "language": language,
        })

    @app.tool()
    async def memory_recall(
        cue: Annotated[str, Field(description="What you are looking for, in a few words or a question.")],
        session_id: Annotated[str | None, Field(description="The current conversation's id, recorded as who recalled.")] = None,
        cue_embedding: Annotated[list[float] | None, Field(description="Rarely needed: a precomputed 384-d embedding of the cue.")] = None,
        k: Annotated[int, Field(ge=1, le=MAX_K, description="Most memories to return.")] = 10,
        budget_tokens: Annotated[int, Field(ge=1, le=MAX_BUDGET_TOKENS, description="Token budget for the returned texts; the best hit is always returned.")] = 1500,
        tier: Annotated[Tier | None, Field(description="Only memories of this tier.")] = None,
        tags: Annotated[list[str] | None, Field(description="Only memories carrying all these tags.")] = None,
        since: Annotated[str | None, Field(description="Only memories said at or after this ISO-8601 time.")] = None,
        until: Annotated[str | None, Field(description="Only memories said at or before this ISO-8601 time.")] = None,
    ) -> RecallResult:
        """Find the memories that matter for a cue, best first, verbatim.

        Call it before answering anything that may depend on earlier
        conversations: preferences, people, projects, decisions, facts the
        user told you. Each hit has the exact text, when it was said, a
        score and why it matched. Filters (tier, tags, since/until) narrow
        the search. Each returned memory records that it was recalled by
        this cue.
        """
        return await call("memory_recall", {
            "cue": cue, "session_id": session_id, "cue_embedding": cue_embedding, "k": k,
            "budget_tokens": budget_tokens, "tier": tier, "tags": tags, "since": since, "until": until,
        })

    @app.tool()
    async def memory_get(
        id: Annotated[str, Field(description="A record_id from memory_recall or memory_capture.")],  # noqa: A002
    ) -> Memory:
        """Show one memory in full: its exact text, metadata and provenance.

        Provenance lists every time it was recalled: when, by which cue, in
        which session.
        """
        return await call("memory_get", {"id": id})

    @app.tool()
    async def session_start(
        session_id: Annotated[str | None, Field(description="The new conversation's id; its own memories are left out.")] = None,
        budget_tokens: Annotated[int, Field(ge=1, le=MAX_BUDGET_TOKENS, description="Token budget for the pack.")] = 3000,
    ) -> SessionPack:
        """Get the memories to start a conversation with.

        Returns pinned memories first, then the most recently recalled,
        reinforced or captured ones, verbatim, within the token budget:
        ``text`` is ready to read. Call it once at the start of a
        conversation when no hook has already provided these memories.
        """
        return await call("session_start", {"session_id": session_id, "budget_tokens": budget_tokens})

    return app, slot


# ---------------------------------------------------------------- transport


class _StdinLines:
    """Lines of stdin, read on a daemon thread.

    The SDK reads stdin on a worker thread that cannot be cancelled, so a
    signal would wait until the client writes or closes. This reader hands
    lines over a memory stream, which shutdown cancels at once.
    """

    def __init__(self, fd: int = 0) -> None:
        self._fd = fd
        self._send, self._receive = anyio.create_memory_object_stream[str](16)

    def start(self) -> None:
        token = anyio.lowlevel.current_token()
        threading.Thread(target=self._pump, args=(token,), name="iai-mcp-stdin", daemon=True).start()

    def _pump(self, token: Any) -> None:
        pending = b""
        try:
            while chunk := os.read(self._fd, 65536):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    anyio.from_thread.run(self._send.send, line.decode("utf-8", "replace"), token=token)
            if pending.strip():
                anyio.from_thread.run(self._send.send, pending.decode("utf-8", "replace"), token=token)
        except Exception:
            pass  # the loop has finished or the stream was closed: nobody is reading
        finally:
            with contextlib.suppress(Exception):
                anyio.from_thread.run_sync(self._send.close, token=token)

    def __aiter__(self) -> _StdinLines:
        return self

    async def __anext__(self) -> str:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


def _claim_stdout() -> BinaryIO:
    """Keep the real stdout for JSON-RPC and point fd 1 at stderr, so a stray
    print (ours or a native library's) can never corrupt the protocol."""
    rpc = os.fdopen(os.dup(1), "wb")
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return rpc


async def _serve(app: FastMCP, rpc_out: BinaryIO) -> None:
    stdin = _StdinLines()
    stdin.start()
    stdout = anyio.wrap_file(TextIOWrapper(rpc_out, encoding="utf-8"))
    lowlevel = app._mcp_server
    async with anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    _log("shutdown", signal=signal.Signals(signum).name)
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(stop_on_signal)
        async with stdio_server(stdin=stdin, stdout=stdout) as (read_stream, write_stream):  # type: ignore[arg-type]
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
        tg.cancel_scope.cancel()


def serve(store: str | Path | None = None) -> None:
    """Serve MCP on stdin/stdout until stdin closes, SIGTERM or SIGINT."""

    def connect() -> Any:
        from iai_mcp import backend as composition

        return composition.connect(store)

    app, _ = build_server(connect)
    rpc_out = _claim_stdout()
    _log("serving", version=__version__, pid=os.getpid())
    anyio.run(_serve, app, rpc_out)
    _log("stopped")
