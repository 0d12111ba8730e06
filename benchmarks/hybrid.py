"""Accuracy with truth on real backgrounds: known vessels inserted into real angiograms.

Each case is one vessel of known geometry (normal diameter, raised-cosine stenosis of
known percent, eccentricity and length) drawn with the phantom's projection physics in
the linear intensity domain into a real frame (:mod:`stenosis.phantom.hybrid`): the 40
CIMAT coronary angiograms (8-bit exports with their own vessels, noise texture and
vendor processing) and the WG04 XA1 lateral cerebral angiogram (native, 10 bit). The
vessel's contrast is that of the background's own vessels, its route keeps off them
(crossings allowed). It is measured through ``stenosis.measure`` (``M1``, uncalibrated,
px) from the truth's two reader points.

Reported per split (CIMAT backgrounds 1-30 "dev", 31-40 "held-out", XA1 "cerebral"):
percent-stenosis MAE, max and bias; MLD and reference errors (px); the share of errors
within the reported 2 SD; normal arteries' (0%) mean read; and the >= 50% decision on
cases at least 4 points from 50.

    python benchmarks/hybrid.py                 # 120 CIMAT + 12 XA1 cases (a few minutes)
    python benchmarks/hybrid.py --small         # CI size (< 60 s)
    python benchmarks/hybrid.py --n 160 --verbose --json /tmp/hybrid.json
    python /work/main/benchmarks/hybrid.py --repo /work/before   # measure another checkout's code
    python benchmarks/hybrid.py --structure-above 10   # only the backgrounds' structure coarser than 10 px
    python benchmarks/hybrid.py --true-background      # the true background under the vessel: a model's ceiling
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import measure_kwargs, use_repo  # noqa: E402

#: keyword arguments of every stenosis.measure call (``--param``)
MEASURE_KW: dict = {}
#: ``--true-background``: each background frame (before the vessel went in) by name
TRUE_BACKGROUNDS: dict = {}

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DEV = tuple(range(1, 31))
HELD_OUT = tuple(range(31, 41))
SMALL_IMAGES = (2, 11, 33)
SEED = 16
#: percent stenosis cycled over the cases: normal arteries, both sides of 50, tight lumens
PERCENTS = (0.0, 30.0, 45.0, 60.0, 75.0, 0.0, 40.0, 55.0, 85.0, 20.0, 65.0, 50.0)


def hybrid_module():
    """``stenosis.phantom.hybrid``; from this script's checkout when the measured one lacks it."""
    try:
        from stenosis.phantom import hybrid
        return hybrid
    except ImportError:
        import stenosis.phantom  # noqa: F401  (the parent package its relative imports need)

        spec = importlib.util.spec_from_file_location("stenosis.phantom.hybrid",
                                                      REPO / "stenosis" / "phantom" / "hybrid.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["stenosis.phantom.hybrid"] = mod
        spec.loader.exec_module(mod)
        return mod


def structure_only_above(img: np.ndarray, scale_px: float, seed: int) -> np.ndarray:
    """The background with its structure finer than ``scale_px`` replaced by white noise of the
    image's own noise level, for the scale dissection (``--structure-above``: which scales of
    real anatomy make the false narrowings). A Gaussian of ``scale_px`` smooths it (``inf``: a
    flat background at its mean); Gaussian noise of SD sqrt(semivariogram at 4 px over its
    flattest 30%) is added; the result is rounded to the image's integer type."""
    from scipy import ndimage as ndi

    x = img.astype(float)
    g = ndi.gaussian_gradient_magnitude(x, 3.0)
    flat = g < np.percentile(g, 30)
    d = x[:, 4:] - x[:, :-4]
    v = d[flat[:, 4:] & flat[:, :-4]]
    v = v[np.abs(v) <= np.percentile(np.abs(v), 99)]
    sd = float(np.sqrt(0.5 * np.mean(v * v)))
    smooth = np.full_like(x, x.mean()) if not np.isfinite(scale_px) else ndi.gaussian_filter(x, scale_px, mode="reflect")
    out = smooth + np.random.default_rng(seed).normal(0.0, sd, x.shape)
    return np.clip(np.round(out), 0, np.iinfo(img.dtype).max).astype(img.dtype)


def backgrounds(data: Path, images, *, xa1: bool, gamma: float = 1.0, structure_above: float | None = None):
    """Yield (name, split, frame, avoid map, exposed mask, white, mu) per background
    (``structure_above``: see :func:`structure_only_above`; the maps and contrast are the
    original frame's)."""
    import stenosis
    from PIL import Image
    from scipy import ndimage as ndi

    hy = hybrid_module()

    def frame(img, key):
        return img if structure_above is None else structure_only_above(img, structure_above, key)

    for i in images:
        img = np.array(Image.open(data / "cimat-train" / f"{i}.png").convert("L"))
        mask = np.array(Image.open(data / "cimat-train" / f"{i}_gt.png").convert("L")) > 127
        prob = stenosis.vessel_probability(img)
        avoid = mask | (prob > 0.3)
        exposed = ndi.uniform_filter(img.astype(float), 9) > 0.2 * 255
        mu = hy.vessel_attenuation(img, mask, white=255.0, gamma=gamma)
        yield str(i), ("dev" if i in DEV else "held-out"), frame(img, i), avoid, exposed, 255.0, mu
    if xa1:
        run = stenosis.read_run(data / "wg04-xa1" / "XA1_UNC")
        img = np.asarray(run.frames[0])
        white = float(2 ** run.metadata.bits_stored - 1)
        prob = stenosis.vessel_probability(img)
        exposed = ndi.uniform_filter(img.astype(float), 15) > 0.15 * float(img.max())
        mu = hy.vessel_attenuation(img, prob > 0.5, white=white, gamma=gamma)
        yield "XA1", "cerebral", frame(img, 1000), prob > 0.3, exposed, white, mu


def draw_case(name: str, img: np.ndarray, avoid: np.ndarray, exposed: np.ndarray, white: float, mu: float, *,
              j: int, n: int, seed: int = SEED, gamma: float = 1.0):
    """Case ``j`` of the ``n`` drawn on one background (from :func:`backgrounds`), from its own
    seeded stream (so a background's cases do not depend on the others): (case or None when no
    clear place is found, the stream, for draws that follow)."""
    hy = hybrid_module()
    big = img.shape[0] > 600
    key = 1000 if name == "XA1" else int(name)
    rng = np.random.default_rng([seed, key, j])
    pct = PERCENTS[(key * n + j) % len(PERCENTS)]
    d0 = float(rng.uniform(5.0, 12.0) if big else rng.uniform(3.5, 8.0))
    case = hy.make_case(
        rng, img, avoid, exposed=exposed, name=f"{name}-{j}", background_name=name,
        diameter_px=d0, percent=pct, mu_per_px=float((mu if np.isfinite(mu) else 0.08) * rng.uniform(0.8, 1.2)),
        blur_sigma_px=float(rng.uniform(0.6, 1.5)), length_px=float(rng.uniform(200, 300) if big else rng.uniform(110, 150)),
        white=white, gamma=gamma)
    return case, rng


def make_cases(data: Path, images, *, per_image: int, n_xa1: int, seed: int = SEED, gamma: float = 1.0,
               structure_above: float | None = None, frames: dict | None = None):
    """(split, case) per drawn case; ``frames``: filled with each background frame by name."""
    cases = []
    for name, split, img, avoid, exposed, white, mu in backgrounds(data, images, xa1=n_xa1 > 0, gamma=gamma,
                                                                    structure_above=structure_above):
        if frames is not None:
            frames[name] = img
        n = n_xa1 if split == "cerebral" else per_image
        for j in range(n):
            case, _ = draw_case(name, img, avoid, exposed, white, mu, j=j, n=n, seed=seed, gamma=gamma)
            if case is not None:
                cases.append((split, case))
    return cases


def measure_case(case) -> dict:
    import stenosis
    from stenosis.errors import StenosisError
    from stenosis.io import AngioRun
    try:
        from stenosis.diameter.shape import spline_blur_px
    except ImportError:
        spline_blur_px = None

    t = case.truth
    row = {**case.to_dict(), "split": None}
    run = AngioRun.from_array(case.image, pixel_intensity_relationship=None, source=case.name)
    try:
        with _true_background(TRUE_BACKGROUNDS.get(case.background)):
            res = stenosis.measure(run, "M1", case.proximal_rc, case.distal_rc, **MEASURE_KW)
    except StenosisError as e:
        row["refused"] = f"{type(e).__name__}: {e}"
        return row
    row.update({
        "read": float(res.percent_stenosis), "sd": float(res.percent_stenosis_sd),
        "mld_read_px": float(res.mld_px), "ref_read_px": float(res.reference_diameter_px),
        "ref_choice": res.reference_choice, "mld_read_rc": [float(v) for v in res.mld_rc],
        "err": float(res.percent_stenosis - t["percent"]),
        "mld_err_px": float(res.mld_px - t["mld_px"]), "ref_err_px": float(res.reference_diameter_px - t["reference_px"]),
        "mld_site_px": float(np.hypot(*np.subtract(res.mld_rc, t["mld_rc"]))),
        "warnings": list(res.warnings),
        # the run's blur as read, less the profiles' bilinear interpolation (truth: blur_sigma_px;
        # NaN for a --repo checkout older than session 23)
        "blur_read_px": float("nan") if spline_blur_px is None else spline_blur_px(res.profile),
    })
    return row


@contextlib.contextmanager
def _true_background(frame):
    """``--true-background``: the single native frame's background model replaced by the frame
    itself before the vessel went in (``frame``; None: unchanged), the rest of the measurement
    as it is: what any background model interpolated under the lumen could reach at best."""
    if frame is None:
        yield
        return
    import inspect

    import stenosis.measurement as measurement
    from stenosis.opacification import native_values
    from stenosis.params import DEFAULT_PARAMS

    model = measurement.single_frame_background

    takes_known = "known" in inspect.signature(model).parameters  # a --repo checkout before session 26: no

    def true_one(run, analysed, params=None, **_):
        if takes_known:  # the measurement's own opacification, the true background for its interpolation
            return model(run, analysed, params or DEFAULT_PARAMS, known=frame)
        else:  # the plain difference
            box = analysed.trace.box
            image = np.array(analysed.image, np.float32, copy=True)
            image[box] = np.asarray(frame, np.float32)[box] - native_values(run, analysed.index)[box]
            return image

    measurement.single_frame_background = true_one
    try:
        yield
    finally:
        measurement.single_frame_background = model


def _borderline_points() -> float:
    from stenosis.params import DEFAULT_PARAMS

    return float(DEFAULT_PARAMS.borderline_points)


def summarise(rows: list[dict]) -> dict:
    ok = [r for r in rows if "err" in r]
    e = np.array([r["err"] for r in ok])
    sd = np.array([r["sd"] for r in ok])
    truth = np.array([r["percent"] for r in ok])
    read = np.array([r["read"] for r in ok])
    normal = truth < 0.5
    far = np.abs(truth - 50) >= 4
    tight = np.array([r["tight"] for r in ok], bool)
    mld = np.array([r["mld_err_px"] for r in ok])
    ref = np.array([r["ref_err_px"] for r in ok])
    f = lambda a, fn: float(fn(a)) if a.size else None  # noqa: E731
    return {
        "n": len(rows), "refused": len(rows) - len(ok), "mae": f(np.abs(e), np.mean), "max": f(np.abs(e), np.max),
        "bias": f(e, np.mean), "within2sd": f(np.abs(e) <= 2 * sd, np.mean),
        "mld_mae": f(np.abs(mld), np.mean), "mld_bias": f(mld, np.mean),
        "ref_mae": f(np.abs(ref), np.mean), "ref_bias": f(ref, np.mean),
        "normal_n": int(normal.sum()), "normal_mean": f(read[normal], np.mean), "normal_max": f(read[normal], np.max),
        "decided": int(((read >= 50) == (truth >= 50))[far].sum()), "n_far": int(far.sum()),
        # wrong >= 50% calls the result does not send to a reader (clear of 50 by 2 SD and the
        # borderline margin: stenosis.wasid.borderline_warning gives no warning)
        "confident_wrong": int((((read >= 50) != (truth >= 50)) & far & (np.abs(read - 50) >= np.maximum(
            2 * sd, _borderline_points()))).sum()),
        "tight_n": int(tight.sum()), "tight_mld_bias": f(mld[tight], np.mean), "tight_mae": f(np.abs(e[tight]), np.mean),
    }


def _f(v, fmt="{:.2f}"):
    return "-" if v is None else fmt.format(v)


def print_tables(rows: list[dict]) -> None:
    splits = [(k, [r for r in rows if r["split"] == k]) for k in ("dev", "held-out", "cerebral")]
    splits = [(k, v) for k, v in splits if v]
    sums = {k: summarise(v) for k, v in splits}
    head = f"{'hybrid phantoms (real backgrounds)':<40}" + "".join(f"{k:>12}" for k, _ in splits) + f"{'target':>14}"
    print(head)
    print("-" * len(head))

    def row(label, fn, target=""):
        print(f"{label:<40}" + "".join(f"{fn(sums[k]):>12}" for k, _ in splits) + f"{target:>14}")

    row("cases (refused)", lambda s: f"{s['n']} ({s['refused']})", "0 refused")
    row("percent MAE (points)", lambda s: _f(s["mae"]), "<= 2")
    row("percent max |error|", lambda s: _f(s["max"], "{:.1f}"))
    row("percent bias", lambda s: _f(s["bias"], "{:+.2f}"))
    row("errors within 2 SD", lambda s: _f(None if s["within2sd"] is None else 100 * s["within2sd"], "{:.0f}%"), ">= 90%")
    row("MLD MAE / bias (px)", lambda s: f"{_f(s['mld_mae'])}/{_f(s['mld_bias'], '{:+.2f}')}")
    row("reference MAE / bias (px)", lambda s: f"{_f(s['ref_mae'])}/{_f(s['ref_bias'], '{:+.2f}')}")
    row("normal arteries: n, mean read %", lambda s: f"{s['normal_n']}, {_f(s['normal_mean'], '{:.1f}')}", "<= 3%")
    row("normal arteries: max read %", lambda s: _f(s["normal_max"], "{:.1f}"))
    row(">= 50% right (|truth-50| >= 4)", lambda s: f"{s['decided']}/{s['n_far']}", "all")
    row("  wrong and not sent to a reader", lambda s: f"{s['confident_wrong']}", "0")
    row("tight (MLD < 2.5 px): n, MAE", lambda s: f"{s['tight_n']}, {_f(s['tight_mae'], '{:.1f}')}")
    row("tight: MLD bias (px)", lambda s: _f(s["tight_mld_bias"], "{:+.2f}"))
    refused = [r for r in rows if "err" not in r]
    if refused:
        print("\nrefused:")
        for r in refused:
            print(f"  {r['name']:<10} {r['refused']}")


def _line(r: dict) -> str:
    if "err" not in r:
        return f"  {r['name']:<9} {r['split']:<9} truth {r['percent']:5.1f}  REFUSED {r['refused']}"
    return (f"  {r['name']:<9} {r['split']:<9} d0 {r['reference_px']:5.2f} truth {r['percent']:5.1f} read {r['read']:5.1f}"
            f" +-{r['sd']:4.1f} err {r['err']:+6.1f}  MLD {r['mld_px']:5.2f}->{r['mld_read_px']:5.2f}"
            f"  ref {r['reference_px']:5.2f}->{r['ref_read_px']:5.2f} ({r['ref_choice'][:4]}) site {r['mld_site_px']:4.1f} px"
            f"  mu {r['mu_per_px']:.3f} blur {r['blur_sigma_px']:.2f}")


def main(argv=None) -> int:
    use_repo(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help=f"CI size: backgrounds {SMALL_IMAGES} (2 each) + 2 XA1 cases")
    ap.add_argument("--n", type=int, default=120, help="CIMAT cases (spread over the 40 backgrounds; default 120)")
    ap.add_argument("--n-xa1", type=int, default=12, help="cases on the XA1 cerebral frame (default 12)")
    ap.add_argument("--gamma", type=float, default=1.0, help="display-to-linear exponent of the backgrounds (1: display "
                    "proportional to intensity; large: close to a log display)")
    ap.add_argument("--structure-above", type=float, metavar="PX",
                    help="scale dissection: keep only the backgrounds' structure coarser than PX (a Gaussian of PX; "
                    "inf: flat), white noise of their own level for the rest")
    ap.add_argument("--true-background", action="store_true",
                    help="dissection: measure with the true background under the vessel (the frame before the vessel "
                    "went in) in place of the background model: what any model interpolated under the lumen could reach")
    ap.add_argument("--images", type=int, nargs="+", help="CIMAT backgrounds (default 1-40)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--repo", type=Path, help="checkout whose stenosis package is measured (put first on sys.path)")
    ap.add_argument("--param", action="append", metavar="NAME=VALUE",
                    help="measure with this MeasureParams field changed (repeatable; tuples as a:b)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--json", type=Path, help="per-case results")
    ap.add_argument("--save-png", type=Path, help="write each case's image here (to look at)")
    args = ap.parse_args(argv)
    MEASURE_KW.update(measure_kwargs(args.param))

    warnings.filterwarnings("ignore")
    import stenosis

    if not (args.data / "cimat-train").is_dir():
        print(f"real data not found at {args.data}: nothing to measure")
        return 0
    images = args.images or (SMALL_IMAGES if args.small else DEV + HELD_OUT)
    per_image = 2 if args.small else max(1, round(args.n / len(images)))
    n_xa1 = 2 if args.small else args.n_xa1
    if not (args.data / "wg04-xa1" / "XA1_UNC").exists():
        n_xa1 = 0
    print(f"stenosis {stenosis.__version__} from {Path(stenosis.__file__).parent}")
    t0 = time.perf_counter()
    cases = make_cases(args.data, images, per_image=per_image, n_xa1=n_xa1, seed=args.seed, gamma=args.gamma,
                       structure_above=args.structure_above, frames=TRUE_BACKGROUNDS if args.true_background else None)
    rows = []
    for split, case in cases:
        r = measure_case(case)
        r["split"] = split
        rows.append(r)
        if args.verbose:
            print(_line(r), flush=True)
        if args.save_png:
            from PIL import Image

            args.save_png.mkdir(parents=True, exist_ok=True)
            im = case.image.astype(float)
            im = (im - im.min()) / max(np.ptp(im), 1e-9) * 255
            Image.fromarray(im.astype(np.uint8)).save(args.save_png / f"{case.name}.png")
    print(f"({len(rows)} cases, {time.perf_counter() - t0:.0f} s)\n")
    print_tables(rows)
    if args.json:
        args.json.write_text(json.dumps({"stenosis": str(Path(stenosis.__file__).parent), "cases": rows},
                                        indent=1, default=float))
        print(f"\nper-case results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
