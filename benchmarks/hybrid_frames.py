"""Several frames on real anatomy: hybrid DSA runs, one frame against all, by dose.

``benchmarks/frames.py`` measures the frame combination on our own phantoms; this measures it on
the hybrid phantoms' real backgrounds (``benchmarks/hybrid.py``: a vessel of known geometry and
stenosis inserted, in the linear intensity domain, into a real CIMAT coronary angiogram). Each
case becomes a native run of 2 mask frames (the real background without the vessel, moved by a
random sub-pixel to 1 px shift: misregistration) and 5 contrast frames (the hybrid image), each
frame with its own quantum noise (Gaussian, SD ``dose`` grey levels at the background's mean,
growing as the square root of the intensity) on top of the background's own. Three doses are
cycled over the cases (added noise SD 8, 4 and 2 grey levels; the backgrounds' own noise is
about 1). The runs are untagged: their intensity relationship is read from the masks' noise
(:func:`stenosis.io.intensity.infer_intensity_relationship`, as reading a DICOM run does; LIN
here). Measured through ``stenosis.measure`` from the truth's points with
``frames="single"`` and ``frames="all"``, and the contrast frame alone as a single native frame
(no mask: the top-hat background model of ``benchmarks/hybrid.py``) for comparison.

Prints percent-stenosis MAE by dose and mode, the share of errors within 2 SD, and the normal
arteries' mean read. The mask frame subtracts the real anatomy (up to its misregistration), so
these runs say what a DSA run of real anatomy gives, not what the single native frames of
``benchmarks/hybrid.py`` give.

    python benchmarks/hybrid_frames.py            # 80 cases on CIMAT 1-40 (a few minutes)
    python benchmarks/hybrid_frames.py --small    # CI size
    python benchmarks/hybrid_frames.py --noise contrast   # only the noise the frames do not share
    python benchmarks/hybrid_frames.py --noise masks      # only the masks' noise, which they all share
    python benchmarks/hybrid_frames.py --late     # exported after the bolus arrived: no mask frame

``--late``: each run without its mask frames and untagged (as an export that starts after the
bolus arrived): every frame holds iodine, so frame 0 is no mask (``measurement.mask_check``).
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

#: keyword arguments of every stenosis.measure call (``--param``)
MEASURE_KW: dict = {}

#: added noise SD (grey levels at the background's mean) per dose level, lowest dose first
DOSES = (8.0, 4.0, 2.0)
N_MASK, N_LIVE = 2, 5


#: which frames get the added noise (``--noise``); the others get 1/16 of it
NOISE_IN = {"all": (1.0, 1.0), "contrast": (1.0 / 16, 1.0), "masks": (1.0, 1.0 / 16)}


def make_runs(data: Path, images, *, per_image: int, seed: int, n_mask: int = N_MASK, noise: str = "all",
              tag_masks: bool | str = True):
    """(name, split, dose, run, case) per hybrid case: the case's DSA run (2 masks, 5 contrast
    frames, fresh noise each) as an in-memory native run. ``noise``: "all" frames get the dose's
    noise, or only the "contrast" frames (noise the frames do not share) or only the "masks"
    (noise every subtracted frame shares); then the intensity relationship is given (LIN), the
    masks holding too little noise to read it from. ``tag_masks=False``: the masks are not tagged
    (no MaskSubtractionSequence), as in many exported native runs; ``"first"``: only the first is
    tagged, the others are frames before the bolus (a run whose acquisition tagged one mask)."""
    from scipy import ndimage as ndi

    import hybrid as hb

    from stenosis.io import AngioRun
    from stenosis.io.intensity import infer_intensity_relationship

    out = []
    k = 0
    for name, split, img, avoid, exposed, white, mu in hb.backgrounds(data, images, xa1=False):
        for j in range(per_image):
            case, rng = hb.draw_case(name, img, avoid, exposed, white, mu, j=j, n=per_image, seed=seed)
            if case is None:
                continue
            dose = DOSES[k % len(DOSES)]
            k += 1
            bg = img.astype(np.float32)
            shift = rng.uniform(-1.0, 1.0, 2)
            moved_bg = ndi.shift(bg, shift, order=1, mode="nearest")
            level = float(bg.mean())

            in_mask, in_live = NOISE_IN[noise]

            def noisy(x, k):
                sd = dose * k * np.sqrt(np.maximum(x, 0.0) / level)
                return np.clip(x + rng.normal(0.0, 1.0, x.shape) * sd, 0, white)

            frames = [noisy(moved_bg, in_mask) for _ in range(n_mask)] + [noisy(case.image.astype(np.float32), in_live)
                                                                          for _ in range(N_LIVE)]
            stack = np.stack(frames).astype(np.float32)
            # untagged, as a DICOM read would treat it: the relationship read from the masks' noise
            rel = infer_intensity_relationship(stack, tuple(range(n_mask)))[0] if noise == "all" else "LIN"
            run = AngioRun.from_array(stack, pixel_intensity_relationship=rel,
                                      mask_frames=(0,) if tag_masks == "first" else tuple(range(n_mask)) if tag_masks else (),
                                      source=case.name)
            out.append((case.name, split, dose, run, case))
    return out


MASK_NOTES = ("iodine along the segment", "no bolus is seen there")  # in measurement.mask_check's notes


def measure(run, case, **kw) -> tuple[float, float, bool, int]:
    """(percent, SD, whether the result says the mask held iodine, mask frames subtracted); NaN
    (and 0 masks) when refused."""
    import stenosis

    try:
        r = stenosis.measure(run, "M1", case.proximal_rc, case.distal_rc, **kw, **MEASURE_KW)
    except stenosis.StenosisError:
        return float("nan"), float("nan"), False, 0
    return (float(r.percent_stenosis), float(r.percent_stenosis_sd), any(n in w for w in r.warnings for n in MASK_NOTES),
            len(r.frames.get("mask") or ()))


def main(argv=None) -> int:
    use_repo(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="CI size: 3 backgrounds, 2 cases each")
    ap.add_argument("--per-image", type=int, default=2, help="cases per CIMAT background (default 2)")
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--masks", type=int, default=N_MASK, help=f"mask frames per run (default {N_MASK})")
    ap.add_argument("--noise", choices=sorted(NOISE_IN), default="all",
                    help="frames that get the added noise: all (default), contrast (not shared) or masks (shared)")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--repo", type=Path, help="checkout whose stenosis package is measured (put first on sys.path)")
    ap.add_argument("--tag-first-mask", action="store_true",
                    help="tag only the first mask frame (the others are frames before the bolus)")
    ap.add_argument("--untagged-masks", action="store_true",
                    help="the mask frames not tagged (no MaskSubtractionSequence), as in many exported native runs")
    ap.add_argument("--late", action="store_true",
                    help="each run without its masks, untagged: exported after the bolus arrived")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--param", action="append", metavar="NAME=VALUE",
                    help="measure with this MeasureParams field changed (repeatable; tuples as a:b)")
    args = ap.parse_args(argv)
    MEASURE_KW.update(measure_kwargs(args.param))
    warnings.filterwarnings("ignore")
    import hybrid as hb

    import stenosis
    from stenosis.io import AngioRun

    print(f"stenosis {stenosis.__version__} from {Path(stenosis.__file__).parent}")
    if not (args.data / "cimat-train").is_dir():
        print(f"real data not found at {args.data}: nothing to measure")
        return 0
    images = hb.SMALL_IMAGES if args.small else hb.DEV + hb.HELD_OUT
    t0 = time.perf_counter()
    rows = []
    for name, split, dose, run, case in make_runs(args.data, images, per_image=args.per_image, seed=args.seed,
                                                     n_mask=args.masks, noise=args.noise,
                                                     tag_masks="first" if args.tag_first_mask else
                                                     not args.untagged_masks):
        truth = case.truth["percent"]
        if args.late:
            run = AngioRun.from_array(np.asarray(run.frames[args.masks:]),
                                      pixel_intensity_relationship=run.metadata.pixel_intensity_relationship,
                                      source=name)
        single = measure(run, case, frames="single")
        every = measure(run, case)
        native = measure(AngioRun.from_array(np.asarray(run.frames[0 if args.late else args.masks]), pixel_intensity_relationship=None,
                                             source=name), case)
        rows.append({"name": name, "dose": dose, "truth": truth, "single": single, "all": every, "native": native})
        if args.verbose:
            print(f"{name:7s} dose {dose:3.0f} truth {truth:5.1f}  single {single[0]:5.1f} +- {single[1]:4.1f}  "
                  f"all {every[0]:5.1f} +- {every[1]:4.1f}  native frame {native[0]:5.1f}", flush=True)
    print(f"({len(rows)} cases, {time.perf_counter() - t0:.0f} s)\n")
    where = {"all": "", "contrast": ", added noise in the contrast frames only",
             "masks": ", added noise in the masks only"}[args.noise]
    what = f"no mask (--late), {N_LIVE} contrast frames" if args.late else f"{args.masks} masks + {N_LIVE} contrast frames"
    print(f"hybrid DSA runs (real CIMAT anatomy, {what}{where}); percent "
          "stenosis, errors = read - truth")
    print(f"{'added noise (grey levels)':<26}{'n':>4}{'MAE single':>12}{'MAE all':>10}{'change':>8}"
          f"{'2SD single':>12}{'2SD all':>9}{'native frame MAE':>18}")
    print("-" * 99)
    for dose in DOSES + (None,):
        sel = [r for r in rows if dose is None or r["dose"] == dose]
        if not sel:
            continue
        t = np.array([r["truth"] for r in sel])
        s = np.array([r["single"] for r in sel])
        a = np.array([r["all"] for r in sel])
        nv = np.array([r["native"][0] for r in sel])
        es, ea = np.abs(s[:, 0] - t), np.abs(a[:, 0] - t)
        ok = np.isfinite(es) & np.isfinite(ea)
        mae_s, mae_a = es[ok].mean(), ea[ok].mean()
        w_s = np.mean(es[ok] <= 2 * s[ok, 1]) * 100
        w_a = np.mean(ea[ok] <= 2 * a[ok, 1]) * 100
        label = f"{dose:.0f}" if dose is not None else "all"
        print(f"{label:<26}{len(sel):>4}{mae_s:>12.2f}{mae_a:>10.2f}{(mae_a / mae_s - 1) * 100:>7.0f}%"
              f"{w_s:>11.0f}%{w_a:>8.0f}%{np.nanmean(np.abs(nv - t)):>18.2f}")
    normal = [r for r in rows if r["truth"] == 0]
    if normal:
        print(f"normal arteries ({len(normal)}): mean read single {np.nanmean([r['single'][0] for r in normal]):.1f}%, "
              f"all {np.nanmean([r['all'][0] for r in normal]):.1f}%, native frame "
              f"{np.nanmean([r['native'][0] for r in normal]):.1f}%")
    refused = sum(not np.isfinite(r["all"][0]) for r in rows)
    print(f"refused: {refused} of {len(rows)}")
    masks = {d: [r["all"][3] for r in rows if r["dose"] == d and np.isfinite(r["all"][0])] for d in DOSES}
    print("mask frames subtracted (all frames; by added noise): " + ", ".join(
        f"{d:.0f}: {np.mean(m):.2f} ({sum(k >= args.masks for k in m)} of {len(m)} with {args.masks}+)"
        for d, m in masks.items() if m))
    said = sum(r["all"][2] for r in rows)
    print(f"results saying the mask held iodine (or no bolus was seen): {said} of {len(rows) - refused}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
