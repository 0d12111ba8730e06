"""Fuzz ``read_run`` and ``measure`` with mutated small runs; print a table.

Every input is a deterministic mutation of a tiny valid seed run (see
``tests/hostile.py``: byte flips, interesting integers, truncation, chunk edits,
hostile header values, calibration tags (PixelSpacing, ImagerPixelSpacing, SOD/SID,
magnification: extreme, zero, negative, NaN, SOD > SID) and BitsStored (values above
it, above BitsAllocated, zero)). A run that reads must keep its contract (calibration
inside the plausible range, values inside BitsStored). Inputs run in a child process (native decoder aborts are
findings, not the end of the run) with a per-input deadline. Counted:

* ``declared``: the input was refused with :class:`stenosis.StenosisError` (fine);
* ``crashes``: any other exception, a broken contract, or the child dying (signal);
* ``hangs``: no answer within ``--timeout`` seconds;
* ``peak RSS MB``: the largest peak resident memory of a child process.

Targets: 0 crashes and 0 hangs. Exit status 1 when either is non-zero.

Usage::

    python benchmarks/fuzz.py                 # 10,000 read_run inputs + 300 measure inputs
    python benchmarks/fuzz.py --small         # a few hundred read_run + 20 measure inputs, for CI
    python benchmarks/fuzz.py --n 100000 --save crashes/   # keep crashing inputs

Reproduce input ``i``: ``hostile.fuzz_input(seeds, base_seed, i)`` with the seed
corpus written by ``hostile.seed_corpus`` (the table prints the base seed).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import hostile  # noqa: E402

#: Address-space limit of the read_run child: a runaway allocation becomes MemoryError.
READ_MEM_LIMIT_MB = 6000


@dataclass
class FuzzReport:
    """Outcome of one fuzzing campaign on one target (``read_run`` or ``measure``)."""

    target: str
    inputs: int = 0
    ok: int = 0
    declared: int = 0
    crashes: int = 0
    hangs: int = 0
    seconds: float = 0.0
    restarts: int = 0
    peak_rss_mb: float = 0.0  # largest peak resident set of a child process
    failures: list[dict] = field(default_factory=list)  # first crash/hang of each signature
    mutations: Counter = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds > 0 else 0.0

    def signatures(self) -> Counter:
        return Counter(f["signature"] for f in self.failures)


def _signature(r: dict) -> str:
    if r["status"] == "hang":
        return "hang"
    return f"{r.get('type')} at {r.get('where') or r.get('message', '')[:80]}"


def fuzz_target(
    target: str,
    *,
    n: int,
    seeds_dir: Path,
    base_seed: int = 0,
    timeout_s: float = 10.0,
    budget_s: float | None = None,
    measure_seeds: list[dict] | None = None,
    save_dir: Path | None = None,
    workers: int = 1,
) -> FuzzReport:
    """Run ``n`` fuzzed inputs (or until ``budget_s``) through ``target`` ('read' or 'measure').

    ``workers`` child processes share the inputs (input i goes to child i mod workers), so
    the numbering, and each input, do not depend on the number of workers."""
    op = {"read": "fuzz_read", "measure": "fuzz_measure"}[target]
    rep = FuzzReport("read_run" if target == "read" else "measure")
    setup = {"seeds_dir": str(seeds_dir), "base_seed": base_seed, "measure_seeds": measure_seeds or [],
             "warm_measure": target == "measure"}
    seeds = [p.read_bytes() for p in sorted(seeds_dir.glob("*.dcm"))]
    lock = threading.Lock()
    started = threading.Event()
    clock = {"t0": time.perf_counter()}

    def record(i: int, r: dict) -> None:
        with lock:
            rep.inputs += 1
            rep.mutations[r.get("mutation", "?").split("+")[0].split("/")[0]] += 1
            rep.peak_rss_mb = max(rep.peak_rss_mb, float(r.get("rss_mb") or 0.0))
            status = r["status"]
            if status == "ok":
                rep.ok += 1
            elif status == "error":
                rep.declared += 1
            else:
                if status == "hang":
                    rep.hangs += 1
                else:
                    rep.crashes += 1
                rep.failures.append({"i": i, "signature": _signature(r), "status": status, "type": r.get("type"),
                                     "message": str(r.get("message", ""))[:300], "where": r.get("where", ""),
                                     "traceback": r.get("traceback", "")})
                if save_dir is not None and target == "read":
                    save_dir.mkdir(parents=True, exist_ok=True)
                    data, _how, _k = hostile.fuzz_input(seeds, base_seed, i)
                    (save_dir / f"{status}-{i:07d}.dcm").write_bytes(data)

    def drive(w: int, ready: threading.Barrier) -> int:
        with hostile.IsolatedWorker(timeout_s=timeout_s, setup=setup,
                                    mem_limit_mb=READ_MEM_LIMIT_MB if target == "read" else None) as worker:
            worker.call({"op": "setup", **setup})  # start (and warm) the child before the clock runs
            ready.wait()
            for i in range(w, n, workers):
                if budget_s is not None and time.perf_counter() - clock["t0"] > budget_s:
                    break
                record(i, worker.call({"op": op, "i": i}))
            return max(0, worker.restarts - 1)

    ready = threading.Barrier(workers, action=lambda: clock.update(t0=time.perf_counter()))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        restarts = list(pool.map(lambda w: drive(w, ready), range(workers)))
    rep.seconds = time.perf_counter() - clock["t0"]
    rep.restarts = sum(restarts)
    rep.failures.sort(key=lambda f: f["i"])
    return rep


def measure_seed_specs(folder: Path) -> list[dict]:
    """Valid runs with known points for measure fuzzing: synthetic tubes (calibrated and not)."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = []
    for k, kw in enumerate([{"pixel_spacing": (0.1, 0.1)}, {"imager_pixel_spacing": None}, {}]):
        frames = hostile.tube_frames(40, 56, 3, diameter_px=7.0, stenosis=0.5, noise=20.0, seed=k)
        path = hostile.write_xa(folder / f"measure_seed{k}.dcm", frames, **kw)
        specs.append({"path": str(path), "segment": "M1", "proximal": [19.5, 4.0], "distal": [19.5, 51.0]})
    return specs


