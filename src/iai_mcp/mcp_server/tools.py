"""The memory tools an assistant calls: their results and the docstrings
that are the model's manual. Each tool's parameters (names, types, defaults,
limits, descriptions) come from the method of the same name in
``core.contract``; its result type from ``core.results``. Each tool hands its
parameters to ``call(method, params)`` (dispatch, through the backend) and
returns the result as structured content."""
from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Collection
from typing import Annotated, Any

from annotated_types import Ge, Le
from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations
from pydantic import Field

from iai_mcp.core import contract
from iai_mcp.core.results import (
    CaptureResult,
    ForgetResult,
    ListPage,
    Memory,
    RecallResult,
    RestoreResult,
    SessionPack,
    TagList,
)

__all__ = ["EMBEDDING_PARAMS", "register_tools", "tool_signature"]

#: Parameters that carry a raw embedding. A model cannot compute one (it would
#: invent 384 numbers), and each costs a long schema entry in every prompt, so
#: the tools leave them out unless the host opts in (``serve
#: --expose-embeddings`` or ``IAI_MCP_EXPOSE_EMBEDDINGS=1``).
EMBEDDING_PARAMS = frozenset({"cue_embedding"})


def tool_signature(method: str, result: Any, hidden: Collection[str] = ()) -> inspect.Signature:
    """The signature FastMCP derives a tool's input schema from: one keyword
    parameter per field of the method's contract.

    A parameter carries the field's type, default and description, and its
    numeric bounds (so the model sees the range of ``k``). Length limits and
    content checks are left to dispatch, which answers them with a typed
    error (``limit_exceeded``, ``invalid_input``) saying what to change.
    Fields named in ``hidden`` are left out.
    """
    parameters = []
    for name, field in contract.method(method).params.model_fields.items():
        if name in hidden:
            continue
        bounds = {}
        for constraint in field.metadata:
            if isinstance(constraint, Ge):
                bounds["ge"] = constraint.ge
            elif isinstance(constraint, Le):
                bounds["le"] = constraint.le
        annotation = Annotated[field.annotation, Field(description=field.description, **bounds)]
        default = inspect.Parameter.empty if field.is_required() else field.default
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                            default=default, annotation=annotation))
    return inspect.Signature(parameters, return_annotation=result)


