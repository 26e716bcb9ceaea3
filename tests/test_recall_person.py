"""The cue's grammatical person ranks by role (issue 10, "finding more"):
"what did I say" prefers the user's turns, "what did you suggest" the
assistant's; a preference, never a filter."""
from __future__ import annotations

import pytest

from iai_mcp.core import dispatch
from iai_mcp.retrieval.person import cue_role


@pytest.mark.parametrize(("cue", "role"), [
    ("What did I say about the lease?", "user"),
    ("which hotel did you recommend to me?", None),  # both persons: no preference
    ("Which hotel did you recommend?", "assistant"),
    ("When is my dentist appointment", "user"),
    ("the lease terms", None),
    ("I'm looking for the recipe", "user"),
])
def test_cue_role(cue, role):
    assert cue_role(cue) == role


def test_recall_ranks_the_role_the_cue_points_at_first_without_filtering(store):
    for text in ["the cat sat on the mat", "lunch is at noon on fridays", "buy oat milk",
                 "the train leaves at seven"]:
        dispatch(store, "memory_capture", {"text": text})
    # The same words in another order: they tie on any cue that names no role.
    user = dispatch(store, "memory_capture", {"text": "garden plan with tomatoes and basil", "role": "user",
                                              "session_id": "a"})["record_id"]
    assistant = dispatch(store, "memory_capture", {"text": "basil and tomatoes with garden plan",
                                                   "role": "assistant", "session_id": "b"})["record_id"]
    neutral = dispatch(store, "memory_recall", {"cue": "garden plan tomatoes basil", "k": 2})["hits"]
    assert neutral[0]["score"] == neutral[1]["score"]
    mine = dispatch(store, "memory_recall", {"cue": "what was my garden plan for tomatoes and basil", "k": 3})
    yours = dispatch(store, "memory_recall", {"cue": "what garden plan for tomatoes and basil did you give", "k": 3})
    assert [h["record_id"] for h in mine["hits"][:2]] == [user, assistant]
    assert [h["record_id"] for h in yours["hits"][:2]] == [assistant, user]
