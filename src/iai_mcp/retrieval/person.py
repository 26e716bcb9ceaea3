"""Whose turns a cue points at, from its grammatical person.

A question to a memory of conversations between a user and an assistant
says whose words it wants: "what did I say about the lease?" asks for the
user's turns, "which hotel did you recommend?" for the assistant's. Like the
speaker-label bonus (a speaker the cue names), this ranks by speaker and
never filters; the measured weight is ``FusionWeights.role``.
"""
from __future__ import annotations

import re

_WORD = re.compile(r"[^\W\d_]+")
_FIRST = frozenset({"i", "me", "my", "mine", "myself"})
_SECOND = frozenset({"you", "your", "yours", "yourself"})


def cue_role(cue: str) -> str | None:
    """``"user"`` for a cue in the first person only, ``"assistant"`` for one
    in the second person only, else None (both, or neither)."""
    words = set(_WORD.findall(cue.casefold()))
    first, second = not _FIRST.isdisjoint(words), not _SECOND.isdisjoint(words)
    if first == second:
        return None
    return "user" if first else "assistant"
