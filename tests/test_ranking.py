"""Retrieval ranking: tokenizer, BM25 index, fusion. Pure numpy, no store, no model."""
from __future__ import annotations

import math

import numpy as np
import pytest

from iai_mcp.retrieval.fusion import (
    DEFAULT_WEIGHTS,
    FusionWeights,
    fuse,
    normalise_dense,
    normalise_keyword,
    rrf,
    top_k,
    window_max,
)
from iai_mcp.retrieval.keyword_index import KeywordIndex
from iai_mcp.retrieval.text import stem, tokenize

NO_CONTEXT = FusionWeights(neighbour=0.0, window_weight=0.0)


# ---------------------------------------------------------------- tokenize --

def test_tokenize_lowercases_drops_stopwords_and_punctuation() -> None:
    assert tokenize("What did Melanie PAINT, recently?!") == ["melani", "paint", "recent"]


def test_tokenize_stems_inflections_to_one_term() -> None:
    forms = ["paint", "paints", "painted", "painting"]
    assert {t for f in forms for t in tokenize(f)} == {"paint"}
    assert tokenize("adoption") == tokenize("adopted")


@pytest.mark.parametrize(
    ("word", "expected"),
    [("caresses", "caress"), ("ponies", "poni"), ("agreed", "agre"), ("hopping", "hop"),
     ("filing", "file"), ("relational", "relat"), ("generalization", "gener"),
     ("adjustment", "adjust"), ("has", "has"), ("bus", "bus")],
)
def test_stem_follows_porter(word: str, expected: str) -> None:
    assert stem(word) == expected


def test_tokenize_splits_snake_case_and_keeps_digits() -> None:
    assert tokenize("user_id 2023 v2") == ["user", "id", "2023", "v2"]


def test_tokenize_empty_and_stopword_only() -> None:
    assert tokenize("") == []
    assert tokenize("what is it?") == []


def test_tokenize_unicode_words_pass_through_unstemmed() -> None:
    assert tokenize("Привет, МИР! café naïve") == ["привет", "мир", "café", "naïve"]


def test_tokenize_normalises_width_and_case_folding() -> None:
    # NFKC turns full-width letters into ASCII; casefold turns ß into ss.
    assert tokenize("ＡＢＣ") == tokenize("abc")
    assert tokenize("STRASSE") == tokenize("straße")


def test_tokenize_cjk_runs_become_bigrams() -> None:
    assert tokenize("東京タワー") == ["東京", "京タ", "タワ", "ワー"]
    assert tokenize("猫") == ["猫"]


def test_cjk_query_matches_inside_a_longer_run() -> None:
    idx = KeywordIndex()
    idx.add(0, "我们明天去东京旅行")
    idx.add(1, "今天天气很好")
    s = idx.scores("东京")
    assert s[0] > 0 and s[1] == 0


# -------------------------------------------------------------------- BM25 --

def _index(texts: list[str], k1: float = 1.2, b: float = 0.75) -> KeywordIndex:
    idx = KeywordIndex(k1=k1, b=b)
    for i, t in enumerate(texts):
        idx.add(i, t)
    return idx


def test_bm25_matches_hand_computed_scores() -> None:
    idx = _index(["cat dog", "cat cat fish", "bird"])
    s = idx.scores("cat")
    # N=3, df=2: idf = ln(1 + 1.5/2.5); average length 2.
    idf = math.log(1.6)
    # doc 0: tf=1, len 2 -> length norm 1.2*(0.25+0.75*1) = 1.2
    assert s[0] == pytest.approx(idf * 2.2 * 1 / (1 + 1.2), rel=1e-5)
    # doc 1: tf=2, len 3 -> length norm 1.2*(0.25+0.75*1.5) = 1.65
    assert s[1] == pytest.approx(idf * 2.2 * 2 / (2 + 1.65), rel=1e-5)
    assert s[2] == 0.0
    assert s.dtype == np.float32 and s.shape == (3,)


def test_bm25_sums_distinct_query_terms_once_each() -> None:
    idx = _index(["cat dog", "cat cat fish", "bird"])
    both = idx.scores("cat fish")
    assert both == pytest.approx(idx.scores("cat") + idx.scores("fish"), rel=1e-6)
    assert idx.scores("cat cat fish") == pytest.approx(both, rel=1e-6)


