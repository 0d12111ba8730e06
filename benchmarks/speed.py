"""Speed of one measurement: in-process ``stenosis.measure`` and the ``stenosis measure`` CLI.

A 512 x 512 x 10 phantom M1 run (``stenosis.phantom``, seed 3, uncompressed) is
written once, then measured from the truth's two reader points:

- in-process, per model (classical, unet): the first call (lazy imports, per-process
  tables) and the median of N further calls, wall time and CPU time of this process
  (``time.process_time``: all threads of the process; on a shared machine the CPU
  time is the fairer number, the wall time includes waiting for a core);
- through the CLI, ``python -m stenosis measure ... --json`` in a fresh process
  (start-up and imports included): wall time and the child's CPU time
  (user + system, ``resource.getrusage``), median of N.

Targets (issue 3, on 2 cores): <= 0.7 s in-process, <= 1.5 s through the CLI.

    python benchmarks/speed.py            # N = 5
    python benchmarks/speed.py --small    # CI: 256 x 256 x 6 run, N = 1, classical only
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def time_in_process(path: Path, truth: dict, model: str, n: int) -> tuple[tuple[float, float], list[float], list[float], float]:
    """(first wall, first cpu), [wall], [cpu], percent stenosis."""
    from stenosis.measurement import measure

    args = (str(path), truth["segment"], tuple(truth["proximal_rc"]), tuple(truth["distal_rc"]))
    walls, cpus = [], []
    first = None
    pct = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(n + 1):
            w0, c0 = time.perf_counter(), time.process_time()
            res = measure(*args, model=model)
            w, c = time.perf_counter() - w0, time.process_time() - c0
            pct = res.percent_stenosis
            if k == 0:
                first = (w, c)
            else:
                walls.append(w)
                cpus.append(c)
    return first, walls, cpus, pct


def time_cli(path: Path, truth: dict, model: str, n: int) -> tuple[list[float], list[float], float]:
    """[wall], [child cpu], percent stenosis of ``python -m stenosis measure --json``."""
    p, d = truth["proximal_rc"], truth["distal_rc"]
    cmd = [sys.executable, "-m", "stenosis", "measure", str(path), "--segment", truth["segment"],
           "--proximal", f"{p[0]},{p[1]}", "--distal", f"{d[0]},{d[1]}", "--model", model, "--json"]
    walls, cpus = [], []
    pct = float("nan")
    env = dict(os.environ)
    for _ in range(n):
        c0 = _child_cpu()
        w0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        walls.append(time.perf_counter() - w0)
        cpus.append(_child_cpu() - c0)
        if out.returncode != 0:
            raise SystemExit(f"CLI failed ({out.returncode}): {out.stderr.strip()[-300:]}")
        pct = json.loads(out.stdout)["percent_stenosis"]
    return walls, cpus, pct


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="CI size: small run, one repeat, classical only")
    ap.add_argument("--n", type=int, default=None, help="repeats (median reported; default 5, small 1)")
    ap.add_argument("--models", default=None, help="comma-separated models (default classical,unet; small classical)")
    args = ap.parse_args(argv)
    n = args.n or (1 if args.small else 5)
    models = (args.models or ("classical" if args.small else "classical,unet")).split(",")
    shape, frames = ((256, 256), 6) if args.small else ((512, 512), 10)

    from stenosis.phantom import PhantomSpec, load_truth, make_phantom

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path, _ = make_phantom(PhantomSpec(seed=3, shape=shape, n_frames=frames, compression="none"), Path(tmp) / "speed.dcm")
        truth = load_truth(path)
        for model in models:
            first, walls, cpus, pct = time_in_process(path, truth, model, n)
            rows.append((f"in-process, first call", model, first[0], first[1], pct, 1))
            rows.append((f"in-process, median of {n}", model, float(np.median(walls)), float(np.median(cpus)), pct, n))
            cw, cc, cpct = time_cli(path, truth, model, n)
            rows.append((f"CLI --json, median of {n}", model, float(np.median(cw)), float(np.median(cc)), cpct, n))

    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"speed of one measurement, {shape[0]}x{shape[1]}x{frames} phantom M1 run (truth {truth['percent_stenosis']:.1f}%), "
          f"{os.cpu_count()} CPUs, load average {load:.1f}")
    print(f"{'what':28s} {'model':10s} {'wall s':>8s} {'CPU s':>8s} {'% sten':>8s}")
    print("-" * 66)
    for what, model, w, c, pct, _ in rows:
        print(f"{what:28s} {model:10s} {w:8.3f} {c:8.3f} {pct:8.2f}")
    print("-" * 66)
    print("targets (2 cores): in-process <= 0.7 s, CLI <= 1.5 s; CPU s = time.process_time "
          "(in-process) or child user+sys (CLI)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
