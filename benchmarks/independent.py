"""Accuracy on arteries of a second, deliberately different renderer, swept over its design.

The renderer is the one of ``tests/test_independent_renderer.py`` (not ``stenosis.phantom``): a
Gaussian-shaped narrowing (SD 1.5 mm), a Gaussian or a uniform-disk blur of the path length, 4x4
supersampled pixels, additive Gaussian noise on 10-bit frames with an explicit mask frame, a random
angle. The sweep crosses pixel size (0.15, 0.3 mm), diameter (2.0, 3.5 mm), stenosis (30, 50, 70,
85%), blur kind, blur size (0.15, 0.3 mm) and eccentricity (0, 1): 128 runs. Without noise
(``--noise 0``, the default) an error is the method's own, not the noise's: this sweep found the
coarse blur grid's bias and the tight lesion's over-corrected bottom (``docs/tuning.md``, session 24).

Normal arteries (no narrowing) are measured beside them, 16 runs over the same factors: WASID
takes the narrowest point, so a normal artery reads above 0% by the noise alone (issue 16's
target: <= 3% on average); printed apart from the stenosed runs' table.

``--radius MM``: the artery curves, an arc of that radius over the segment (straight on past it);
``--crossing``: a straight vessel (0.6 or 1 x the artery's diameter, at 35, 60 or 90 degrees to it)
crosses the segment midway between the lesion and a reader's point. Where a shallow crossing meets
a tight curve twice the shortest path between the points runs along the crossing vessel instead
(``--radius 20 --crossing``: 11 of 128 runs, each at 35 degrees; ``docs/tuning.md``, section 1).

``--native``: the runs without a mask frame, their anatomy in every frame (a Gaussian random
field of 3 mm grain and SD ``--anatomy`` grey levels, a blurred bone edge of 5x that at a random
angle and place, a gradient), 3 contrast frames with their own noise. No bolus is seen (every
frame holds the same iodine), so the analysed frame is measured alone against its background
model, as a single native frame. ``--untagged``: the same frames without their
PixelIntensityRelationship (LOG), read as the tool reads a frame of unknown relationship.

    python benchmarks/independent.py               # 128 runs + 16 normal, no noise
    python benchmarks/independent.py --noise 6     # 6 grey levels of noise
    python benchmarks/independent.py --native --noise 6   # native runs on anatomy
    python benchmarks/independent.py --native --noise 6 --untagged   # the same, no intensity tag
    python benchmarks/independent.py --shape tubular   # flat-bottomed lesions (also: lopsided)
    python benchmarks/independent.py --width 0.5   # short lesions (Gaussian SD 0.5 mm, default 1.5)
    python benchmarks/independent.py --radius 20 --native --noise 6   # curved arteries on anatomy
    python benchmarks/independent.py --crossing --noise 6   # a vessel crossing the segment
    python benchmarks/independent.py --small       # CI: 8 runs + 4 normal
"""
from __future__ import annotations

import argparse
import itertools
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "tests", REPO / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from _common import by_level, measure_kwargs  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--small", action="store_true", help="CI size: 8 stenosed + 4 normal runs")
ap.add_argument("--noise", type=float, default=0.0, help="noise SD in grey levels (signal 200 per mm of path)")
ap.add_argument("--param", action="append", metavar="NAME=VALUE", help="a MeasureParams field changed")
ap.add_argument("--verbose", action="store_true", help="one line per run")
ap.add_argument("--native", action="store_true", help="no mask frame: anatomy in 3 contrast frames")
ap.add_argument("--anatomy", type=float, default=30.0, help="--native: the anatomy's texture SD, grey levels")
ap.add_argument("--headroom", type=float, default=0.0,
                help="--native: lower the frames' background by this many grey levels before the 10-bit clip (0, the "
                     "design: at 1000 with the anatomy subtracted, a fifth of each frame clips at 1023; 200: none does)")
