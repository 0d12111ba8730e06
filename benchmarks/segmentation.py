"""Vessel segmentation benchmark: U-Net vs classical vesselness.

Accuracy: Dice and clDice (Shit et al., CVPR 2021, doi:10.1109/CVPR46437.2021.01629)
of ``segment_vessels`` masks
  * on the held-out CIMAT validation angiograms (real coronary X-ray, expert
    masks; ids from ``models/config.json``, never trained on), and
  * on phantom runs (``stenosis.phantom.render_phantom``: the fully opacified
    frame and its true lumen mask; native and subtracted; unseen seeds), and
  * on ``stenosis.phantom.training_pair`` phantoms (wider noise/blur ranges,
    seed never used in training).
A "fused" row (mean of the two probability maps) shows whether fusion helps.
Speed: ``vessel_probability`` wall time at 512x512 and 1024x1024 (median of
repeats; the real 1024x1024 WG04 cerebral angiogram when ../shared/data has it).

Usage::

    python benchmarks/segmentation.py            # full run
    python benchmarks/segmentation.py --small    # CI-sized (a few seconds)

Targets (issue 4): real Dice >= 0.80 and clDice >= 0.85; phantom Dice >= 0.90;
<= 0.25 s at 512x512 and <= 1.0 s at 1024x1024 on 2 cores.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import stenosis
from stenosis.segmentation import (
    CONFIG_NAME,
    cldice_score,
    dice_score,
    model_sha256,
    models_dir,
    vessel_probability,
)
from stenosis.vesselness import hysteresis_mask
from stenosis.unet_numpy import NUMPY_MAX_PIXELS

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
PHANTOM_SEED = 777_001  # not used by models/train.py (its pool uses seed + 1000)


def _val_ids() -> list[int]:
    try:
        cfg = json.loads((models_dir() / CONFIG_NAME).read_text())
        return list(cfg["training"]["real_val_ids"])
    except (OSError, KeyError, ValueError):
        return [1, 2, 3, 10, 12, 18, 22, 29]  # train.py split for --seed 0 --n-val 8


def _real_cases(n: int | None):
    from skimage import io

    d = SHARED / "cimat-train"
    if not d.is_dir():
        return []
    ids = _val_ids()[:n] if n else _val_ids()
    return [(f"cimat {i}", io.imread(d / f"{i}.png"), io.imread(d / f"{i}_gt.png") > 127) for i in ids]


def _phantom_runs(n: int, shape: tuple[int, int]):
    """Frames of phantom runs (the measurement phantoms), fully opacified frame + lumen mask."""
    try:
        from stenosis.enums import Segment
        from stenosis.phantom import PhantomSpec, lumen_mask, render_phantom
    except ImportError:
        return []
    segs = list(Segment)
    out = []
    for k in range(n):
        spec = PhantomSpec(seed=PHANTOM_SEED + k, segment=segs[k % len(segs)], subtracted=bool(k % 2),
                           shape=shape, stenosis_percent=float(30 + (k * 37) % 60))
        ph = render_phantom(spec)
        frame = ph.stored[ph.frame_index]
        truth = lumen_mask(ph.scene.tubes, frame.shape, spec.mm_per_px, shift_px=spec.motion_px)
        out.append((f"run {k}", frame, truth))
    return out


def _phantom_cases(n: int, size: int):
    """training_pair phantoms (wider noise/blur ranges than the runs) with an unseen seed."""
    try:
        from stenosis.phantom import training_pair
    except ImportError:
        return []
    rng = np.random.default_rng(PHANTOM_SEED)
    out = []
    for k in range(n):
        img, mask = training_pair(rng, size=size)
        out.append((f"phantom {k}", img, mask))
    return out


def _probabilities(img, models):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        maps = {m: vessel_probability(img, model=m) for m in models if m != "fused"}
    if "fused" in models:
        maps["fused"] = 0.5 * (maps["unet"] + maps["classical"])
    return maps


def dice_breakdown(mask: np.ndarray, truth: np.ndarray, far_px: float = 2.0) -> dict:
    """Where a mask loses Dice: its Dice with each kind of error corrected in turn.

    Errors farther than ``far_px`` from the other mask are *far* false positives (whole
    vessels or catheters the truth leaves out) and *far* false negatives (vessels missed);
    the rest are boundary disagreements (where an edge is drawn).
    """
    from scipy import ndimage as ndi

    far_fp = mask & (ndi.distance_transform_edt(~truth) > far_px)
    far_fn = truth & (ndi.distance_transform_edt(~mask) > far_px)
    return {
        "dice": dice_score(mask, truth),
        "no far FP": dice_score(mask & ~far_fp, truth),
        "no far FN": dice_score(mask | far_fn, truth),
        "exact edges": dice_score((truth & ~far_fn) | far_fp, truth),
    }


def accuracy(cases, models, *, breakdown: bool = False):
    scores = {m: {"dice": [], "cldice": [], "breakdown": []} for m in models}
    for _, img, truth in cases:
        for m, p in _probabilities(img, models).items():
            low = 0.25 if m == "classical" else 0.4  # as segment_vessels
            mask = hysteresis_mask(p, high=0.5, low=low)
            scores[m]["dice"].append(dice_score(mask, truth))
            scores[m]["cldice"].append(cldice_score(mask, truth))
            if breakdown:
                scores[m]["breakdown"].append(dice_breakdown(mask, truth))
    return scores


@functools.lru_cache(maxsize=None)
def _timing_frame(size: int) -> tuple[np.ndarray, str]:
    f = SHARED / "wg04-xa1" / "XA1_UNC"
    if f.exists():
        try:
            import pydicom

            a = pydicom.dcmread(f).pixel_array.astype(np.float32)
            if a.ndim == 3:
                a = a[0]
            if a.shape != (size, size):
                from skimage.transform import resize

                a = resize(a, (size, size), order=1, preserve_range=True, anti_aliasing=True)
            return a.astype(np.uint16), "WG04 XA1"
        except Exception:  # fall back to a phantom
            pass
    cases = _phantom_cases(1, size)
    if cases:
        return (cases[0][1] * 1000).astype(np.float32), "phantom"
    return np.random.default_rng(0).normal(1000, 50, (size, size)).astype(np.float32), "noise"


def timing(models, sizes, repeats):
    rows = []
    for size in sizes:
        frame, src = _timing_frame(size)
        for m in models:
            if m == "fused":
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                vessel_probability(frame, model=m)  # warm-up: weights load, primitive caches
                ts = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    vessel_probability(frame, model=m)
                    ts.append(time.perf_counter() - t0)
            rows.append((m, f"{size}x{size}", src, float(np.median(ts)), float(np.min(ts))))
    return rows


_COLD = """
import sys, time
import numpy as np
frame = np.load(sys.argv[1])
t0 = time.perf_counter()
import stenosis
stenosis.vessel_probability(frame)
print(time.perf_counter() - t0)
"""


def cold_start(sizes, repeats: int = 3):
    """Seconds from ``import stenosis`` to the first U-Net map in a new process: what one
    call costs a script that segments one frame (library import, torch import above the
    numpy engine's size, weights read and hash check, inference)."""
    import subprocess
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            frame, src = _timing_frame(size)
            f = Path(tmp) / f"frame{size}.npy"
            np.save(f, frame)
            ts = []
            for _ in range(repeats):
                out = subprocess.run([sys.executable, "-c", _COLD, str(f)], capture_output=True, text=True,
                                     timeout=300, check=True)
                ts.append(float(out.stdout.strip().splitlines()[-1]))
            rows.append(("unet", f"{size}x{size}", src, float(np.median(ts)), float(np.min(ts))))
    return rows


def figure(path: Path, real_cases, models) -> None:
    """Maps on the real cerebral angiogram (WG04 XA1) and on one held-out CIMAT image."""
    from matplotlib.figure import Figure

    frame, src = _timing_frame(1024)
    rows = [("WG04 XA1 cerebral (1024 px)", frame, None)]
    if real_cases:
        i, img, truth = real_cases[0]
        rows.append((f"CIMAT {i} (held out)", img, truth))
    maps = [m for m in models if m != "fused"]
    ncol = 2 + len(maps)
    fig = Figure(figsize=(3.2 * ncol, 3.3 * len(rows)), dpi=90)
    for r, (label, img, truth) in enumerate(rows):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            probs = {m: vessel_probability(img, model=m) for m in maps}
        panels = [(label, img, "gray"), ("expert mask" if truth is not None else "(no expert mask)",
                                          truth if truth is not None else np.zeros_like(img), "gray")]
        panels += [(f"{m} probability", probs[m], "magma") for m in maps]
        for c, (title, a, cmap) in enumerate(panels):
            ax = fig.add_subplot(len(rows), ncol, r * ncol + c + 1)
            ax.imshow(a, cmap=cmap, vmin=0 if cmap == "magma" else None, vmax=1 if cmap == "magma" else None)
            ax.set_title(title, fontsize=9)
            ax.set_axis_off()
    fig.suptitle(f"vessel probability, U-Net sha256 {(model_sha256() or 'none')[:12]} (sources: DICOM WG04; CIMAT, BSD-3)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def bootstrap_ci(values, n_boot: int = 10000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean over cases (cases resampled with
    replacement): how far the mean of a few images may sit from the mean of many."""
    v = np.asarray(values, float)
    if v.size < 2:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, v.size, size=(n_boot, v.size))
    lo, hi = np.percentile(v[idx].mean(axis=1), [2.5, 97.5])
    return float(lo), float(hi)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="CI-sized run (a few seconds)")
    ap.add_argument("--figure", type=Path, default=None, help="also write a PNG of the maps on real images")
    args = ap.parse_args(argv)

    have_unet = model_sha256() is not None
    models = ["classical"] + (["unet", "fused"] if have_unet else [])
    if args.small:
        real, runs, phantoms = _real_cases(1), _phantom_runs(1, (256, 256)), _phantom_cases(1, 192)
        sizes, repeats = (512,), 1
    else:
        real, runs, phantoms = _real_cases(None), _phantom_runs(8, (512, 512)), _phantom_cases(16, 384)
        sizes, repeats = (384, 512, 1024), 5

    print(f"stenosis {stenosis.__version__}  U-Net sha256: {model_sha256() or 'none (not shipped)'}")
    print()
    print(f"{'dataset':<23} {'model':<10} {'n':>3} {'Dice':>7} {'Dice 95% CI':>13} {'clDice':>7} {'Dice min':>9}")
    print("-" * 77)
    sets = (("real CIMAT validation", real), ("phantom runs", runs), ("training-pair phantoms", phantoms))
    breakdown = None
    for label, cases in sets:
        if not cases:
            print(f"{label:<23} {'-':<10} {0:>3} {'n/a':>7} {'n/a':>13} {'n/a':>7} {'n/a':>9}")
            continue
        scores = accuracy(cases, models, breakdown=cases is real)
        if cases is real:
            breakdown = {m: scores[m]["breakdown"] for m in models}
        for m in models:
            d, c = scores[m]["dice"], scores[m]["cldice"]
            lo, hi = bootstrap_ci(d)
            ci = f"{lo:.3f}-{hi:.3f}" if np.isfinite(lo) else "n/a"
            print(f"{label:<23} {m:<10} {len(d):>3} {np.mean(d):>7.3f} {ci:>13} {np.mean(c):>7.3f} {np.min(d):>9.3f}")
    if breakdown:
        keys = list(breakdown[models[0]][0])
        print()
        print("real validation: mean Dice with one kind of error corrected (far = more than 2 px from the other mask)")
        print(f"{'model':<10} " + " ".join(f"{k:>12}" for k in keys))
        print("-" * (11 + 13 * len(keys)))
        for m in models:
            print(f"{m:<10} " + " ".join(f"{np.mean([b[k] for b in breakdown[m]]):>12.3f}" for k in keys))
    print()
    print(f"{'model':<10} {'size':<10} {'frame':<9} {'median s':>9} {'min s':>7}")
    print("-" * 50)
    for m, size, src, med, mn in timing(models, sizes, repeats):
        print(f"{m:<10} {size:<10} {src:<9} {med:>9.3f} {mn:>7.3f}")
    print("(Dice 95% CI: percentile bootstrap over the images of each set, 10,000 resamples)")
    if have_unet:
        print()
        print(f"{'first call in a new process':<31} {'median s':>9} {'min s':>7}")
        print("-" * 50)
        for m, size, src, med, mn in cold_start(sizes[-1:], repeats):
            print(f"{m + ' ' + size + ' ' + src:<31} {med:>9.3f} {mn:>7.3f}")
        print("(import stenosis -> first map: library and torch import, weights read + hash check, inference)")
    print(f"(inference threads: STENOSIS_THREADS or min(4, CPU count); CPU count = {os.cpu_count()}; frames up to "
          f"{NUMPY_MAX_PIXELS} px, e.g. the measurement's crops, run on the torch-free numpy engine)")
    if args.figure is not None:
        figure(args.figure, real, models)
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
