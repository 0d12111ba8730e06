"""Train the shipped vessel U-Net (stenosis.unet.UNet).

Data
----
* The 40 real coronary X-ray angiograms of ``../shared/data/cimat-train``
  (``N.png`` + ``N_gt.png``, 300x300, vessels dark; Cervantes-Sanchez et al.,
  Applied Sciences 2019, 9(24):5507). A fixed validation split (``--n-val``
  images chosen with ``--seed``) is never trained on; the best checkpoint is
  chosen and reported on it only.
* Phantom pairs from ``stenosis.phantom.training_pair(rng, size=...)`` when
  that function exists (a pool generated once at start-up with its own seed).

Augmentation (on the fly): scale (log-uniform), small rotation, 90-degree
rotations, flips, gamma, low-frequency background, "subtracted-like"
high-pass variant, blur, noise. Input normalisation is exactly the inference
one (:func:`stenosis.unet.preprocess`, on the whole augmented image).

Loss: BCE + soft Dice + soft clDice (Shit et al., CVPR 2021,
https://doi.org/10.1109/CVPR46437.2021.01629).

The run is sized to a wall-time budget (``--minutes``): the learning-rate
schedule (warm-up + cosine) follows elapsed time, so a shared machine whose
load changes still finishes on time with a complete schedule. ``--steps N``
switches to a step-based schedule (exactly reproducible given the seed). Outputs go to ``--out`` (default
``models/checkpoints/run`` (git-ignored)): ``best.pt`` (best validation Dice), ``last.pt``,
``config.json`` and ``history.json``; ``--ship`` copies the best weights to
``models/unet.pt`` with ``config.json`` and ``weights.sha256``.

Example (the shipped model; see MODEL_CARD.md for the exact command)::

    nice -n 10 python models/train.py --minutes 55 --seed 0 --ship
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import math
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from skimage import io

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from stenosis.segmentation import cldice_score, dice_score  # noqa: E402
from stenosis.unet import UNet, predict_probability, preprocess  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "cimat-train"


# ----------------------------------------------------------------------------- data
def load_cimat(folder: Path) -> list[tuple[int, np.ndarray, np.ndarray]]:
    out = []
    for i in range(1, 41):
        img, gt = folder / f"{i}.png", folder / f"{i}_gt.png"
        if img.is_file() and gt.is_file():
            a = io.imread(img)
            a = a if a.ndim == 2 else a[..., 0]
            g = io.imread(gt)
            g = g if g.ndim == 2 else g[..., 0]
            out.append((i, a.astype(np.float32) / 255.0, g > 127))
    if not out:
        raise SystemExit(f"no CIMAT images found in {folder}")
    return out


def split_ids(ids: list[int], n_val: int, seed: int) -> tuple[list[int], list[int]]:
    """Fixed validation split: ``n_val`` ids drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    val = sorted(int(i) for i in rng.choice(np.array(ids), size=n_val, replace=False))
    train = [i for i in ids if i not in val]
    return train, val


