"""Calibrate ``core.capture.RELATED_MIN_SCORE``: the cosine above which capture
lists an existing memory as ``related`` (a candidate for ``supersedes``).

Data: LoCoMo (one memory per turn, ``bench.locomo_data``), embedded with the
real MiniLM embedder. Positives are pairs of distinct turns that are evidence
for the same question (two turns about the same fact: "I adopted a dog" /
"my dog Max loves the beach"); negatives are random pairs of turns from the
same conversation (same speakers and topics, so a conservative negative).
The threshold is chosen as a high quantile of the negatives: ``related`` is
a short list an assistant reads, so a false suggestion costs more than a
missed one (and only three are shown, best first).

``python -m bench.related`` prints the distributions and writes
``bench/results/related.json``.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import DEFAULT_LOCOMO_DIR, Run, base_parser, print_table
from bench.locomo_data import load_conversations

NAME = "related"

#: Corrections as a user would make them: (what was said, what replaced it).
#: The use case itself: the new text should list the old one as related.
CORRECTIONS = [
    ("Our billing service runs on Postgres.", "We moved billing from Postgres to DynamoDB."),
    ("My sister lives in Lisbon.", "My sister moved from Lisbon to Berlin last month."),
    ("The launch is planned for March 3.", "The launch slipped to June 3."),
    ("I prefer tabs for indentation.", "Actually I now prefer spaces, four of them."),
    ("My dentist appointment is on Tuesday at 10.", "The dentist moved my appointment to Thursday at 2."),
    ("We deploy with Jenkins.", "We replaced Jenkins with GitHub Actions for deploys."),
    ("My phone number ends in 4821.", "I changed my phone number; it now ends in 7730."),
    ("The team standup is at 9:30.", "Standup is now at 10:00 instead of 9:30."),
    ("I'm vegetarian.", "I started eating fish again, so I'm pescatarian now."),
    ("Alice is the project lead.", "Bob took over from Alice as project lead."),
    ("The API rate limit is 100 requests per minute.", "They raised the API rate limit to 500 per minute."),
    ("I drive a 2015 Honda Civic.", "I sold the Civic and bought a used Tesla Model 3."),
    ("Our office is on the 4th floor.", "We moved the office to the 7th floor."),
    ("The staging database password rotates monthly.", "Staging database passwords now rotate weekly."),
    ("I use VS Code as my editor.", "I switched from VS Code to Neovim."),
    ("The kids' school starts at 8:15.", "School start time changed to 8:45 this year."),
]
QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.995, 0.999)


def pairs(conv: Any, rng: np.random.Generator, negatives: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    index = {turn.dia_id: i for i, turn in enumerate(conv.turns)}
    positive: set[tuple[int, int]] = set()
    for question in conv.questions:
        turns = sorted({index[e] for e in question.evidence})
        positive.update(itertools.combinations(turns, 2))
    n = len(conv.turns)
    negative = set()
    while len(negative) < negatives:
        a, b = sorted(int(x) for x in rng.choice(n, 2, replace=False))
        if (a, b) not in positive:
            negative.add((a, b))
    return sorted(positive), sorted(negative)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_LOCOMO_DIR,
                        help="directory of LoCoMo conversation json files (default: %(default)s)")
    parser.add_argument("--raw", action="store_true",
                        help="embed turns without their 'Speaker: ' label (as hook captures look)")
    parser.add_argument("--negatives", type=int, default=20000, help="random pairs per conversation")
    args = parser.parse_args(argv)
    from iai_mcp.core.capture import RELATED_MIN_SCORE
    from iai_mcp.embed import MiniLMEmbedder

    convs = load_conversations(args.data)
    if args.quick:
        convs = [min(convs, key=lambda c: len(c.turns))]
        args.negatives = min(args.negatives, 2000)
    rng = np.random.default_rng(args.seed)
    embedder = MiniLMEmbedder()
    pos_scores: list[float] = []
    neg_scores: list[float] = []
    for conv in convs:
        vectors = embedder.embed([turn.raw_text if args.raw else turn.text for turn in conv.turns])
        positive, negative = pairs(conv, rng, args.negatives)
        pos_scores += [float(vectors[a] @ vectors[b]) for a, b in positive]
        neg_scores += [float(vectors[a] @ vectors[b]) for a, b in negative]
        print(f"[{conv.name}: {len(conv.turns)} turns, {len(positive)} same-fact pairs]")
    pos, neg = np.asarray(pos_scores), np.asarray(neg_scores)
    old = embedder.embed([a for a, _ in CORRECTIONS])
    new = embedder.embed([b for _, b in CORRECTIONS])
    corr = np.sum(old * new, axis=1)
    print(f"corrections: min {corr.min():.3f} p25 {np.quantile(corr, 0.25):.3f} "
          f"median {np.median(corr):.3f} max {corr.max():.3f}")
    table = {f"p{q * 100:g}": {"same_fact": round(float(np.quantile(pos, q)), 4),
                                "random": round(float(np.quantile(neg, q)), 4)} for q in QUANTILES}
    print_table("Cosine of turn pairs (MiniLM)", ["quantile", "same fact", "random"],
                [[name, v["same_fact"], v["random"]] for name, v in table.items()])
    sweep = []
    for threshold in np.arange(0.30, 0.81, 0.05):
        t = round(float(threshold), 2)
        sweep.append({"threshold": t,
                      "same_fact_above": round(float(np.mean(pos >= t)), 4),
                      "random_above": round(float(np.mean(neg >= t)), 5)})
    print_table("Share of pairs at or above a threshold", ["threshold", "same fact", "random"],
                [[s["threshold"], s["same_fact_above"], s["random_above"]] for s in sweep])
    run = Run(NAME, args)
    run.data["config"] = {"data": str(args.data), "speaker_label": not args.raw, "conversations": [c.name for c in convs],
                          "embedder": embedder.name, "same_fact_pairs": len(pos), "random_pairs": len(neg)}
    run.data["quantiles"] = table
    run.data["sweep"] = sweep
    run.data["corrections"] = {"pairs": len(corr), "min": round(float(corr.min()), 4),
                               "median": round(float(np.median(corr)), 4),
                               "share_above_chosen": round(float(np.mean(corr >= RELATED_MIN_SCORE)), 4)}
    run.data["chosen"] = {"threshold": RELATED_MIN_SCORE,
                          "same_fact_above": round(float(np.mean(pos >= RELATED_MIN_SCORE)), 4),
                          "random_above": round(float(np.mean(neg >= RELATED_MIN_SCORE)), 5)}
    # The baseline is chance: how much likelier a same-fact pair clears the threshold than a random one.
    run.add_ratio("same-fact pairs at or above RELATED_MIN_SCORE", run.data["chosen"]["same_fact_above"],
                  "random pairs", run.data["chosen"]["random_above"])
    print(f"RELATED_MIN_SCORE = {RELATED_MIN_SCORE}: {run.data['chosen']}")
    run.finish()
    return run.data


if __name__ == "__main__":
    main()
