"""Claude Code's transcript: which entries are conversation, and what of
their text the person or the model actually said.

Claude Code writes its own markup into the transcript beside the
conversation: slash commands (``<command-name>/model</command-name>`` with
``<command-message>`` and ``<command-args>``), their output
(``<local-command-stdout>``/``-stderr``), ``<system-reminder>`` blocks it
appends to a user turn, ``[Request interrupted by user]`` when Esc stops a
turn, the summary it writes after a compaction (``isCompactSummary``), the text
of an API error (``isApiErrorMessage``), a ``!`` shell passthrough
(``<bash-input>`` with its ``<bash-stdout>``/``<bash-stderr>``), the note a
finished background task leaves (``<task-notification>``), what a
UserPromptSubmit hook added (``<user-prompt-submit-hook>``) and the turns
Claude Code writes in the model's place (``message.model`` is
``<synthetic>``: "No response requested.", aborted requests). None of that
was said by anyone, so none of it is captured; a user turn keeps its words
once the markup blocks are cut out of it.
"""
from __future__ import annotations

import re
from typing import Any

from iai_mcp.hooks.transcript import Turn, valid_ts

#: Markup blocks Claude Code puts in user turns (cut out, with what they hold).
_MARKUP = re.compile(
    r"<(system-reminder|command-name|command-message|command-args|local-command-stdout"
    r"|local-command-stderr|local-command-caveat|bash-input|bash-stdout|bash-stderr"
    r"|task-notification|user-prompt-submit-hook)>.*?</\1>",
    re.DOTALL,
)
#: The note a user turn becomes when Esc interrupts the model ("... for tool use" too).
_INTERRUPTED = re.compile(r"\[Request interrupted by user[^\]\n]*\]")
#: Entry flags of text nobody said: notes Claude Code injects, subagents'
#: own conversations, compaction summaries, API error turns.
_NOT_SAID = ("isMeta", "isSidechain", "isCompactSummary", "isApiErrorMessage")
#: The model name of turns Claude Code writes itself, not the model.
_SYNTHETIC_MODEL = "<synthetic>"


def _text_blocks(content: Any) -> list[str]:
    """The text of a message: a string, or its "text" blocks (tool calls,
    tool results and thinking are not conversation)."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [
        block["text"]
        for block in content
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
    ]


def said_by_user(text: str) -> str:
    """A user turn's text without Claude Code's markup; unchanged when it has none."""
    if _INTERRUPTED.fullmatch(text.strip()):
        return ""
    stripped = _MARKUP.sub("", text)
    return text if stripped == text else stripped.strip()


def turn_of(entry: Any) -> Turn | None:
    """The conversation turn in one transcript entry, or None."""
    if not isinstance(entry, dict) or entry.get("type") not in ("user", "assistant"):
        return None
    if any(entry.get(flag) for flag in _NOT_SAID):
        return None
    message = entry.get("message")
    if not isinstance(message, dict) or message.get("model") == _SYNTHETIC_MODEL:
        return None
    role = message.get("role") if message.get("role") in ("user", "assistant") else entry["type"]
    blocks = _text_blocks(message.get("content"))
    if role == "user":
        blocks = [said_by_user(block) for block in blocks]
    text = "\n\n".join(block for block in blocks if block)
    if not text.strip():
        return None
    cwd = entry.get("cwd")
    return Turn(text, role, valid_ts(entry.get("timestamp")), cwd if isinstance(cwd, str) and cwd else None)