def phantom_pool(n: int, seed: int, size: int, budget_s: float, log) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pre-generate phantom (image, mask) pairs, or [] if the phantom engine is absent."""
    try:
        from stenosis.phantom import training_pair
    except Exception as exc:  # the phantom package may not exist yet
        log(f"phantoms: not available ({exc!r}); training on real images only")
        return []
    rng = np.random.default_rng(seed)
    pool, t0 = [], time.time()
    for _ in range(n):
        if time.time() - t0 > budget_s:
            break
        pair = training_pair(rng, size=size)
        if isinstance(pair, dict):
            img, mask = pair["image"], pair["mask"]
        elif hasattr(pair, "image"):
            img, mask = pair.image, pair.mask
        else:
            img, mask = pair[0], pair[1]
        img = np.asarray(img, np.float32)
        lo, hi = np.percentile(img, [0.5, 99.5])
        img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
        pool.append((img, np.asarray(mask, bool)))
    log(f"phantoms: {len(pool)} pairs of {size} px in {time.time() - t0:.0f} s")
    return pool


def augment(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator, patch: int,
            scale_range=(0.6, 1.8), photometric: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Random geometric + photometric variant, cropped to ``patch`` (img in [0, 1], vessels dark).

    ``photometric`` scales the chance of every photometric change (high-pass, background
    gradient, lowered contrast, blur, noise) and the width of the gamma range; 0 keeps the
    image's own grey levels (fine-tuning to the expert masks' own images).
    """
    pf = float(photometric)
    h, w = img.shape
    s = math.exp(rng.uniform(math.log(scale_range[0]), math.log(scale_range[1])))
    ang = math.radians(rng.uniform(-25, 25)) if rng.random() < 0.6 else 0.0
    # output size: the scaled image, at least one patch
    oh, ow = max(patch, int(round(h * s))), max(patch, int(round(w * s)))
    c, si = math.cos(ang), math.sin(ang)
    mat = np.array([[c, -si], [si, c]]) / s  # output (r, c) -> input (r, c)
    centre_out = np.array([(oh - 1) / 2, (ow - 1) / 2])
    centre_in = np.array([(h - 1) / 2, (w - 1) / 2])
    offset = centre_in - mat @ centre_out
    # crop window in the output frame, computed before warping to save time
    r0 = int(rng.integers(0, oh - patch + 1))
    c0 = int(rng.integers(0, ow - patch + 1))
    offset_crop = offset + mat @ np.array([r0, c0])
    im = ndi.affine_transform(img, mat, offset=offset_crop, output_shape=(patch, patch), order=1, mode="reflect")
    mk = ndi.affine_transform(mask.astype(np.float32), mat, offset=offset_crop, output_shape=(patch, patch),
                              order=1, mode="reflect") > 0.5
    k = int(rng.integers(0, 4))
    im, mk = np.rot90(im, k), np.rot90(mk, k)
    if rng.random() < 0.5:
        im, mk = im[:, ::-1], mk[:, ::-1]
    im = np.clip(im, 0, 1)
    # photometric
    if rng.random() < 0.3 * pf:  # subtracted-like: remove the anatomical background
        bg = ndi.gaussian_filter(im, rng.uniform(8, 30))
        im = im - bg
        im = (im - im.min()) / max(im.max() - im.min(), 1e-6)
    if rng.random() < 0.4 * pf:  # smooth background gradient (heel effect, soft tissue)
        yy, xx = np.mgrid[0:patch, 0:patch] / patch
        g = rng.normal(0, 0.25) * (yy - 0.5) + rng.normal(0, 0.25) * (xx - 0.5)
        im = np.clip(im + g, 0, 1)
    if rng.random() < 0.3 * pf:  # lower vessel contrast
        soft = ndi.gaussian_filter(mk.astype(np.float32), 1.0)
        bg = ndi.grey_closing(im, size=(9, 9))
        im = im + rng.uniform(0.2, 0.6) * soft * (bg - im)
    im = np.clip(im, 0, 1) ** math.exp(pf * rng.uniform(math.log(0.6), math.log(1.7)))
    if rng.random() < 0.5 * pf:
        im = ndi.gaussian_filter(im, rng.uniform(0.3, 1.3))
    if rng.random() < 0.7 * pf:
        sd = rng.uniform(0.0, 0.06)
        im = im + rng.normal(0, sd, im.shape) * np.sqrt(np.clip(im, 0.05, 1))  # quantum-like noise
    x = preprocess(im.astype(np.float32))
    return x, np.ascontiguousarray(mk)


