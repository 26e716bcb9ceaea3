"""The pure pieces behind recall's time prior and the floor's keyword
rescue (``retrieval.fusion``): behaviour on small arrays, no store."""
from __future__ import annotations

import numpy as np

from iai_mcp.retrieval import fuse
from iai_mcp.retrieval.fusion import floor_mask


def test_the_time_prior_lifts_the_row_said_in_the_window_over_a_slightly_better_match():
    dense = np.array([0.50, 0.45, 0.10, 0.05], dtype=np.float32)
    keyword = np.array([2.0, 1.8, 0.0, 0.0], dtype=np.float32)
    plain = fuse(dense, keyword)
    assert plain[0] > plain[1]
    when = np.array([0.0, 1.0, 0.0, 0.0], dtype=np.float32)
    timed = fuse(dense, keyword, when=when)
    assert timed[1] > timed[0]
    # A prior, not a filter: rows outside the window keep their scores and their order.
    assert timed[0] == plain[0] and timed[2] == plain[2] and plain[2] > plain[3] and timed[2] > timed[3]


def test_the_floor_rescues_keyword_backed_rows_only_when_some_row_clears_it():
    dense = np.array([0.40, 0.05, 0.02, 0.10], dtype=np.float32)
    keyword = np.array([4.0, 3.0, 0.5, 0.0], dtype=np.float32)
    assert floor_mask(dense, keyword, 0.2, rescue=None).tolist() == [True, False, False, False]
    # Row 1 has 0.75 of the best keyword score: it passes; row 2 (0.125) does not.
    assert floor_mask(dense, keyword, 0.2, rescue=0.3).tolist() == [True, True, False, False]
    # Nothing clears the floor: keyword matches alone never pass.
    assert not floor_mask(dense, keyword, 0.5, rescue=0.3).any()


def test_a_dead_row_above_the_floor_opens_no_rescue():
    dense = np.array([0.40, 0.05], dtype=np.float32)
    keyword = np.array([0.0, 3.0], dtype=np.float32)
    alive = np.array([False, True])
    assert not floor_mask(dense, keyword, 0.2, alive, rescue=0.3)[1]
    assert floor_mask(dense, keyword, 0.2, np.array([True, True]), rescue=0.3).tolist() == [True, True]
