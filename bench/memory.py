"""Memory: peak and steady RSS of a server process holding 10k and 100k records.

The process measured is the store's daemon when ``iai_mcp.daemon`` exists:
``python -m iai_mcp --store <copy> daemon run`` started per size, recalls sent
through ``DaemonClient``, and its ``VmHWM`` (peak) and ``VmRSS`` read from
``/proc/<pid>/status`` once it listens, once the model is warm, after the
recalls, one second later, and once the daemon has been quiet long enough for
its quiet housekeeping (``Daemon._when_quiet``: a heap trim; steady). Without the daemon (``--process
inproc``), a child process (``python -m bench.memory --child``) does what a
server does: ``backend.open_store``, the real embedder, recalls through
``core.dispatch``, then reads its own status (steady after ``gc.collect()``).

Baseline measured in the same run: the same child with an empty store (the
interpreter, numpy, LanceDB, onnxruntime and the loaded model), so the ratio
table shows what the records themselves cost. The raw data figure is what the
records are as bytes: 384 float32 per vector plus the UTF-8 text.
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    REPO_ROOT, Run, base_parser, clock_ms, isolate_key_material, parse_sizes, print_table,
)
from bench.corpus import Corpus, add_corpus_args, build_store, embed_pool, working_copy

NAME = "memory"


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmHWM and VmRSS of a process (this one by default), in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


def child(path: Path, seed: int, recalls: int) -> dict[str, Any]:
    from iai_mcp import backend
    from iai_mcp.core import dispatch
    from iai_mcp.embed import MiniLMEmbedder

    report: dict[str, Any] = {"start": proc_status()}
    start = clock_ms()
    store = backend.open_store(path)
    report["open_ms"] = round(clock_ms() - start, 1)
    report["records"] = len(store)
    report["after_open"] = proc_status()
    embedder = MiniLMEmbedder()
    store.bind_embedder(embedder)
    embedder.warmup()  # a server loads the model at start; an empty store never would
    report["after_model"] = proc_status()
    corpus = Corpus(seed)
    cues = corpus.cues(recalls, among=max(len(store), 1), salt="memory") if len(store) else \
        [f"what happened on day {i}" for i in range(recalls)]
    for cue in cues:
        dispatch(store, "memory_recall", {"cue": cue, "k": 10})
    report["after_recalls"] = proc_status()
    store._provenance_queue and store._provenance_queue.flush(timeout=60)
    gc.collect()
    report["steady"] = proc_status()
    store.close()
    return report


def daemon_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("iai_mcp.daemon") is not None


def run_daemon(path: Path, seed: int, recalls: int, ready_timeout: float = 600.0) -> dict[str, Any]:
    """Start ``python -m iai_mcp daemon run`` on the store, recall through its
    client, and read the daemon's own /proc status."""
    import signal
    import time

    from iai_mcp.daemon import wire
    from iai_mcp.daemon.client import DaemonClient
    from iai_mcp.daemon.service import COMPACT_CHECK_S as CHECK_S
    from iai_mcp.daemon.service import COMPACT_QUIET_S as QUIET_S
    from iai_mcp.errors import IaiError

    path.mkdir(parents=True, exist_ok=True)
    root = wire.canonical_root(path)
    log_path = path.parent / "daemon.stderr"
    start = clock_ms()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "iai_mcp", "--store", str(root), "daemon", "run", "--idle-timeout", "3600"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, cwd=REPO_ROOT,
        )
    client = DaemonClient(root, autostart=False, request_timeout=300.0)
    report: dict[str, Any] = {"pid": proc.pid}
    try:
        deadline = time.monotonic() + ready_timeout
        info = None
        while time.monotonic() < deadline:  # bounded: the daemon opens the store, then warms the model
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                info = client.call(wire.PING)
            except IaiError:
                info = None
            if info is not None and "listening_ms" not in report:
                report["listening_ms"] = round(clock_ms() - start, 1)
                report["after_open"] = proc_status(proc.pid)
            if info is not None and info.get("embedder_ready"):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"daemon not ready within {ready_timeout} s")
        report["open_ms"] = report["listening_ms"]
        report["ready_ms"] = round(clock_ms() - start, 1)
        report["records"] = info["records"]
        report["after_model"] = proc_status(proc.pid)
        corpus = Corpus(seed)
        cues = corpus.cues(recalls, among=max(info["records"], 1), salt="memory") if info["records"] else \
            [f"what happened on day {i}" for i in range(recalls)]
        for cue in cues:
            client.call("memory_recall", {"cue": cue, "k": 10})
        report["after_recalls"] = proc_status(proc.pid)
        time.sleep(1.0)  # let the provenance queue drain
        report["after_1s"] = proc_status(proc.pid)
        # Steady: once the daemon has been quiet long enough for its quiet
        # housekeeping (Daemon._when_quiet: a due compaction, a heap trim).
        time.sleep(QUIET_S + 2 * CHECK_S)
        report["steady"] = proc_status(proc.pid)
    finally:
        client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
    report["exit_code"] = proc.returncode
    return report


