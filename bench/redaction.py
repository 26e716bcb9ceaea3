"""Precision and recall of secret redaction (``core.redact``) on a labelled corpus.

Corpus: ``tests/data/redaction/corpus.jsonl``, one text per line with its
group (``secret``, ``near-miss``, ``prose``, ``code``) and the exact secret
substrings it holds (none outside ``secret``). A secret counts as found when
one redacted span covers all of it; a redacted span that overlaps no
labelled secret is a false positive. Also reported: how many texts of each
clean group were changed at all (verbatim storage is the point). The
same-run baseline is the naive rule many tools use, the value of any
``password|secret|token|api_key`` followed by ``=`` or ``:``.

``python -m bench.redaction`` prints the figures, the misses and the false
positives, and writes ``bench/results/redaction.json``. No model, no store:
it runs in about a second.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, Run, base_parser, print_table

NAME = "redaction"
DEFAULT_CORPUS = REPO_ROOT / "tests" / "data" / "redaction" / "corpus.jsonl"
_NAIVE = re.compile(r"(?i)(?:password|passwd|secret|token|api[_-]?key)[\"']?\s*[:=]\s*[\"']?(?P<v>[^\s\"',;)]+)")

Finder = Callable[[str], list[tuple[int, int, str]]]


def naive_find(text: str) -> list[tuple[int, int, str]]:
    """The baseline: every value after a secret-sounding key."""
    return [(m.start("v"), m.end("v"), "naive") for m in _NAIVE.finditer(text)]


def load_corpus(path: Path = DEFAULT_CORPUS) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    for row in rows:
        for secret in row["secrets"]:
            if secret not in row["text"]:
                raise ValueError(f"{path}: secret {secret!r} is not in its text {row['text']!r}")
    return rows


def score(rows: list[dict[str, Any]], find_secrets: Finder | None = None) -> dict[str, Any]:
    """Span-level counts over the corpus, with each miss and false positive
    (``find_secrets``: ``core.redact``'s unless another finder is given)."""
    if find_secrets is None:
        from iai_mcp.core.redact import find_secrets

    found = missed = true_spans = false_spans = 0
    per_kind: Counter[str] = Counter()
    per_kind_found: Counter[str] = Counter()
    changed: Counter[str] = Counter()
    groups = Counter(row["group"] for row in rows)
    misses, false_positives = [], []
    for row in rows:
        text = row["text"]
        spans = find_secrets(text)
        wanted = [(text.index(s), text.index(s) + len(s)) for s in row["secrets"]]
        for start, end in wanted:
            kind = row.get("kind", "?")
            per_kind[kind] += 1
            if any(a <= start and end <= b for a, b, _ in spans):
                found += 1
                per_kind_found[kind] += 1
            else:
                missed += 1
                misses.append(text[:120])
        for a, b, kind in spans:
            if any(a < end and start < b for start, end in wanted):
                true_spans += 1
            else:
                false_spans += 1
                false_positives.append({"group": row["group"], "kind": kind, "text": text[:120],
                                        "span": text[a:b][:60]})
        if spans and not row["secrets"]:
            changed[row["group"]] += 1
    total_spans = true_spans + false_spans
    return {
        "texts": dict(groups),
        "secrets": found + missed,
        "found": found,
        "recall": round(found / (found + missed), 4) if found + missed else None,
        "redacted_spans": total_spans,
        "false_positive_spans": false_spans,
        "precision": round(true_spans / total_spans, 4) if total_spans else None,
        "clean_texts_changed": {g: changed[g] for g in groups if g != "secret"},
        "recall_by_kind": {k: f"{per_kind_found[k]}/{n}" for k, n in sorted(per_kind.items())},
        "misses": misses,
        "false_positives": false_positives,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="labelled JSONL (default: %(default)s)")
    args = parser.parse_args(argv)
    rows = load_corpus(args.corpus)
    result = score(rows)
    print_table("Secret redaction on the labelled corpus", ["figure", "value"], [
        ["texts", ", ".join(f"{g} {n}" for g, n in result["texts"].items())],
        ["secrets found (recall)", f"{result['found']}/{result['secrets']} ({result['recall']})"],
        ["redacted spans that are secrets (precision)",
         f"{result['redacted_spans'] - result['false_positive_spans']}/{result['redacted_spans']} "
         f"({result['precision']})"],
        *[[f"{g} texts changed", f"{n}/{result['texts'][g]}"] for g, n in result["clean_texts_changed"].items()],
    ])
    for text in result["misses"]:
        print(f"MISS  {text!r}")
    for fp in result["false_positives"]:
        print(f"FALSE POSITIVE [{fp['group']}/{fp['kind']}] {fp['span']!r} in {fp['text']!r}")
    naive = score(rows, naive_find)
    run = Run(NAME, args)
    for figure in ("precision", "recall"):
        run.add_ratio(figure, result[figure], "naive key=value regex", naive[figure])
    run.data["baseline_naive"] = {k: naive[k] for k in ("recall", "precision", "false_positive_spans",
                                                        "clean_texts_changed")}
    run.data["config"] = {"corpus": str(args.corpus.relative_to(REPO_ROOT) if args.corpus.is_relative_to(REPO_ROOT)
                                        else args.corpus)}
    run.data.update(result)
    run.finish()
    return run.data


if __name__ == "__main__":
    main()
