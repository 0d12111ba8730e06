"""Measuring on every opacified frame against one frame: accuracy by dose, repeatability, speed.

The accuracy grid of ``benchmarks/accuracy.py`` (phantom runs with two mask frames, two
arrival frames and the plateau; seed 7) is measured twice through ``stenosis.measure``:
``frames="single"`` (the analysed frame only) and ``frames="all"`` (every frame of the
arterial phase, holding at least half the bolus along the segment, combined per sample before WASID).
Prints percent-stenosis MAE by dose (photons per pixel), errors within 2 SD, the frame-to-
frame SD of the per-frame readings against the per-frame errors, and the time of a 10-frame
512 x 512 run measured on one frame and on all of them.

    python benchmarks/frames.py            # 48 runs (about a minute)
    python benchmarks/frames.py --small    # CI size
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: keyword arguments of every stenosis.measure call (``--param``)
MEASURE_KW: dict = {}
for p in (REPO, REPO / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def measure_both(spec, tmp: Path) -> dict:
    import stenosis
    from stenosis.phantom import load_truth, make_phantom

    dcm, _ = make_phantom(spec, tmp / f"{spec.name}.dcm")
    t = load_truth(dcm)
    run = stenosis.read_run(dcm)
    out = {"name": spec.name, "photons": spec.photons, "true": t["percent_stenosis"]}
    for mode in ("single", "all"):
        r = stenosis.measure(run, t["segment"], tuple(t["proximal_rc"]), tuple(t["distal_rc"]), frames=mode, **MEASURE_KW)
        out[mode] = (r.percent_stenosis, r.percent_stenosis_sd)
        if mode == "all":
            out["n_frames"] = len(r.frames["used"])
            out["frame_sd"] = r.frames["frame_to_frame_sd"]
            out["per_frame"] = [f["percent_stenosis"] for f in r.frames["per_frame"]]
    return out


def speed(tmp: Path, repeat: int) -> tuple[float, float, int]:
    import stenosis
    from stenosis.phantom import PhantomSpec, load_truth, make_phantom

    spec = PhantomSpec(seed=5, segment="M1", normal_diameter_mm=2.8, stenosis_percent=60, stenosis_length_mm=5,
                       shape=(512, 512), mm_per_px=(0.15, 0.15), n_frames=10, photons=5000.0, name="speed10")
    dcm, _ = make_phantom(spec, tmp / "speed10.dcm")
    t = load_truth(dcm)
    run = stenosis.read_run(dcm)
    times = {"single": [], "all": []}
    n = 0
    for _ in range(repeat + 1):  # the first pass warms the caches
        for mode in times:
            t0 = time.perf_counter()
            r = stenosis.measure(run, "M1", tuple(t["proximal_rc"]), tuple(t["distal_rc"]), frames=mode, **MEASURE_KW)
            times[mode].append(time.perf_counter() - t0)
            n = max(n, len(r.frames["used"]))
    return float(np.median(times["single"][1:])), float(np.median(times["all"][1:])), n


def main(argv=None) -> int:
    from accuracy import grid

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="CI size: 4 runs, one timing")
    ap.add_argument("--n", type=int, default=None, help="phantom runs (default 48)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--param", action="append", metavar="NAME=VALUE",
                    help="measure with this MeasureParams field changed (repeatable; tuples as a:b)")
    args = ap.parse_args(argv)
    from _common import measure_kwargs

    MEASURE_KW.update(measure_kwargs(args.param))
    n = args.n or (4 if args.small else 48)
    warnings.simplefilter("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for spec in grid(n, seed=args.seed):
            rows.append(measure_both(spec, tmp))
        t_single, t_all, n_frames = speed(tmp, 1 if args.small else 5)
    true = np.array([r["true"] for r in rows])
    print(f"single frame vs all opacified frames, {len(rows)} phantom runs (accuracy design, seed {args.seed})")
    print(f"{'dose (photons/px)':<20}{'n':>4}{'MAE single':>12}{'MAE all':>10}{'change':>9}{'2SD single':>12}{'2SD all':>9}")
    doses = sorted({r["photons"] for r in rows})
    for label, sel in [(f"{d:g}", np.array([r["photons"] == d for r in rows])) for d in doses] + [("all", np.ones(len(rows), bool))]:
        e1 = np.array([r["single"][0] for r in rows])[sel] - true[sel]
        e2 = np.array([r["all"][0] for r in rows])[sel] - true[sel]
        s1 = np.array([r["single"][1] for r in rows])[sel]
        s2 = np.array([r["all"][1] for r in rows])[sel]
        m1, m2 = np.abs(e1).mean(), np.abs(e2).mean()
        print(f"{label:<20}{sel.sum():>4}{m1:>12.3f}{m2:>10.3f}{100 * (m2 / m1 - 1):>8.0f}%"
              f"{100 * np.mean(np.abs(e1) <= 2 * s1):>11.0f}%{100 * np.mean(np.abs(e2) <= 2 * s2):>8.0f}%")
    fs = [r["frame_sd"] for r in rows if r["frame_sd"] is not None]
    err_sd = [float(np.std(np.array(r["per_frame"]) - r["true"], ddof=1)) for r in rows if len(r["per_frame"]) >= 3]
    err_rms = [float(np.sqrt(np.mean((np.array(r["per_frame"]) - r["true"]) ** 2))) for r in rows if len(r["per_frame"]) >= 3]
    print(f"frames combined per run: median {np.median([r['n_frames'] for r in rows]):.0f}")
    if fs:
        print(f"frame-to-frame SD of the per-frame readings: median {np.median(fs):.2f} points; the per-frame errors' "
              f"RMS {np.median(err_rms):.2f} (their SD about the run's common error {np.median(err_sd):.2f}: the frame SD "
              "measures precision, not the error all frames share)")
    print(f"speed, 10-frame 512x512 run: single {t_single:.2f} s, all {n_frames} frames {t_all:.2f} s "
          f"({t_all / t_single:.1f}x; this machine, now)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
