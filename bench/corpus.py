"""Deterministic memories and cues, their real embeddings, and built stores, cached.

Texts: each memory is one to a dozen sentences (lengths vary from ~40 to
~1,200 characters), composed by a seeded RNG either from built-in templates
about everyday life and software work (``--source synthetic``) or from the
sentences of LoCoMo turns, remixed (``--source locomo``). Every text is unique.

Vectors: the first ``pool`` texts (default 10,000) are embedded with the real
MiniLM embedder, once, and kept in ``<cache>/vectors-<tag>.npy`` (grown on
demand). Records past the pool reuse a pooled real vector plus a little seeded
noise: see ``vectors``. Every cue is always embedded for real, at recall time.

Stores: ``build_store`` inserts MemoryRecords carrying those vectors with
``store.insert_many`` in chunks of 5,000 (what ``capture_many`` does after
embedding, minus the duplicate check), then compacts, and keeps the result in
``<cache>/stores/<tag>-p<pool>-<n>``. Benchmarks work on a copy.
"""
from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from bench.common import copy_tree

CORPUS_VERSION = 1
BUILD_CHUNK = 5_000

_NAMES = ("Alice", "Bob", "Carmen", "Dmitri", "Eve", "Farah", "Gus", "Hana", "Ines", "Jon",
          "Kofi", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
          "Uma", "Viktor", "Wen", "Yusuf", "Zoe", "my sister", "my manager", "the landlord")
_ACTIVITIES = ("went hiking", "started a pottery class", "adopted a rescue dog", "ran a half marathon",
               "moved to a new flat", "painted the kitchen", "learned to sail", "fixed the old bike",
               "planted tomatoes", "visited the aquarium", "tried a Korean recipe", "joined a choir",
               "booked a trip to Lisbon", "bought a used piano", "volunteered at the shelter",
               "finished a 1,000-piece puzzle", "signed up for Spanish lessons", "went to a jazz concert",
               "repaired the garden fence", "hosted a board game night")
_PLACES = ("near the lake", "in Berlin", "at the community centre", "downtown", "at the farmers market",
           "in the mountains", "at her parents' house", "by the river", "in the office", "at the library",
           "in Osaka", "on the coast", "at the climbing gym", "in the old town")
_TIMES = ("last Saturday", "two weeks ago", "on 3 March", "yesterday evening", "in the spring",
          "over the holidays", "this morning", "last summer", "on Friday night", "in early 2023")
_FEELINGS = ("It felt great", "It was exhausting but worth it", "Honestly it was a bit stressful",
             "Everyone loved it", "I would do it again", "It rained the whole time",
             "The kids were thrilled", "It cost more than expected")
_SERVICES = ("the billing service", "the search API", "the nightly ETL job", "the auth gateway",
             "the mobile app build", "the Postgres replica", "the recommendation model",
             "the CI pipeline", "the websocket server", "the image resizer")
_PROBLEMS = ("ran out of memory", "timed out after 30 seconds", "returned stale results",
             "leaked file descriptors", "crashed on empty input", "double-charged two customers",
             "deadlocked under load", "dropped UTF-8 characters", "hit the rate limit",
             "filled the disk with logs")
_FIXES = ("a bounded queue", "an index on user_id", "retrying with jitter", "pinning numpy below 2",
          "streaming the response", "moving the cron to 02:00 UTC", "a circuit breaker",
          "raising the pool size to 32", "normalising to NFC first", "rotating logs daily")
_LIKES = ("dark roast coffee", "tabs over spaces", "short meetings", "science fiction novels",
          "window seats", "vegetarian food", "morning runs", "mechanical keyboards", "jazz",
          "handwritten notes", "quiet cafes", "long walks")

_TEMPLATES = (
    lambda r: f"{r.choice(_NAMES)} {r.choice(_ACTIVITIES)} {r.choice(_PLACES)} {r.choice(_TIMES)}.",
    lambda r: f"{r.choice(_FEELINGS)}, said {r.choice(_NAMES)} about the day {r.choice(_PLACES)}.",
    lambda r: f"{r.choice(_SERVICES).capitalize()} {r.choice(_PROBLEMS)} {r.choice(_TIMES)}; "
              f"we fixed it with {r.choice(_FIXES)}.",
    lambda r: f"{r.choice(_NAMES)} prefers {r.choice(_LIKES)} to {r.choice(_LIKES)}, "
              f"especially {r.choice(_TIMES)}.",
    lambda r: f"Remember that {r.choice(_NAMES)} asked about {r.choice(_SERVICES)} "
              f"and wants an update by {r.choice(('Monday', 'Friday', 'the end of the month'))}.",
    lambda r: f"Ticket {r.randrange(1000, 99999)}: {r.choice(_SERVICES)} {r.choice(_PROBLEMS)}.",
    lambda r: f"{r.choice(_NAMES)} mentioned that {r.choice(_NAMES)} {r.choice(_ACTIVITIES)} "
              f"{r.choice(_TIMES)} and {r.choice(_FEELINGS).lower()}.",
)

