"""Excerpts: the part of a memory that fits a token budget.

A memory longer than what is left of a budget comes back as a window of its
verbatim text: the sentence that shares the most terms with the cue (the
earliest on a tie, the first with no cue), grown one neighbouring sentence
at a time, the following one first, while the window still fits. Offsets are
Python string (code point) offsets into the full text, so ``memory_get``
plus a slice gives the same characters back.

Only the few hits being packed are excerpted, never the store: splitting
and tokenising a 46 KB memory takes ~4 ms, a 6 KB one 0.5 ms (measured with
excerpt() on repeated English sentences, 20 runs each).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from iai_mcp.retrieval.text import tokenize

#: A sentence ends after ., ! or ? and the spaces that follow, or at a line break.
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+|\n+")


@dataclass(frozen=True)
class Excerpt:
    start: int
    end: int
    #: Length of the full text, in characters.
    length: int
    text: str


def _sentences(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        if m.end() > start:
            spans.append((start, m.end()))
            start = m.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def excerpt(text: str, cue: str, max_chars: int) -> Excerpt:
    """The best window of ``text`` for ``cue`` in at most ``max_chars``
    characters (the whole text when it fits)."""
    max_chars = max(0, max_chars)
    if len(text) <= max_chars:
        return Excerpt(0, len(text), len(text), text)
    spans = _sentences(text)
    cue_terms = set(tokenize(cue))
    best, best_score = 0, 0
    if cue_terms:
        for i, (a, b) in enumerate(spans):
            score = len(cue_terms.intersection(tokenize(text[a:b])))
            if score > best_score:
                best, best_score = i, score
    a, b = spans[best]
    if b - a > max_chars:
        # One sentence longer than the room: centre on the first cue term in it.
        at = _first_term(text, a, b, cue_terms)
        start = max(a, min(at - max_chars // 4, b - max_chars))
        return _make(text, start, start + max_chars)
    lo, hi = best, best
    grew = True
    while grew:
        grew = False
        if hi + 1 < len(spans) and spans[hi + 1][1] - spans[lo][0] <= max_chars:
            hi, grew = hi + 1, True
        if lo > 0 and spans[hi][1] - spans[lo - 1][0] <= max_chars:
            lo, grew = lo - 1, True
    return _make(text, spans[lo][0], spans[hi][1])


def _first_term(text: str, a: int, b: int, cue_terms: set[str]) -> int:
    for m in re.finditer(r"[^\W_]+", text[a:b]):
        if cue_terms.intersection(tokenize(m.group())):
            return a + m.start()
    return a


def _make(text: str, start: int, end: int) -> Excerpt:
    return Excerpt(start, end, len(text), text[start:end])
