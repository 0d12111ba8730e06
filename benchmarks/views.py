"""Eccentric lesions seen in two views (issue 18): is the graded (most severe) view right?

A WASID grade is the most severe stenosis over the projections a core lab looks at. An
eccentric residual lumen is not round: a slit-like lumen looks tight in the view that sees its
minor axis and mild in the view at right angles. Each case here is one artery with one
elliptical lesion (``stenosis.phantom.geometry.elliptical_view``: semi-axes a <= b along the
lesion, the ellipse turned by a random angle theta from view A, view B at theta + 90 degrees),
rendered into two runs (the projection physics of :mod:`stenosis.phantom.hybrid` on a flat
background with a soft gradient and Gaussian quantum noise; one blur per case) and measured
with ``stenosis.measure_views`` from the truth's two reader points in each view.

Truth per view: 1 - (narrowest projected width) / (normal diameter), i.e. what WASID reads on
that projection. Reported: the graded view's percent against the truth of the more severe
projection (target: within 3 points), the graded view being the truly more severe one, each
view's own error, and the area-equivalent truth 1 - sqrt(ab) / R0 that a densitometric
(area) reading would give, to show which of the two the measurement follows. On the flat
background it also prints the Cramer-Rao bound of the severe view's reading
(:func:`width_bound_points`): the share within 3 points that an unbiased reading of each view's
projected width could expect at best.

    python benchmarks/views.py               # 24 cases (about a minute)
    python benchmarks/views.py --small       # CI size
    python benchmarks/views.py --n 40 --verbose
    python benchmarks/views.py --backgrounds real   # each view inserted into its own real angiogram
    python benchmarks/views.py --backgrounds dsa --n 80 --seed 20   # the same as DSA runs of that anatomy
    python benchmarks/views.py --n 80 --seed 20 --intensity LIN     # flat frames tagged LIN, as a DICOM XA frame
    python benchmarks/views.py --n 80 --seed 20 --intensity LIN --noise-scale 0.1   # the method's own error

``--backgrounds real``: the two views of a case go into two different CIMAT angiograms
(``/work/shared/data/cimat-train``, 300x300 8-bit; backgrounds chosen in turn over the 40) with
the insertion, contrast (the background's own vessels, ``vessel_attenuation``) and placement
(off the real vessels, ``place_centreline``) of ``benchmarks/hybrid.py``; no noise is added
(the background's own). The lesion's geometry is drawn as on the flat background.

``--backgrounds dsa``: the same cases (same geometry, backgrounds and points), each view a DSA
run of its anatomy as ``benchmarks/hybrid_frames.py`` makes them: 2 tagged mask frames (the
background without the vessel, moved by up to 1 px) and 5 contrast frames, each with fresh noise
(SD 8, 4 or 2 grey levels at the background's mean, cycled over the cases), measured on every
frame of the arterial phase. Here the mask measures the background under the lesion, which a
single native frame can only interpolate.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import measure_kwargs, use_repo  # noqa: E402

#: keyword arguments of every stenosis.measure_views call (``--param``)
MEASURE_KW: dict = {}

SEED = 18
SHAPE = (256, 256)
TARGET_POINTS = 3.0


#: length of a view's vessel on a real (300 x 300) background, px
REAL_LENGTH_PX = (120.0, 150.0)


def real_backgrounds(data: Path, n_cases: int) -> list:
    """Per case, the two backgrounds of its views (two different CIMAT images, in turn over
    the 40): tuples (name, frame, avoid map, exposed mask, white, mu) from
    ``benchmarks/hybrid.py``'s ``backgrounds``."""
    from hybrid import DEV, HELD_OUT, backgrounds

    images = DEV + HELD_OUT
    needed = sorted({images[(2 * j + k) % len(images)] for j in range(n_cases) for k in (0, 1)})
    loaded = {name: (name, img, avoid, exposed, white, mu)
              for name, _split, img, avoid, exposed, white, mu in backgrounds(data, needed, xa1=False)}
    return [tuple(loaded[str(images[(2 * j + k) % len(images)])] for k in (0, 1)) for j in range(n_cases)]