_CUE_TEMPLATES = (
    lambda r: f"What did {r.choice(_NAMES)} do {r.choice(_TIMES)}?",
    lambda r: f"Who {r.choice(_ACTIVITIES)} {r.choice(_PLACES)}?",
    lambda r: f"How did we fix {r.choice(_SERVICES)} when it {r.choice(_PROBLEMS)}?",
    lambda r: f"Does {r.choice(_NAMES)} like {r.choice(_LIKES)}?",
    lambda r: f"When was the trip {r.choice(_PLACES)}?",
)


def _sentence_count(rng: random.Random) -> int:
    # Mostly short turns, a tail of long notes: 1-3 sentences 80% of the time, up to 12.
    return min(12, 1 + int(rng.expovariate(0.6)))


def locomo_sentences(data_dir: Path) -> list[str]:
    from bench.locomo_data import load_conversations

    sentences: list[str] = []
    for conv in load_conversations(data_dir):
        for turn in conv.turns:
            sentences.extend(s for s in re.split(r"(?<=[.!?])\s+", turn.raw_text) if len(s) > 3)
    return sorted(set(sentences))


def add_corpus_args(parser) -> None:
    parser.add_argument("--source", choices=("synthetic", "locomo"), default="synthetic",
                        help="texts from built-in templates, or remixed from LoCoMo turns (needs --data)")
    parser.add_argument("--data", type=Path, default=None, help="LoCoMo data dir for --source locomo")
    parser.add_argument("--embed-pool", type=int, default=None,
                        help="how many texts are embedded for real (default 10000; "
                             "300 with --quick); records past it reuse pooled vectors")


def add_sized_args(parser, quick_sizes: str) -> None:
    """--sizes and --queries (store sizes, timed recalls per size) plus the corpus options."""
    parser.add_argument("--sizes", default=None,
                        help=f"store sizes (default 1k,10k,100k; {quick_sizes} with --quick)")
    parser.add_argument("--queries", type=int, default=None,
                        help="timed recalls per size (default 200; 20 quick)")
    add_corpus_args(parser)


def sized_setup(args, quick_sizes: str):
    """``(sizes, queries, embed pool, corpus)`` from the options of add_sized_args."""
    from bench.common import parse_sizes

    sizes = parse_sizes(args.sizes or (quick_sizes if args.quick else "1k,10k,100k"))
    queries = args.queries or (20 if args.quick else 200)
    return sizes, queries, embed_pool(args), Corpus(args.seed, args.source, args.data)


def embed_pool(args) -> int:
    return args.embed_pool or (300 if args.quick else 10_000)


class Corpus:
    """The i-th text and the j-th cue are fixed by (source, seed) forever."""

    def __init__(self, seed: int, source: str = "synthetic", data_dir: Path | None = None) -> None:
        self.seed = seed
        self.source = source
        self._pool: list[str] | None = None
        if source == "locomo":
            if data_dir is None:
                raise SystemExit("--source locomo needs --data DIR (the LoCoMo json files)")
            self._pool = locomo_sentences(data_dir)
        elif source != "synthetic":
            raise SystemExit(f"unknown --source {source!r}: synthetic or locomo")
        self._texts: list[str] = []
        self._seen: set[str] = set()
        self._rng = random.Random(f"{seed}:texts")

    @property
    def tag(self) -> str:
        return f"{self.source}-v{CORPUS_VERSION}-s{self.seed}"

    def _sentence(self) -> str:
        if self._pool is not None:
            return self._rng.choice(self._pool)
        return self._rng.choice(_TEMPLATES)(self._rng)

    def texts(self, n: int) -> list[str]:
        while len(self._texts) < n:
            words = [self._sentence() for _ in range(_sentence_count(self._rng))]
            if self._pool is not None:
                words.insert(0, f"{self._rng.choice(_NAMES[:25])}:")
            text = " ".join(words)
            if text not in self._seen:
                self._seen.add(text)
                self._texts.append(text)
        return self._texts[:n]

    def fresh_texts(self, n: int, salt: str) -> list[str]:
        """``n`` texts not among the store's texts (each ends in a unique note id)."""
        rng = random.Random(f"{self.seed}:{salt}")
        return [f"{self._texts_like(rng)} (note {salt}-{i})" for i in range(n)]

    def _texts_like(self, rng: random.Random) -> str:
        count = min(12, 1 + int(rng.expovariate(0.6)))
        if self._pool is not None:
            return " ".join(rng.choice(self._pool) for _ in range(count))
        return " ".join(rng.choice(_TEMPLATES)(rng) for _ in range(count))

    def cues(self, n: int, among: int, salt: str = "cues") -> list[str]:
        """Half questions, half fragments of the first ``among`` texts (what a user
        half remembers)."""
        rng = random.Random(f"{self.seed}:{salt}")
        stored = self.texts(among)
        cues = []
        for i in range(n):
            if i % 2 == 0 and self._pool is None:
                cues.append(rng.choice(_CUE_TEMPLATES)(rng))
            else:
                words = rng.choice(stored).split()
                start = rng.randrange(max(1, len(words) - 6))
                cues.append(" ".join(words[start:start + rng.randint(3, 8)]))
        return cues


