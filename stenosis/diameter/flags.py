"""Per-sample quality flags: from the fit's residuals and from the vessel map beside and
across the lumen."""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..params import DEFAULT_PARAMS, MeasureParams
from ..result import DiameterProfile, QualityFlag

__all__ = ["residual_flags", "poor_fit_threshold", "side_vessel_flags", "probe_beside"]


def residual_flags(Y, x, fit, free_amp, inside, sigma, amplitude, params: MeasureParams = DEFAULT_PARAMS) -> np.ndarray:
    """Per-sample :class:`QualityFlag` bits from the fit's residuals (OUTSIDE, BRANCH, OVERLAP,
    POOR_FIT): iodine beyond the blurred edge, extra iodine over the lumen, a fit much worse
    than the run's typical one; noise levels are the run's robust residual SD."""
    p = params
    R = fit.radius_px
    n = len(Y)
    flags = np.zeros(n, dtype=np.int64)
    flags[~inside] |= int(QualityFlag.OUTSIDE)
    res = fit.residuals
    # robust noise level of the residuals (per sample point), from the whole run
    noise = 1.4826 * np.median(np.abs(res - np.median(res))) + 1e-12
    peak_ref = amplitude * 2.0 * np.quantile(R, 0.9)
    rel = np.abs(x[None, :] - fit.centre_px[:, None])
    outer = rel > (R[:, None] + 2.0 * sigma + 1.0)
    inner = rel <= np.maximum(R[:, None], 0.5)
    rs = ndi.uniform_filter1d(res, 5, axis=1)
    out_max = np.where(outer, rs, -np.inf).max(axis=1)
    thr_b = max(p.branch_peak_fraction * peak_ref, p.branch_noise_sigmas * noise)
    flags[out_max > thr_b] |= int(QualityFlag.BRANCH)
    # extra iodine over the lumen: the free amplitude exceeds the run's amplitude
    resolved = 2 * R > p.overlap_resolved_sigmas * sigma
    in_mean = np.where(inner, res, 0).sum(1) / np.maximum(inner.sum(1), 1)
    over = (resolved & (free_amp > p.overlap_free_amplitude * amplitude)) | (in_mean > max(p.overlap_inner_fraction * peak_ref, p.branch_noise_sigmas * noise))
    flags[over] |= int(QualityFlag.OVERLAP)
    flags[np.sqrt(fit.rss / Y.shape[1]) > poor_fit_threshold(fit, p, noise=noise)] |= int(QualityFlag.POOR_FIT)
    return flags


def poor_fit_threshold(fit, params: MeasureParams = DEFAULT_PARAMS, *, noise: float | None = None) -> float:
    """The residual RMS above which a profile is a POOR_FIT: ``poor_fit_rms`` x the run's median
    fit RMS, and at least ``poor_fit_rms`` x the residuals' robust SD (``noise``, computed when
    None)."""
    res = fit.residuals
    if noise is None:
        noise = 1.4826 * np.median(np.abs(res - np.median(res))) + 1e-12
    rms = np.sqrt(fit.rss / res.shape[1])
    return float(max(params.poor_fit_rms * np.median(rms), params.poor_fit_rms * noise))


def probe_beside(probability: np.ndarray, pts: np.ndarray, nrm: np.ndarray, centre_px: np.ndarray,
                  start_px: np.ndarray, steps_px: np.ndarray):
    """Vessel probability beside each lumen: one (N, K) array per side (-1, then +1).

    Sampled along the normal at ``centre + sign * (start + step)``; ``pts`` are in the
    probability map's coordinates.
    """
    prob = np.asarray(probability, np.float32)
    for sign in (-1.0, 1.0):
        off = centre_px[:, None] + sign * (start_px[:, None] + steps_px[None, :])
        q = pts[:, None, :] + nrm[:, None, :] * off[:, :, None]
        v = ndi.map_coordinates(prob, q.reshape(-1, 2).T, order=1, mode="constant", cval=0.0)
        yield v.reshape(off.shape)



def side_vessel_flags(profile: DiameterProfile, probability: np.ndarray, *, origin_rc: tuple[float, float] = (0.0, 0.0),
                      crossings: bool = True, params: MeasureParams = DEFAULT_PARAMS) -> np.ndarray:
    """(N,) BRANCH bits where the vessel map shows another vessel just beside the lumen (a branch
    origin, a touching vessel: its iodine biases the profile's background line) and OVERLAP bits
    where one crosses it (``crossings``: needs a clean map such as the U-Net's; the classical
    vesselness answers background texture).

    The map (``probability``, a crop at ``origin_rc`` in the frame) is probed just outside each
    edge of the artery's normal lumen, from 2 sigma + 1 px to that plus ``side_reach_px``.
    """
    p = params
    pts = profile.centerline_rc - np.asarray(origin_rc, float)
    c = profile.centre_offset_px
    r = profile.diameter_px / 2
    # beyond the normal lumen, and beyond an eccentric narrowing: the vessel map covers the
    # artery's normal outline, up to 2 r_norm - r from a residual lumen against one wall
    r_norm = 0.5 * float(np.quantile(profile.diameter_px, 0.9))
    start = np.maximum(2.0 * r_norm - r, r) + 2.0 * profile.blur_sigma_px + 1.0
    ks = np.arange(0.0, p.side_reach_px + 1e-9, 1.0)
    hit = np.zeros(len(profile), bool)
    for v in probe_beside(probability, pts, profile.normal_rc, c, start, ks):
        hit |= v.max(axis=1) > p.vessel_threshold
    hit = ndi.binary_dilation(hit, iterations=p.side_dilate_samples)  # a branch origin spans a few samples
    flags = np.where(hit, int(QualityFlag.BRANCH), 0)
    if crossings:
        cross = _crossing_samples(profile, pts, probability, params=p)
        flags = flags | np.where(cross, int(QualityFlag.OVERLAP), 0)
    return flags


