"""Every benchmark's --quick mode runs end to end and writes its JSON.

These never time anything against a target (timings belong to the benchmarks);
they check that each ``python -m bench.<name> --quick`` still works against
the current library and that what it writes has the shape the README and the
report generator read, with values that are consistent with each other.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each runs a benchmark in a fresh interpreter, seconds apiece

REPO = Path(__file__).resolve().parents[1]
# A git worktree has no ../shared beside it: IAI_MCP_BENCH_DATA points at the data directory.
DATA = Path(os.environ.get("IAI_MCP_BENCH_DATA", REPO.parent / "shared" / "data"))
LOCOMO = DATA / "locomo"
LONGMEMEVAL = DATA / "longmemeval"
COMMON_KEYS = {"benchmark", "command", "quick", "started_at", "duration_s", "machine", "config",
               "ratios", "targets"}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    # Shared by the module's benchmarks so the texts are embedded once.
    return tmp_path_factory.mktemp("bench-cache")


def run_bench(name: str, out: Path, cache: Path, *extra: str, output: str | None = None) -> dict:
    # This checkout's src/ first: an installed iai_mcp from another tree (a
    # second worktree's editable install) must not stand in for the code under test.
    path = [str(REPO), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    proc = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--quick", "--out", str(out), "--cache-dir", str(cache), *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = output or name
    assert f"wrote {out / (output + '.json')}" in proc.stdout
    data = json.loads((out / f"{output}.json").read_text())
    assert COMMON_KEYS <= set(data), COMMON_KEYS - set(data)
    assert data["benchmark"] == name and data["quick"] is True
    assert data["command"].startswith(f"python -m bench.{name} --quick")
    assert {"nproc", "cpu_model", "python"} <= set(data["machine"])
    assert data["ratios"], "every benchmark reports figures relative to a same-run baseline"
    for r in data["ratios"]:
        assert {"figure", "value", "baseline", "baseline_value", "ratio"} <= set(r)
    for t in data["targets"]:
        assert t["status"] in ("PASS", "MISS")
    return data


def test_recall_latency_quick(tmp_path, cache_dir):
    data = run_bench("recall_latency", tmp_path, cache_dir)
    assert [s["records"] for s in data["sizes"]] == data["config"]["sizes"] == [200, 500]
    for size in data["sizes"]:
        assert size["cold_first_call_ms"] > 0 and size["open_store_ms"] > 0
        e2e = size["end_to_end_ms"]
        assert e2e["n"] == data["config"]["queries_per_size"]
        assert 0 < e2e["p50"] <= e2e["p95"] <= e2e["p99"] <= e2e["max"]
        assert {"embed", "candidate_search", "keyword_search", "fusion", "rank", "packing",
                "recall_without_embed"} <= set(size["parts_ms"])
        assert size["parts_ms"]["embed"]["n"] == e2e["n"]
        assert size["baseline_numpy_bruteforce_top10_ms"]["n"] == e2e["n"]


def test_capture_throughput_quick(tmp_path, cache_dir):
    data = run_bench("capture_throughput", tmp_path, cache_dir)
    cfg = data["config"]
    for size in data["sizes"]:
        # Every text is new, so every capture and every imported text is a new record.
        assert size["single"]["inserted"] == cfg["singles"]
        assert size["batched"]["inserted"] == cfg["total"]
        assert size["records_after"] == size["records_before"] + cfg["singles"] + 2 * cfg["total"]
        for key in ("single", "single_compact_when_idle", "batched", "baseline_embed_single",
                    "baseline_embed_batched", "baseline_insert_many"):
            assert size[key]["records_per_s"] > 0
        assert size["single_compact_when_idle"]["latency_ms"]["n"] == cfg["singles"]


def test_provenance_quick(tmp_path, cache_dir):
    data = run_bench("provenance", tmp_path, cache_dir)
    cfg = data["config"]
    q = data["queue"]
    assert q["enqueue_us"]["n"] == q["enqueue_burst_us"]["n"] == cfg["enqueues"]
    assert q["drain"]["entries"] == cfg["drain_batches"] * 10 and q["drain"]["entries_per_s"] > 0
    slow = data["slow_write"]
    assert slow["slow_writes_made"] >= 1, "the slow write was never exercised"
    # With the queue off, recall waits for the 500 ms write: the control proves the wrapper bites.
    assert slow["control_slow_write_queue_off_ms"]["p50"] >= 500
    g = data["growth"]
    # Each recall of k=10 over a store of 200 records logs exactly 10 entries; none is lost.
    assert g["after_recalls"]["provenance_entries"] == cfg["recalls"] * 10
    assert g["data_own_size"]["provenance_rows"] == cfg["recalls"] * 10
    assert g["after_compact"]["versions"] >= 1 and g["after_compact"]["bytes"] > 0
    assert {t["target"].split(" (")[0] for t in data["targets"]} >= {"store bytes / data's own size after compact"}


def test_memory_quick(tmp_path, cache_dir):
    data = run_bench("memory", tmp_path, cache_dir)
    assert data["empty_store"]["records"] == 0
    for size in data["sizes"]:
        assert size["records"] == data["config"]["sizes"][0]
        for phase in ("after_open", "after_recalls", "steady"):
            assert size[phase]["VmHWM"] >= size[phase]["VmRSS"] > 0


@pytest.mark.skipif(not LOCOMO.is_dir(), reason=f"LoCoMo data not found at {LOCOMO}")
def test_locomo_quick(tmp_path, cache_dir):
    data = run_bench("locomo", tmp_path, cache_dir, "--data", str(LOCOMO))
    assert len(data["config"]["conversations"]) == 1
    conv = data["conversations"][0]
    assert conv["records"] + conv["turns_folded_into_identical_records"] == conv["turns"]
    assert data["config"]["questions"] == conv["questions"] > 0
    for name in ("ours", "bm25", "dense"):
        metrics = data["systems"][name]
        curve = [metrics[f"turn_r@{k}"] for k in range(1, 11)]
        assert all(0 <= v <= 1 for v in curve) and curve == sorted(curve)
        assert 0 <= metrics["mrr"] <= 1
        assert metrics["session_r@10"] >= metrics["session_r@1"]
    assert len(data["targets"]) == 1
    assert [s["min_score"] for s in data["floor"]["sweep"]] == sorted(s["min_score"] for s in data["floor"]["sweep"])


@pytest.mark.skipif(not LONGMEMEVAL.is_dir(), reason=f"LongMemEval data not found at {LONGMEMEVAL}")
def test_longmemeval_quick(tmp_path, cache_dir):
    data = run_bench("longmemeval", tmp_path, cache_dir, "--data", str(LONGMEMEVAL))
    assert data["config"]["questions"] == 3 and data["config"]["with_evidence"] > 0
    for name in ("ours", "ours_nofloor", "bm25", "dense"):
        metrics = data["systems"][name]
        curve = [metrics[f"turn_r@{k}"] for k in range(1, 11)]
        assert all(0 <= v <= 1 for v in curve) and curve == sorted(curve)
        assert metrics["session_r@10"] >= metrics["session_r@1"]
    sweep = data["floor"]["sweep"]
    # A higher floor keeps no more of the evidence and rejects no fewer negatives.
    kept = [s["turn_r@10_kept"] for s in sweep]
    rejected = [s["negatives_rejected"] for s in sweep]
    assert kept == sorted(kept, reverse=True) and rejected == sorted(rejected)


def test_daemon_quick(tmp_path, cache_dir):
    data = run_bench("daemon", tmp_path, cache_dir)
    for size in data["sizes"]:
        assert size["recall_via_daemon_ms"]["n"] == size["recall_in_process_ms"]["n"] == data["config"]["queries_per_size"]
        assert size["cold_connect_ms"] > 0 and size["ping_via_daemon_ms"]["p50"] > 0


def test_redaction_quick(tmp_path, cache_dir):
    data = run_bench("redaction", tmp_path, cache_dir)
    assert data["secrets"] == data["found"] + len(data["misses"]) > 0
    assert data["redacted_spans"] >= data["found"] and data["false_positive_spans"] == len(data["false_positives"])
    assert 0 <= data["precision"] <= 1 and 0 <= data["recall"] <= 1
    assert set(data["clean_texts_changed"]) == {"prose", "code", "near-miss"}


def test_cold_start_quick(tmp_path, cache_dir):
    data = run_bench("cold_start", tmp_path, cache_dir, "--peak-records", "0")
    paths = data["paths"]
    runs = data["config"]["runs"]
    for key in ("cold_recall_ms", "warm_recall_ms", "cold_hook_ms"):
        assert len(paths[key]) == runs and min(paths[key]) > 0
    assert paths["hits"] > 0 and paths["hook_output_chars"] > 0
    assert paths["client_modules"] == {"recall (daemon warm)": [], "hook session-start": []}
    steady = data["empty_daemon"]["steady"]
    assert steady["VmHWM"] >= steady["VmRSS"] > 0
    assert len(data["targets"]) == 4 and data["peak_daemon"] is None


def _held_out_consistent(data: dict) -> None:
    # Each knob's held-out figure is its chosen values' figures on the held-out folds, pooled over questions.
    folds = {"locomo": ("0", "1", "2"), "longmemeval": ("3", "4", "5")}
    for name in data["config"]["knobs"]:
        knob = data[name]
        assert set(knob["chosen_per_fold"]) == {f for fs in folds.values() for f in fs}
        for ds, fs in folds.items():
            picked = [knob["grid"][str(knob["chosen_per_fold"][f])][f] for f in fs]
            n = sum(p["questions"] for p in picked)
            pooled = sum(p["turn_r@10"] * p["questions"] for p in picked) / n
            assert knob["held_out"][ds]["turn_r@10"] == pytest.approx(pooled, abs=1e-3)


@pytest.mark.skipif(not LONGMEMEVAL.is_dir(), reason=f"LongMemEval data not found at {LONGMEMEVAL}")
def test_tune_recall_quick(tmp_path, cache_dir):
    data = run_bench("tune_recall", tmp_path, cache_dir, "--locomo", str(LOCOMO), "--longmemeval", str(LONGMEMEVAL))
    assert data["config"]["knobs"] == ["dense", "stemmer"] and "reference_check" not in data
    assert data["config"]["questions"]["locomo"] > 0 and data["config"]["questions"]["longmemeval"] == 3
    defaults = data["default_by_dataset"]
    for ds, figures in defaults.items():
        assert all(0 <= v <= 1 for v in figures.values())
        ratio = next(r for r in data["ratios"] if r["figure"].startswith(ds))
        assert ratio["value"] == figures["turn_r@10"]
    # The shipped weight is in the grid: its row there is the defaults' row.
    from iai_mcp.retrieval import DEFAULT_WEIGHTS

    assert data["dense"]["grid"][str(DEFAULT_WEIGHTS.dense)] == data["default"]
    _held_out_consistent(data)


@pytest.mark.skipif(not LONGMEMEVAL.is_dir(), reason=f"LongMemEval data not found at {LONGMEMEVAL}")
def test_tune_recall_floors_quick(tmp_path, cache_dir):
    data = run_bench("tune_recall", tmp_path, cache_dir, "--floors", "--locomo", str(LOCOMO),
                     "--longmemeval", str(LONGMEMEVAL), output="tune_recall_floor")
    for ds in ("locomo", "longmemeval"):
        rejected = [f["negatives_rejected"] for f in data[ds]["floors"]]
        assert rejected == sorted(rejected) and all(0 <= v <= 1 for v in rejected)
    floors = [f["min_score"] for f in data["locomo"]["floors"]]
    per_fold = data["leave_one_out"]["per_fold"]
    assert sorted(per_fold) == ["0", "1", "2", "3", "4", "5"]
    for fold in per_fold.values():
        assert fold["chosen_min_score"] in floors
        assert 0 <= fold["held_out_negatives_rejected"] <= 1 and fold["held_out_negatives"] > 0


@pytest.mark.skipif(not LOCOMO.is_dir(), reason=f"LoCoMo data not found at {LOCOMO}")
def test_related_quick(tmp_path, cache_dir):
    data = run_bench("related", tmp_path, cache_dir, "--raw", "--data", str(LOCOMO))
    assert len(data["config"]["conversations"]) == 1 and data["config"]["random_pairs"] == 2000
    sweep = data["sweep"]
    for key in ("same_fact_above", "random_above"):  # a higher threshold lets no more pairs through
        shares = [s[key] for s in sweep]
        assert shares == sorted(shares, reverse=True) and all(0 <= v <= 1 for v in shares)
    chosen = data["chosen"]
    row = next(s for s in sweep if s["threshold"] == chosen["threshold"])
    assert row["same_fact_above"] == chosen["same_fact_above"]
    assert data["ratios"][0]["value"] == chosen["same_fact_above"]
    assert 0 <= data["corrections"]["share_above_chosen"] <= 1


def test_vector_index_quick(tmp_path, cache_dir):
    data = run_bench("vector_index", tmp_path, cache_dir)
    for size in data["sizes"]:
        assert 0 < size["vector_arrays_mb"] < size["float32_arrays_mb"] / 3
        assert size["identical_top_k"] == size["cues"] and size["max_score_difference"] < 1e-5
        assert 0 < size["rescored_rows"]["mean"] <= size["rescored_rows"]["max"] <= size["records"]


def test_rank_ab_quick(tmp_path, cache_dir):
    """Two trees timed side by side: HEAD exported as a package of its own
    and this checkout, on one store; the same code answers the same."""
    data = run_bench("rank_ab", tmp_path, cache_dir, "--rev", "HEAD", "--reps", "1")
    (size,) = data["sizes"]
    assert list(size["ms"]) == ["iai_mcp_HEAD", "iai_mcp"]
    assert size["identical_hits"] == size["cues"] > 0
    assert all(s["n"] == size["calls_per_tree"] for s in size["ms"].values())
