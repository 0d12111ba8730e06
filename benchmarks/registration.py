"""Mask-to-live registration of native runs: error of the estimated patient motion.

Native phantom runs (stenosis.phantom: anatomical background, quantum noise,
blur, opacified vessels in the live frames only) are rendered with a known
patient translation between mask and live frames (none in half of them). For
each run the translation is estimated on the last contrast frame by

* ``phase-corr``: phase correlation of mask and live (``estimate_shift``), which
  the opacification used until 0.1.0's second session, and
* ``mask-reg``: the opacification's registration (iodine-excluded least squares,
  started from the better of no shift and the phase-correlation shift).

Prints the error (px) and the time per frame.

    python benchmarks/registration.py            # 24 runs
    python benchmarks/registration.py --small    # CI size
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="CI size: a few runs")
    ap.add_argument("--n", type=int, default=None, help="number of runs (default 24, small 4)")
    args = ap.parse_args(argv)
    n = args.n or (4 if args.small else 24)

    sys.path.insert(0, str(REPO / "benchmarks"))
    from accuracy import grid
    from stenosis.opacification import _MaskRegistration, estimate_shift
    from stenosis.phantom import render_phantom

    rng = np.random.default_rng(5)
    specs = [s for s in grid(4 * n, seed=21) if not s.subtracted][:n]
    rows = []
    for k, spec in enumerate(specs):
        motion = (0.0, 0.0) if k % 2 == 0 else tuple(float(v) for v in np.round(rng.uniform(-3, 3, 2), 2))
        spec = dataclasses.replace(spec, motion_px=motion, subtracted=False)
        ph = render_phantom(spec)
        frames = ph.log_intensity.astype(np.float32)
        mask = frames[: spec.n_mask_frames].mean(axis=0)
        live = frames[-1]
        t0 = time.perf_counter()
        pc = estimate_shift(mask, live)
        t1 = time.perf_counter()
        mr = _MaskRegistration(mask, 16.0).shift_to(live)
        t2 = time.perf_counter()
        rows.append({
            "motion": motion, "photons": spec.photons, "shape": spec.shape,
            "pc": float(np.hypot(pc[0] - motion[0], pc[1] - motion[1])),
            "mr": float(np.hypot(mr[0] - motion[0], mr[1] - motion[1])),
            "t_pc": t1 - t0, "t_mr": t2 - t1,
        })
    print(f"mask-to-live registration on {len(rows)} native phantom runs (half without motion, half with up to 3 px)")
    print(f"{'method':11s} {'runs':>5s} {'median err px':>14s} {'90% err px':>11s} {'max err px':>11s} {'s/frame':>8s}")
    print("-" * 64)
    for name, key, tkey in (("phase-corr", "pc", "t_pc"), ("mask-reg", "mr", "t_mr")):
        e = np.array([r[key] for r in rows])
        t = np.array([r[tkey] for r in rows])
        print(f"{name:11s} {len(e):5d} {np.median(e):14.3f} {np.quantile(e, 0.9):11.3f} {e.max():11.3f} {np.median(t):8.3f}")
    still = [r for r in rows if r["motion"] == (0.0, 0.0)]
    if still:
        print(f"runs without motion: phase-corr max {max(r['pc'] for r in still):.2f} px, "
              f"mask-reg max {max(r['mr'] for r in still):.2f} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