def _table(reports: list[FuzzReport]) -> str:
    head = (f"{'target':<9} {'inputs':>7} {'ok':>6} {'declared':>8} {'crashes':>7} {'hangs':>5} {'inputs/s':>8} "
            f"{'seconds':>7} {'restarts':>8} {'peak RSS MB':>11}")
    lines = [head, "-" * len(head)]
    for r in reports:
        lines.append(f"{r.target:<9} {r.inputs:>7} {r.ok:>6} {r.declared:>8} {r.crashes:>7} {r.hangs:>5} "
                     f"{r.rate:>8.1f} {r.seconds:>7.1f} {r.restarts:>8} {r.peak_rss_mb:>11.0f}")
    return "\n".join(lines)


def _mutation_table(reports: list[FuzzReport]) -> str:
    """Inputs per first mutation (calibration and bits are the header mutations of #19)."""
    return "\n".join(f"{r.target:<9} mutations: " + ", ".join(f"{k} {v}" for k, v in sorted(r.mutations.items()))
                     for r in reports)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="CI size: 300 read_run inputs, 20 measure inputs")
    ap.add_argument("--n", type=int, default=None, help="read_run inputs (default 10000)")
    ap.add_argument("--n-measure", type=int, default=None, help="measure inputs (default 300)")
    ap.add_argument("--budget", type=float, default=None, help="stop the read_run campaign after this many seconds")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-input deadline for read_run (s)")
    ap.add_argument("--measure-timeout", type=float, default=120.0, help="per-input deadline for measure (s)")
    ap.add_argument("--seed", type=int, default=0, help="base seed of the mutations")
    ap.add_argument("--save", type=Path, default=None, help="write crashing/hanging inputs here")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                    help="child processes for read_run (default: min(2, CPUs))")
    args = ap.parse_args(argv)
    n = args.n if args.n is not None else (300 if args.small else 10_000)
    n_measure = args.n_measure if args.n_measure is not None else (20 if args.small else 300)

    reports = []
    with tempfile.TemporaryDirectory(prefix="stenosis-fuzz-seeds-") as tmp:
        seeds_dir = Path(tmp) / "seeds"
        hostile.seed_corpus(seeds_dir)
        reports.append(fuzz_target("read", n=n, seeds_dir=seeds_dir, base_seed=args.seed, timeout_s=args.timeout,
                                   budget_s=args.budget, save_dir=args.save, workers=max(1, args.workers)))
        has_measure = importlib.util.find_spec("stenosis.measurement") is not None
        if n_measure and has_measure:
            specs = measure_seed_specs(Path(tmp) / "measure")
            reports.append(fuzz_target("measure", n=n_measure, seeds_dir=seeds_dir, base_seed=args.seed,
                                       timeout_s=args.measure_timeout, measure_seeds=specs))
        n_seeds = len(list(seeds_dir.glob("*.dcm")))
    print(f"fuzzing stenosis: {n_seeds} seed runs, base seed {args.seed}, per-input timeout {args.timeout:g} s, "
          f"{max(1, args.workers)} read_run workers")
    print(_table(reports))
    print(_mutation_table(reports))
    if n_measure and not has_measure:
        print("measure: skipped (stenosis.measure not written yet)")
    bad = False
    for rep in reports:
        if rep.crashes or rep.hangs:
            bad = True
            print(f"\n{rep.target}: {rep.crashes} crashes, {rep.hangs} hangs; signatures (count, first input):")
            firsts: dict[str, int] = {}
            for f in rep.failures:
                firsts.setdefault(f["signature"], f["i"])
            for sig, count in rep.signatures().most_common(20):
                print(f"  {count:>5}  input {firsts[sig]:>6}  {sig}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
