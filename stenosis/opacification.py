"""Opacification: frames in which iodine is positive and the background about 0.

Digital subtraction angiography (DSA) removes the anatomy by subtracting a
mask frame, taken before contrast arrives, from each contrast frame in the
logarithmic domain, where attenuation adds up: with ``I = I0 exp(-mu_b L_b -
mu_i L_i)``, ``log I_mask - log I_live = mu_i L_i`` is proportional to the
iodine path length ``L_i``. Patient motion between mask and live frame leaves
misregistration artefacts, reduced by shifting the mask ("pixel shift") by the
translation that best aligns it with the live frame (Meijering EHW, Niessen
WJ, Viergever MA, "Retrospective motion correction in digital subtraction
angiography: a review", IEEE TMI 1999;18:2-21, doi:10.1109/42.750249).

The mask-to-live translation must ignore the iodine: the opacified vessels are
in the live frame only, and phase correlation (which whitens the spectrum, so the
vessels' sharp edges weigh as much as the anatomy) was pulled by them by 1-4 px on
phantom runs without any motion, leaving misregistered anatomy that biased small
lumens by up to 0.3 mm. The shift is therefore the minimiser of the squared
difference ``mask(p - d) - live(p)`` over the pixels that hold no iodine
(iteratively re-weighted Gauss-Newton, i.e. Lucas-Kanade, Lucas & Kanade 1981, with
pixels whose difference is iodine-positive beyond 3 robust SDs excluded), started
from the better of "no shift" and the phase-correlation shift, and kept only if it
lowers that difference. Median error 0.02 px on phantoms (phase correlation: 0.89 px;
``benchmarks/registration.py``), ~20 ms per 384-512 px frame.
:func:`estimate_shift` (phase correlation, Kuglin & Hines 1975; sub-pixel peak by
a Gaussian fit of the low-pass-weighted correlation peak, bounded by
``max_shift_px``) aligns two frames that show the same structures (two contrast
frames); it agrees with SimpleITK's translation registration (tests/test_opacify.py).
:func:`refine_shift` refines it by Gauss-Newton along the directions the two frames
determine (along a straight vessel none: phase correlation's ridge there is noise).

- Native LOG runs (or unknown relationship): ``mask - live`` in stored values. A DICOM run
  without the tag has it read from its noise when it is read (:mod:`stenosis.io.intensity`);
  only runs whose noise cannot tell stay unknown (``AngioRun.from_array`` takes what it is given).
- Native LIN runs: ``log(mask) - log(live)`` (natural log of stored values).
- Mask: mean of the MaskSubtractionSequence frames, else frame 0.
- Single-frame native runs (no mask): the background is estimated by a
  morphological closing (removes dark, narrow vessels) and ``closing - frame``
  is returned (black top-hat). The path is traced on it; the diameters are then
  measured against a 2-D background interpolated under the traced lumen
  (:func:`background_off_vessels`, applied by
  :func:`stenosis.measurement.single_frame_background`).
- Already-subtracted runs: ``median - frame`` per frame (frames are in displayed
  polarity, vessels darker), so iodine is positive and the background about 0.

Every output frame has its median (background) set to 0.
"""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

from .errors import InputError

__all__ = ["opacify", "opacify_tracked", "log_attenuation", "estimate_shift", "refine_shift", "shift_image", "native_values", "native_iodine",
           "background_off_vessels", "shared_noise", "mask_noise", "unexposed"]

#: Default bound on the mask shift (pixels along each axis).
MAX_SHIFT_PX = 16.0
#: Gaussian low-pass (spatial sigma, px) applied to the cross-power spectrum.
_PEAK_SIGMA_PX = 1.5
#: Structuring size for the single-frame background (px at full resolution).
_TOPHAT_SIZE_PX = 31
#: How far inside the exposed field (px) the mask registration's phase correlation is faded in
#: (:func:`_field_taper`): the edge fixed to the detector is apodised like the frame's border.
FIELD_TAPER_PX = 16.0
#: The smallest share of a frame a region outside the exposed field covers (:func:`unexposed`).
UNEXPOSED_MIN_FRACTION = 0.005
#: ... and its smallest width, as a share of the frame's smaller side: wider than any artery (the
#: auto mode's MAX_TRUNK_WIDTH_FRACTION: a "trunk" wider than that is no artery)
UNEXPOSED_MIN_WIDTH_FRACTION = 0.1
#: How far from the frame's lowest (or highest) value, as a share of its range, the commonest value
#: of its border may lie and still be the blanking's (:func:`unexposed`): a lossy JPEG decodes the
#: blanked corners of XA1_JPLY to 1 where the frame's lowest value is 0 (ringing at the field's edge)
UNEXPOSED_LOSSY_FRACTION = 0.02