def test_rarer_term_weighs_more() -> None:
    idx = _index(["common rare", "common", "common", "common"])
    s = idx.scores("common rare")
    assert s.argmax() == 0


def test_unknown_terms_and_empty_index_score_zero() -> None:
    assert _index(["cat dog"]).scores("zebra").tolist() == [0.0]
    empty = KeywordIndex()
    assert len(empty) == 0 and empty.scores("cat").shape == (0,)


def test_add_must_append_in_order() -> None:
    idx = KeywordIndex()
    idx.add(0, "first")
    with pytest.raises(ValueError, match="expected 1"):
        idx.add(2, "skipped one")
    assert len(idx) == 1


def test_scores_stay_exact_when_adds_interleave_with_queries() -> None:
    texts = ["the cat sat", "a dog ran", "cat and dog", "fish swim", "cat fish dog cat"]
    grown = KeywordIndex()
    for i, t in enumerate(texts):
        grown.add(i, t)
        grown.scores("cat dog fish")  # fills the postings cache mid-way
    assert grown.scores("cat dog fish") == pytest.approx(_index(texts, b=0.4).scores("cat dog fish"))


def test_remove_zeroes_the_doc_and_drops_it_from_statistics() -> None:
    texts = ["cat dog", "cat cat fish", "bird", "dog fish"]
    idx = _index(texts)
    idx.remove(1)
    s = idx.scores("cat fish dog")
    assert s[1] == 0.0
    fresh = _index([t for i, t in enumerate(texts) if i != 1]).scores("cat fish dog")
    assert s[[0, 2, 3]] == pytest.approx(fresh, rel=1e-5)
    assert len(idx) == 4 and idx.live == 3


def test_remove_twice_is_a_no_op_and_bad_ids_raise() -> None:
    idx = _index(["cat", "dog"])
    idx.remove(0)
    idx.remove(0)
    assert idx.live == 1
    with pytest.raises(IndexError):
        idx.remove(5)


def test_removing_everything_scores_zero() -> None:
    idx = _index(["cat", "cat"])
    idx.remove(0)
    idx.remove(1)
    assert idx.scores("cat").tolist() == [0.0, 0.0]


# ------------------------------------------------------------------ fusion --

def test_normalisers_map_best_to_one() -> None:
    assert normalise_keyword(np.array([0.0, 2.0, 4.0])).tolist() == [0.0, 0.5, 1.0]
    assert normalise_keyword(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]
    d = normalise_dense(np.array([0.1, 0.2, 0.3, 0.6], dtype=np.float32))
    assert d.max() == pytest.approx(1.0) and d.mean() == pytest.approx(0.0, abs=1e-6)
    assert normalise_dense(np.full(3, 0.5)).tolist() == [0.0, 0.0, 0.0]


def _rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    dense = rng.uniform(0.0, 0.3, n).astype(np.float32)  # background cosines
    keyword = np.zeros(n, dtype=np.float32)
    return dense, keyword


def test_keyword_only_match_surfaces() -> None:
    dense, keyword = _rows(1000)
    keyword[123] = 7.0  # the only row with the exact words; its cosine is unremarkable
    dense[123] = 0.05
    assert 123 in top_k(fuse(dense, keyword), 5)


def test_dense_only_match_surfaces() -> None:
    dense, keyword = _rows(1000)
    dense[456] = 0.8  # a paraphrase: no shared words
    keyword[[10, 20, 30]] = [3.0, 2.5, 2.0]  # weak lexical matches elsewhere
    top = top_k(fuse(dense, keyword), 5)
    assert 456 in top and 10 in top


def test_agreement_beats_either_signal_alone() -> None:
    dense, keyword = _rows(100)
    dense[[1, 2]] = 0.8
    keyword[[1, 3]] = 5.0
    assert top_k(fuse(dense, keyword, weights=NO_CONTEXT), 1).tolist() == [1]


def test_reply_inherits_keyword_score_of_the_turn_it_answers() -> None:
    # Row 4 asks "what did you paint?", row 5 answers without repeating the words.
    dense, keyword = _rows(10)
    keyword[4] = 5.0
    dense[5] = 0.35
    session = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    with_context = fuse(dense, keyword, session, weights=FusionWeights(window_weight=0.0))
    assert top_k(with_context, 2).tolist() == [4, 5]
    # Across a session boundary nothing is inherited: row 3 stays where dense puts it.
    assert with_context[3] == pytest.approx(fuse(dense, keyword, session, weights=NO_CONTEXT)[3])


