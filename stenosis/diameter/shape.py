"""Projected width of a non-round lumen: the lesion core's amplitude ratio.

The diameter fit uses one iodine amplitude per run (following the vessel slowly,
:func:`stenosis.diameter.fit.local_amplitude`), so it is densitometric: an elliptical lumen of
semi-axes a, b seen with projected half-width w has chords (ab / w^2) times those of a circle of
radius w, and the fixed-amplitude fit reads the area-equivalent diameter 2 sqrt(ab) from every
side. With the amplitude free the same profiles give width w and amplitude k A, k = ab / w^2:
one k shared by the lesion core's profiles (each its own width, centre and background line) on
every frame read, weighed on a log grid (:func:`rss_on_grid`, :func:`amplitude_likelihood`);
the projected width is d_eq / sqrt(k).

What k can be believed is measured, not assumed (:func:`lesion_amplitude_ratio`): the normal
artery of the same image, where the lumen is round, says how much more than their noise the
profiles' k wanders there (background structure under the vessel, the noise the frames share);
the core's likelihood is widened by that factor, and a Gaussian prior on log k around a round
lumen (``view_eccentricity_prior_sd``) keeps an undetermined k (a slit below the blur) near the
area reading.

Used only when grading several views of one lesion (:func:`stenosis.views.view_reading`): a
single view's measurement keeps the area reading (docs/tuning.md, sections 3 and 8).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..params import DEFAULT_PARAMS, MeasureParams
from ..result import FrameRead, QualityFlag
from ..wasid.uncertainty import noise_correlation_px
from .fit import fit_profiles, profile_noise
from .stage import sample_along

__all__ = ["AmplitudeRatio", "rss_on_grid", "amplitude_likelihood", "lesion_amplitude_ratio", "K_GRID"]

#: amplitude ratios weighed (log grid): an ellipse of axis ratio 8 seen along either axis
K_GRID = np.geomspace(0.125, 8.0, 121)
#: the normal artery's windows weighed: at most this many, spread evenly (a compute budget)
MAX_NORMAL_WINDOWS = 8
#: the lesion's shape is read on profiles interpolated with a cubic spline: bilinear
#: interpolation (the diameters') blurs each sample by t (1 - t) px^2 along each axis at its
#: sub-pixel position t, a kernel that changes from sample to sample and that the lumen model's
#: one Gaussian does not describe; a width read from the profile's shape moved with it
SHAPE_INTERPOLATION_ORDER = 3


def spline_blur_px(prof) -> float:
    """The blur (px) of spline profiles: the run's blur, estimated on bilinear profiles, less the
    blur variance their interpolation held in it (``prof.blur_interp_var_px2``: averaged over the
    profiles it was estimated on; 0 on pixel centres, 1/4 px^2 half-way, so no one correction
    fits every vessel; not recorded: the run's blur as it is)."""
    v = float(prof.blur_interp_var_px2)
    v = v if np.isfinite(v) else 0.0
    return float(np.sqrt(max(float(prof.blur_sigma_px) ** 2 - v, 0.05**2)))


@dataclass(frozen=True)
class AmplitudeRatio:
    """The lesion core's pooled free amplitude over the amplitude its diameters were read with:
    k = exp(``log_k``), the posterior mean of log k (the core's likelihood, widened by the
    structure measured along the normal artery, times a Gaussian prior around a round lumen,
    log k = 0) and its posterior SD."""

    log_k: float  # posterior mean of log k (0: the area reading is the projected width)
    log_k_sd: float  # posterior SD of log k
    k_best: float  # the profiles' own least-squares k (no prior)
    misfit: float  # RMS residual over the noise SD at k_best (about 1: the model explains the core)
    misfit_area: float  # the same at k = 1 (the area reading)
    n_profiles: int
    structure_factor: float = 1.0  # variance of log k along the normal artery over its noise's (>= 1; scales the core's)
    normal_windows: int = 0  # windows of the normal artery it was measured on

    @property
    def k(self) -> float:
        return float(np.exp(self.log_k))


def rss_on_grid(Y: np.ndarray, x: np.ndarray, tab, amplitude: np.ndarray, *, r_max_px: float,
                c_max_px: float) -> np.ndarray:
    """(G, N) residual sum of squares of each profile of ``Y`` (N, M), fitted (its own radius,
    centre and background line) with amplitude k x ``amplitude`` (N,), for every k of
    :data:`K_GRID`."""
    Y = np.asarray(Y, float)
    n = len(Y)
    amp = np.broadcast_to(np.asarray(amplitude, float), (n,))
    g = K_GRID
    fits = fit_profiles(np.tile(Y, (g.size, 1)), x, tab, amplitude=np.repeat(g, n) * np.tile(amp, g.size),
                        r_max_px=r_max_px, c_max_px=c_max_px)
    return fits.rss.reshape(g.size, n)


def amplitude_likelihood(rss: np.ndarray, m_points: int, *, independent: float) -> tuple[np.ndarray, float, float, float]:
    """The likelihood of one amplitude ratio k shared by profiles of unit noise whose
    :func:`rss_on_grid` is ``rss`` (G, N), ``m_points`` points each: exp(-dRSS / 2 x
    independent / N / max(misfit, 1)^2) over :data:`K_GRID`, normalised; ``independent``: how
    many independent profiles the N hold (neighbours along the vessel share noise). Also the
    least-squares k and the misfit (RMS residual over the noise) at it and at k = 1."""
    g = K_GRID
    n = rss.shape[1]
    total = rss.sum(axis=1)
    best = int(np.argmin(total))
    one = int(np.argmin(np.abs(np.log(g))))
    m = float(np.sqrt(total[best] / (n * m_points)))
    m1 = float(np.sqrt(total[one] / (n * m_points)))
    z = (total - total[best]) / 2.0 * max(independent, 1.0) / n / max(m, 1.0) ** 2
    like = np.exp(-z)
    return like / like.sum(), float(g[best]), m, m1


def lesion_amplitude_ratio(result, *, core_diameters: float = 0.25, prior_sd: float = 0.5,
                           params: MeasureParams = DEFAULT_PARAMS) -> AmplitudeRatio | None:
    """The amplitude ratio k (:class:`AmplitudeRatio`) at a measured result's MLD.

    The lesion core: the profiles within ``core_diameters`` reference diameters (at
    least 1.5 px) of the MLD, sampled along the result's centerline on every frame its
    diameters were read on (``result.frames_read``; else the analysed frame), each k times the
    amplitude its diameter was fitted with there (only the samples that frame's diameters were
    combined from), each frame's profiles weighted by its own noise: the likelihood of log k on
    :data:`K_GRID`, summarised by its mean and variance.

    What else moves k in this image is measured on the same artery: the normal stretches beyond
    the lesion and its shoulders (one reference diameter), cut into windows of the core's length
    (at most :data:`MAX_NORMAL_WINDOWS`, spread evenly), are round (k = 1), so the mean square of
    their log k over their noise variance (at least 1) says how much more than its noise the
    structure (background under the vessel, vendor processing) that a profile's k cannot tell
    from the lumen's shape moves k in this image; the core's variance is scaled by it. Then a
    Gaussian prior of SD ``prior_sd`` on log k around a round lumen (0: the area reading). Fewer
    than 2 such windows: k is not believed (log k 0, ``structure_factor`` NaN).

    Samples flagged BRANCH, OVERLAP or OUTSIDE are not read (POOR_FIT ones are: a fixed
    amplitude that does not describe a non-round lumen is what k is for). None when the core has
    fewer than 3 such profiles or the result keeps no frame."""
    prof = result.profile
    frames = tuple(result.frames_read)
    if not frames and result.image is not None:
        frames = (FrameRead(int(result.frame_index), result.image, (0, 0), (0.0, 0.0), prof.amplitudes,
                            np.ones(len(prof), bool), 0.5 * float(result.reference_diameter_px)),)
    if not frames or len(prof) < 3:
        return None
    arc = np.asarray(prof.arc_px, float)
    half = max(core_diameters * float(result.reference_diameter_px), 1.5)
    other = int(QualityFlag.BRANCH | QualityFlag.OVERLAP | QualityFlag.OUTSIDE)
    usable = (np.asarray(prof.flags) & other) == 0
    core = np.flatnonzero((np.abs(arc - float(result.mld_arc_px)) <= half) & usable)
    if core.size < 3:
        return None
    step = float(np.median(np.diff(arc))) if arc.size > 1 else 1.0
    # noise correlation along the vessel (px): the blur, the band of averaged profiles, the pixel
    corr = noise_correlation_px(prof, params.band_var_px2)
    # every frame's profiles and noise, once (unit noise: the frames pooled by their own noise)
    sampled = []
    for f in frames:
        band, noise = _frame_profiles(f, prof, params)
        if np.isfinite(noise) and noise > 0:
            sampled.append((band.values / noise, np.asarray(f.amplitude, float) / noise, np.asarray(f.read, bool)))
    if not sampled:
        return None
    # the normal artery beyond the lesion and its shoulders (one reference diameter), in windows
    # of the core's length
    margin = max(half, float(result.reference_diameter_px))
    outside = usable & ((arc < float(result.lesion_start_px) - margin) | (arc > float(result.lesion_end_px) + margin))
    edges = np.arange(arc[0], arc[-1] + 2 * half, 2 * half)
    windows = [w for w in (np.flatnonzero(outside & (arc >= a0) & (arc < a1)) for a0, a1 in zip(edges[:-1], edges[1:]))
               if w.size >= 3]
    if len(windows) > MAX_NORMAL_WINDOWS:  # evenly spread over the artery (compute budget)
        windows = [windows[int(i)] for i in np.linspace(0, len(windows) - 1, MAX_NORMAL_WINDOWS).round()]
    table = band.table(spline_blur_px(prof), prof.attenuation_per_px)
    u = np.log(K_GRID)

    def likelihood(rows: np.ndarray):
        """Of the profiles ``rows`` on every frame that read them."""
        rss, n_read = [], 0
        for values, amp, read in sampled:
            r = rows[read[rows]]
            if r.size:
                rss.append(rss_on_grid(values[r], band.offsets_px, table, amp[r], r_max_px=band.r_max_px,
                                       c_max_px=band.c_max_px))
                n_read += r.size
        if not rss:
            return None
        return amplitude_likelihood(np.concatenate(rss, axis=1), band.offsets_px.size,
                                    independent=n_read * step / corr)

    def moments(like: np.ndarray) -> tuple[float, float]:
        # mean and variance of log k; the variance at least the grid's quantisation (h^2 / 12)
        m = float((u * like).sum())
        return m, max(float((like * (u - m) ** 2).sum()), (u[1] - u[0]) ** 2 / 12.0)

    at_core = likelihood(core)
    if at_core is None:
        return None
    like, k_best, mis, mis1 = at_core
    mean_l, var_l = moments(like)
    normal_logk, normal_var = [], []
    for rows in windows:
        at_window = likelihood(rows)
        if at_window is not None:
            m, var_w = moments(at_window[0])
            normal_logk.append(m)
            normal_var.append(var_w)
    if len(normal_logk) < 2:  # nothing to measure k's wander on: not believed
        return AmplitudeRatio(0.0, 0.0, k_best, mis, mis1, int(core.size), float("nan"), len(normal_logk))
    factor = max(float(np.mean(np.square(normal_logk)) / np.mean(normal_var)), 1.0)
    var = var_l * factor
    if prior_sd > 0:
        w = prior_sd**2 / (prior_sd**2 + var)
        mean, sd = mean_l * w, float(np.sqrt(var * w))
    else:
        mean, sd = 0.0, 0.0
    return AmplitudeRatio(float(mean), sd, k_best, mis, mis1, int(core.size), factor, len(normal_logk))


def _frame_profiles(f: FrameRead, prof, params: MeasureParams):
    """The profiles of every sample on frame ``f`` (its crop; the samples moved by its shift) and
    their noise (differences along the vessel, as the misfit test uses)."""
    d = np.asarray(f.shift_rc, float) - np.asarray(f.origin_rc, float)
    arc = np.asarray(prof.arc_px, float)
    band = sample_along(f.image, prof.centerline_rc + d[None, :], arc, radius_hint_px=f.radius_hint_px, params=params,
                        order=SHAPE_INTERPOLATION_ORDER)
    return band, profile_noise(band.values, band.offsets_px, arc, lag_px=params.noise_lag_px)
