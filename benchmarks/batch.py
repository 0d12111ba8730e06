"""Batch throughput, memory per worker and --auto lesion finding on generated phantom runs.

Prints three tables:

1. runs/min with 1 and 2 worker processes over N points-file runs (512x512x10 frames
   by default), wall clock including worker start-up and steady state (first to last
   finished run);
2. memory per worker: peak RSS, the resident set after the first and the last run,
   and its slope over each worker's second half of runs (MB per 100 runs; the first
   runs fill caches) - flat memory means ~0;
3. --auto: fraction of stenotic phantoms whose automatically found MLD lies within
   3 mm of the true MLD (target >= 90%), with the mean confidence of hits and misses.

Runs are phantoms from :mod:`stenosis.phantom` (a few distinct ones, copied to N
files: throughput does not depend on which vessel is drawn). Usage::

    python benchmarks/batch.py            # N=100 runs, 512x512x10, 20 auto phantoms
    python benchmarks/batch.py --n 300 --auto-n 40
    python benchmarks/batch.py --small    # CI: a handful of tiny runs
    python benchmarks/batch.py --memory 1000 --jobs 1   # memory over many runs only

``--memory N`` replaces the tables above with a memory-over-runs table: N runs
cycling through ``--distinct`` different phantoms (30 by default, so the per-run
caches see new blur values and shapes as in a real batch) on ``--jobs`` workers
that are *not* recycled (``--recycle K`` to replace them every K runs). For each
worker it prints the resident memory held between runs (read when the worker
starts its next run, i.e. after the previous run's clean-up) at every
``--every`` runs, and the slope over the worker's second half of runs.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_work(task, options):
    """measure_one plus the worker's pid and resident memory after the run."""
    from stenosis.batch import measure_one

    before = _rss_mb()  # what the worker holds between runs (after the last run's clean-up)
    t0 = time.perf_counter()
    row = measure_one(task, options)
    row["bench_pid"] = os.getpid()
    row["bench_rss_before_mb"] = before
    row["bench_rss_mb"] = _rss_mb()
    row["bench_s"] = time.perf_counter() - t0
    row["bench_done"] = time.time()
    return row


def make_runs(folder: Path, *, n: int, shape: tuple[int, int], n_frames: int, distinct: int) -> Path:
    from stenosis.phantom.dicom import load_truth, write_phantom
    from stenosis.phantom.engine import render_phantom
    from stenosis.phantom.spec import PhantomSpec

    folder.mkdir(parents=True, exist_ok=True)
    protos = []
    for i in range(distinct):
        spec = PhantomSpec(seed=1000 + i, shape=shape, n_frames=n_frames, stenosis_percent=40.0 + 7 * (i % 7),
                           name=f"proto{i}")
        dcm, _ = write_phantom(render_phantom(spec), folder / f"proto{i}.dcm")
        protos.append((dcm, load_truth(dcm)))
    rows = []
    for k in range(n):
        dcm, truth = protos[k % distinct]
        rel = f"site{k % 4}/run{k:04d}.dcm"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dcm, folder / rel)
        rows.append([rel, "M1", *truth["proximal_rc"], *truth["distal_rc"]])
    for i in range(distinct):
        (folder / f"proto{i}.dcm").unlink()
        (folder / f"proto{i}.truth.json").unlink()
    pts = folder.parent / "points.csv"
    with open(pts, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "segment", "proximal_row", "proximal_col", "distal_row", "distal_col"])
        w.writerows(rows)
    return pts