def _crossing_samples(profile: DiameterProfile, pts: np.ndarray, probability: np.ndarray, *,
                      params: MeasureParams) -> np.ndarray:
    """(N,) samples whose lumen another vessel crosses (see :func:`_crossing_ratio`).

    A vessel crossing at a shallow angle can end before the side-vessel probe starts and the
    profile fit absorbs it into a wider lumen; the map around the sample still shows it.
    """
    threshold, reach_px = params.vessel_threshold, params.side_reach_px
    n = len(profile)
    step = float(np.median(np.diff(profile.arc_px))) if n > 1 else 1.0
    # every ~0.5 px of arc is enough (samples are 0.1 mm apart, a fraction of a pixel)
    idx = np.unique(np.r_[np.arange(0, n, max(int(0.5 / step), 1)), n - 1])
    # one vessel's half-width: a robust middle of the diameters (a long crossing region
    # inflates the 0.9 quantile, a long lesion pulls the median down); the circle has the
    # same radius all along (a lesion's wider probe would reach a vessel far from the lumen)
    fit_ok = (profile.flags & int(QualityFlag.POOR_FIT | QualityFlag.OUTSIDE)) == 0
    r_one = 0.5 * float(np.quantile(profile.diameter_px[fit_ok] if fit_ok.sum() >= 5 else profile.diameter_px, 0.6))
    # one vessel's arc is the map's own: the map outlines the blurred vessel, wider than the
    # fitted lumen where the blur is large against it (blur 1.5 px on a 2.4 px radius read every
    # sample of a clean segment as a crossing)
    half = max(r_one, _map_half_width(probability, pts, profile.normal_rc, threshold=threshold))
    radius = np.full(idx.size, max(r_one + 2.0 * profile.blur_sigma_px, half) + 1.0 + 0.5 * reach_px)
    ratio = _crossing_ratio(probability, pts[idx], half, radius, threshold=threshold)
    cross = np.interp(np.arange(n), idx, ratio) > params.crossing_ratio
    if not cross.any():
        return cross
    k = max(int(round(r_one / step)), 1)  # bridge gaps, then half a lumen width either side
    return ndi.binary_dilation(ndi.binary_closing(cross, iterations=2 * k), iterations=k)


def _map_half_width(probability: np.ndarray, pts: np.ndarray, normals: np.ndarray, *, threshold: float,
                    reach_px: float = 20.0, step_px: float = 0.25) -> float:
    """Half-width (px) of the vessel map across the traced vessel: at each sample, the mean over
    both sides of the distance along the normal at which the map first falls below
    ``threshold``; the median over the samples (crossings and branches are a minority). 0 when
    the map does not hold the trace."""
    t = np.arange(0.0, reach_px + 1e-9, step_px)
    widths = []
    for sgn in (1.0, -1.0):
        q = pts[:, None, :] + sgn * t[None, :, None] * normals[:, None, :]
        v = ndi.map_coordinates(np.asarray(probability, np.float32), q.reshape(-1, 2).T, order=1, mode="constant",
                                cval=0.0).reshape(len(pts), t.size)
        below = v <= threshold
        first = np.where(below.any(axis=1), below.argmax(axis=1), t.size - 1)
        widths.append(t[first])
    w = 0.5 * (widths[0] + widths[1])
    on = w > 0
    return float(np.median(w[on])) if on.sum() >= 3 else 0.0


def _crossing_ratio(probability: np.ndarray, pts: np.ndarray, half_width_px: float, radius_px: np.ndarray, *,
                    threshold: float = 0.5, n_ang: int = 96, n_rad: int = 12) -> np.ndarray:
    """(N,) arc of the vessel map reached from each sample along straight rays that stay inside
    the map, on a circle of ``radius_px``, over that of one straight vessel of ``half_width_px``.

    One vessel through the sample gives about 1 (two arms), a crossing vessel about 2 (four
    arms, merged at shallow angles); a vessel beside the lumen, across background, is not
    reached along a ray inside the map and does not count.
    """
    prob = np.asarray(probability, np.float32)
    ang = np.linspace(0.0, 2.0 * np.pi, n_ang, endpoint=False)
    dirs = np.stack([np.sin(ang), np.cos(ang)], axis=-1)
    radius = np.asarray(radius_px, float)
    rad = radius[:, None] * np.linspace(0.0, 1.0, n_rad)[None, :]
    q = pts[:, None, None, :] + rad[:, :, None, None] * dirs[None, None, :, :]
    v = ndi.map_coordinates(prob, q.reshape(-1, 2).T, order=1, mode="constant", cval=0.0)
    inside = v.reshape(len(pts), n_rad, n_ang) > threshold
    reached = np.logical_and.accumulate(inside, axis=1)[:, -1, :]
    arc = reached.mean(axis=1) * 2.0 * np.pi * radius
    expected = 4.0 * radius * np.arcsin(np.clip(half_width_px / np.maximum(radius, 1e-6), 0.0, 1.0))
    return arc / np.maximum(expected, 1e-6)

