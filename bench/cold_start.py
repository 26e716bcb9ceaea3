"""Cold start and footprint (issue 14): the paths a person meets first each day.

Each figure is a real process, timed from its start to its exit with
``subprocess.run`` (what a shell or a host sees), on a copy of the cached
store of N records (10k by default), real MiniLM model, key in a file:

- ``iai-mcp recall CUE --json`` with no daemon running (the CLI spawns it and
  waits for the answer), p50 of 5 runs, the daemon stopped before each;
- the same with the daemon warm, p50 of 5 runs;
- ``iai-mcp hook session-start`` (a SessionStart payload on stdin) with no
  daemon running, p50 of 5 runs;
- the daemon's RSS (``VmRSS`` after warm-up and 20 recalls, ``VmHWM`` peak,
  from ``/proc/<pid>/status``) over an empty store, and its peak at 100k
  records (``bench.memory.run_daemon``, the same process and readings).

Baselines measured in the same run: ``python -c pass`` and ``python -c
"import lancedb"`` (start-up floors), a process that loads the model alone
and embeds once (the footprint floor), and the figures above' own parts.
Also recorded: which heavy packages each client path loads (a child runs the
CLI's ``main`` against the warm daemon and lists ``sys.modules``), and which
heavy libraries the daemon maps (``/proc/<pid>/maps``).

Wall-clock figures move with the machine's load (reported at start and end);
RSS figures do not.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    REPO_ROOT,
    Run,
    base_parser,
    clock_ms,
    isolate_key_material,
    parse_sizes,
    print_table,
    summarize,
)
from bench.corpus import Corpus, add_corpus_args, build_store, embed_pool, working_copy
from bench.memory import proc_status, run_daemon

NAME = "cold_start"
HEAVY = ("lancedb", "pyarrow", "numpy", "onnxruntime", "tokenizers", "pydantic", "pandas", "mcp", "starlette")
HEAVY_LIBS = ("_lancedb", "libarrow", "onnxruntime", "tokenizers", "pydantic_core", "numpy")
CUE = "what did we decide about the kitchen"
_MODEL_ALONE = """
import json
from iai_mcp.embed import MiniLMEmbedder
MiniLMEmbedder().warmup()
print(json.dumps({k: int(v.split()[0]) for k, _, v in (l.partition(":") for l in open("/proc/self/status"))
                  if k in ("VmHWM", "VmRSS")}))
