"""Fast random training pairs (image, true lumen mask) for the vessel U-Net.

Random vessel trees (trunks entering from the border, recursive side branches,
tapering, occasional stenoses, crossings where trees overlap) rendered with the same
physics as the phantom runs (pixel-aperture path length, Beer-Lambert, blur with
scatter tail, quantum noise, log), either native over an anatomical background or
log-subtracted (with occasional mis-registration residue of the background). The
mask is the true lumen: pixel centre inside a lumen.
"""
from __future__ import annotations

import numpy as np

from .geometry import Stenosis, Tube, make_tube, random_curve
from .render import Blur, add_quantum_noise, background_log_attenuation, project, shifted_crop

_PX = (1.0, 1.0)  # training pairs are rendered in pixel units
#: a tube is labelled when its peak log signal is at least this many noise sigmas
VISIBILITY_SNR = 1.0


def _tree(rng: np.random.Generator, size: int, out: list[Tube], max_tubes: int, group: str) -> None:
    """Append one random vessel tree (trunk from the border plus branches) to ``out``."""
    edge = rng.integers(4)
    t = rng.uniform(0.1, 0.9) * (size - 1)
    start, heading = {
        0: ((-2.0, t), np.pi / 2),
        1: ((size + 1.0, t), -np.pi / 2),
        2: ((t, -2.0), 0.0),
        3: ((t, size + 1.0), np.pi),
    }[int(edge)]
    heading += rng.uniform(-0.6, 0.6)
    d0 = float(np.exp(rng.uniform(np.log(2.0), np.log(12.0))))
    stack = [(start, heading, d0, rng.uniform(0.7, 1.4) * size, 0)]
    step = 0.5
    tortuous = rng.uniform(0.2, 1.0)  # coronary-like tortuosity varies from tree to tree
    while stack and len(out) < max_tubes:
        (st, hd, d, length, depth) = stack.pop()
        pts, s = random_curve(rng, start_mm=st, heading_rad=hd, length_mm=length, step_mm=step,
                              max_curvature_per_mm=tortuous * rng.uniform(0.02, 0.12) * (4.0 / (d + 2.0)) ** 0.5,
                              wavelength_mm=(0.1 * size, 0.8 * size))
        taper = 1.0 - rng.uniform(0.0, 0.35) * s / max(s[-1], 1e-9)
        stenoses: tuple[Stenosis, ...] = ()
        if rng.uniform() < 0.3 and s[-1] > 20:
            stenoses = (Stenosis(float(rng.uniform(0.2, 0.8) * s[-1]), float(rng.uniform(20, 85)),
                                 float(rng.uniform(2, 6) * d), float(rng.uniform(0, 1)), int(rng.choice([-1, 1]))),)
        out.append(make_tube(pts, s, np.maximum(d * taper, 0.9), stenoses=stenoses, name="tree", group=group))
        if depth >= 3:
            continue
        for _ in range(int(rng.integers(0, 5))):
            if d < 1.6:
                break
            k = int(rng.uniform(0.1, 0.9) * (len(s) - 1))
            tang = pts[min(k + 1, len(s) - 1)] - pts[max(k - 1, 0)]
            ang = np.arctan2(tang[0], tang[1]) + rng.choice([-1, 1]) * rng.uniform(0.35, 1.4)
            dc = max(1.0, d * taper[k] * rng.uniform(0.45, 0.85))
            stack.append((tuple(pts[k]), ang, dc, rng.uniform(0.2, 0.7) * size, depth + 1))


