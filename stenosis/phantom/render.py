"""Projection physics of the phantom: iodine path length, attenuation, blur, noise, log.

Order of operations (as in an X-ray image chain):

1. iodine path length ``L(r, c)`` (mm) through each circular lumen, averaged over the
   pixel aperture analytically (below), summed over tubes (overlaps of vessels in
   different planes add; a branch and its parent join, the larger chord is kept);
2. transmitted intensity ``I = I0 exp(-A_bg(r, c) - c(r, c, t) mu_i L)`` with an optional
   smooth anatomical log-attenuation ``A_bg`` and the bolus concentration ``c``, the
   inflow's delayed by each pixel's arrival time (:func:`project_layers` gives the path
   length and arrival per vessel plane; :mod:`stenosis.phantom.engine` the time course);
3. blur of ``I`` (intensity domain): Gaussian focal-spot/detector PSF plus a wide,
   low-amplitude Gaussian scatter tail;
4. quantum noise: Poisson with ``photons`` quanta per pixel at ``I0`` (or a Gaussian
   approximation);
5. ``log I``, encoded by the caller as stored integers.

Pixel-aperture integral. For a straight tube the chord through a circular lumen of
radius R at signed distance x from its centre is ``f(x) = 2 sqrt(R^2 - x^2)``. Over a
pixel of size (pr, pc) mm the distance to the axis is ``x0 + U1 + U2`` with
independent uniforms of widths ``a = |n_r| pr`` and ``b = |n_c| pc`` (n the unit
normal), so the pixel mean is a second difference of the double antiderivative
``F2`` of ``f``:
``mean f = [F2(x0+(a+b)/2) - F2(x0+(a-b)/2) - F2(x0-(a-b)/2) + F2(x0-(a+b)/2)] / (a b)``,
``F2(x) = -(R^2-x^2)^{3/2}/3 + R^2 x asin(x/R) + R^2 sqrt(R^2-x^2)`` for |x| < R and
``pi R^2 |x| / 2`` otherwise. It is exact for straight tubes, so the sum of ``L`` over
pixels across a vessel equals ``pi R^2 / pixel area`` (tested).

Projection imaging physics (Beer-Lambert, blur, scatter, quantum noise) as in
Bushberg et al., The Essential Physics of Medical Imaging, 3rd ed., ch. 7-9
(ISBN 978-0781780575); the DSA log-subtraction model as in Kruger & Riederer,
Basic Concepts of Digital Subtraction Angiography (1984).
"""
from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from .geometry import Tube


