"""Hybrid phantoms: a vessel of known geometry inserted into a real angiogram.

The real image keeps what our simulator does not model (anatomy, the detector's noise
texture, vendor edge enhancement and display windowing); the inserted vessel carries the
truth (diameter profile, stenosis, reference, MLD). The vessel goes through the same
projection physics as :mod:`stenosis.phantom.render`:

1. iodine path length ``L(r, c)`` through the circular lumen, averaged over the pixel
   aperture exactly (:func:`stenosis.phantom.render.path_length_mm`, here with lengths in
   pixels: ``mm_per_px = (1, 1)``);
2. transmission ``T = exp(-mu L)`` (Beer-Lambert);
3. the imaging blur applied to ``T`` in the linear intensity domain (a Gaussian PSF; for a
   background that is smooth at the PSF's scale ``blur(I_bg T) ~ I_bg blur(T)``);
4. the real background, converted to linear intensity by :func:`to_linear`, multiplied
   by the blurred transmission and converted back (:func:`from_linear`), rounded and
   clipped to the background's integer range.

The background's own noise is multiplied by ``T`` too (quantum noise in the vessel is a
little lower than a fresh Poisson draw would give; no noise is added). The display
mapping of an 8-bit export is unknown: ``gamma`` says how display values relate to
linear intensity (1: proportional). ``mu`` is set per background from its own vessels
(:func:`vessel_attenuation`), so the inserted vessel has the contrast of the real ones.

Placement (:func:`place_centreline`) keeps the inserted vessel off the real vessels: at
most a short stretch of it (a crossing) lies within a few pixels of a vessel of the
background's vessel map, and it stays where the background is exposed (not the black
collimator border).

Physics as in :mod:`stenosis.phantom.render` (Bushberg et al., The Essential Physics of
Medical Imaging, 3rd ed., ch. 7-9).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .geometry import Stenosis, Tube, make_tube, random_curve
from .render import path_length_mm

__all__ = [
    "HybridCase", "to_linear", "from_linear", "insert_vessel", "vessel_attenuation",
    "place_centreline", "make_case",
]

_EPS = 1e-3


def to_linear(display: np.ndarray, *, white: float, gamma: float = 1.0) -> np.ndarray:
    """Linear intensity (1 at ``white``) of displayed values (vessels darker).

    ``I = ((v + 0.5) / (white + 0.5)) ** gamma``, floored at 1e-3 (the half grey level
    keeps a black pixel finite).

    Parameters
    ----------
    display : (H, W) array
        Stored/displayed values, any numeric dtype.
    white : float
        The value that maps to intensity 1 (e.g. 255 for 8-bit).
    gamma : float
        Display-to-linear exponent (1: display proportional to intensity).

    Returns
    -------
    (H, W) float64
    """
    v = (np.asarray(display, dtype=float) + 0.5) / (white + 0.5)
    return np.maximum(v, _EPS) ** gamma


def from_linear(intensity: np.ndarray, *, white: float, gamma: float = 1.0) -> np.ndarray:
    """Inverse of :func:`to_linear` (float, not rounded)."""
    return np.maximum(intensity, 0.0) ** (1.0 / gamma) * (white + 0.5) - 0.5


def insert_vessel(
    background: np.ndarray,
    tubes: Tube | list[Tube] | tuple[Tube, ...],
    *,
    mu_per_px: float,
    blur_sigma_px: float,
    white: float | None = None,
    gamma: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Render tubes (geometry in px) into a real frame.

    Parameters
    ----------
    background : (H, W) integer or float array
        Real frame as displayed (vessels darker).
    tubes : Tube or sequence of Tube
        Geometry with lengths in **pixels** (row, col).
    mu_per_px : float
        Linear attenuation of the iodine, per pixel of path length.
    blur_sigma_px : float
        Gaussian PSF applied to the transmission (linear domain), px.
    white : float, optional
        Value mapping to intensity 1; default the dtype's maximum for integers, else the
        background's maximum.
    gamma : float
        Display-to-linear exponent (:func:`to_linear`).

    Returns
    -------
    image : (H, W) array, the background's dtype (rounded and clipped for integers)
    path_px : (H, W) float64, iodine path length per pixel (px), before blur
    """
    bg = np.asarray(background)
    if isinstance(tubes, Tube):
        tubes = [tubes]
    if white is None:
        white = float(np.iinfo(bg.dtype).max) if np.issubdtype(bg.dtype, np.integer) else float(bg.max())
    path = path_length_mm(list(tubes), bg.shape, (1.0, 1.0))
    trans = np.exp(-mu_per_px * path)
    if blur_sigma_px > 0:
        trans = ndi.gaussian_filter(trans, blur_sigma_px, mode="nearest")
    out = from_linear(to_linear(bg, white=white, gamma=gamma) * trans, white=white, gamma=gamma)
    if np.issubdtype(bg.dtype, np.integer):
        info = np.iinfo(bg.dtype)
        out = np.clip(np.round(out), info.min, info.max).astype(bg.dtype)
    else:
        out = out.astype(bg.dtype)
    return out, path