def throughput(root: Path, pts: Path, out: Path, *, jobs: int, model: str, reports: bool) -> dict:
    from stenosis.batch import read_jsonl, read_points, run_batch

    tasks = read_points(pts, root)
    t0 = time.time()
    s = run_batch(tasks, out, jobs=jobs, timeout=600, model=model, reports=reports, work=bench_work,
                  progress=False, summary_figure=False)
    wall = time.time() - t0
    rows = read_jsonl(out / "results.jsonl")
    done = sorted(r["bench_done"] for r in rows if "bench_done" in r)
    steady = (len(done) - 1) / (done[-1] - done[0]) * 60 if len(done) > 2 and done[-1] > done[0] else float("nan")
    per_pid: dict[int, list[tuple[float, float]]] = {}
    for r in rows:
        if "bench_pid" in r:
            per_pid.setdefault(r["bench_pid"], []).append((r["bench_done"], r["bench_rss_before_mb"]))
    slopes, first, last = [], [], []
    for seq in per_pid.values():
        rss = np.array([v for _, v in sorted(seq)])
        first.append(rss[0])
        last.append(rss[-1])
        if len(rss) >= 8:  # second half only: the first runs fill caches (chord tables, allocator)
            h = len(rss) // 2
            slopes.append(float(np.polyfit(np.arange(h, len(rss)), rss[h:], 1)[0]) * 100)
    return {
        "jobs": jobs,
        "runs": s.n_total,
        "ok": s.n_ok,
        "wall_s": wall,
        "runs_per_min": s.n_total / wall * 60,
        "steady_per_min": steady,
        "peak_rss_mb": max(s.peak_rss_mb_per_worker.values()) if s.peak_rss_mb_per_worker else float("nan"),
        "n_workers": len(per_pid),
        "rss_growth_mb_per_100": max(slopes) if slopes else float("nan"),
        "rss_first_mb": float(np.mean(first)) if first else float("nan"),
        "rss_last_mb": float(np.mean(last)) if last else float("nan"),
        "mean_run_s": float(np.mean([r["bench_s"] for r in rows if "bench_s" in r])),
        "csv": (out / "results.csv").read_bytes(),
    }


def auto_rate(folder: Path, *, n: int, shape: tuple[int, int], n_frames: int, model: str) -> dict:
    from stenosis.auto import find_lesion
    from stenosis.io import read_run
    from stenosis.phantom.dicom import write_phantom
    from stenosis.phantom.engine import render_phantom
    from stenosis.phantom.spec import PhantomSpec

    rng = np.random.default_rng(7)
    dists, confs, oriented = [], [], []
    mm = 0.2
    for i in range(n):
        spec = PhantomSpec(
            seed=5000 + i, shape=shape, n_frames=n_frames, mm_per_px=(mm, mm),
            stenosis_percent=float(rng.uniform(50, 85)), taper=float(rng.choice([0.0, 0.2, 0.3])),
            curvature=float(rng.uniform(0.2, 0.9)), n_branches=int(rng.integers(0, 4)),
            crossing=bool(rng.random() < 0.5), name=f"auto{i}",
        )
        ph = render_phantom(spec)
        dcm, _ = write_phantom(ph, folder / f"auto{i}.dcm")
        truth = ph.truth
        try:
            les = find_lesion(read_run(dcm), model=model)
        except Exception as exc:  # a miss, honestly counted
            print(f"  auto{i}: {type(exc).__name__}: {exc}", file=sys.stderr)
            dists.append(np.inf)
            confs.append(0.0)
            oriented.append(False)
            continue
        dists.append(float(np.hypot(*np.subtract(les.narrowest, truth["mld_rc"])) * mm))
        confs.append(les.confidence)
        oriented.append(
            np.hypot(*np.subtract(les.proximal, truth["proximal_rc"]))
            < np.hypot(*np.subtract(les.distal, truth["proximal_rc"]))
        )
    d = np.array(dists)
    c = np.array(confs)
    hit = d <= 3.0
    return {
        "n": n,
        "hit_rate": float(hit.mean()),
        "median_mm": float(np.median(d)),
        "conf_hit": float(c[hit].mean()) if hit.any() else float("nan"),
        "conf_miss": float(c[~hit].mean()) if (~hit).any() else float("nan"),
        "proximal_side_right": float(np.mean(oriented)),
    }


