"""Ranking as pure functions over arrays the store already holds.

``text`` turns text into index terms, ``keyword_index`` scores rows with an
incremental BM25, ``fusion`` fuses dense and keyword scores with context.
Nothing here imports the store or does I/O, so it can be measured on its own
(``bench.locomo``) and reused by any recall path.
"""
from iai_mcp.retrieval.fusion import DEFAULT_WEIGHTS, FusionWeights, fuse, rrf, top_k
from iai_mcp.retrieval.keyword_index import KeywordIndex
from iai_mcp.retrieval.text import STOPWORDS, stem, tokenize

__all__ = [
    "DEFAULT_WEIGHTS", "FusionWeights", "KeywordIndex", "STOPWORDS", "fuse", "rrf", "stem", "tokenize",
    "top_k",
]