ap.add_argument("--shape", choices=("gauss", "tubular", "lopsided"), default="gauss",
                help="the narrowing's shape along the artery (tests/test_independent_renderer.py's lesion_shape): "
                     "gauss (default), tubular (a flat bottom 6 mm long) or lopsided (twice as long distally)")
ap.add_argument("--width", type=float, default=1.5,
                help="the lesion's width, mm (a Gaussian's SD; tubular: a quarter of its flat bottom); default 1.5")
ap.add_argument("--radius", type=float, default=None,
                help="a curved artery: an arc of this radius (mm) over the segment (at most 72 degrees each way "
                     "from the lesion), straight beyond (default straight)")
ap.add_argument("--crossing", action="store_true",
                help="a straight vessel (0.6 or 1 x the artery's diameter, at 35, 60 or 90 degrees) crosses the "
                     "segment between the lesion and a reader's point")
ap.add_argument("--untagged", action="store_true",
                help="no PixelIntensityRelationship (the frames are LOG: the cost of reading them without the tag)")

STENOSES = (30, 50, 70, 85)


def design(small: bool):
    grid = list(itertools.product([0.15, 0.3], [2.0, 3.5], STENOSES, ["gauss", "disk"], [0.15, 0.3], [0.0, 1.0]))
    normal = list(itertools.product([0.15, 0.3], [2.0, 3.5], [0], ["gauss", "disk"], [0.15, 0.3], [0.0]))
    if small:
        return ([grid[i] for i in sorted(np.random.default_rng(0).permutation(len(grid))[:8])]
                + [normal[i] for i in sorted(np.random.default_rng(1).permutation(len(normal))[:4])])
    return grid + normal


def anatomy(rng, px: float, sd: float, shape) -> np.ndarray:
    """Anatomy in grey levels (subtracted from a LOG frame): a Gaussian random field of 3 mm
    grain and SD ``sd``, a bone edge of 5 ``sd`` blurred over 0.5 mm at a random angle and
    place, and a gradient of up to 3 ``sd`` across the frame."""
    from scipy import ndimage as ndi

    field = ndi.gaussian_filter(rng.normal(0.0, 1.0, shape), 3.0 / px)
    field *= sd / max(float(field.std()), 1e-12)
    h, w = shape
    y, x = np.mgrid[0:h, 0:w] - np.array([h / 2, w / 2])[:, None, None]
    ang, off = rng.uniform(0, np.pi), rng.uniform(-0.3, 0.3) * h
    edge = 5 * sd / (1 + np.exp(-(y * np.sin(ang) + x * np.cos(ang) - off) * px / 0.5))
    return field + edge + rng.uniform(-1, 1) * 3 * sd * x / w


def native_frames(rng, frames: np.ndarray, px: float, noise: float, sd: float, headroom: float = 0.0) -> np.ndarray:
    """The run's contrast frame (noise-free, as rendered) with anatomy, as 3 frames of fresh noise;
    ``headroom``: grey levels taken off before the 10-bit clip."""
    live = frames[1].astype(float) - headroom
    bg = anatomy(rng, px, sd, live.shape)
    return np.stack([np.clip(np.round(live - bg + rng.normal(0, noise, live.shape)), 0, 1023)
                     for _ in range(3)]).astype(np.uint16)