def opacify(
    run,
    *,
    frames: Sequence[int] | int | None = None,
    register: bool = True,
    max_shift_px: float = MAX_SHIFT_PX,
) -> np.ndarray:
    """Iodine-positive frames of a run.

    Parameters
    ----------
    run : AngioRun
        Read with :func:`stenosis.read_run` (frames in displayed polarity).
    frames : int or sequence of int, optional
        0-based frame indices to return (all frames when None).
    register : bool
        Shift the mask onto each live frame before subtracting (native runs).
    max_shift_px : float
        Largest mask shift searched along each axis, in pixels.

    Returns
    -------
    ndarray of float32, shape (T', H, W)
        About proportional to the iodine path length; background about 0. Units:
        stored grey levels for LOG and subtracted runs, natural-log attenuation
        for LIN runs. The run is not modified.
    """
    return opacify_tracked(run, frames=frames, register=register, max_shift_px=max_shift_px)[0]


def opacify_tracked(
    run,
    *,
    frames: Sequence[int] | int | None = None,
    register: bool = True,
    max_shift_px: float = MAX_SHIFT_PX,
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`opacify`, and how the mask was registered onto each frame returned: (T', 3) rows of
    (d_row, d_col, explained), the mask's shift (px; the anatomy's motion from the mask to the
    frame) and the share of the mask's difference from the frame that shift removes (0 for no
    shift, 1 when it leaves none; :meth:`_MaskRegistration.register`); zeros for the mask frames
    themselves. None when no mask is registered (a subtracted run, a run without mask frames,
    ``register=False``)."""
    data = run.frames
    if data.ndim != 3:
        raise InputError("run frames must be (T, H, W)")
    t_total = data.shape[0]
    if frames is None:
        idx = list(range(t_total))
    else:
        idx = [int(frames)] if np.isscalar(frames) else [int(i) for i in frames]
    for i in idx:
        if not 0 <= i < t_total:
            raise InputError(f"frame {i} is outside the run (0..{t_total - 1}); pick a frame from 0 to {t_total - 1}")
    meta = run.metadata
    out = np.empty((len(idx),) + data.shape[1:], dtype=np.float32)
    blank = unexposed(data)

    if meta.subtracted:
        for k, i in enumerate(idx):
            out[k] = -data[i].astype(np.float32)
            _zero_background(out[k], blank)
        return out, None

    log_domain = log_attenuation(run)

    def work(i: int) -> np.ndarray:
        f = data[i].astype(np.float32)
        if log_domain:
            np.maximum(f, 1.0, out=f)
            np.log(f, out=f)
        return f

    mask_idx = mask_frames_of(run)
    if not mask_idx:
        for k, i in enumerate(idx):
            out[k] = _black_tophat(work(i))
            _zero_background(out[k], blank)
        return out, None

    mask = work(mask_idx[0])
    for m in mask_idx[1:]:
        mask += work(m)
    mask /= len(mask_idx)
    outside = None
    if blank is not None and register:
        # the whole region at the field's stored value (with the slivers thinner than the opening
        # where a round field meets the frame's edge): the mask there takes its nearest exposed
        # pixel's value, and the subtracted frames are 0 there. A shift would otherwise carry the
        # field's value into the field, or the anatomy into the slivers: a ring along the edge,
        # as bright as a vessel under a white shutter.
        first = data[0]
        labels, _ = ndi.label(np.isin(first, np.unique(first[blank])) | blank)
        outside = np.isin(labels, np.unique(labels[blank]))
        near = ndi.distance_transform_edt(outside, return_distances=False, return_indices=True)
        mask = mask[near[0], near[1]]
    reg = _MaskRegistration(mask, max_shift_px, exclude=blank) if register else None
    how = np.zeros((len(idx), 3))
    for k, i in enumerate(idx):
        live = work(i)
        if reg is not None and i not in mask_idx:
            shift, how[k, 2] = reg.register(live)
            how[k, :2] = shift
            moved = shift_image(mask, shift) if max(abs(shift[0]), abs(shift[1])) >= 0.05 else mask
        else:
            moved = mask
        np.subtract(moved, live, out=out[k])
        _zero_background(out[k], blank)
        if outside is not None:
            out[k][outside] = 0.0
    return out, (how if reg is not None else None)


def log_attenuation(run) -> bool:
    """Whether :func:`opacify` (and :func:`native_values`) give natural-log attenuation: a native
    LIN run. The lumen model then blurs the transmission (:mod:`stenosis.diameter.model`)."""
    return (not run.metadata.subtracted) and run.metadata.pixel_intensity_relationship == "LIN"


def native_values(run, index: int, region: tuple[slice, slice] | None = None) -> np.ndarray:
    """Frame ``index`` of a native run (or its ``region``) in the domain its opacification
    subtracts in: stored values, or their natural log for a LIN run (float32)."""
    f = np.asarray(run.frames[index] if region is None else run.frames[index][region], np.float32).copy()
    if run.metadata.pixel_intensity_relationship == "LIN":
        np.maximum(f, 1.0, out=f)
        np.log(f, out=f)
    return f


def mask_frames_of(run) -> list[int]:
    """The frames :func:`opacify` subtracts as a run's mask: the tagged mask frames, else frame 0;
    none for a subtracted run or a single native frame (each frame then keeps its own background)."""
    n = run.frames.shape[0]
    if run.metadata.subtracted or n < 2:
        return []
    return [int(m) for m in run.metadata.mask_frames if 0 <= m < n] or [0]


def native_iodine(run, centerline_rc: np.ndarray, normal_rc: np.ndarray, *, side_px: float,
                  sides: bool = False):
    """(T, N) each frame's iodine at each sample of a traced segment, read on the native frames
    (no mask): the mean of the two sides, ``side_px`` out along the normal, less the centre.
    Units of the opacified frames (stored grey levels; natural log for a LIN run). The sides take
    out the anatomy that is smooth across the vessel, so a frame without iodine reads about 0
    (and its median over the samples keeps a crossing vessel out). ``sides``: also the (T, N)
    difference of the two sides, which holds no iodine (a measure of the noise)."""
    rc = np.asarray(centerline_rc, float)
    nrm = np.asarray(normal_rc, float)
    coords = [rc.T, (rc + side_px * nrm).T, (rc - side_px * nrm).T]
    out = np.empty((run.frames.shape[0], len(rc)))
    across = np.empty_like(out)
    for t in range(run.frames.shape[0]):
        f = native_values(run, t)
        c, a, b = (ndi.map_coordinates(f, xy, order=1, mode="nearest") for xy in coords)
        out[t] = 0.5 * (a + b) - c
        across[t] = a - b
    return (out, across) if sides else out


def background_off_vessels(values: np.ndarray, vessels: np.ndarray, *, sigma_px: float) -> np.ndarray:
    """The background of a native frame (no mask) under ``vessels``: a normalised convolution
    (Gaussian of ``sigma_px``) of the pixels off the mask, so it follows the anatomy around the
    vessel in two dimensions, not a morphological envelope. Where the mask leaves too little
    support nearby (under 5% of the kernel's weight) a kernel 3x wider fills in. Off the mask:
    the values themselves."""
    off = (~vessels).astype(np.float32)
    num = ndi.gaussian_filter(values * off, sigma_px)
    den = ndi.gaussian_filter(off, sigma_px)
    bg = num / np.maximum(den, 1e-6)
    thin = vessels & (den < 0.05)
    if thin.any():
        wide = ndi.gaussian_filter(values * off, 3.0 * sigma_px) / np.maximum(ndi.gaussian_filter(off, 3.0 * sigma_px), 1e-6)
        bg = np.where(thin, wide, bg)
    return np.where(vessels, bg, values).astype(np.float32)


def unexposed(frames: np.ndarray) -> np.ndarray | None:
    """(H, W) bool: the pixels outside the exposed field, or None when the run has none.

    A collimator shutter (and, as displayed, a vendor's blanking of what lies beyond it) holds
    one stored value, the run's lowest or highest, in every frame, over a region that reaches
    the frame's border. Read as anatomy it moved a subtracted frame's background (its median)
    to the shutter's value, and every pixel of the field then read as iodine. Such regions: the
    pixels at the first frame's lowest or highest value, the same in every frame (a dense vessel
    clipped at that value comes and goes with the bolus), opened by a 5 x 5 square, or, on a
    single frame (or frames all alike: no bolus to tell a clipped vessel by), by a square a tenth
    of the frame's smaller side wide (wider than any artery, as
    :data:`stenosis.auto.MAX_TRUNK_WIDTH_FRACTION`; the thin slivers where a round field meets
    the frame's edge then stay in); the connected parts that touch the border and cover at least
    :data:`UNEXPOSED_MIN_FRACTION` of the frame. With the lowest and highest values, the border's
    commonest one when it lies within :data:`UNEXPOSED_LOSSY_FRACTION` of the range from either
    (a lossy JPEG's blanking)."""
    data = np.asarray(frames)
    first = data[0]
    lo, hi = first.min(), first.max()
    if lo == hi:
        return None
    cand = (first == lo) | (first == hi)
    # a lossy code keeps a flat blanking flat but may move it off the extreme by a level or two (its
    # ringing at the field's edge reaches the extreme instead): the border's commonest value, when
    # that near the lowest or highest
    edge = np.concatenate([first[0], first[-1], first[:, 0], first[:, -1]])
    values, counts = np.unique(edge, return_counts=True)
    common = values[np.argmax(counts)]
    if min(float(common) - float(lo), float(hi) - float(common)) <= UNEXPOSED_LOSSY_FRACTION * (float(hi) - float(lo)):
        cand |= first == common
    min_px = UNEXPOSED_MIN_FRACTION * first.size
    bolus = False  # one pass: a frame differing anywhere from the first, and the pixels that never do
    for f in data[1:]:
        same = f == first
        bolus = bolus or not same.all()
        cand &= same
        if cand.sum() < min_px:
            return None
    if cand.sum() < min_px:
        return None
    side = 5 if bolus else max(5, int(UNEXPOSED_MIN_WIDTH_FRACTION * min(first.shape))) | 1  # odd: centred
    u8 = cand.astype(np.uint8)  # an opening by a square, separable: min then max filters
    cand = ndi.maximum_filter(ndi.minimum_filter(u8, size=side, mode="constant"), size=side, mode="constant").astype(bool)
    labels, n = ndi.label(cand)
    if n == 0:
        return None
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = np.zeros(n + 1, bool)
    keep[border] = True
    keep &= sizes >= min_px
    keep[0] = False
    if not keep.any():
        return None
    blank = keep[labels]
    if blank.mean() > 0.95:  # nothing exposed: not a shutter (a blank run is refused elsewhere)
        return None
    return blank


def _zero_background(frame: np.ndarray, blank: np.ndarray | None = None) -> None:
    """In place: subtract the median of the exposed field (taken on a 1/16 subsample, for speed);
    the pixels outside it (``blank``, :func:`unexposed`) set to that background, 0."""
    step = 4 if min(frame.shape) >= 64 else 1
    sub = frame[::step, ::step]
    if blank is not None:
        sub = sub[~blank[::step, ::step]]
    frame -= np.float32(np.median(sub))
    if blank is not None:
        frame[blank] = 0.0


def _black_tophat(frame: np.ndarray) -> np.ndarray:
    """closing(frame) - frame: dark narrow structures positive, smooth background ~0.

    The closing (max then min filter, flat square) runs at half resolution on
    large frames; its blocky upsampling is smoothed by a running mean."""
    factor = 2 if min(frame.shape) >= 256 else 1
    small = frame[::factor, ::factor] if factor > 1 else frame
    size = max(3, _TOPHAT_SIZE_PX // factor) | 1
    closed = ndi.minimum_filter(ndi.maximum_filter(small, size=size), size=size)
    if factor > 1:
        closed = np.repeat(np.repeat(closed, factor, axis=0), factor, axis=1)[: frame.shape[0], : frame.shape[1]]
    closed = ndi.uniform_filter(closed, size=max(3, _TOPHAT_SIZE_PX // 4))
    # the smoothing may dip below the frame at edges of the closing: clip at 0
    return np.maximum(closed - frame, 0).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- registration
# bounded caches: crop shapes differ from run to run, and a batch worker lives for
# hundreds of runs (an unbounded dict grew its memory run after run)
@functools.lru_cache(maxsize=16)
def _window(shape: tuple[int, int]) -> np.ndarray:
    win = np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)
    win.flags.writeable = False
    return win


def _spectrum(image: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """The image's spectrum for phase correlation: its mean removed and apodised by a Hann window
    (and by ``weight``, :func:`_field_taper`, where part of the frame is outside the field)."""
    win = _window(tuple(image.shape))
    if weight is not None:
        win = win * weight
    img = image.astype(np.float32, copy=True)
    img -= np.float32(np.sum(img * win) / max(float(win.sum()), 1e-12))
    img *= win
    return sfft.rfft2(img, workers=1)


def _field_taper(inside: np.ndarray) -> np.ndarray:
    """(H, W) float32 weight from each pixel's distance inside the exposed field (``inside``, 0
    outside it): 0 outside, rising as a raised cosine to 1 over :data:`FIELD_TAPER_PX`. The field's
    edge is fixed to the detector while the patient moves; apodised like the frame's own border,
    it no longer draws the phase correlation to no shift."""
    x = np.clip(inside / FIELD_TAPER_PX, 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * x)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _lowpass(shape: tuple[int, int]) -> np.ndarray:
    fr = sfft.fftfreq(shape[0])[:, None]
    fc = sfft.rfftfreq(shape[1])[None, :]
    lp = np.exp(-2.0 * (np.pi * _PEAK_SIGMA_PX) ** 2 * (fr**2 + fc**2)).astype(np.float32)
    lp.flags.writeable = False
    return lp


def _shift_from_spectra(ref_spec: np.ndarray, mov_spec: np.ndarray, shape: tuple[int, int], max_shift_px: float) -> tuple[float, float]:
    cross = mov_spec * np.conj(ref_spec)
    mag = np.abs(cross)
    mag[mag < 1e-12] = 1e-12
    cross /= mag
    # Gaussian low-pass: the correlation peak becomes a Gaussian whose
    # log is a parabola, so the sub-pixel fit below is nearly unbiased.
    cross *= _lowpass(shape)
    corr = sfft.irfft2(cross, s=shape, workers=1)
    b = int(np.floor(max_shift_px))
    rows = np.r_[0 : b + 1, shape[0] - b : shape[0]] if b > 0 else np.array([0])
    cols = np.r_[0 : b + 1, shape[1] - b : shape[1]] if b > 0 else np.array([0])
    rows = np.unique(rows % shape[0])
    cols = np.unique(cols % shape[1])
    sub = corr[np.ix_(rows, cols)]
    ri, ci = np.unravel_index(int(np.argmax(sub)), sub.shape)
    pr, pc = int(rows[ri]), int(cols[ci])

    def refine(c_m: float, c_0: float, c_p: float) -> float:
        vals = np.array([c_m, c_0, c_p], dtype=np.float64)
        if np.all(vals > 0):
            vals = np.log(vals)
        denom = vals[0] - 2 * vals[1] + vals[2]
        if denom >= 0:
            return 0.0
        return float(np.clip(0.5 * (vals[0] - vals[2]) / denom, -0.5, 0.5))

    n0, n1 = shape
    dr = refine(corr[(pr - 1) % n0, pc], corr[pr, pc], corr[(pr + 1) % n0, pc])
    dc = refine(corr[pr, (pc - 1) % n1], corr[pr, pc], corr[pr, (pc + 1) % n1])
    sr = pr if pr <= n0 // 2 else pr - n0
    sc = pc if pc <= n1 // 2 else pc - n1
    sr, sc = sr + dr, sc + dc
    sr = float(np.clip(sr, -max_shift_px, max_shift_px))
    sc = float(np.clip(sc, -max_shift_px, max_shift_px))
    return sr, sc


class _MaskRegistration:
    """Translation of the mask onto each live frame, iodine excluded (see the module notes)."""

    #: pre-smoothing of both images (px): quantum noise in the gradients and the differences
    SMOOTH_PX = 1.0
    #: pixels whose difference exceeds this many robust SDs (iodine) are left out
    IODINE_SD = 3.0
    ITERATIONS = 8

    def __init__(self, mask: np.ndarray, max_shift_px: float, exclude: np.ndarray | None = None):
        mask = np.asarray(mask, np.float32)
        self.shape = mask.shape
        self.max_shift = float(max_shift_px)
        self.smooth = ndi.gaussian_filter(mask, self.SMOOTH_PX)
        # the part of the frame outside the exposed field (unexposed()) holds no anatomy and its
        # edge does not move with the patient: left out, with every pixel a shift could carry
        # across that edge (and the smoothing's reach)
        self.taper = self.keep = None
        if exclude is not None:
            inside = ndi.distance_transform_edt(~exclude)
            self.taper = _field_taper(inside)
            self.keep = (inside > self.max_shift + 2.0 * self.SMOOTH_PX + 1.0)[::2, ::2]
        self.spec = _spectrum(mask, self.taper)

    def _residual(self, live_s: np.ndarray, shift) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shifted mask, mask - live and the iodine-free weights, on every other pixel.

        Half the pixels along each axis carry the same information about a translation
        of smooth anatomy (both images are pre-smoothed) at a quarter of the cost.
        """
        moved = shift_image(self.smooth, shift, step=2)
        d = moved - live_s[::2, ::2]
        d -= np.float32(np.median(d))
        sd = np.float32(1.4826 * np.median(np.abs(d)) + 1e-12)
        w = _erode_cross(d < self.IODINE_SD * sd)  # the vessels' blurred edges too (2 px)
        if self.keep is not None:
            w &= self.keep
        b = int(np.ceil(max(abs(shift[0]), abs(shift[1])) / 2)) + 2  # repeated edge pixels
        w[:b] = False
        w[-b:] = False
        w[:, :b] = False
        w[:, -b:] = False
        return moved, d, w

    def _cost(self, live_s: np.ndarray, shift) -> float:
        _, d, w = self._residual(live_s, shift)
        n = int(w.sum())
        if n < 100:
            return float("inf")
        r = d[w]
        r = r - r.mean()
        return float(np.dot(r, r) / n)

    def shift_to(self, live: np.ndarray) -> tuple[float, float]:
        return self.register(live)[0]

    def register(self, live: np.ndarray) -> tuple[tuple[float, float], float]:
        """The mask's shift onto ``live`` and the share of their difference (iodine excluded) it
        removes: 1 - cost(shift) / cost(no shift); 0 without a shift, or usable pixels."""
        live = np.asarray(live, np.float32)
        if live.shape != self.shape or min(live.shape) < 16:
            return (0.0, 0.0), 0.0
        live_s = ndi.gaussian_filter(live, self.SMOOTH_PX)
        pc = _shift_from_spectra(self.spec, _spectrum(live, self.taper), live.shape, self.max_shift)
        # whole-pixel candidates: a fractional shift interpolates, which smooths the mask's
        # noise and lowers the difference by itself (it would win on flat, noisy anatomy)
        pc = (float(np.round(pc[0])), float(np.round(pc[1])))
        costs = {(0.0, 0.0): self._cost(live_s, (0.0, 0.0)), pc: self._cost(live_s, pc)}
        s = np.array(min(costs, key=costs.get), np.float64)
        for _ in range(self.ITERATIONS):
            moved, d, w = self._residual(live_s, tuple(s))
            if w.sum() < 100:
                break
            gr, gc = np.gradient(moved)  # per 2 px: the step below is in units of 2 px
            gr, gc, dw = gr[w].astype(np.float64), gc[w].astype(np.float64), d[w].astype(np.float64)
            dw -= dw.mean()
            a = np.array([[gr @ gr, gr @ gc], [gr @ gc, gc @ gc]])
            if np.trace(a) <= 0:
                break
            a += np.eye(2) * 1e-6 * np.trace(a)
            # mask(p - s - e) ~ mask(p - s) - grad . e: the step e that cancels the difference
            step = np.clip(2.0 * np.linalg.solve(a, np.array([gr @ dw, gc @ dw])), -1.0, 1.0)
            s = np.clip(s + step, -self.max_shift, self.max_shift)
            if np.hypot(*step) < 0.01:
                break
        final = (float(s[0]), float(s[1]))
        cost = self._cost(live_s, final)
        if not cost <= min(costs.values()):  # diverged (or no usable pixels)
            final = min(costs, key=costs.get)
            cost = costs[final]
        still = costs[(0.0, 0.0)]
        explained = 1.0 - cost / still if np.isfinite(still) and still > 0 and np.isfinite(cost) else 0.0
        return final, float(explained)


def estimate_shift(reference: np.ndarray, moving: np.ndarray, *, max_shift_px: float = MAX_SHIFT_PX) -> tuple[float, float]:
    """Translation (d_row, d_col) in pixels such that ``moving(p) ~ reference(p - d)``.

    Phase correlation restricted to ``|d| <= max_shift_px`` along each axis, with
    a sub-pixel Gaussian peak fit.

    Parameters
    ----------
    reference, moving : ndarray, shape (H, W)
    max_shift_px : float

    Returns
    -------
    (d_row, d_col) : tuple of float
        ``shift_image(reference, d)`` is aligned with ``moving``.
    """
    reference = np.asarray(reference, dtype=np.float32)
    moving = np.asarray(moving, dtype=np.float32)
    if reference.shape != moving.shape or reference.ndim != 2:
        raise ValueError("reference and moving must be 2-D images of the same shape")
    return _shift_from_spectra(_spectrum(reference), _spectrum(moving), reference.shape, max_shift_px)


#: pre-smoothing (px) of both frames before the translation is refined (:func:`refine_shift`)
_REFINE_SMOOTH_PX = 1.0
_REFINE_ITERATIONS = 8


def refine_shift(reference: np.ndarray, moving: np.ndarray, start: tuple[float, float], *,
                 max_shift_px: float = MAX_SHIFT_PX, min_eigen: float = 0.01) -> tuple[float, float]:
    """The translation ``start`` (``moving(p) ~ reference(p - d)``, e.g. :func:`estimate_shift`'s)
    refined by Gauss-Newton on the squared difference of the two frames (pre-smoothed by
    ``_REFINE_SMOOTH_PX``), a gain and an offset between them free (the bolus changes the
    iodine between two contrast frames).

    Phase correlation whitens the spectrum, so noise at every frequency weighs as much as the
    structures; on a straight vessel its peak is a ridge along the vessel and the sub-pixel peak
    fit, made along the image axes, lands off the ridge (1.8 px across a straight 12 px vessel of
    the independent renderer, which misread the frame's iodine by 11%). The step is taken only
    along the directions the frames determine (eigenvectors of the gradients' structure tensor
    with eigenvalue at least ``min_eigen`` of the largest, ``MeasureParams.follow_min_eigen``):
    along a straight uniform vessel a translation changes nothing, and the smallest motion (none)
    is taken there, not phase correlation's pick along its ridge. Descended from ``start`` and
    from no motion (phase correlation can lock onto a spurious peak at its search bound); the
    pose of lowest difference among those and ``start`` is returned (a fractional shift lowers
    the difference a little by itself, interpolation smoothing the noise: left, measured
    better; docs/tuning.md section 2). In noise above a few percent of the
    vessel's contrast the noise's gradients pass ``min_eigen`` in every direction, and phase
    correlation's pick along a straight vessel stays (as before this refinement; harmless across
    the vessel)."""
    reference, moving = np.asarray(reference, np.float32), np.asarray(moving, np.float32)
    if reference.shape != moving.shape or min(reference.shape) < 16:
        return (float(start[0]), float(start[1]))
    ref = ndi.gaussian_filter(reference, _REFINE_SMOOTH_PX)
    mov = ndi.gaussian_filter(moving, _REFINE_SMOOTH_PX)
    gr, gc = np.gradient(ref)
    # the same pixels for every shift tried (their differences are compared), off the border that
    # a shift up to the bound repeats (or a quarter of the frame), on every other pixel (both
    # frames are pre-smoothed: half the pixels along each axis carry the same information about a
    # translation, at a quarter of the cost)
    b = (min(int(np.ceil(max_shift_px)) + 2, min(ref.shape) // 4) + 1) // 2
    sub = ref[::2, ::2]
    inner = (slice(b, sub.shape[0] - b), slice(b, sub.shape[1] - b))
    x = sub[inner].ravel().astype(np.float64)
    x -= x.mean()
    sxx = float(x @ x)
    g = np.stack([gr[::2, ::2][inner].ravel(), gc[::2, ::2][inner].ravel()]).astype(np.float64)
    # (the gradients keep their mean: removing it, as the free offset would have it, zeroed the
    # motion along a native phantom run's stenosed artery, whose lesion is weak along it, and
    # read one 74% lesion 1.1 points low; docs/tuning.md section 2)
    h = g @ g.T
    lam, vec = np.linalg.eigh(h)
    if x.size < 100 or not sxx > 0 or not lam[-1] > 0:
        return (float(start[0]), float(start[1]))
    known = vec[:, (lam > 0) & (lam >= min_eigen * lam[-1])]  # the directions the frames determine
    h_known = known.T @ h @ known

    def fitted(s) -> tuple[np.ndarray, float, float]:
        """(residual, gain, mean square) of the moving frame brought back by s onto the reference;
        an anti-correlated pose (gain <= 0) is no alignment: infinite."""
        y = shift_image(mov, (-s[0], -s[1]), step=2)[inner].ravel().astype(np.float64)
        y -= y.mean()
        gain = float(x @ y) / sxx
        r = y - gain * x
        return r, gain, float(r @ r) / r.size if gain > 0 else float("inf")

    def descend(s: np.ndarray) -> tuple[np.ndarray, float]:
        """Gauss-Newton from s: the pose of lowest difference on its way (returning the last pose
        instead, against the interpolation's own lowering of the difference at fractional
        shifts, read the lowest-dose phantom runs worse: 1.29 -> 1.58 with one frame)."""
        # along the undetermined directions a translation changes nothing: the smallest motion
        # (none) there
        s = known @ (known.T @ s)
        r, gain, c = fitted(s)
        best, best_cost = s.copy(), c
        for _ in range(_REFINE_ITERATIONS):
            if not gain > 0:
                break
            # back(p; s + e) ~ back(p; s) + gain grad ref(p) . e: the step e that cancels r
            step = np.clip(known @ np.linalg.solve(gain * h_known, -(known.T @ (g @ r))), -1.0, 1.0)
            s = known @ (known.T @ np.clip(s + step, -max_shift_px, max_shift_px))
            r, gain, c = fitted(s)
            if c < best_cost:
                best, best_cost = s.copy(), c
            if np.hypot(*step) < 0.005:
                break
        return best, best_cost

    # from phase correlation's shift and, when that is off no motion, from no motion too (phase
    # correlation can lock onto a spurious peak, e.g. at its search bound): the lowest difference
    # of those and of phase correlation's own shift; that shift when none aligns (anti-correlated)
    start = np.array([float(start[0]), float(start[1])])
    results = [descend(start)]
    if not np.allclose(known @ (known.T @ start), start):  # else descend's first pose was start itself
        results.append((start, fitted(start)[2]))
    if float(np.linalg.norm(known.T @ start)) > 0.5:
        results.append(descend(np.zeros(2)))
    best, cost = min(results, key=lambda sc: sc[1])
    if not np.isfinite(cost):
        best = start
    return (float(best[0]), float(best[1]))


def shift_image(image: np.ndarray, shift_rc: tuple[float, float], *, step: int = 1) -> np.ndarray:
    """``image`` translated by (d_row, d_col) px: ``out(p) = image(p - d)``.

    Separable linear interpolation, edges repeated. Returns a new float32 array; ``step`` > 1:
    only every ``step``-th row and column of it (``shift_image(image, d)[::step, ::step]``, the
    same values, computed on those pixels alone)."""
    image = np.asarray(image, dtype=np.float32)
    out = _shift_axis(image, float(shift_rc[0]), 0, step)
    return _shift_axis(out, float(shift_rc[1]), 1, step)


def _erode_cross(w: np.ndarray) -> np.ndarray:
    """``ndi.binary_erosion(w)`` (the 4-neighbour cross, outside the image False), by slices."""
    e = w.copy()
    e[1:] &= w[:-1]
    e[:-1] &= w[1:]
    e[:, 1:] &= w[:, :-1]
    e[:, :-1] &= w[:, 1:]
    e[[0, -1]] = False
    e[:, [0, -1]] = False
    return e


def _shift_axis(image: np.ndarray, d: float, axis: int, step: int = 1) -> np.ndarray:
    n = image.shape[axis]
    base = np.floor(d)
    frac = np.float32(d - base)
    out_idx = np.arange(0, n, step)
    idx = np.clip(out_idx - int(base), 0, n - 1)
    a = np.take(image, idx, axis=axis)
    if frac == 0:
        return a
    idx1 = np.clip(out_idx - int(base) - 1, 0, n - 1)
    b = np.take(image, idx1, axis=axis)
    # out = (1 - f) a + f b, computed in place on a
    a *= np.float32(1.0) - frac
    b *= frac
    a += b
    return a


def _finer_than(x: np.ndarray, f: np.ndarray, sigma_px: float) -> np.ndarray:
    """The structure of ``x`` ((..., h, w)) finer than ``sigma_px``, over the pixels weighted by
    ``f`` (h, w): ``x`` less its normalised Gaussian convolution over them."""
    sig = (0,) * (x.ndim - 2) + (sigma_px, sigma_px)
    smooth = ndi.gaussian_filter(x * f, sig, truncate=3.0)
    return x - smooth / np.maximum(ndi.gaussian_filter(f, sigma_px, truncate=3.0), 1e-6)


def shared_noise(frames: np.ndarray, free: np.ndarray, *, sigma_px: float, outlier_sds: float,
                 with_free: bool = False) -> tuple:
    """The noise a run's subtracted frames share (the mask's), on the pixels none holds iodine in.

    ``frames`` (n, h, w): subtracted frames of one run aligned to whole pixels; ``free`` (h, w):
    the pixels off every vessel. There each frame sees the anatomy the mask saw, so the frames'
    mean, less its background (a normalised convolution of ``sigma_px`` over the free pixels),
    is the mask's noise plus the mean of the frames' own. The frames' own noise variance ``s2``
    is their scatter about their mean (less its background alike); the share of the mask's noise in the mean is
    ``w = 1 - (s2 / n) / var(mean)`` (the least-squares estimate of the mask's noise from the
    mean, from these two measured variances: nothing tuned). Pixels where a frame lies more than
    ``outlier_sds`` of that noise from the frames' mean, less its offset (a vein filling in a late frame, a
    vessel the map missed in some frames) are not free. Returns ``w`` times the mean's fine
    structure on the free pixels (zero elsewhere), to subtract from every frame, and ``w``
    (0 when it cannot be estimated: fewer than 3 frames or 50 free pixels); ``with_free``: and
    the free pixels it used (those off the others left out)."""
    S = np.asarray(frames, np.float32)
    n = S.shape[0]
    zero = np.zeros(S.shape[1:], np.float32)
    free = np.asarray(free, bool)
    if n < 3 or free.sum() < 50:
        return (zero, 0.0, free) if with_free else (zero, 0.0)
    mean = S.mean(axis=0)

    def high_pass(x, f):
        return _finer_than(x, f, sigma_px)

    # slow differences between frames (a blush, an offset) are in neither the mean's fine
    # structure nor the frames' own noise: both are taken finer than sigma_px
    dev = S - mean[None]
    sq = (high_pass(dev, free.astype(np.float32)) ** 2).sum(axis=0) / (n - 1)
    own = float(sq[free].mean())
    if not own > 0:
        return (zero, 0.0, free) if with_free else (zero, 0.0)
    # a frame's pixel off the others' (a vein filling, a vessel the map missed in some frames),
    # judged on its whole difference from their mean less the frame's offset, is not free, nor
    # is it counted in the frames' own noise within the filter's reach of it
    dev -= dev[:, free].mean(axis=1)[:, None, None]
    far = (np.abs(dev) > outlier_sds * np.sqrt(own)).any(axis=0) & free
    if far.any():
        free = free & ~far
        counted = free & (ndi.distance_transform_edt(~far) > 3.0 * sigma_px)
        if free.sum() < 50 or counted.sum() < 50:
            return (zero, 0.0, free) if with_free else (zero, 0.0)
        own = float(sq[counted].mean())
    fine = high_pass(mean, free.astype(np.float32))
    total = float((fine[free] ** 2).mean())
    if not (total > 0 and own > 0):
        return (zero, 0.0, free) if with_free else (zero, 0.0)
    w = float(np.clip(1.0 - own / n / total, 0.0, 1.0))
    out = np.where(free, w * fine, 0.0).astype(np.float32)
    return (out, w, free) if with_free else (out, w)


def mask_noise(frames: np.ndarray, masks: np.ndarray, free: np.ndarray, *, sigma_px: float,
               scales_px=(1.0, 2.0), fit_count: int | None = None) -> tuple[np.ndarray, float]:
    """The mask's noise under the iodine, predicted from the mask itself.

    ``frames`` (n, h, w): subtracted frames (mask less live); ``masks`` (n, h, w): the mask each
    one subtracted, as subtracted (registered onto it); ``free`` (h, w): the pixels off every
    vessel. The mask holds no iodine, so its structure finer than ``sigma_px`` is its noise plus
    the anatomy's fine structure, everywhere, under the lumen too. Off the vessels a frame's fine
    structure is the mask's noise (with the live frame's, independent of the mask, and what
    registration left of the anatomy), so there the best linear predictor of it from the mask is
    fitted: least squares on the mask's structure finer than ``sigma_px`` seen through a small
    filter bank (the pixel, and Gaussian neighbourhoods of ``scales_px``; a basis: its weights
    are what is fitted). It weighs the noise, white at the pixel scale, against the anatomy,
    smooth there; it is fitted on the frames' mean (the filters are linear). Returns the
    prediction on the pixels that are not free (zero on the free ones), to subtract from each
    frame, and the share of the frames' mean fine structure off the vessels it explains (R^2; 0
    when it cannot be estimated: under 50 free pixels, or the fit explains nothing).
    ``fit_count``: only the first so many frames are fitted on (a reader's frame limit); the
    prediction is made for all."""
    S = np.asarray(frames, np.float32)
    M = np.asarray(masks, np.float32)
    free = np.asarray(free, bool)
    zero = np.zeros(S.shape, np.float32)
    if free.sum() < 50 or not sigma_px > 0:
        return zero, 0.0
    sig = (0, sigma_px, sigma_px)
    coarse = ndi.gaussian_filter(M, sig, truncate=3.0, mode="nearest")
    bank = [M - coarse] + [ndi.gaussian_filter(M, (0, s, s), truncate=3.0, mode="nearest") - coarse
                           for s in scales_px]
    # fitted on the frames' mean (the filters are linear: the mean of each frame's structure):
    # the frames' structure over the free pixels against the mean mask's through the bank
    k = S.shape[0] if fit_count is None else max(1, min(int(fit_count), S.shape[0]))
    y = _finer_than(S[:k].mean(axis=0), free.astype(np.float32), sigma_px)[free].astype(np.float64)
    X = np.stack([b[:k].mean(axis=0)[free] for b in bank], axis=1).astype(np.float64)
    X -= X.mean(axis=0)
    y -= y.mean()
    gram = X.T @ X
    if not np.all(np.isfinite(gram)) or np.linalg.matrix_rank(gram) < gram.shape[0]:
        return zero, 0.0
    coef = np.linalg.solve(gram, X.T @ y)
    explained = float(1.0 - np.sum((y - X @ coef) ** 2) / max(float(np.sum(y * y)), 1e-30))
    if not explained > 0:
        return zero, 0.0
    pred = sum(np.float32(c) * b for c, b in zip(coef, bank))
    pred[:, free] = 0.0
    return pred.astype(np.float32, copy=False), explained
