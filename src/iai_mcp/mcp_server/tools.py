"""The memory tools an assistant calls: their parameters, results and the
docstrings that are the model's manual. Each tool hands its parameters to
``call(method, params)`` (dispatch, through the backend) and returns the
result as structured content."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from mcp.server.fastmcp import FastMCP
from pydantic import Field
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

#: Mirrors ``iai_mcp.types.TIERS`` and ``ROLES`` (a test keeps them equal).
Tier = Literal["working", "episodic", "semantic", "procedural"]
Role = Literal["user", "assistant", "system", "tool", "note"]

#: Mirrors ``params.MAX_K`` and ``params.MAX_BUDGET_TOKENS`` (a test keeps them equal).
MAX_K = 200
MAX_BUDGET_TOKENS = 100_000

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



def register_tools(app: FastMCP, call: Callable[[str, dict[str, Any]], Awaitable[Any]]) -> None:
    """Add the memory tools to ``app``; each one is ``call(method, params)``."""

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