def test_window_max_respects_sessions_and_distance() -> None:
    x = np.array([0, 0, 9, 0, 0, 0, 0], dtype=np.float32)
    session = np.array([0, 0, 0, 0, 0, 1, 1])
    assert window_max(x, session, 2).tolist() == [9, 9, 0, 9, 9, 0, 0]
    assert window_max(x, None, 3).tolist() == [9, 9, 0, 9, 9, 9, 0]
    assert window_max(x, session, 1).tolist() == [0, 9, 0, 9, 0, 0, 0]


def test_dead_rows_never_rank_and_lend_no_context() -> None:
    dense, keyword = _rows(6)
    keyword[2] = 9.0
    dense[2] = 0.9
    alive = np.ones(6, dtype=bool)
    alive[2] = False
    session = np.zeros(6, dtype=np.int64)
    s = fuse(dense, keyword, session, alive=alive)
    assert s[2] == -np.inf
    assert 2 not in top_k(s, 5)
    # Every row sits within one window of every other, so deleting the dead
    # row outright must leave the live rows' scores exactly as they are.
    gone = fuse(np.delete(dense, 2), np.delete(keyword, 2), np.zeros(5, dtype=np.int64))
    assert np.delete(s, 2) == pytest.approx(gone, rel=1e-5)


def test_label_match_finds_rows_whose_speaker_the_query_names() -> None:
    idx = _index([
        "Caroline: I went to a support group.",
        "Melanie: Caroline told me about it.",
        "Dr. Lee: take the pills at 12:30",
        "12:30: standup",
        "so we made a plan: ship it",
        "I: nothing",
    ])
    assert idx.label_match("What did Caroline research?").tolist() == [True, False, False, False, False, False]
    assert idx.label_match("when did lee prescribe pills").tolist() == [False, False, False, False, False, False]
    assert idx.label_match("what did dr say").tolist() == [False, False, True, False, False, False]
    # A colon deep in a sentence is not a speaker label; neither is a stopword.
    assert not idx.label_match("plan").any() and not idx.label_match("I").any()
    assert idx.label_match("unknown words").tolist() == [False] * 6
    idx.remove(0)
    assert not idx.label_match("Caroline").any()
    assert KeywordIndex().label_match("Caroline").shape == (0,)


def test_label_bonus_lifts_the_named_speaker_and_is_checked() -> None:
    dense, keyword = _rows(4)
    label = np.array([False, False, True, False])
    plain = fuse(dense, keyword)
    named = fuse(dense, keyword, label=label)
    assert named[2] == pytest.approx(plain[2] + DEFAULT_WEIGHTS.label)
    assert named[[0, 1, 3]] == pytest.approx(plain[[0, 1, 3]])
    assert fuse(dense, keyword, label=label, weights=FusionWeights(label=0.0)) == pytest.approx(plain)
    with pytest.raises(ValueError, match="must align"):
        fuse(dense, keyword, label=np.zeros(3, dtype=bool))


def test_fuse_rejects_misaligned_inputs() -> None:
    with pytest.raises(ValueError, match="must align"):
        fuse(np.zeros(3), np.zeros(4))


def test_fuse_handles_empty_and_single_row() -> None:
    assert fuse(np.zeros(0), np.zeros(0)).shape == (0,)
    assert fuse(np.array([0.5]), np.array([1.0]), np.array([0])).shape == (1,)


def test_rrf_rewards_agreement() -> None:
    a = np.array([3.0, 2.0, 1.0])
    b = np.array([1.0, 3.0, 2.0])
    assert rrf(a, b, k=60).argmax() == 1


def test_top_k_orders_best_first_and_breaks_ties_by_row() -> None:
    s = np.array([0.1, 0.9, 0.5, 0.9, -np.inf], dtype=np.float32)
    assert top_k(s, 3).tolist() == [1, 3, 2]
    assert top_k(s, 10).tolist() == [1, 3, 2, 0, 4]
    assert top_k(s, 0).tolist() == []
    assert top_k(np.zeros(5), 2).tolist() == [0, 1]