def vessel_attenuation(
    display: np.ndarray,
    vessels: np.ndarray,
    *,
    white: float,
    gamma: float = 1.0,
    min_width_px: float = 3.0,
    ring_px: tuple[int, int] = (3, 7),
) -> float:
    """Median attenuation per pixel of path, ``mu``, of a frame's own vessels.

    At each skeleton pixel of ``vessels`` whose width ``w`` (twice the distance to the
    background, minus 1) is at least ``min_width_px``: ``-log(I_centre / I_around) / w``,
    with ``I_around`` the median linear intensity of the ring ``ring_px`` outside the
    vessel mask within the 31 px box around it. The centre of a vessel of width w has a
    chord of about w through a cylinder, so this is mu for a vessel drawn as in
    :func:`insert_vessel` (the blur lowers a narrow vessel's centre contrast; it is
    left in, as in the real vessels). Returns NaN with too few usable pixels.
    """
    from skimage.morphology import skeletonize

    vessels = np.asarray(vessels, bool)
    lin = to_linear(display, white=white, gamma=gamma)
    dt = ndi.distance_transform_edt(vessels)
    skel = skeletonize(vessels)
    width = 2 * dt - 1
    rc = np.argwhere(skel & (width >= min_width_px))
    if len(rc) < 10:
        return float("nan")
    near = ndi.binary_dilation(vessels, iterations=ring_px[0])
    far = ndi.binary_dilation(vessels, iterations=ring_px[1])
    ring = far & ~near
    h, w = lin.shape
    step = max(1, len(rc) // 400)
    vals = []
    for r, c in rc[::step]:
        r0, r1, c0, c1 = max(r - 15, 0), min(r + 16, h), max(c - 15, 0), min(c + 16, w)
        around = lin[r0:r1, c0:c1][ring[r0:r1, c0:c1]]
        if around.size < 10:
            continue
        centre = lin[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].min()
        vals.append(-np.log(max(centre, _EPS) / max(np.median(around), _EPS)) / width[r, c])
    vals = np.array(vals)
    vals = vals[vals > 0]
    return float(np.median(vals)) if vals.size >= 10 else float("nan")


def place_centreline(
    rng: np.random.Generator,
    avoid: np.ndarray,
    exposed: np.ndarray,
    *,
    length_px: float,
    margin_px: float = 12.0,
    clear_px: float = 6.0,
    max_near_run_px: float = 14.0,
    max_near_frac: float = 0.15,
    max_curvature_per_px: float = 0.03,
    tries: int = 400,
) -> np.ndarray | None:
    """A smooth random centreline (K, 2) px that stays off the real vessels.

    Accepted when it lies inside ``exposed`` and ``margin_px`` from the border, at most
    ``max_near_frac`` of it is within ``clear_px`` of ``avoid`` (the background's vessel
    map) and no run within ``clear_px`` is longer than ``max_near_run_px`` (a crossing is
    allowed, running along a vessel is not). None when no try succeeds.
    """
    h, w = avoid.shape
    dist = ndi.distance_transform_edt(~np.asarray(avoid, bool))
    for _ in range(tries):
        start = (rng.uniform(margin_px, h - margin_px), rng.uniform(margin_px, w - margin_px))
        heading = rng.uniform(0, 2 * np.pi)
        pts, _s = random_curve(rng, start_mm=start, heading_rad=heading, length_mm=length_px, step_mm=0.5,
                               max_curvature_per_mm=max_curvature_per_px,
                               wavelength_mm=(0.3 * length_px, 1.0 * length_px))
        if (pts.min(axis=0) < margin_px).any() or pts[:, 0].max() > h - 1 - margin_px or pts[:, 1].max() > w - 1 - margin_px:
            continue
        ri, ci = np.round(pts).astype(int).T
        if not exposed[ri, ci].all():
            continue
        near = dist[ri, ci] < clear_px
        if near.mean() > max_near_frac:
            continue
        # longest run of consecutive near samples (0.5 px step)
        run = longest = 0
        for v in near:
            run = run + 1 if v else 0
            longest = max(longest, run)
        if longest * 0.5 > max_near_run_px:
            continue
        return pts
    return None


@dataclass(frozen=True, eq=False)
class HybridCase:
    """One vessel inserted into one real frame, with its truth (px).

    ``truth`` keys: ``percent`` (WASID truth: 1 - MLD / reference), ``mld_px``,
    ``reference_px`` (the normal diameter), ``mld_rc``, ``lesion`` (Stenosis fields, px),
    ``mu_per_px``, ``blur_sigma_px``, ``tight`` (MLD < 2.5 px).
    """

    name: str
    background: str
    image: np.ndarray = field(repr=False)
    proximal_rc: tuple[float, float]
    distal_rc: tuple[float, float]
    truth: dict[str, Any]
    tube: Tube = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "background": self.background, "proximal_rc": list(self.proximal_rc),
                "distal_rc": list(self.distal_rc), **self.truth}