def training_pair(rng: np.random.Generator, *, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One random training pair.

    Parameters
    ----------
    rng : numpy.random.Generator
    size : int
        Image side (pixels).

    Returns
    -------
    image : (size, size) float32
        As displayed (vessels darker), robustly scaled to about [0, 1] (1st and 99.5th
        percentiles to 0 and 1, not clipped).
    mask : (size, size) bool
        True lumen (pixel centre inside a vessel lumen) of the vessels a reader could
        see: tubes whose peak log signal (after blur) is below 1 noise sigma (a line is
        seen at a lower per-pixel SNR than a spot) and parts
        outside a circular field of view stay in the image but not in the mask.
    """
    shape = (size, size)
    tubes: list[Tube] = []
    n_trees = int(rng.integers(1, 4))
    for k in range(n_trees):
        _tree(rng, size, tubes, max_tubes=16, group=f"tree{k}")
    mu = float(np.exp(rng.uniform(np.log(0.04), np.log(0.2))))  # per px of iodine path
    subtracted = rng.uniform() < 0.4
    pad = 8
    if rng.uniform() < 0.85:
        bg = background_log_attenuation(rng, shape, strength=float(rng.uniform(0.1, 1.0)), pad=pad)
        bg_c = shifted_crop(bg, shape, (0.0, 0.0), pad)
    else:
        bg = None
        bg_c = np.zeros(shape)
    blur = Blur(shape, _PX, sigma_mm=float(rng.uniform(0.3, 1.6)),
                scatter_fraction=float(rng.uniform(0.0, 0.15)), scatter_sigma_mm=float(rng.uniform(15, 60)))
    if rng.uniform() < 0.3:  # image-intensifier vignetting / collimator roll-off (log attenuation)
        rr, cc = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
        c0 = rng.uniform(-0.15, 0.15, 2)
        bg_c = bg_c + rng.uniform(0.2, 1.0) * (((rr - c0[0]) ** 2 + (cc - c0[1]) ** 2) / 0.5) ** 2
    collimator = None
    if rng.uniform() < 0.3:  # circular field of view (image intensifier): dark outside, soft edge
        rr, cc = np.mgrid[0:size, 0:size]
        cr, cc0 = rng.uniform(0.4, 0.6, 2) * size
        rad = rng.uniform(0.5, 0.75) * size
        edge = np.clip((np.hypot(rr - cr, cc - cc0) - rad) / rng.uniform(1.0, 4.0), -30, 30)
        collimator = 1.0 / (1.0 + np.exp(-edge))
    photons = float(np.exp(rng.uniform(np.log(1000.0), np.log(100000.0))))
    # label only what a reader could see: peak iodine signal of the tube (thin vessels
    # lose peak height to the blur) against the quantum noise of the log image
    noise = np.sqrt((2.0 if subtracted else 1.0) / (photons * float(np.median(np.exp(-bg_c)))))
    sb = blur.sigma_mm
    visible = []
    for t in tubes:
        d = float(np.median(2 * t.radius_mm))
        peak = mu * d * min(1.0, (np.pi * d / 4) / (np.sqrt(2 * np.pi) * sb))
        visible.append(peak >= VISIBILITY_SNR * noise)
    L, mask = project(tubes, shape, _PX, in_mask=visible)
    contrast = np.log(add_quantum_noise(rng, blur(np.exp(-bg_c - mu * L)), photons=photons, poisson=False))
    if subtracted:
        if bg is not None and rng.uniform() < 0.4:
            # mis-registration residue
            bg_m = bg_c - shifted_crop(bg, shape, (0.0, 0.0), pad) + shifted_crop(bg, shape, tuple(rng.uniform(-1.5, 1.5, 2)), pad)
        else:
            bg_m = bg_c
        mask_img = np.log(add_quantum_noise(rng, blur(np.exp(-bg_m)), photons=photons, poisson=False))
        img = contrast - mask_img
    else:
        img = contrast
    if collimator is not None:  # the lead shutter leaves a dark, nearly flat border
        lo0, hi0 = np.percentile(img[collimator < 0.5], [1.0, 99.5])
        img = img * (1 - collimator) + collimator * (lo0 - rng.uniform(0.2, 1.0) * (hi0 - lo0))
        mask = mask & (collimator < 0.5)  # vessels outside the field of view are not seen
    lo, hi = np.percentile(img, [1.0, 99.5])
    img = (img - lo) / max(hi - lo, 1e-6)
    return img.astype(np.float32), mask