# ----------------------------------------------------------------- vectors

def embedder():
    from iai_mcp.embed import MiniLMEmbedder

    return MiniLMEmbedder()


def real_vectors(corpus: Corpus, n: int, cache_dir: Path, log=print) -> np.ndarray:
    """Real MiniLM vectors of ``corpus.texts(n)``, embedded once and cached."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"vectors-{corpus.tag}.npy"
    have = np.load(path) if path.exists() else np.zeros((0, 384), dtype=np.float32)
    if len(have) >= n:
        return have[:n]
    texts = corpus.texts(n)
    emb = embedder()
    done = len(have)
    while done < n:
        end = min(n, done + 2_048)
        have = np.vstack([have, emb.embed(texts[done:end])])
        done = end
        log(f"  embedded {done:,}/{n:,} texts")
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, have)
        tmp.replace(path)  # progress survives an interrupted run
    return have[:n]


def vectors(corpus: Corpus, n: int, cache_dir: Path, pool: int, log=print) -> np.ndarray:
    """Vectors for ``corpus.texts(n)``: the first ``pool`` are the real embeddings of
    their own texts; record ``i >= pool`` gets the real vector of text ``i % pool``
    plus seeded Gaussian noise (sigma 0.01 per dimension), renormalised.

    Embedding 100k texts on two shared cores takes 10-40 minutes; recall cost does
    not depend on which unit vectors the matrix holds, and the noise keeps every
    vector distinct so no ranking is decided by ties.
    """
    real = real_vectors(corpus, min(n, pool), cache_dir, log)
    if n <= pool:
        return real
    rng = np.random.default_rng(corpus.seed)
    extra = real[np.arange(pool, n) % pool] + rng.normal(0, 0.01, (n - pool, real.shape[1])).astype(np.float32)
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    return np.vstack([real, extra.astype(np.float32)])


# ------------------------------------------------------------------ stores

def make_records(texts: list[str], vecs: np.ndarray, seed: int, start: int = 0):
    """MemoryRecords as capture would make them: sessions of ~20 turns, a year of event times."""
    from iai_mcp.types import MemoryRecord

    base = datetime(2025, 1, 1, tzinfo=timezone.utc)
    now = datetime.now(timezone.utc)
    rng = random.Random(f"{seed}:ids:{start}")
    out = []
    for offset, (text, vec) in enumerate(zip(texts, vecs)):
        i = start + offset
        said = base + timedelta(minutes=i * 5)
        out.append(MemoryRecord(
            id=uuid.UUID(int=rng.getrandbits(128), version=4), tier="episodic", literal_surface=text,
            aaak_index="", embedding=vec.tolist(), community_id=None, centrality=0.0,
            detail_level=2, pinned=False, stability=0.0, difficulty=0.0, last_reviewed=None,
            never_decay=False, never_merge=False, provenance=[], created_at=now, updated_at=now,
            language="en", tags=[f"topic-{i % 17}"], session_id=f"session-{i // 20}",
            role="user" if i % 2 == 0 else "assistant", event_time=said,
        ))
    return out


def build_store(corpus: Corpus, n: int, cache_dir: Path, pool: int, log=print) -> Path:
    """A store of ``corpus.texts(n)`` with ``vectors(...)``, built once and cached."""
    root = cache_dir / "stores" / f"{corpus.tag}-p{pool}-{n}"
    marker = root / "bench-complete.json"
    if marker.exists():
        return root
    if root.exists():
        shutil.rmtree(root)  # a build that was interrupted
    vecs = vectors(corpus, n, cache_dir, pool, log)
    texts = corpus.texts(n)
    from iai_mcp.store import MemoryStore

    log(f"  building store of {n:,} records in {root}")
    store = MemoryStore(path=root, embedder=embedder(), compact_every=0)
    try:
        for start in range(0, n, BUILD_CHUNK):
            end = min(n, start + BUILD_CHUNK)
            store.insert_many(make_records(texts[start:end], vecs[start:end], corpus.seed, start))
        store.compact()
    finally:
        store.close()
    marker.write_text(json.dumps({"records": n, "corpus": corpus.tag}) + "\n")
    return root


@contextmanager
def working_copy(root: Path, scratch: Path | None = None) -> Iterator[Path]:
    """A throwaway copy of a cached store (benchmarks write provenance into it)."""
    base = Path(tempfile.mkdtemp(prefix="iai-bench-", dir=scratch))
    try:
        yield copy_tree(root, base / "store")
    finally:
        shutil.rmtree(base, ignore_errors=True)