def width_bound_points(w: float, chord_scale: float, *, r0: float, mu: float, blur: float, noise: float,
                       length: float, background: float = 0.8) -> float:
    """Cramer-Rao bound (1 SD, percent points) of one view's percent stenosis read from its
    projected width, on the flat background: the lesion core's profiles (linear intensity
    ``background`` x blur(exp(-mu x chord)), chord = ``chord_scale`` x 2 sqrt(w^2 - u^2); blur
    ``blur`` px and a 1 px aperture; Gaussian noise ``noise`` per pixel, all relative to white)
    with width, amplitude (mu x chord_scale: the lumen's depth is not known), centre and a
    linear background free; pooled over the profiles whose width lies within 1.5 points of the
    narrowest (a raised-cosine lesion of ``length`` px; at least one). The least any unbiased
    reading of this view's width from its own pixels can err by."""
    from scipy import ndimage as ndi

    fine = np.arange(-25.0, 25.001, 0.05)
    x = np.arange(-15.0, 15.5, 1.0)

    def model(p):
        wp, k, x0, b0, b1 = p
        u = fine - x0
        chord = 2.0 * np.sqrt(np.clip(wp * wp - u * u, 0.0, None))
        t = ndi.gaussian_filter1d(np.exp(-k * chord), blur / 0.05, mode="nearest")
        t = ndi.uniform_filter1d(t, 20, mode="nearest")  # the 1 px aperture
        return (b0 + b1 * x) * background * np.interp(x, fine, t)

    p = np.array([w, mu * chord_scale, 0.0, 1.0, 0.0])
    jac = []
    for i in range(p.size):
        h = np.zeros(p.size)
        h[i] = 1e-4 * max(1.0, abs(p[i]))
        jac.append((model(p + h) - model(p - h)) / (2.0 * h[i]))
    jac = np.array(jac).T
    m = max(1.0 - w / r0, 1e-3)
    n_eff = max(1.0, 2.0 * length / np.pi * np.sqrt(0.015 / m))
    cov = np.linalg.inv(n_eff * jac.T @ jac / noise**2)
    return float(100.0 * np.sqrt(cov[0, 0]) / r0)


def make_case(rng: np.random.Generator, real: tuple | None = None, dose: float | None = None,
              noise_scale: float = 1.0) -> dict:
    """Two views (images) of one artery with an elliptical lesion, and their truth.

    ``real``: the two views' real backgrounds (:func:`real_backgrounds`); None: the flat one.
    ``dose``: on real backgrounds, each view a DSA run with that added noise. ``noise_scale``:
    the flat background's noise times this (the same draws otherwise: 0.1 nearly noise-free)."""
    from stenosis.phantom.geometry import Tube, elliptical_view, random_curve
    from stenosis.phantom.hybrid import insert_vessel

    d0 = float(rng.uniform(5.0, 9.0))
    r0 = d0 / 2.0
    minor = float(rng.uniform(0.35, 0.8))  # percent narrowing of the minor axis
    major = float(minor * rng.uniform(0.1, 0.6))  # the major axis narrows less
    theta = float(rng.uniform(0.0, np.pi / 2))
    blur = float(rng.uniform(0.7, 1.3))
    mu = float(rng.uniform(0.06, 0.12))
    noise = float(rng.uniform(0.004, 0.010)) * noise_scale
    length = float(rng.uniform(2.5, 4.0) * d0)
    if real is not None:
        return _real_case(rng, real, d0=d0, minor=minor, major=major, theta=theta, blur=blur, length=length,
                          dose=dose, noise_rng=np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0]))
    base, s = random_curve(rng, start_mm=(128.0 + rng.uniform(-20, 20), 30.0), heading_rad=float(rng.uniform(-0.3, 0.3)),
                           length_mm=190.0, step_mm=0.25, max_curvature_per_mm=0.01)
    pos = float(rng.uniform(0.5, 0.6) * s[-1])
    bump = np.clip(1 - np.abs(s - pos) / (length / 2), 0, 1)
    bump = 0.5 * (1 - np.cos(np.pi * bump))
    a = r0 * (1 - minor * bump)
    b = r0 * (1 - major * bump)
    grad = np.linspace(0.75, 0.85, SHAPE[1])[None, :] * np.ones(SHAPE)
    views, truth, bounds = [], [], []
    for k, phi in enumerate((theta, theta + np.pi / 2)):
        w, scale = elliptical_view(a, b, phi)
        tube = Tube(base, s, w, np.zeros_like(s), name="main", depth_scale=scale)
        img, _ = insert_vessel(grad * 4095.0, tube, mu_per_px=mu, blur_sigma_px=blur, white=4095.0)
        img = img + rng.normal(0.0, noise * 4095.0, img.shape)
        views.append(np.clip(img, 0, 4095))
        truth.append(float((1 - w.min() / r0) * 100))
        k_min = int(np.argmin(w))
        bounds.append(width_bound_points(float(w[k_min]), float(scale[k_min]), r0=r0, mu=mu, blur=blur, noise=noise,
                                         length=length, background=float(grad[0, int(np.clip(base[k_min, 1], 0, SHAPE[1] - 1))])))
    i0 = int(np.argmin(np.abs(s - 12.0)))
    i1 = int(np.argmin(np.abs(s - (s[-1] - 12.0))))
    return {"views": views, "truth": truth, "area_truth": float((1 - np.sqrt((a * b).min()) / r0) * 100),
            "proximal": tuple(float(v) for v in base[i0]), "distal": tuple(float(v) for v in base[i1]),
            "d0": d0, "minor": minor, "major": major, "theta_deg": float(np.degrees(theta)), "blur": blur,
            "bound_sd": bounds[int(np.argmax(truth))]}