def run_child(path: Path, seed: int, recalls: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--child", str(path), "--seed", str(seed),
         "--recalls", str(recalls)],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--sizes", default=None, help="store sizes (default 10k,100k; 500 quick)")
    parser.add_argument("--recalls", type=int, default=None, help="recalls per process (default 200; 10 quick)")
    parser.add_argument("--process", choices=("auto", "daemon", "inproc"), default="auto",
                        help="measure the iai_mcp.daemon process, or a plain process that opens the store "
                             "itself (auto: the daemon when the module exists)")
    parser.add_argument("--child", type=Path, default=None, help=argparse_hidden())
    add_corpus_args(parser)
    args = parser.parse_args(argv)
    isolate_key_material()
    recalls = args.recalls or (10 if args.quick else 200)
    if args.child is not None:
        print(json.dumps(child(args.child, args.seed, recalls)))
        return {}
    sizes = parse_sizes(args.sizes or ("500" if args.quick else "10k,100k"))
    corpus = Corpus(args.seed, args.source, args.data)
    run = Run(NAME, args)
    daemon = daemon_available()
    use_daemon = args.process == "daemon" or (args.process == "auto" and daemon)
    measure = run_daemon if use_daemon else run_child
    with tempfile.TemporaryDirectory(prefix="iai-bench-empty-") as empty:
        floor = measure(Path(empty) / "store", args.seed, recalls)
    results = []
    for n in sizes:
        print(f"[{n:,} records]")
        root = build_store(corpus, n, args.cache_dir, embed_pool(args))
        texts = corpus.texts(n)
        with working_copy(root) as path:
            report = measure(path, args.seed, recalls)
        report["raw_data_bytes"] = n * 384 * 4 + sum(len(t.encode("utf-8")) for t in texts)
        results.append(report)
    run.data["config"] = {"sizes": sizes, "recalls": recalls, "corpus": corpus.tag,
                          "process": ("python -m iai_mcp daemon run (recalls through DaemonClient)" if use_daemon
                                      else "bench.memory child (backend.open_store + core.dispatch)"),
                          "daemon_module_present": daemon}
    run.data["empty_store"] = floor
    run.data["sizes"] = results
    mb = lambda kb: round(kb / 1024, 1)  # noqa: E731
    rows = [["empty store + model (baseline)", 0, floor["open_ms"], mb(floor["after_open"]["VmRSS"]),
             mb(floor["steady"]["VmHWM"]), mb(floor["steady"]["VmRSS"]), "-"]]
    rows += [[f"{r['records']:,} records", r["records"], r["open_ms"], mb(r["after_open"]["VmRSS"]),
              mb(r["steady"]["VmHWM"]), mb(r["steady"]["VmRSS"]), mb(r["raw_data_bytes"] / 1024)]
             for r in results]
    print_table("Server process memory (MB)",
                ["process", "records", "open ms", "RSS after open", "peak (VmHWM)", "steady RSS", "raw data"], rows)
    for r in results:
        n = r["records"]
        run.add_ratio(f"peak RSS @ {n:,}", mb(r["steady"]["VmHWM"]), "empty store + model, peak",
                      mb(floor["steady"]["VmHWM"]), "MB")
        run.add_ratio(f"steady RSS above empty @ {n:,}", mb(r["steady"]["VmRSS"] - floor["steady"]["VmRSS"]),
                      "raw data (vectors + text)", mb(r["raw_data_bytes"] / 1024), "MB")
        if n == 100_000:
            run.add_target("peak RSS @ 100,000 records (MB)", mb(r["steady"]["VmHWM"]), 400, unit=" MB")
            run.add_target("steady RSS @ 100,000 records (MB)", mb(r["steady"]["VmRSS"]), 400, unit=" MB")
    run.finish()
    return run.data


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