def register_tools(fastmcp: FastMCP, call: Callable[[str, dict[str, Any]], Awaitable[Any]], *,
                   expose_embeddings: bool = False) -> dict[str, frozenset[str]]:
    """Add the memory tools to ``fastmcp``; each one is ``call(method, params)``.
    Returns the parameters each tool shows (the contract's, less
    ``EMBEDDING_PARAMS`` unless ``expose_embeddings``).

    Below, each tool is written as its name, its result type and its
    docstring; ``tool`` gives it the contract's parameters.
    """
    hidden = () if expose_embeddings else EMBEDDING_PARAMS
    registered: dict[str, frozenset[str]] = {}

    def tool(manual: Callable[[], Awaitable[Any]]) -> None:
        method = manual.__name__
        if not contract.method(method).tool:
            raise ValueError(f"{method} is not declared as an MCP tool in core.contract")

        async def run(**params: Any) -> Any:
            return await call(method, params)

        run.__name__ = run.__qualname__ = method
        # FastMCP sends a docstring as written; a model reads it better without
        # the source's indentation on every line after the first.
        run.__doc__ = inspect.cleandoc(manual.__doc__ or "")
        signature = tool_signature(method, typing.get_type_hints(manual)["return"], hidden)
        run.__signature__ = signature  # type: ignore[attr-defined]
        declared = contract.method(method)
        fastmcp.add_tool(run, annotations=ToolAnnotations(
            readOnlyHint=declared.read_only, destructiveHint=declared.destructive,
            idempotentHint=declared.idempotent, openWorldHint=False,
        ))
        registered[method] = frozenset(signature.parameters)

    @tool
    async def memory_capture() -> CaptureResult:
        """Remember something verbatim, for this and future conversations.

        Use it when the user states a preference, a fact about themselves or
        others, a decision, or asks you to remember something. Pass the words
        exactly as said; do not summarise. Saying the same text again
        reinforces the existing memory instead of duplicating it (status
        "reinforced"); the same turn sent twice is "skipped".

        When the user corrects something ("that's no longer true", "we moved
        billing to DynamoDB", "actually my sister lives in Berlin now"),
        capture the new statement with ``supersedes`` set to the record_ids
        of the memories it replaces (from memory_recall, or from ``related``):
        those stop being recalled as current and come back as anti_hits that
        point at the new one. ``related`` lists up to 3 existing memories
        close to the new text: check whether the new one corrects any of
        them; nothing is merged or replaced unless you say so.
        """

    @tool
    async def memory_recall() -> RecallResult:
        """Find the memories that matter for a cue, best first, verbatim.

        Call it before answering anything that may depend on earlier
        conversations: preferences, people, projects, decisions, facts the
        user told you. Each hit has the exact text, when it was said, a
        score and why it matched. Filters (tier, tags, since/until) narrow
        the search. Each returned memory records that it was recalled by
        this cue. Only memories similar enough to the cue come back
        (``min_score``): an empty ``hits`` with a ``note`` means nothing
        stored is relevant, not that recall failed. Pass ``project`` (the
        working directory's git root) to prefer that project's memories.

        ``anti_hits`` are memories that matched but were corrected by a newer
        one (``superseded_by``, since ``valid_to``): do not state them as
        current facts; mention the change if it matters. Set
        ``include_superseded`` to get them as ordinary hits (e.g. "what did I
        say before?").
        """

    @tool
    async def memory_get() -> Memory:
        """Show one memory in full: its exact text, metadata and provenance.

        Provenance lists every time it was recalled: when, by which cue, in
        which session.
        """

    @tool
    async def session_start() -> SessionPack:
        """Get the memories to start a conversation with.

        Returns pinned memories first, then the most recently recalled,
        reinforced or captured ones, verbatim, within the token budget:
        ``text`` is ready to read. Call it once at the start of a
        conversation when no hook has already provided these memories.
        Without ``project``, the project of the directory the server was
        started in is preferred (over stdio: the host's working directory).
        """

    # --------------------------------------- forgetting and correcting (F)

    @tool
    async def memory_forget() -> ForgetResult:
        """Forget memories: they stop being recalled or shown, at once.

        Use it when the user says "forget that", "don't remember this",
        "don't remind me of X", "delete what I said about Y", or when a
        memory holds a secret that should not have been kept. Find the ids
        first (memory_recall), then forget by ids; session_id, tags and
        since/until select more at once (all given selectors must match).
        The default mode "hide" can be undone with memory_restore until
        undo_until (then it is erased automatically). Use mode "purge" only
        when the user asks for it to be erased now and for good: it is
        irreversible. With dry_run, see what would be forgotten first. A
        correction ("that's no longer true") is not a forget: capture the new
        fact so it supersedes the old one.
        """

    @tool
    async def memory_restore() -> RestoreResult:
        """Bring back memories that memory_forget hid ("actually, keep that").

        Works until their undo_until; a purged memory cannot be restored.
        """

    @tool
    async def memory_update() -> Memory:
        """Pin, unpin, re-tag or re-tier one memory; its words never change.

        Use it when the user says "always remember this" (pinned: true; pinned
        memories start every conversation), "you can stop bringing that up"
        (pinned: false), or asks to label or file a memory (tags_add,
        tags_remove, tier). To correct what a memory says, capture the
        correction instead: the text of a memory is kept verbatim.
        """

    # ---- correcting and browsing (issue 9) ----

    @tool
    async def memory_list() -> ListPage:
        """List memories by state and metadata, newest first by default, a page at a time.

        Use it when the user wants to see or review what is remembered
        ("what do you remember about me?", "show my pinned memories", "what
        did I tell you last week?", "what have I asked you to forget?"):
        filter by state (active, hidden = forgotten but restorable,
        superseded = corrected), tier, tags, session, time or pinned. For
        finding memories about a topic, use memory_recall instead. Pass
        ``next_cursor`` back as ``cursor`` for the next page.
        """

    @tool
    async def memory_tags() -> TagList:
        """The tags on active memories, with how many memories carry each, most used first.

        Use it before filtering by tag (memory_list, memory_recall), or when
        the user asks what topics or labels their memories have.
        """

    missing = {name for name, method in contract.METHODS.items() if method.tool} - set(registered)
    if missing:
        raise ValueError(f"core.contract declares MCP tools with no manual here: {sorted(missing)}")
    return registered