def _real_case(rng: np.random.Generator, real: tuple, *, d0: float, minor: float, major: float, theta: float,
               blur: float, length: float, dose: float | None = None, noise_rng=None) -> dict:
    """The case's two views, each on its own real background and route (None when a background
    has no clear route for it). ``dose``: each view a DSA run (:func:`_dsa_run`) with that added
    noise drawn from ``noise_rng`` (the geometry is the single native frames' case); None: the
    single native frame."""
    from stenosis.phantom.geometry import Tube, elliptical_view
    from stenosis.phantom.hybrid import insert_vessel, place_centreline

    r0 = d0 / 2.0
    pos_frac = float(rng.uniform(0.5, 0.6))
    views, truth, points, names = [], [], [], []
    for k, phi in enumerate((theta, theta + np.pi / 2)):
        name, img, avoid, exposed, white, mu = real[k]
        pts = place_centreline(rng, avoid, exposed, length_px=float(rng.uniform(*REAL_LENGTH_PX)))
        if pts is None:
            return {"refused": f"no clear route on background {name}", "backgrounds": [b[0] for b in real]}
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        bump = np.clip(1 - np.abs(s - pos_frac * s[-1]) / (length / 2), 0, 1)
        bump = 0.5 * (1 - np.cos(np.pi * bump))
        a = r0 * (1 - minor * bump)
        b = r0 * (1 - major * bump)
        w, scale = elliptical_view(a, b, phi)
        tube = Tube(pts, s, w, np.zeros_like(s), name="main", depth_scale=scale)
        mu_k = float((mu if np.isfinite(mu) else 0.08) * rng.uniform(0.8, 1.2))
        out, _ = insert_vessel(img, tube, mu_per_px=mu_k, blur_sigma_px=blur, white=white)
        views.append(out.astype(np.float32) if dose is None else
                     _dsa_run(noise_rng, img.astype(np.float32), out.astype(np.float32), dose=dose, white=white))
        truth.append(float((1 - w.min() / r0) * 100))
        i0 = int(np.argmin(np.abs(s - 8.0)))
        i1 = int(np.argmin(np.abs(s - (s[-1] - 8.0))))
        points.append((tuple(float(v) for v in pts[i0]), tuple(float(v) for v in pts[i1])))
        names.append(name)
        area_truth = float((1 - np.sqrt((a * b).min()) / r0) * 100)
    return {"views": views, "truth": truth, "area_truth": area_truth, "points": points, "backgrounds": names,
            "d0": d0, "minor": minor, "major": major, "theta_deg": float(np.degrees(theta)), "blur": blur}


#: DSA views (``--backgrounds dsa``): added noise SD per case, cycled (``hybrid_frames.DOSES``)
DSA_DOSES = (8.0, 4.0, 2.0)
DSA_MASKS, DSA_LIVE = 2, 5


def _dsa_run(rng: np.random.Generator, background: np.ndarray, view: np.ndarray, *, dose: float,
             white: float) -> np.ndarray:
    """One view as the frames of a DSA run on its real anatomy, as ``benchmarks/hybrid_frames.py``
    makes them: 2 mask frames (the background without the vessel, moved by up to 1 px) and 5
    contrast frames (the view), each with fresh noise of SD ``dose`` grey levels at the
    background's mean, growing as the square root of the intensity."""
    from scipy import ndimage as ndi

    moved = ndi.shift(background, rng.uniform(-1.0, 1.0, 2), order=1, mode="nearest")
    level = float(background.mean())

    def noisy(x):
        return np.clip(x + rng.normal(0.0, 1.0, x.shape) * dose * np.sqrt(np.maximum(x, 0.0) / level), 0, white)

    return np.stack([noisy(moved) for _ in range(DSA_MASKS)] + [noisy(view) for _ in range(DSA_LIVE)]).astype(np.float32)