def _f2(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Double antiderivative of the chord length 2 sqrt(R^2 - x^2) (even in x)."""
    ax = np.abs(x)
    out = 0.5 * np.pi * r * r * ax
    inside = ax < r
    if np.any(inside):
        xi, ri = x[inside], r[inside]
        q = np.sqrt(ri * ri - xi * xi)
        out[inside] = -(q**3) / 3.0 + ri * ri * xi * np.arcsin(xi / ri) + ri * ri * q
    return out


def _f1(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Antiderivative of the chord length (odd in x)."""
    xc = np.clip(x, -r, r)
    q = np.sqrt(np.clip(r * r - xc * xc, 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(r > 0, np.arcsin(np.clip(xc / np.where(r > 0, r, 1.0), -1, 1)), 0.0)
    return xc * q + r * r * a


def chord_pixel_mean(x0: np.ndarray, r: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean chord length over a pixel aperture (see module docstring).

    Parameters
    ----------
    x0, r, a, b : arrays of one shape (mm)
        Signed distance of the pixel centre from the lumen centre, lumen radius, and
        the aperture widths projected on the normal.

    Returns
    -------
    ndarray, same shape, mm
    """
    w1 = np.maximum(a, b)
    w2 = np.minimum(a, b)
    box = w2 < 1e-4 * w1
    out = np.empty_like(x0)
    if np.any(box):
        xb, rb, wb = x0[box], r[box], w1[box]
        out[box] = (_f1(xb + wb / 2, rb) - _f1(xb - wb / 2, rb)) / wb
    t = ~box
    if np.any(t):
        x, rr, p, q = x0[t], r[t], (a[t] + b[t]) / 2, (a[t] - b[t]) / 2
        out[t] = (_f2(x + p, rr) - _f2(x + q, rr) - _f2(x - q, rr) + _f2(x - p, rr)) / (a[t] * b[t])
    return np.clip(out, 0.0, None)


def _tube_projection(
    tube: Tube,
    shape: tuple[int, int],
    mm_per_px: tuple[float, float],
    shift_px: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel nearest-centreline quantities for one tube inside its band.

    Returns flat pixel indices, signed distance to the lumen centre x0 (mm), radius (mm),
    the normal (K, 2) and the arc position of the foot on the centreline s (mm) for the
    pixels within the tube's band.
    """
    h, w = shape
    pr, pc = mm_per_px
    shift_mm = np.array([shift_px[0] * pr, shift_px[1] * pc])
    base = tube.base_mm + shift_mm
    rmax = float(tube.radius_mm.max()) if tube.radius_mm.size else 0.0
    if rmax <= 0:
        return (np.zeros(0, np.intp),) + (np.zeros(0),) * 4
    # band: pixels within rmax + 1.5 px of the centreline, found from the bounding boxes
    # of short runs of centreline samples (cheaper than a distance transform)
    reach = rmax + 1.5 * max(pr, pc)
    rc = base / np.array([pr, pc])
    chunk = max(2, int(8 * min(pr, pc) / max(tube.s_mm[1] - tube.s_mm[0], 1e-9)))
    box = np.zeros((h, w), bool)
    mr, mc = reach / pr, reach / pc
    starts = np.arange(0, len(rc), chunk)
    rlo = np.floor(np.minimum.reduceat(rc[:, 0], starts) - mr).astype(int)
    rhi = np.ceil(np.maximum.reduceat(rc[:, 0], starts) + mr).astype(int) + 1
    clo = np.floor(np.minimum.reduceat(rc[:, 1], starts) - mc).astype(int)
    chi = np.ceil(np.maximum.reduceat(rc[:, 1], starts) + mc).astype(int) + 1
    np.clip(rlo, 0, h, out=rlo)
    np.clip(rhi, 0, h, out=rhi)
    np.clip(clo, 0, w, out=clo)
    np.clip(chi, 0, w, out=chi)
    for r0, r1, c0, c1 in zip(rlo.tolist(), rhi.tolist(), clo.tolist(), chi.tolist()):
        if r0 < r1 and c0 < c1:
            box[r0:r1, c0:c1] = True
    band = np.flatnonzero(box)
    if band.size == 0:
        return (band,) + (np.zeros(0),) * 4
    p = np.stack([(band // w) * pr, (band % w) * pc], axis=1).astype(float)
    # nearest centreline sample, then the exact foot on the two adjacent segments
    dist, i = cKDTree(base).query(p, distance_upper_bound=reach)
    near = np.isfinite(dist)
    band, p, i = band[near], p[near], i[near]
    n = len(base)
    best_d2 = np.full(len(p), np.inf)
    s_foot = np.zeros(len(p))
    out_of_range = np.zeros(len(p), bool)
    step = tube.s_mm[1] - tube.s_mm[0]
    for j in (i - 1, i):
        j = np.clip(j, 0, n - 2)
        a0 = base[j]
        seg = base[j + 1] - a0
        t = np.einsum("ij,ij->i", p - a0, seg) / np.einsum("ij,ij->i", seg, seg)
        beyond = ((j == 0) & (t < 0)) | ((j == n - 2) & (t > 1))
        tc = np.clip(t, 0.0, 1.0)
        foot = a0 + tc[:, None] * seg
        d2 = np.einsum("ij,ij->i", p - foot, p - foot)
        better = d2 < best_d2
        best_d2 = np.where(better, d2, best_d2)
        s_foot = np.where(better, tube.s_mm[j] + tc * step, s_foot)
        out_of_range = np.where(better, beyond, out_of_range)
    keep = ~out_of_range
    band, p, s_foot = band[keep], p[keep], s_foot[keep]
    g = tube.at(s_foot)
    x0 = np.einsum("ij,ij->i", p - shift_mm - g["lumen"], g["normal"])
    return band, x0, g["radius"], g["normal"], s_foot


def path_length_mm(
    tubes: list[Tube] | tuple[Tube, ...],
    shape: tuple[int, int],
    mm_per_px: tuple[float, float],
    *,
    shift_px: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Iodine path length through all tubes, averaged over each pixel aperture.

    Parameters
    ----------
    tubes : sequence of Tube
        Geometry in mm at the isocentre.
    shape : (H, W)
    mm_per_px : (row_mm, col_mm)
    shift_px : (row, col)
        Translation of the whole scene in pixels (patient motion).

    Returns
    -------
    (H, W) float64, mm; overlapping tubes add.
    """
    return project(tubes, shape, mm_per_px, shift_px=shift_px)[0]


def lumen_mask(
    tubes: list[Tube] | tuple[Tube, ...],
    shape: tuple[int, int],
    mm_per_px: tuple[float, float],
    *,
    shift_px: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """(H, W) bool: pixel centre inside any lumen (|x0| < R)."""
    return project(tubes, shape, mm_per_px, shift_px=shift_px)[1]


def project(
    tubes: list[Tube] | tuple[Tube, ...],
    shape: tuple[int, int],
    mm_per_px: tuple[float, float],
    *,
    shift_px: tuple[float, float] = (0.0, 0.0),
    in_mask: list[bool] | tuple[bool, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Path length (H, W) float64 mm and lumen mask (H, W) bool in one pass.

    Chords of tubes in different planes add; within a joined group (a vessel and its
    branches, :attr:`Tube.group`) the larger chord is kept where they overlap.
    ``in_mask`` (one flag per tube) leaves tubes out of the mask (not of the path length).
    """
    layers, mask = _project_layers(tubes, shape, mm_per_px, shift_px=shift_px, in_mask=in_mask)
    out = np.zeros(shape[0] * shape[1])
    for chord, _ in layers:
        out += chord
    return out.reshape(shape), mask.reshape(shape)


def project_layers(
    tubes: list[Tube] | tuple[Tube, ...],
    shape: tuple[int, int],
    mm_per_px: tuple[float, float],
    *,
    arrival_s: list[np.ndarray] | tuple[np.ndarray, ...],
    shift_px: tuple[float, float] = (0.0, 0.0),
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Path length and bolus arrival time per vessel plane, for a bolus front (step 2).

    Parameters
    ----------
    tubes : sequence of Tube
    shape : (H, W)
    mm_per_px : (row_mm, col_mm)
    arrival_s : sequence of (N_k,) arrays, one per tube
        Arrival time of the contrast front (s) at each centreline sample ``tube.s_mm``.
    shift_px : (row, col)

    Returns
    -------
    list of (path_length (H, W) float64 mm, arrival (H, W) float64 s)
        One layer per tube without a group, in tube order, then one per group (in
        order of first appearance); their path lengths sum to :func:`path_length_mm`
        exactly. A pixel's arrival is that of the centreline point its chord belongs to
        (within a group, of the tube whose chord is kept); 0 where the path length is 0.
    """
    layers, _ = _project_layers(tubes, shape, mm_per_px, shift_px=shift_px, arrival_s=arrival_s)
    return [(chord.reshape(shape), arr.reshape(shape)) for chord, arr in layers]


def _project_layers(tubes, shape, mm_per_px, *, shift_px, in_mask=None, arrival_s=None):
    """Layers (flat chord, flat arrival or None) as in :func:`project_layers`, and the flat mask."""
    size = shape[0] * shape[1]
    own: list[tuple[np.ndarray, np.ndarray | None]] = []
    groups: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    mask = np.zeros(size, bool)
    pr, pc = mm_per_px
    for k, tube in enumerate(tubes):
        band, x0, r, nrm, s_foot = _tube_projection(tube, shape, mm_per_px, shift_px)
        if tube.group:
            acc, acc_t = groups.setdefault(tube.group, (np.zeros(size), None if arrival_s is None else np.zeros(size)))
        else:
            acc, acc_t = np.zeros(size), None if arrival_s is None else np.zeros(size)
            own.append((acc, acc_t))
        if band.size:
            chord = chord_pixel_mean(x0, r, np.abs(nrm[:, 0]) * pr, np.abs(nrm[:, 1]) * pc)
            if tube.depth_scale is not None:  # an elliptical lumen seen at an angle
                chord = chord * np.interp(s_foot, tube.s_mm, tube.depth_scale)
            if acc_t is not None:
                t_here = np.interp(s_foot, tube.s_mm, np.asarray(arrival_s[k], float))
                kept = chord > acc[band] if tube.group else np.ones(band.size, bool)
                acc_t[band[kept]] = t_here[kept]
            if tube.group:
                acc[band] = np.maximum(acc[band], chord)
            else:
                acc[band] += chord
            if in_mask is None or in_mask[k]:
                mask[band[np.abs(x0) < r]] = True
    layers = own + list(groups.values())
    if arrival_s is not None:
        for chord, t in layers:
            t[chord <= 0] = 0.0
    return layers, mask


def background_log_attenuation(
    rng: np.random.Generator,
    shape: tuple[int, int],
    *,
    strength: float = 1.0,
    pad: int = 16,
) -> np.ndarray:
    """Smooth random anatomical log-attenuation (tissue texture plus a bone edge).

    Returns a padded field (H + 2 pad, W + 2 pad) float64 so that a sub-pixel shift
    (:func:`shifted_crop`) has data at the border. Values are about 1 + strength*[0, 2].
    """
    h, w = shape[0] + 2 * pad, shape[1] + 2 * pad
    # coloured noise: white noise filtered by a sum of Gaussian spectral envelopes
    # (correlation lengths ~ 1/6, 1/20 and 1/80 of the field)
    hf, wf = sfft.next_fast_len(h, real=True), sfft.next_fast_len(w, real=True)
    spec = sfft.rfft2(rng.standard_normal((hf, wf)), workers=1)
    fr = sfft.fftfreq(hf)[:, None]
    fc = sfft.rfftfreq(wf)[None, :]
    f2 = fr**2 + fc**2
    n = max(h, w)
    env = np.zeros_like(f2)
    for corr, amp in ((n / 6, 1.0), (n / 20, 0.25), (n / 80, 0.06)):
        env += amp * corr * np.exp(-2 * np.pi**2 * corr**2 * f2)
    field = sfft.irfft2(spec * env, s=(hf, wf), workers=1)[:h, :w]
    # a curved bone plate (skull base / petrous ridge like): a blurred band along an ellipse
    rr, cc = np.mgrid[0:h, 0:w].astype(float)
    r0, c0 = rng.uniform(-0.3, 1.3) * h, rng.uniform(-0.3, 1.3) * w
    ax1, ax2 = rng.uniform(0.4, 1.0) * h, rng.uniform(0.4, 1.0) * w
    ell = np.sqrt(((rr - r0) / ax1) ** 2 + ((cc - c0) / ax2) ** 2)
    width = rng.uniform(0.03, 0.08)
    bone = 1.0 / (1.0 + np.exp(-(ell - 1.0) / (width / 4))) * np.exp(-np.clip(ell - 1.0, 0, None) / (3 * width))
    field = (field - field.min()) / (np.ptp(field) + 1e-12)
    return 1.0 + strength * (1.2 * field + 0.8 * bone)


def shifted_crop(field: np.ndarray, shape: tuple[int, int], shift_px: tuple[float, float], pad: int) -> np.ndarray:
    """Crop the padded field to ``shape``, translated by ``shift_px`` (cubic spline)."""
    if shift_px == (0.0, 0.0) or (shift_px[0] == 0 and shift_px[1] == 0):
        return field[pad : pad + shape[0], pad : pad + shape[1]].copy()
    sh = ndi.shift(field, shift_px, order=3, mode="nearest")
    return sh[pad : pad + shape[0], pad : pad + shape[1]]


class Blur:
    """Intensity-domain blur: (1 - f) Gaussian PSF + f wide Gaussian scatter tail.

    The PSF is a separable Gaussian filter; the wide tail, which has no fine detail,
    is computed on a 4x block-averaged copy and upsampled bilinearly (cheap at any
    width). Both use reflecting borders.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        mm_per_px: tuple[float, float],
        *,
        sigma_mm: float,
        scatter_fraction: float = 0.0,
        scatter_sigma_mm: float = 10.0,
    ):
        self.shape = tuple(shape)
        pr, pc = mm_per_px
        self.sigma_px = (sigma_mm / pr, sigma_mm / pc)
        self.tail_px = (scatter_sigma_mm / pr, scatter_sigma_mm / pc)
        self.sigma_mm = sigma_mm
        self.fraction = scatter_fraction

    def __call__(self, img: np.ndarray) -> np.ndarray:
        out = ndi.gaussian_filter(img, self.sigma_px, mode="reflect") if self.sigma_mm > 0 else img.copy()
        if self.fraction > 0:
            f = 4
            h, w = img.shape
            hp, wp = -(-h // f) * f, -(-w // f) * f
            small = np.pad(img, ((0, hp - h), (0, wp - w)), mode="edge").reshape(hp // f, f, wp // f, f).mean(axis=(1, 3))
            small = ndi.gaussian_filter(small, (self.tail_px[0] / f, self.tail_px[1] / f), mode="reflect")
            # bilinear upsampling onto the full-resolution pixel centres
            rr = (np.arange(h) + 0.5) / f - 0.5
            cc = (np.arange(w) + 0.5) / f - 0.5
            r0 = np.clip(np.floor(rr).astype(int), 0, small.shape[0] - 2)
            c0 = np.clip(np.floor(cc).astype(int), 0, small.shape[1] - 2)
            ar = np.clip(rr - r0, 0, 1)[:, None]
            ac = np.clip(cc - c0, 0, 1)[None, :]
            s00 = small[np.ix_(r0, c0)]
            s01 = small[np.ix_(r0, c0 + 1)]
            s10 = small[np.ix_(r0 + 1, c0)]
            s11 = small[np.ix_(r0 + 1, c0 + 1)]
            tail = (1 - ar) * ((1 - ac) * s00 + ac * s01) + ar * ((1 - ac) * s10 + ac * s11)
            out = (1 - self.fraction) * out + self.fraction * tail
        return out


def add_quantum_noise(
    rng: np.random.Generator, intensity: np.ndarray, *, photons: float | None, poisson: bool = True
) -> np.ndarray:
    """Quantum noise on a relative intensity (I0 = 1) with ``photons`` quanta at I0.

    ``photons=None`` returns a copy (noiseless). Counts are floored at 0.5 so that the
    log stays finite.
    """
    if photons is None or photons <= 0:
        return intensity.copy()
    lam = intensity * photons
    if poisson:
        counts = rng.poisson(lam).astype(float)
    else:
        counts = lam + np.sqrt(lam) * rng.standard_normal(lam.shape)
    return np.maximum(counts, 0.5) / photons