def add_catheter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paint a catheter or guidewire into ``img`` (in [0, 1], vessels dark); the mask is unchanged.

    Expert masks leave catheters out, and the network had learnt to segment them (the
    worst validation image lost 0.2 Dice to one). A catheter is what a vessel is not:
    constant width, nearly straight (a circular arc of radius >= 1.5 image sides), edge to
    edge, often with radio-opaque walls (tram-track profile); a guidewire is a thin, very
    dark line. Painted before the geometric augmentation, so it is scaled, rotated and
    blurred with the image.
    """
    h, w = img.shape
    size = float(max(h, w))
    guidewire = rng.random() < 0.3
    r_out = rng.uniform(0.5, 1.0) if guidewire else rng.uniform(1.0, 3.5)  # outer radius, px
    # the curve: a circle of radius R through a random point, at a random heading
    p0 = np.array([rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w])
    th = rng.uniform(0, np.pi)
    tangent = np.array([np.sin(th), np.cos(th)])
    normal = np.array([tangent[1], -tangent[0]])
    curv = rng.uniform(-1, 1) / (rng.uniform(1.5, 12.0) * size)  # signed curvature, 1/px
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
    dr, dc = rr - p0[0], cc - p0[1]
    if abs(curv) < 1e-9:
        x = dr * normal[0] + dc * normal[1]
    else:
        ctr = p0 + normal / curv
        x = np.sign(curv) * (1.0 / abs(curv) - np.hypot(rr - ctr[0], cc - ctr[1]))
    ax = np.abs(x)

    def chord(r):
        return 2.0 * np.sqrt(np.clip(r * r - ax * ax, 0.0, None))

    if guidewire:
        att = chord(r_out)
    else:
        r_in = r_out * rng.uniform(0.6, 0.85)
        wall, lumen = rng.uniform(1.0, 3.0), rng.uniform(0.0, 1.0)  # relative attenuation
        att = wall * (chord(r_out) - chord(r_in)) + lumen * chord(r_in)
    if att.max() <= 0:
        return img
    att = ndi.gaussian_filter(att, rng.uniform(0.4, 2.0)) / att.max()
    depth = rng.uniform(0.3, 0.7) if guidewire else rng.uniform(0.1, 0.45)
    return np.clip(img * (1.0 - depth * np.clip(att, 0, 1)), 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------- losses
def soft_skeleton(p: torch.Tensor, iters: int) -> torch.Tensor:
    """Soft skeleton by iterated min/max pooling (Shit et al. 2021)."""

    def erode(x):
        return -F.max_pool2d(-x, 3, 1, 1)

    def dilate(x):
        return F.max_pool2d(x, 3, 1, 1)

    skel = F.relu(p - dilate(erode(p)))
    for _ in range(iters):
        p = erode(p)
        delta = F.relu(p - dilate(erode(p)))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def loss_fn(logits: torch.Tensor, target: torch.Tensor, w_cldice: float, skel_iters: int) -> tuple[torch.Tensor, dict]:
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    inter = (p * target).sum((1, 2, 3))
    dice = 1 - ((2 * inter + 1) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)).mean()
    total = bce + dice
    parts = {"bce": bce.item(), "dice": dice.item()}
    if w_cldice > 0:
        sp, st = soft_skeleton(p, skel_iters), soft_skeleton(target, skel_iters)
        tprec = ((sp * target).sum((1, 2, 3)) + 1) / (sp.sum((1, 2, 3)) + 1)
        tsens = ((st * p).sum((1, 2, 3)) + 1) / (st.sum((1, 2, 3)) + 1)
        cl = 1 - (2 * tprec * tsens / (tprec + tsens)).mean()
        total = total + w_cldice * cl
        parts["cldice"] = cl.item()
    return total, parts


# ----------------------------------------------------------------------------- eval
def evaluate(model: UNet, val: list[tuple[int, np.ndarray, np.ndarray]]) -> dict:
    model.eval()
    ds, cls = [], []
    for _, img, gt in val:
        p = predict_probability(model, img, num_threads=torch.get_num_threads())
        m = p >= 0.5
        ds.append(dice_score(m, gt))
        cls.append(cldice_score(m, gt))
    model.train()
    return {"dice": float(np.mean(ds)), "cldice": float(np.mean(cls)), "dice_per_image": [round(d, 4) for d in ds]}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def widen_state_dict(old: dict, old_arch: dict, model: UNet) -> dict:
    """State dict for the wider ``model`` that computes what the narrower ``old`` one did.

    Every old channel keeps its index (within each concatenated input of a decoder block);
    new channels keep their fresh random incoming weights, and their outgoing weights are
    zero, so the wider network starts with the old output and learns to use them.
    """
    new_arch = model.config
    if {k: v for k, v in old_arch.items() if k != "base_channels"} != \
            {k: v for k, v in new_arch.items() if k != "base_channels"}:
        raise SystemExit("--base-channels can only change the width, not depth/growth/norm")
    g, depth = new_arch["growth"], new_arch["depth"]
    ch_old = [old_arch["base_channels"] * g**k for k in range(depth + 1)]
    ch_new = [new_arch["base_channels"] * g**k for k in range(depth + 1)]

    def in_index(name: str, conv_pos: int) -> np.ndarray:
        """New input-channel index of each old input channel of a convolution."""
        part, k = name.split(".")[0], int(name.split(".")[1]) if "." in name else 0
        if part == "head":
            return np.arange(ch_old[0])
        if part == "encoders":
            if conv_pos > 0:
                return np.arange(ch_old[k])
            return np.arange(new_arch["in_channels"]) if k == 0 else np.arange(ch_old[k - 1])
        if conv_pos > 0:  # decoders
            return np.arange(ch_old[k])
        up, skip = np.arange(ch_old[k + 1]), ch_new[k + 1] + np.arange(ch_old[k])
        return np.concatenate([up, skip])

    out = {k: v.clone() for k, v in model.state_dict().items()}
    for key, val in old.items():
        parts = key.split(".")
        if parts[0] == "head":
            block, pos = "head", 0
        else:
            block, pos = ".".join(parts[:2]), int(parts[2])
        dst = out[key]
        if val.ndim == 0:  # num_batches_tracked
            dst.copy_(val)
            continue
        n_out = val.shape[0]
        if key.endswith("weight") and val.ndim == 4:  # convolution
            idx = torch.from_numpy(in_index(block, pos))
            dst[:n_out].zero_()  # old outputs ignore the new inputs ...
            dst[:n_out, idx] = val  # ... and keep their weights; new outputs keep their random init
        else:  # conv bias, batch-norm parameters and statistics
            dst[:n_out] = val
        out[key] = dst
    return out


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=HERE / "checkpoints" / "run")
    ap.add_argument("--config", type=Path, default=HERE / "config.json",
                    help="architecture + training defaults (the shipped config.json)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split-seed", type=int, default=None, help="seed of the validation split (default --seed)")
    ap.add_argument("--n-val", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=55.0, help="wall-time budget (sizes --steps)")
    ap.add_argument("--steps", type=int, default=0, help="fixed number of steps (overrides --minutes)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=160)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--cldice", type=float, default=0.5, help="weight of the soft clDice term")
    ap.add_argument("--skel-iters", type=int, default=6)
    ap.add_argument("--cldice-from", type=float, default=0.5, help="fraction of steps before clDice is on")
    ap.add_argument("--phantom-frac", type=float, default=0.3)
    ap.add_argument("--phantoms", type=int, default=240, help="phantom pool size")
    ap.add_argument("--phantom-size", type=int, default=256)
    ap.add_argument("--real-scale", type=float, nargs=2, default=(0.6, 1.8), metavar=("LO", "HI"),
                    help="scale augmentation range of the real images")
    ap.add_argument("--photometric", type=float, default=1.0,
                    help="strength of the photometric augmentation of real images (1 = full, 0 = none)")
    ap.add_argument("--catheters", type=float, default=0.0,
                    help="probability of painting a synthetic catheter/guidewire (label 0) into a sample")
    ap.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                    help="evaluate and keep an exponential moving average of the weights (0 = off; e.g. 0.999)")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--init", type=Path, default=None, help="start from these weights (continue a run)")
    ap.add_argument("--base-channels", type=int, default=None,
                    help="widen the architecture of --config to this many full-resolution channels; "
                         "--init weights of the narrower model are copied in (function-preserving)")
    ap.add_argument("--ship", action="store_true", help="copy best weights to models/unet.pt + hash")
    ap.add_argument("--ship-from", type=Path, default=None, metavar="RUN_DIR",
                    help="only ship a finished run's best.pt + config.json (a run started without --ship)")
    args = ap.parse_args(argv)
    if args.ship_from is not None:
        return ship(args.ship_from, print)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    logf = open(args.out / "train.log", "a")

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    t_start = time.time()
    cfg = json.loads(args.config.read_text()) if args.config.is_file() else {}
    arch = cfg.get("architecture", {"in_channels": 1, "out_channels": 1, "base_channels": 8, "depth": 4,
                                    "growth": 2, "norm": "batch", "dropout": 0.0})
    log(f"argv: {' '.join(sys.argv)}")
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
    init_arch = dict(arch)
    if args.base_channels is not None:
        arch = {**arch, "base_channels": args.base_channels}
    log(f"architecture: {arch}")

    data = load_cimat(args.data)
    train_ids, val_ids = split_ids([d[0] for d in data], args.n_val,
                                     args.seed if args.split_seed is None else args.split_seed)
    train = [d for d in data if d[0] in train_ids]
    val = [d for d in data if d[0] in val_ids]
    log(f"real: {len(train)} train, {len(val)} validation ids {val_ids}")
    pool = phantom_pool(args.phantoms, args.seed + 1000, args.phantom_size, budget_s=240, log=log)
    phantoms_from_step = 0 if pool else None

    model = UNet(**arch)
    if args.init is not None:
        state = torch.load(args.init, map_location="cpu", weights_only=True)
        if arch != init_arch:
            state = widen_state_dict(state, init_arch, model)
            log(f"widened {init_arch['base_channels']} -> {arch['base_channels']} base channels")
        model.load_state_dict(state)
        log(f"initialised from {args.init} (sha256 {sha256(args.init)[:16]})")
    model.to(memory_format=torch.channels_last)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    log(f"parameters: {n_params}")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    # EMA of every floating-point entry of the state (weights and batch-norm statistics);
    # evaluated and saved instead of the raw weights when --ema is on
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()} if args.ema > 0 else None
    eval_model = UNet(**arch).to(memory_format=torch.channels_last) if ema is not None else model

    def batch():
        xs, ys = [], []
        for _ in range(args.batch):
            if pool and rng.random() < args.phantom_frac:
                img, mk = pool[int(rng.integers(len(pool)))]
                if rng.random() < args.catheters:
                    img = add_catheter(img, rng)
                x, y = augment(img, mk, rng, args.patch, scale_range=(0.7, 1.4))
            else:
                _, img, mk = train[int(rng.integers(len(train)))]
                if rng.random() < args.catheters:
                    img = add_catheter(img, rng)
                x, y = augment(img, mk, rng, args.patch, scale_range=tuple(args.real_scale),
                               photometric=args.photometric)
            xs.append(x)
            ys.append(y)
        x = torch.from_numpy(np.stack(xs)[:, None].astype(np.float32)).contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(np.stack(ys)[:, None].astype(np.float32))
        return x, y

    total_steps = args.steps
    budget_s = args.minutes * 60 - (time.time() - t_start)
    best = {"dice": -1.0}
    history = []
    step = 0
    t_loop = time.time()
    warm = 0.05  # fraction of the run for linear warm-up
    while True:
        # progress: by steps when --steps is given (exactly reproducible), else by wall
        # time, so a shared machine whose load changes still gets a full schedule on time
        if total_steps:
            frac = step / total_steps
        else:
            frac = (time.time() - t_loop) / budget_s
        if frac >= 1.0:
            break
        lr = args.lr * (frac / warm if frac < warm else 0.5 * (1 + math.cos(math.pi * (frac - warm) / (1 - warm))))
        lr = max(lr, args.lr * 0.01)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batch()
        logits = model(x)
        # soft clDice only in the second half: it refines topology of an already sensible map
        w_cl = args.cldice if frac >= args.cldice_from else 0.0
        loss, parts = loss_fn(logits, y, w_cl, args.skel_iters)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if ema is not None:
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    if v.dtype.is_floating_point:
                        ema[k].mul_(args.ema).add_(v.detach(), alpha=1.0 - args.ema)
                    else:
                        ema[k].copy_(v)
        if step % 20 == 0:
            log(f"step {step}/{total_steps or '?'} lr {lr:.2e} loss {loss.item():.4f} {json.dumps({k: round(v, 4) for k, v in parts.items()})}")
        last = (step == total_steps) if total_steps else (time.time() - t_loop) >= budget_s
        if step % args.eval_every == 0 or last:
            if ema is not None:
                eval_model.load_state_dict(ema)
            ev = evaluate(eval_model, val)
            ev.update(step=step, minutes=round((time.time() - t_start) / 60, 2))
            history.append(ev)
            improved = ev["dice"] > best["dice"]
            if improved:
                best = ev
                torch.save(eval_model.state_dict(), args.out / "best.pt")
            torch.save(eval_model.state_dict(), args.out / "last.pt")
            log(f"eval step {step}: val Dice {ev['dice']:.4f} clDice {ev['cldice']:.4f}"
                f"{' (best)' if improved else ''} per-image {ev['dice_per_image']}")
            (args.out / "history.json").write_text(json.dumps(history, indent=1))
            if not pool and args.phantom_frac > 0 and args.phantoms > 0 and frac < 0.6:
                # the phantom engine is written in parallel: pick it up when it lands
                for name in [m for m in sys.modules if m.startswith("stenosis.phantom")]:
                    del sys.modules[name]
                importlib.invalidate_caches()
                try:
                    pool = phantom_pool(args.phantoms, args.seed + 1000, args.phantom_size, budget_s=150, log=log)
                except Exception as exc:  # a half-written module must not kill the run
                    log(f"phantoms: generation failed ({exc!r})")
                    pool = []
                if pool:
                    phantoms_from_step = step

    run_cfg = {
        "architecture": arch,
        "inference": {"normalisation": "percentiles 0.5/99.5 -> [-1, 1]", "polarity": "vessels dark",
                      "threshold": 0.5, "max_single_px": 1024, "tile_px": 512, "overlap_px": 64},
        "training": {"seed": args.seed, "split_seed": args.seed if args.split_seed is None else args.split_seed,
                     "init": None if args.init is None else {"path": str(args.init), "sha256": sha256(args.init)}, "steps": step, "schedule": "steps" if args.steps else "wall-time", "batch": args.batch, "patch": args.patch,
                     "lr": args.lr, "cldice_weight": args.cldice, "skel_iters": args.skel_iters,
                     "phantom_frac": args.phantom_frac if pool else 0.0, "phantom_pool": len(pool),
                     "phantoms_from_step": phantoms_from_step, "real_scale": list(args.real_scale),
                     "catheters": args.catheters, "ema": args.ema, "photometric": args.photometric,
                     "real_train_ids": train_ids, "real_val_ids": val_ids,
                     "command": " ".join(["python", "models/train.py", *sys.argv[1:]])},
        "validation": {k: best.get(k) for k in ("dice", "cldice", "step", "dice_per_image")},
    }
    (args.out / "config.json").write_text(json.dumps(run_cfg, indent=2) + "\n")
    log(f"done: {step} steps in {(time.time() - t_start) / 60:.1f} min; best val Dice {best['dice']:.4f} "
        f"clDice {best.get('cldice', float('nan')):.4f} at step {best.get('step')}")
    if args.ship:
        ship(args.out, log)
    return 0


def ship(run_dir: Path, log) -> int:
    """Copy a run's best weights and config to models/ and record the weights' hash."""
    for name in ("best.pt", "config.json"):
        if not (run_dir / name).is_file():
            raise SystemExit(f"{run_dir / name} is missing: ship a finished run")
    shutil.copyfile(run_dir / "best.pt", HERE / "unet.pt")
    shutil.copyfile(run_dir / "config.json", HERE / "config.json")
    digest = sha256(HERE / "unet.pt")
    (HERE / "weights.sha256").write_text(f"{digest}  unet.pt\n")
    log(f"shipped {run_dir / 'best.pt'} as models/unet.pt sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