def main(argv=None) -> int:
    args = ap.parse_args(argv)
    kwargs = measure_kwargs(args.param)
    warnings.simplefilter("ignore")
    import stenosis
    from stenosis.calibration import Calibration
    from stenosis.enums import CalibrationSource
    from stenosis.errors import StenosisError
    from stenosis.io import AngioRun
    from test_independent_renderer import render

    rows, refused = [], []
    for px, d0, pct, blur, blur_mm, ecc in design(args.small):
        rng = np.random.default_rng(int(pct + d0 * 10 + px * 1000 + blur_mm * 100))
        crossing = ((float(rng.choice([35.0, 60.0, 90.0])), d0 * float(rng.choice([0.6, 1.0])),
                     float(rng.choice([-1.0, 1.0]))) if args.crossing else None)
        frames, a, b, mld = render(rng, px=px, d0=d0, pct=pct, width_mm=args.width, blur=blur, blur_mm=blur_mm,
                                   noise=0.0 if args.native else args.noise, ecc=ecc, shape=args.shape,
                                   radius_mm=args.radius, crossing=crossing)
        if args.native:
            frames = native_frames(rng, frames, px, args.noise, args.anatomy, args.headroom)
        run = AngioRun.from_array(frames, calibration=Calibration((px, px), CalibrationSource.PIXEL_SPACING, "sweep"),
                                  pixel_intensity_relationship=None if args.untagged else "LOG",
                                  mask_frames=() if args.native else (0,))
        label = (f"px {px:.2f} d0 {d0:.1f} {pct:2d}% {blur:5s} {blur_mm:.2f} mm ecc {ecc:.0f}"
                 f"{'' if crossing is None else ' crossing %.0f deg %.1f mm %+.0f' % crossing}")
        try:
            r = stenosis.measure(run, "BA", a, b, frame=1 if args.native else 2, **kwargs)
        except StenosisError as exc:  # a refusal is a result of its own, not the end of the sweep
            refused.append(f"{label}: {exc}")
            if args.verbose:
                print(f"{label}: refused: {exc}", flush=True)
            continue
        row = dict(levels={"pct": str(pct), "blur": blur, "blur_mm": str(blur_mm), "px": str(px), "d0": str(d0),
                           "ecc": str(ecc)},
                   err=r.percent_stenosis - pct, sd=r.percent_stenosis_sd, e_mld=r.mld_mm - mld,
                   e_ref=r.reference_diameter_mm - d0, normal=pct == 0,
                   confirm=any("have a reader confirm" in w for w in r.warnings),
                   burnt=any("clipped at the frame's brightest value" in w for w in r.warnings))
        rows.append(row)
        if args.verbose:
            print(f"{label}: err {row['err']:+6.2f} (sd {row['sd']:.2f}) MLD {row['e_mld']:+.3f} ref {row['e_ref']:+.3f} mm",
                  flush=True)
    normal = [r for r in rows if r["normal"]]
    rows = [r for r in rows if not r["normal"]]
    if refused:
        print(f"\nrefused {len(refused)} of {len(rows) + len(normal) + len(refused)} runs (not in the figures below):")
        for line in refused:
            print(f"  {line}")
    if not rows:
        print("no stenosed run was measured: nothing to summarise")
        return 1
    e = np.array([r["err"] for r in rows])
    kind = f"native runs on anatomy (SD {args.anatomy:g})" if args.native else "runs with a mask frame"
    scene = ("straight" if args.radius is None else f"curved (radius {args.radius:g} mm)") + (
        ", crossed by a vessel" if args.crossing else "")
    print(f"\n{len(rows)} {scene} stenosed arteries of the independent renderer ({args.shape} lesions, "
          f"width {args.width:g} mm), {kind}, noise {args.noise:g} grey levels; errors = measured - true")
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
    out = [r for r in rows if abs(r["err"]) > 2 * r["sd"]]
    print(f"errors beyond 2 SD: {len(out)} of {len(rows)}, {sum(r['confirm'] for r in out)} of them asking a reader to "
          f"confirm the >= 50% call, {sum(r['burnt'] for r in out)} saying the background beside the artery is clipped "
          f"(runs saying so: {sum(r['burnt'] for r in rows)})")
    if normal:
        read = np.array([r["err"] for r in normal])
        print(f"\n{len(normal)} normal arteries (0%): read {read.mean():.2f}% on average (target <= 3), max "
              f"{read.max():.2f}%; SD median {np.median([r['sd'] for r in normal]):.2f} points; "
              f"{sum(r['confirm'] for r in normal)} ask a reader to confirm the >= 50% call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