def _slope_per_100(rss: np.ndarray) -> float:
    """Least-squares RSS slope over the second half of a worker's runs, MB per 100 runs."""
    if len(rss) < 8:
        return float("nan")
    h = len(rss) // 2
    return float(np.polyfit(np.arange(h, len(rss)), rss[h:], 1)[0]) * 100


def memory_over_runs(args) -> None:
    """Memory held by each batch worker over many runs, with checkpoints and the slope."""
    from stenosis.batch import DEFAULT_MAX_TASKS_PER_CHILD, read_jsonl, read_points, run_batch

    if args.small:
        n, shape, frames, distinct, every = args.memory, (192, 192), 6, min(args.distinct, 4), max(1, args.every)
    else:
        n, shape, frames, distinct, every = args.memory, (512, 512), 10, args.distinct, args.every
    recycle = args.recycle if args.recycle > 0 else n + 1
    with tempfile.TemporaryDirectory(prefix="stenosis-bench-memory-") as tmp:
        tmp = Path(tmp)
        t0 = time.time()
        pts = make_runs(tmp / "runs", n=n, shape=shape, n_frames=frames, distinct=distinct)
        gen_s = time.time() - t0
        t0 = time.time()
        s = run_batch(read_points(pts, tmp / "runs"), tmp / "out", jobs=args.jobs, timeout=600, model=args.model,
                      reports=not args.no_reports, work=bench_work, progress=False, summary_figure=False,
                      max_tasks_per_child=recycle)
        wall = time.time() - t0
        rows = [r for r in read_jsonl(tmp / "out" / "results.jsonl") if "bench_pid" in r]
    per_pid: dict[int, list[dict]] = {}
    for r in rows:
        per_pid.setdefault(r["bench_pid"], []).append(r)
    replaced = "never replaced" if args.recycle <= 0 else f"replaced every {args.recycle} runs"
    print(f"batch memory over runs: {n} runs of {shape[0]}x{shape[1]}x{frames} cycling through {distinct} "
          f"phantoms, model={args.model}, reports={'off' if args.no_reports else 'on'}, jobs={args.jobs}, "
          f"workers {replaced} (library default {DEFAULT_MAX_TASKS_PER_CHILD}); {s.n_ok}/{s.n_total} ok, "
          f"{n / wall * 60:.1f} runs/min (generation {gen_s:.0f} s)")
    print("RSS MB held between runs, per worker, after k runs:")
    slopes = []
    for w, (pid, seq) in enumerate(sorted(per_pid.items(), key=lambda kv: min(r["bench_done"] for r in kv[1]))):
        seq.sort(key=lambda r: r["bench_done"])
        # held after run k = read at the start of run k+1; the last run's "after" closes the series
        held = np.array([r["bench_rss_before_mb"] for r in seq[1:]] + [seq[-1]["bench_rss_mb"]])
        ks = list(range(every, len(held) + 1, every)) or [len(held)]
        if ks[-1] != len(held):
            ks.append(len(held))
        slope = _slope_per_100(held)
        slopes.append(slope)
        head = f"  worker {w} (pid {pid}): start {seq[0]['bench_rss_before_mb']:.0f}"
        print(head + "".join(f" | {k}: {held[k - 1]:.0f}" for k in ks))
        print(f"    runs {len(held)}, peak {max(held.max(), max(r['bench_rss_mb'] for r in seq)):.0f} MB, "
              f"slope over runs {len(held) // 2 + 1}-{len(held)}: {slope:+.1f} MB/100 runs")
    worst = max((abs(v) for v in slopes if np.isfinite(v)), default=float("nan"))
    verdict = "n/a (too few runs per worker)" if not np.isfinite(worst) else ("yes" if worst < 5 else "NO")
    print(f"memory flat (|slope| < 5 MB per 100 runs in the second half): {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="CI size: a handful of tiny runs")
    ap.add_argument("--n", type=int, default=100, help="runs for the throughput table")
    ap.add_argument("--auto-n", type=int, default=20, help="phantoms for the --auto table")
    ap.add_argument("--model", default="unet", choices=["unet", "classical"])
    ap.add_argument("--no-reports", action="store_true", help="skip the per-run PNG reports")
    ap.add_argument("--memory", type=int, default=0, metavar="N",
                    help="only the memory-over-runs table, over N runs (e.g. 1000)")
    ap.add_argument("--jobs", type=int, default=1, help="--memory: worker processes")
    ap.add_argument("--distinct", type=int, default=30, help="--memory: distinct phantoms cycled through")
    ap.add_argument("--every", type=int, default=100, help="--memory: checkpoint every this many runs per worker")
    ap.add_argument("--recycle", type=int, default=0,
                    help="--memory: replace workers every K runs (default 0: never, to see any growth)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    if args.memory:
        memory_over_runs(args)
        return
    if args.small:
        n, shape, frames, auto_n, distinct = 4, (192, 192), 6, 2, 2
    else:
        n, shape, frames, auto_n, distinct = args.n, (512, 512), 10, args.auto_n, 6
    with tempfile.TemporaryDirectory(prefix="stenosis-bench-batch-") as tmp:
        tmp = Path(tmp)
        t0 = time.time()
        pts = make_runs(tmp / "runs", n=n, shape=shape, n_frames=frames, distinct=distinct)
        gen_s = time.time() - t0
        results = [
            throughput(tmp / "runs", pts, tmp / f"out{j}", jobs=j, model=args.model, reports=not args.no_reports)
            for j in (1, 2)
        ]
        identical = results[0]["csv"] == results[1]["csv"]
        print(f"batch throughput: {n} runs of {shape[0]}x{shape[1]}x{frames}, model={args.model}, "
              f"reports={'off' if args.no_reports else 'on'}, {os.cpu_count()} CPUs "
              f"(generation {gen_s:.0f} s)")
        print(f"{'jobs':>4} {'runs':>5} {'ok':>4} {'wall s':>8} {'runs/min':>9} {'steady/min':>10} "
              f"{'s/run/worker':>12} {'workers':>7} {'peak RSS MB':>11} {'RSS 1st->last':>13} {'MB/100 runs (2nd half)':>22}")
        for r in results:
            print(f"{r['jobs']:>4} {r['runs']:>5} {r['ok']:>4} {r['wall_s']:>8.1f} {r['runs_per_min']:>9.1f} "
                  f"{r['steady_per_min']:>10.1f} {r['mean_run_s']:>12.2f} {r['n_workers']:>7} "
                  f"{r['peak_rss_mb']:>11.0f} {r['rss_first_mb']:>6.0f}->{r['rss_last_mb']:<6.0f} "
                  f"{r['rss_growth_mb_per_100']:>22.1f}")
        growth = max(abs(r["rss_growth_mb_per_100"]) for r in results)
        flat = "n/a (too few runs per worker)" if not np.isfinite(growth) else ("yes" if growth < 5 else "NO")
        # RSS is read when a worker starts its next run (after the previous run's clean-up);
        # a few dozen runs per worker give a noisy slope: --memory 1000 measures it properly
        print(f"results.csv identical for --jobs 1 and --jobs 2: {'yes' if identical else 'NO'}; "
              f"memory flat (< 5 MB per 100 runs): {flat}")
        print()
        a = auto_rate(tmp / "auto", n=auto_n, shape=shape, n_frames=frames, model=args.model)
        print(f"--auto lesion finding on {a['n']} stenotic phantoms ({shape[0]}x{shape[1]}, 50-85%)")
        print(f"{'MLD within 3 mm':>16} {'median dist mm':>15} {'conf hits':>10} {'conf misses':>12} {'proximal side right':>20}")
        print(f"{a['hit_rate']:>16.0%} {a['median_mm']:>15.2f} {a['conf_hit']:>10.2f} {a['conf_miss']:>12.2f} "
              f"{a['proximal_side_right']:>20.0%}")


if __name__ == "__main__":
    main()