"""


def _env() -> dict[str, str]:
    src = str(REPO_ROOT / "src")
    path = [src, str(REPO_ROOT), os.environ.get("PYTHONPATH")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}


def wall_ms(argv: list[str], stdin: str = "") -> tuple[float, subprocess.CompletedProcess]:
    start = clock_ms()
    proc = subprocess.run(argv, check=False, input=stdin, capture_output=True, text=True, env=_env(), cwd=REPO_ROOT,
                          timeout=600)
    elapsed = clock_ms() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return elapsed, proc


def cli(store: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "iai_mcp", "--store", str(store), *args]


def stop_daemon(store: Path) -> None:
    wall_ms(cli(store, "daemon", "stop", "--timeout", "120"))


def daemon_info(store: Path) -> dict[str, Any]:
    _, proc = wall_ms(cli(store, "daemon", "status", "--json"))
    return json.loads(proc.stdout)


def p50(samples: list[float]) -> float:
    return round(summarize(samples)["p50"], 1)


def mapped_libs(pid: int) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [lib for lib in HEAVY_LIBS if lib in maps]


def client_modules(store: Path, argv: list[str], stdin: str = "") -> list[str]:
    """The heavy packages a CLI process loads running ``argv`` against the daemon."""
    code = (f"import sys, json\nfrom iai_mcp.cli import main\nimport io, contextlib\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n    main({['--store', str(store), *argv]!r})\n"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    _, proc = wall_ms([sys.executable, "-c", code], stdin)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_cli(store: Path, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {"cold_recall_ms": [], "warm_recall_ms": [], "cold_hook_ms": []}
    recall = cli(store, "recall", CUE, "--json")
    hook = cli(store, "hook", "session-start")
    payload = json.dumps({"session_id": "bench-cold-start", "hook_event_name": "SessionStart"})
    for _ in range(runs):
        stop_daemon(store)
        ms, proc = wall_ms(recall)
        out["cold_recall_ms"].append(round(ms, 1))
        out["hits"] = len(json.loads(proc.stdout)["hits"])
    for _ in range(runs):
        out["warm_recall_ms"].append(round(wall_ms(recall)[0], 1))
    info = daemon_info(store)
    out["daemon_after_cli"] = {**proc_status(info["pid"]), "records": info["records"],
                               "mapped_heavy_libs": mapped_libs(info["pid"])}
    out["client_modules"] = {
        "recall (daemon warm)": client_modules(store, ["recall", CUE, "--json"]),
        "hook session-start": client_modules(store, ["hook", "session-start"], payload),
    }
    for _ in range(runs):
        stop_daemon(store)
        ms, proc = wall_ms(hook, payload)
        out["cold_hook_ms"].append(round(ms, 1))
        out["hook_output_chars"] = len(proc.stdout)
    stop_daemon(store)
    for key in ("cold_recall_ms", "warm_recall_ms", "cold_hook_ms"):
        out[key.replace("_ms", "_p50_ms")] = p50(out[key])
    return out


def model_alone() -> dict[str, int]:
    _, proc = wall_ms([sys.executable, "-c", _MODEL_ALONE])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--records", default=None, help="store size for the CLI and hook runs (default 10k; 500 quick)")
    parser.add_argument("--peak-records", default=None,
                        help="store size for the daemon's peak RSS (default 100k; 500 quick; 0 skips)")
    parser.add_argument("--runs", type=int, default=None, help="cold and warm runs each (default 5; 2 quick)")
    add_corpus_args(parser)
    args = parser.parse_args(argv)
    isolate_key_material()
    runs = args.runs or (2 if args.quick else 5)
    n = parse_sizes(args.records or ("500" if args.quick else "10k"))[0]
    peak_n = parse_sizes(args.peak_records or ("500" if args.quick else "100k"))[0] if args.peak_records != "0" else 0
    corpus = Corpus(args.seed, args.source, args.data)
    run = Run(NAME, args)

    floors = {"python -c pass": [], "python -c 'import lancedb'": []}
    for _ in range(runs):
        floors["python -c pass"].append(wall_ms([sys.executable, "-c", "pass"])[0])
    for _ in range(min(runs, 3)):
        floors["python -c 'import lancedb'"].append(wall_ms([sys.executable, "-c", "import lancedb"])[0])
    floor_ms = {k: p50(v) for k, v in floors.items()}
    model = model_alone()
    print(f"baselines: {floor_ms}, model alone VmHWM {model['VmHWM'] / 1024:.0f} MB, VmRSS {model['VmRSS'] / 1024:.0f} MB")

    with working_copy(build_store(corpus, n, args.cache_dir, embed_pool(args))) as path:
        print(f"[CLI and hook on {n:,} records]")
        paths = measure_cli(path, runs)
    with tempfile.TemporaryDirectory(prefix="iai-bench-empty-") as empty:
        print("[daemon over an empty store]")
        empty_daemon = run_daemon(Path(empty) / "store", args.seed, 20)
        empty_daemon["mapped_heavy_libs"] = "see daemon_after_cli"
    peak = None
    if peak_n:
        with working_copy(build_store(corpus, peak_n, args.cache_dir, embed_pool(args))) as path:
            print(f"[daemon over {peak_n:,} records]")
            peak = run_daemon(path, args.seed, 20)

    mb = lambda kb: round(kb / 1024, 1)
    run.data["config"] = {"records": n, "peak_records": peak_n, "runs": runs, "cue": CUE, "corpus": corpus.tag}
    run.data["baselines"] = {"wall_p50_ms": floor_ms, "wall_ms": floors, "model_alone_kb": model}
    run.data["paths"] = paths
    run.data["empty_daemon"] = empty_daemon
    run.data["peak_daemon"] = peak
    print_table("Wall clock, process start to exit (ms; p50 of runs)", ["path", "p50", "runs"], [
        [f"recall, no daemon, {n:,} records", paths["cold_recall_p50_ms"], str(paths["cold_recall_ms"])],
        [f"recall, daemon warm, {n:,} records", paths["warm_recall_p50_ms"], str(paths["warm_recall_ms"])],
        [f"hook session-start, no daemon, {n:,} records", paths["cold_hook_p50_ms"], str(paths["cold_hook_ms"])],
        *[[f"baseline: {k}", v, str([round(x, 1) for x in floors[k]])] for k, v in floor_ms.items()],
    ])
    rows = [["model alone (baseline)", mb(model["VmHWM"]), mb(model["VmRSS"])],
            ["daemon, empty store, warm", mb(empty_daemon["steady"]["VmHWM"]), mb(empty_daemon["steady"]["VmRSS"])],
            [f"daemon after the CLI runs, {n:,}", mb(paths["daemon_after_cli"]["VmHWM"]),
             mb(paths["daemon_after_cli"]["VmRSS"])]]
    if peak:
        rows.append([f"daemon, {peak_n:,} records", mb(peak["steady"]["VmHWM"]), mb(peak["steady"]["VmRSS"])])
    print_table("RSS (MB)", ["process", "peak VmHWM", "VmRSS"], rows)
    print(f"client modules: {paths['client_modules']}; daemon maps: {paths['daemon_after_cli']['mapped_heavy_libs']}")

    run.add_target(f"iai-mcp recall, no daemon, {n:,} records, p50 of {runs} (ms)", paths["cold_recall_p50_ms"], 1000,
                   unit=" ms")
    run.add_target(f"iai-mcp recall, daemon warm, {n:,} records, p50 of {runs} (ms)", paths["warm_recall_p50_ms"], 150,
                   unit=" ms")
    run.add_target(f"SessionStart hook, no daemon, {n:,} records, p50 of {runs} (ms)", paths["cold_hook_p50_ms"], 1000,
                   unit=" ms")
    run.add_target("daemon VmRSS, empty store, after warm-up (MB)", mb(empty_daemon["steady"]["VmRSS"]), 200, unit=" MB")
    if peak:
        run.add_target(f"daemon peak VmHWM @ {peak_n:,} records (MB)", mb(peak["steady"]["VmHWM"]), 400, unit=" MB")
    pass_ms = floor_ms["python -c pass"]
    lancedb_ms = floor_ms["python -c 'import lancedb'"]
    run.add_ratio("recall, no daemon (p50)", paths["cold_recall_p50_ms"], "python -c 'import lancedb'", lancedb_ms, "ms")
    run.add_ratio("recall, daemon warm (p50)", paths["warm_recall_p50_ms"], "python -c pass", pass_ms, "ms")
    run.add_ratio("hook session-start, no daemon (p50)", paths["cold_hook_p50_ms"], "python -c 'import lancedb'",
                  lancedb_ms, "ms")
    run.add_ratio("daemon VmRSS, empty store", mb(empty_daemon["steady"]["VmRSS"]), "model alone VmRSS",
                  mb(model["VmRSS"]), "MB")
    if peak:
        run.add_ratio(f"daemon peak @ {peak_n:,}", mb(peak["steady"]["VmHWM"]), "model alone VmHWM", mb(model["VmHWM"]),
                      "MB")
    path_out = run.finish()
    return {"path": str(path_out)}


if __name__ == "__main__":
    main()
