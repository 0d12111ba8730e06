"""Accuracy on straight arteries of a second, deliberately different renderer, swept over its design.

The renderer is the one of ``tests/test_independent_renderer.py`` (not ``stenosis.phantom``): a
Gaussian-shaped narrowing (SD 1.5 mm), a Gaussian or a uniform-disk blur of the path length, 4x4
supersampled pixels, additive Gaussian noise on 10-bit frames with an explicit mask frame, a random
angle. The sweep crosses pixel size (0.15, 0.3 mm), diameter (2.0, 3.5 mm), stenosis (30, 50, 70,
85%), blur kind, blur size (0.15, 0.3 mm) and eccentricity (0, 1): 128 runs. Without noise
(``--noise 0``, the default) an error is the method's own, not the noise's: this sweep found the
coarse blur grid's bias and the tight lesion's over-corrected bottom (``docs/tuning.md``, session 24).

    python benchmarks/independent.py               # 128 runs, no noise
    python benchmarks/independent.py --noise 6     # 6 grey levels of noise
    python benchmarks/independent.py --small       # CI: 8 runs
"""
from __future__ import annotations

import argparse
import itertools
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from _common import by_level, measure_kwargs  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--small", action="store_true", help="CI size: 8 runs")
ap.add_argument("--noise", type=float, default=0.0, help="noise SD in grey levels (signal 200 per mm of path)")
ap.add_argument("--param", action="append", metavar="NAME=VALUE", help="a MeasureParams field changed")
ap.add_argument("--verbose", action="store_true", help="one line per run")


def design(small: bool):
    grid = list(itertools.product([0.15, 0.3], [2.0, 3.5], [30, 50, 70, 85], ["gauss", "disk"], [0.15, 0.3], [0.0, 1.0]))
    return [grid[i] for i in sorted(np.random.default_rng(0).permutation(len(grid))[:8])] if small else grid


def main(argv=None) -> int:
    args = ap.parse_args(argv)
    kwargs = measure_kwargs(args.param)
    warnings.simplefilter("ignore")
    import stenosis
    from stenosis.calibration import Calibration
    from stenosis.enums import CalibrationSource
    from stenosis.io import AngioRun
    from test_independent_renderer import render

    rows = []
    for px, d0, pct, blur, blur_mm, ecc in design(args.small):
        rng = np.random.default_rng(int(pct + d0 * 10 + px * 1000 + blur_mm * 100))
        frames, a, b, mld = render(rng, px=px, d0=d0, pct=pct, width_mm=1.5, blur=blur, blur_mm=blur_mm,
                                   noise=args.noise, ecc=ecc)
        run = AngioRun.from_array(frames, calibration=Calibration((px, px), CalibrationSource.PIXEL_SPACING, "sweep"),
                                  pixel_intensity_relationship="LOG", mask_frames=(0,))
        r = stenosis.measure(run, "BA", a, b, frame=2, **kwargs)
        row = dict(levels={"pct": str(pct), "blur": blur, "blur_mm": str(blur_mm), "px": str(px), "d0": str(d0),
                           "ecc": str(ecc)},
                   err=r.percent_stenosis - pct, sd=r.percent_stenosis_sd, e_mld=r.mld_mm - mld,
                   e_ref=r.reference_diameter_mm - d0)
        rows.append(row)
        if args.verbose:
            print(f"px {px:.2f} d0 {d0:.1f} {pct:2d}% {blur:5s} {blur_mm:.2f} mm ecc {ecc:.0f}: "
                  f"err {row['err']:+6.2f} (sd {row['sd']:.2f}) MLD {row['e_mld']:+.3f} ref {row['e_ref']:+.3f} mm",
                  flush=True)
    e = np.array([r["err"] for r in rows])
    print(f"\n{len(rows)} straight arteries of the independent renderer, noise {args.noise:g} grey levels; "
          "errors = measured - true")
    print(f"{'factor':12s} {'level':8s} {'n':>4s} {'pct MAE':>8s} {'pct max':>8s} {'MLD bias mm':>12s} {'in 2 SD':>8s}")
    print("-" * 64)
    for name, level, i in by_level(rows):
        print(f"{name:12s} {level:8s} {i.size:4d} {np.abs(e[i]).mean():8.2f} {np.abs(e[i]).max():8.2f} "
              f"{np.mean([rows[k]['e_mld'] for k in i]):+12.3f} "
              f"{np.mean([abs(rows[k]['err']) <= 2 * rows[k]['sd'] for k in i]) * 100:7.0f}%")
    print("-" * 64)
    print(f"{'all':12s} {'':8s} {e.size:4d} {np.abs(e).mean():8.2f} {np.abs(e).max():8.2f} "
          f"{np.mean([r['e_mld'] for r in rows]):+12.3f} "
          f"{np.mean([abs(r['err']) <= 2 * r['sd'] for r in rows]) * 100:7.0f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