def make_case(
    rng: np.random.Generator,
    background: np.ndarray,
    avoid: np.ndarray,
    *,
    name: str,
    background_name: str,
    diameter_px: float,
    percent: float,
    mu_per_px: float,
    blur_sigma_px: float,
    length_px: float,
    exposed: np.ndarray | None = None,
    gamma: float = 1.0,
    white: float | None = None,
    end_px: float = 6.0,
) -> HybridCase | None:
    """Place, draw and describe one hybrid case (None when no clear place is found).

    The lesion (raised cosine, length 2-4 normal diameters, eccentricity 0-0.8) sits at
    55-70% of the vessel so that the proximal artery is normal for at least three
    diameters (the WASID 1st-choice reference); the reader points are ``end_px`` from the
    vessel's ends. ``percent`` 0 gives a normal artery.
    """
    if exposed is None:
        exposed = np.ones(background.shape, bool)
    pts = place_centreline(rng, avoid, exposed, length_px=length_px)
    if pts is None:
        return None
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    total = float(s[-1])
    lesion_len = float(rng.uniform(2.0, 4.0) * diameter_px)
    pos = float(rng.uniform(0.55, 0.70) * total)
    st = Stenosis(position_mm=pos, percent=float(percent), length_mm=lesion_len,
                  eccentricity=float(rng.uniform(0.0, 0.8)), side=int(rng.choice([-1, 1])))
    tube = make_tube(pts, s, diameter_px, stenoses=(st,) if percent > 0 else (), name="inserted")
    image, _ = insert_vessel(background, tube, mu_per_px=mu_per_px, blur_sigma_px=blur_sigma_px,
                             white=white, gamma=gamma)
    d = 2.0 * tube.radius_mm
    k = int(np.argmin(d)) if percent > 0 else int(np.argmin(np.abs(s - pos)))
    i0 = int(np.argmin(np.abs(s - end_px)))
    i1 = int(np.argmin(np.abs(s - (total - end_px))))
    mld = float(d[k])
    truth = {
        "percent": float((1.0 - mld / diameter_px) * 100.0), "mld_px": mld, "reference_px": float(diameter_px),
        "mld_rc": [float(v) for v in tube.lumen_mm[k]], "lesion": st.to_dict() if percent > 0 else None,
        "mu_per_px": float(mu_per_px), "blur_sigma_px": float(blur_sigma_px), "length_px": total,
        "tight": bool(mld < 2.5),
    }
    return HybridCase(name, background_name, image, tuple(float(v) for v in pts[i0]),
                      tuple(float(v) for v in pts[i1]), truth, tube)