def measure_case(case: dict, *, intensity: str | None = None) -> dict:
    """One case measured with ``stenosis.measure_views``. ``intensity``: the
    PixelIntensityRelationship a single frame's run is given (None: unknown, as an export
    without it; "LIN": as a DICOM XA frame of these linear-intensity images would carry)."""
    import stenosis
    from stenosis.errors import StenosisError
    from stenosis.io import AngioRun

    if "views" not in case:  # no route on a real background
        return dict(case)
    points = case.get("points") or [(case["proximal"], case["distal"])] * len(case["views"])
    def run_of(img, k):
        if img.ndim == 3:  # a DSA run: its mask frames tagged, a linear display
            return AngioRun.from_array(img, pixel_intensity_relationship="LIN", mask_frames=tuple(range(DSA_MASKS)),
                                       source=f"view{k}")
        return AngioRun.from_array(img.astype(np.float32), pixel_intensity_relationship=intensity, source=f"view{k}")

    views = [{"run": run_of(img, k),
              "proximal": points[k][0], "distal": points[k][1]} for k, img in enumerate(case["views"])]
    out = {k: v for k, v in case.items() if k != "views"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stenosis.measure_views(views, "M1", **MEASURE_KW)
    except StenosisError as e:
        out["refused"] = str(e)
        return out
    # each view's graded reading (projected width or area, stenosis.views.ViewReading; a
    # checkout without readings: the views' own results)
    readings = getattr(res, "readings", None) or res.views
    out["read"] = [float(v.percent_stenosis) for v in readings]
    out["sd"] = [float(v.percent_stenosis_sd) for v in readings]
    out["area_read"] = [float(v.percent_stenosis) for v in res.views]
    out["reading"] = [getattr(v, "reading", "area") for v in readings]
    out["graded_index"] = int(res.graded_index)
    out["graded"] = float(res.percent_stenosis)
    severe = int(np.argmax(case["truth"]))
    out["severe_index"] = severe
    out["graded_err"] = out["graded"] - case["truth"][severe]
    out["view_err"] = [r - t for r, t in zip(out["read"], case["truth"])]
    out["confirm"] = bool(res.needs_confirmation)
    out["confirm_why"] = getattr(res, "confirmation_reason", None)
    return out


def summarise(rows: list[dict]) -> None:
    ok = [r for r in rows if "read" in r]
    if not ok:
        print(f"all {len(rows)} cases refused")
        return
    ge = np.array([r["graded_err"] for r in ok])
    ve = np.array([e for r in ok for e in r["view_err"]])
    right_view = np.mean([r["graded_index"] == r["severe_index"] for r in ok]) * 100
    clear = [r for r in ok if abs(r["truth"][0] - r["truth"][1]) >= 5]
    right_clear = np.mean([r["graded_index"] == r["severe_index"] for r in clear]) * 100 if clear else float("nan")
    area = np.array([r["graded"] - r["area_truth"] for r in ok])
    print(f"{'two views of an eccentric lesion':<52}{'value':>10}{'target':>14}")
    print("-" * 76)
    print(f"{'cases (refused)':<52}{f'{len(rows)} ({len(rows) - len(ok)})':>10}")
    print(f"{'graded - truth of the more severe view: MAE (pt)':<52}{np.mean(np.abs(ge)):>10.2f}")
    print(f"{'  bias / max |error| (pt)':<52}{f'{np.mean(ge):+.2f}/{np.max(np.abs(ge)):.1f}':>10}")
    within = np.mean(np.abs(ge) <= TARGET_POINTS) * 100
    print(f"{'  within 3 points':<52}{within:>9.0f}%{'all':>14}")
    print(f"{'graded view is the truly more severe one':<52}{right_view:>9.0f}%")
    print(f"{'  same, views >= 5 points apart':<52}{right_clear:>9.0f}%{'all':>14}")
    print(f"{'each view vs its own projection: MAE / bias (pt)':<52}{f'{np.mean(np.abs(ve)):.2f}/{np.mean(ve):+.2f}':>10}")
    print(f"{'graded - area-equivalent truth: mean (pt)':<52}{np.mean(area):>+10.2f}")
    print("(area-equivalent truth 1 - sqrt(ab)/R0: what a densitometric reading of the lumen area gives)")
    if all("confirm" in r for r in ok):
        truth50 = [max(r["truth"]) >= 50 for r in ok]
        wrong = [r for r, t in zip(ok, truth50) if (r["graded"] >= 50) != t]
        apart = [r for r in ok if r["confirm_why"] and "combined SD apart" in r["confirm_why"]]
        print(f"{'graded >= 50% call asks a reader to confirm':<52}{sum(r['confirm'] for r in ok):>10d}")
        print(f"{'  because another view contradicts it beyond 2 SD':<52}{len(apart):>10d}")
        unsent = sum(not r["confirm"] for r in wrong)
        print(f"{'wrong >= 50% calls (not sent to a reader)':<52}{f'{len(wrong)} ({unsent})':>10}")
    bound = np.array([r["bound_sd"] for r in ok if "bound_sd" in r])
    if bound.size:
        from math import erf

        reach = np.mean([erf(TARGET_POINTS / (b * np.sqrt(2.0))) for b in bound]) * 100
        print(f"{'bound: an unbiased reading of the severe view (CRB SD)':<52}{f'{np.median(bound):.1f} pt':>10}")
        print(f"{'  its expected share within 3 points':<52}{reach:>9.0f}%")
        print("(Cramer-Rao bound of the severe view's projected width from its own lesion-core pixels, width, depth,\n"
              " centre and background free: what any unbiased per-view reading can reach, with the right view graded)")


def main(argv: list[str] | None = None) -> int:
    use_repo(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="CI size: 4 cases")
    ap.add_argument("--n", type=int, default=24, help="number of cases (default 24)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--backgrounds", choices=("flat", "real", "dsa"), default="flat",
                    help="flat (default): a soft gradient with Gaussian noise; real: each view in its own CIMAT "
                         "angiogram (a single native frame); dsa: the same, each view a DSA run of that anatomy "
                         "(2 masks, 5 contrast frames, added noise 8 / 4 / 2 grey levels cycled over the cases)")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--intensity", choices=("unknown", "LIN"), default="unknown",
                    help="single frames (flat, real): their intensity relationship as the tool is told it; unknown "
                         "(default: an export without it, read as log-scaled) or LIN (what a DICOM XA frame of the "
                         "flat background's linear-intensity images would carry)")
    ap.add_argument("--noise-scale", type=float, default=1.0,
                    help="flat backgrounds: their noise times this, the cases otherwise the same (0.1: the "
                    "method's own error with little noise)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--repo", type=Path, help="checkout whose stenosis package is measured (put first on sys.path)")
    ap.add_argument("--param", action="append", metavar="NAME=VALUE",
                    help="measure with this MeasureParams field changed (repeatable; tuples as a:b)")
    args = ap.parse_args(argv)
    MEASURE_KW.update(measure_kwargs(args.param))
    if not args.noise_scale >= 0:
        ap.error("--noise-scale must be 0 or more")
    if args.noise_scale != 1.0 and args.backgrounds != "flat":
        ap.error("--noise-scale scales the flat background's noise only (real and dsa keep their own)")
    import stenosis

    n = 4 if args.small else args.n
    print(f"stenosis {stenosis.__version__} from {Path(stenosis.__file__).parent}")
    t0 = time.perf_counter()
    real = None
    if args.backgrounds in ("real", "dsa"):
        if not (args.data / "cimat-train").is_dir():
            print(f"real data not found at {args.data}: nothing to measure")
            return 0
        real = real_backgrounds(args.data, n)
    print(f"backgrounds: {args.backgrounds}" + ("" if args.backgrounds == "dsa" else f", intensity {args.intensity}"))
    rows = []
    for j in range(n):
        dose = DSA_DOSES[j % len(DSA_DOSES)] if args.backgrounds == "dsa" else None
        case = make_case(np.random.default_rng([args.seed, j]), None if real is None else real[j], dose,
                         noise_scale=args.noise_scale)
        row = measure_case(case, intensity=None if args.intensity == "unknown" else args.intensity)
        rows.append(row)
        if args.verbose:
            if "read" not in row:
                print(f"  case {j:2d} REFUSED {row['refused']}")
            else:
                bg = f" bg {'/'.join(row['backgrounds'])}" if "backgrounds" in row else ""
                print(f"  case {j:2d}{bg} D0 {row['d0']:.1f} theta {row['theta_deg']:4.0f} truth A/B {row['truth'][0]:5.1f}/"
                      f"{row['truth'][1]:5.1f} read {row['read'][0]:5.1f}/{row['read'][1]:5.1f} graded {row['graded']:5.1f}"
                      f" (view {'AB'[row['graded_index']]}, truth's {'AB'[row['severe_index']]}) err {row['graded_err']:+5.1f}"
                      f"  area truth {row['area_truth']:5.1f}  area read {row['area_read'][0]:5.1f}/{row['area_read'][1]:5.1f}"
                      f" ({'/'.join('w' if x != 'area' else 'a' for x in row['reading'])})")
    print(f"({n} cases, {time.perf_counter() - t0:.0f} s)\n")
    summarise(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
