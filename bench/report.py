"""Regenerate the results section of bench/README.md and the plots from bench/results/*.json.

``python -m bench.report`` (needs the ``bench`` extra: matplotlib). It reads
only what the benchmarks wrote, so every number in the README comes from a
JSON file that records the command and machine that produced it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, RESULTS_DIR, fmt

README = BENCH_DIR / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
ORDER = ("recall_latency", "capture_throughput", "provenance", "memory", "locomo")


def load(results: Path) -> dict[str, dict[str, Any]]:
    """Every result file: the known ones in ORDER, then any other benchmark's
    (its targets and ratios join the summary tables; it gets no section)."""
    found = {}
    paths = {p.stem: p for p in sorted(results.glob("*.json"))}
    for name in [*ORDER, *sorted(set(paths) - set(ORDER))]:
        if name in paths:
            data = json.loads(paths[name].read_text())
            # A benchmark run (bench.common.Run), not an analysis: tune_recall's figures
            # repeat locomo's and longmemeval's and have their own table in the README.
            if "machine" in data and data.get("benchmark") != "tune_recall":
                found[name] = data
    return found


def table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    lines += ["| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _head(data: dict[str, Any]) -> str:
    m = data["machine"]
    modified = " (src/ modified since that commit)" if m.get("src_modified_since_commit") else ""
    load = data.get("loadavg_1_5_15")
    busy = (f", load average {load['start'][0]} at start, {load['end'][0]} at end (2 cores)"
            if load else "")
    return (f"`{data['command']}` — {data['started_at']}, {data['duration_s']} s, "
            f"commit {m.get('git_commit')}{modified}{busy}")


def section_recall(d: dict[str, Any]) -> str:
    rows = [[s["records"], s["open_store_ms"], s["cold_first_call_ms"], s["end_to_end_ms"]["p50"],
             s["end_to_end_ms"]["p95"], s["end_to_end_ms"]["p99"],
             *(s["parts_ms"][p].get("p50") for p in ("embed", "candidate_search", "keyword_search",
                                                    "fusion", "rank", "packing")),
             s["baseline_numpy_bruteforce_top10_ms"]["p50"]] for s in d["sizes"]]
    return "\n\n".join([
        f"### Recall latency (ms)\n\n{_head(d)}",
        table(["records", "open store", "cold 1st call", "p50", "p95", "p99", "embed p50", "matvec p50",
               "BM25 p50", "fuse p50", "rank p50", "pack p50", "numpy top-10 p50"], rows),
        "![recall latency against store size](recall_latency.png)",
    ])


def section_capture(d: dict[str, Any]) -> str:
    rows = [[s["records_before"], s["single"]["records_per_s"], s["single"]["latency_ms"]["p50"],
             s["single"]["latency_ms"]["p99"], s["batched"]["records_per_s"],
             s["baseline_embed_single"]["records_per_s"], s["baseline_embed_batched"]["records_per_s"],
             s["baseline_insert_many"]["records_per_s"]] for s in d["sizes"]]
    cfg = d["config"]
    return "\n\n".join([
        f"### Capture throughput\n\n{_head(d)}\n\n{cfg['singles']} single captures, then "
        f"{cfg['total']:,} texts in batches of {cfg['batch']}, into a store already holding N.",
        table(["N", "single rec/s", "single p50 ms", "single p99 ms", "batched rec/s",
               "embed-only single rec/s", "embed-only batched rec/s", "insert_many rec/s"], rows),
    ])


def section_provenance(d: dict[str, Any]) -> str:
    q, sw, g = d["queue"], d["slow_write"], d["growth"]
    snaps = [("before recalls", g["before_recalls"]), ("after recalls", g["after_recalls"]),
             ("after compact", g["after_compact"]), ("after close", g["after_close"])]
    own = g["data_own_size"]
    return "\n\n".join([
        f"### Provenance\n\n{_head(d)}",
        table(["figure", "p50", "p99", "max"], [
            [f"enqueue, one per {q['enqueue_gap_ms']} ms (µs)", q["enqueue_us"]["p50"], q["enqueue_us"]["p99"],
             q["enqueue_us"]["max"]],
            ["enqueue, back to back (µs)", q["enqueue_burst_us"]["p50"], q["enqueue_burst_us"]["p99"],
             q["enqueue_burst_us"]["max"]],
            ["synchronous append_provenance_batch (µs)", q["sync_append_batch_us"]["p50"],
             q["sync_append_batch_us"]["p99"], q["sync_append_batch_us"]["max"]],
        ]),
        f"Drain: {fmt(q['drain']['entries_per_s'])} entries/s through the queue "
        f"({fmt(q['direct_append_512']['entries_per_s'])} entries/s appended directly in 512s).",
        table(["recall (ms)", "p50", "p95", "p99"], [
            ["normal write, queue on", sw["normal_ms"]["p50"], sw["normal_ms"]["p95"], sw["normal_ms"]["p99"]],
            [f"{sw['slow_write_s'] * 1000:.0f} ms write, queue on", sw["slow_ms"]["p50"], sw["slow_ms"]["p95"],
             sw["slow_ms"]["p99"]],
            [f"{sw['slow_write_s'] * 1000:.0f} ms write, queue off (control)",
             sw["control_slow_write_queue_off_ms"]["p50"], sw["control_slow_write_queue_off_ms"]["p95"],
             sw["control_slow_write_queue_off_ms"]["p99"]],
        ]),
        f"Store growth, {g['records']:,} records, {g['recalls']:,} recalls:",
        table(["when", "LanceDB versions", "fragments", "files", "bytes", "provenance entries"],
              [[label, s.get("versions", "-"), s.get("fragments", "-"), s["files"], s["bytes"],
                s.get("provenance_entries", "-")] for label, s in snaps]),
        f"Data's own size: {fmt(own['total_bytes'])} bytes = sealed record payloads and vectors "
        f"({fmt(own['records_sealed_bytes'])}) + {fmt(own['provenance_rows'])} provenance rows "
        f"(sealed entry, entry id, record id, 8-byte seq: {fmt(own['provenance_bytes'])}). "
        f"Store directory after compaction: {g['disk_over_data_after_compact']}x that.",
    ])


def section_memory(d: dict[str, Any]) -> str:
    mb = lambda kb: round(kb / 1024, 1)  # noqa: E731
    e = d["empty_store"]
    rows = [["empty store + model", 0, mb(e["after_open"]["VmRSS"]), mb(e["steady"]["VmHWM"]), mb(e["steady"]["VmRSS"]), "-"]]
    rows += [[f"{s['records']:,} records", s["records"], mb(s["after_open"]["VmRSS"]), mb(s["steady"]["VmHWM"]),
              mb(s["steady"]["VmRSS"]), mb(s["raw_data_bytes"] / 1024)] for s in d["sizes"]]
    return "\n\n".join([
        f"### Memory (MB)\n\n{_head(d)}\n\nProcess: {d['config']['process']}; "
        f"{d['config']['recalls']} recalls each.",
        table(["process", "records", "RSS after open (before model)", "peak VmHWM", "steady VmRSS",
               "raw data (vectors + text)"], rows),
    ])


def section_locomo(d: dict[str, Any]) -> str:
    metrics = ["turn_r@1", "turn_r@5", "turn_r@10", "mrr", "session_r@1", "session_r@5", "session_r@10"]
    cfg = d["config"]
    return "\n\n".join([
        f"### LoCoMo retrieval\n\n{_head(d)}\n\n{cfg['questions']} questions "
        f"({', '.join(cfg['conversations'])}); bm25 = `{cfg['bm25']}`; dense = cosine over the same vectors.",
        table(["system", *metrics], [[name, *(d["systems"][name][m] for m in metrics)] for name in ("ours", "bm25", "dense")]),
        table(["turn R@10 by category", "questions", "ours", "bm25", "dense"],
              [[cat, v["questions"], v["ours"], v["bm25"], v["dense"]] for cat, v in d["turn_r@10_by_category"].items()]),
        "![recall@k against k](locomo_recall_at_k.png)",
    ])


SECTIONS = {"recall_latency": section_recall, "capture_throughput": section_capture,
            "provenance": section_provenance, "memory": section_memory, "locomo": section_locomo}


def machine_line(found: dict[str, dict[str, Any]]) -> str:
    machines = {json.dumps({k: d["machine"][k] for k in ("nproc", "cpu_model", "python")}, sort_keys=True)
                for d in found.values()}
    parts = []
    for m in sorted(machines):
        m = json.loads(m)
        parts.append(f"{m['nproc']} cores, {m['cpu_model']}, Python {m['python']}")
    return "; ".join(parts)


def render(found: dict[str, dict[str, Any]]) -> str:
    if not found:
        return "No results yet: run the benchmarks, then `python -m bench.report`."
    out = [f"Machine: {machine_line(found)} (shared with other work: absolute times move by ±30%; "
           "the ratios below are taken within one run)."]
    targets = [[t["target"], fmt(t["value"]), t["limit"], f"**{t['status']}**", name]
               for name, d in found.items() for t in d["targets"]]
    if targets:
        out.append("### Targets\n\n" + table(["target", "measured", "limit", "status", "benchmark"], targets))
    ratios = [[r["figure"], fmt(r["value"], r["unit"]), r["baseline"], fmt(r["baseline_value"], r["unit"]),
               fmt(r["ratio"], "x")] for d in found.values() for r in d["ratios"]]
    out.append("### Ratios to a baseline measured in the same run\n\n"
               + table(["figure", "value", "baseline", "baseline value", "ratio"], ratios))
    out += [SECTIONS[name](d) for name, d in found.items() if name in SECTIONS]
    return "\n\n".join(out)


def plot(found: dict[str, dict[str, Any]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if "recall_latency" in found:
        sizes = found["recall_latency"]["sizes"]
        n = [s["records"] for s in sizes]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for key, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
            ax.plot(n, [s["end_to_end_ms"][key] for s in sizes], style, label=f"end to end {key}")
        ax.plot(n, [s["parts_ms"]["embed"]["p50"] for s in sizes], "x--", label="embed cue p50")
        ax.plot(n, [s["parts_ms"]["rank"]["p50"] for s in sizes], "d--", label="rank (no embed) p50")
        ax.plot(n, [s["baseline_numpy_bruteforce_top10_ms"]["p50"] for s in sizes], ":", color="grey",
                label="numpy brute-force top-10 p50")
        for limit, at in ((15, 10_000), (40, 100_000)):
            ax.plot([at], [limit], "r*", markersize=12)
        ax.plot([], [], "r*", label="targets (p95)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("records in store")
        ax.set_ylabel("ms")
        ax.set_title("memory_recall latency (k=10, MiniLM cue embedding included)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / "recall_latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if "locomo" in found:
        systems = found["locomo"]["systems"]
        ks = list(range(1, 11))
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
        for ax, level in zip(axes, ("turn", "session")):
            for name, style in (("ours", "o-"), ("bm25", "s--"), ("dense", "^:")):
                ax.plot(ks, [systems[name][f"{level}_r@{k}"] for k in ks], style, label=name)
            ax.set_title(f"{level}-level recall@k")
            ax.set_xlabel("k")
            ax.set_xticks(ks)
            ax.grid(True, alpha=0.3)
        axes[0].set_ylabel("recall")
        axes[0].legend()
        fig.suptitle(f"LoCoMo, {found['locomo']['config']['questions']} questions")
        fig.tight_layout()
        path = out_dir / "locomo_recall_at_k.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    found = load(args.results)
    if not args.no_plots:
        for path in plot(found, args.readme.parent):
            print(f"wrote {path}")
    text = args.readme.read_text("utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{args.readme} has no {START} ... {END} block to fill")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    args.readme.write_text(f"{head}{START}\n{render(found)}\n{END}{tail}", "utf-8")
    print(f"wrote {args.readme}")


if __name__ == "__main__":
    main()
