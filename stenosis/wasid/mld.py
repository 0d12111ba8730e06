"""The minimal lumen diameter: along-vessel smoothing, the lesion's bottom, its extent.

The sample minimum of a noisy profile is biased low, so the bottom of the lesion is
fitted with a parabola in area; its curvature corrects the MLD to first order for the
along-vessel blur (imaging blur, the band of averaged profiles, the smoothing): near a
minimum the blurred area is a0 + a''(s^2 + s_g^2)/2, so a0 = a_measured - a'' s_g^2 / 2.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

from ..params import DEFAULT_PARAMS, MeasureParams
from ..result import DiameterProfile
from .uncertainty import area_noise_sd_px2

__all__ = ["adaptive_smoothing_px", "smooth_diameter", "find_mld", "fit_lesion_bottom", "LesionBottom",
           "bottom_window_half_px", "lesion_extent", "along_vessel_sd", "narrowest_spread_px", "minimum_rms_factor",
           "correlation_length_px"]


def adaptive_smoothing_px(profile: DiameterProfile, valid: np.ndarray, *, area_noise_px2: float | None = None,
                          params: MeasureParams = DEFAULT_PARAMS) -> float:
    """Along-vessel smoothing (px) for this profile's noise: ``smooth_at_noise_ref_px`` x
    (relative noise / ``smooth_noise_ref``) ** ``smooth_noise_power``, within ``smooth_range_px``.

    Smoothing trades noise against the blurring of short lesions, so a noisier profile
    needs more; the power law follows the best fixed smoothing per dose (see docs/tuning.md).

    The relative noise is the per-sample lumen-area noise (``area_noise_px2``, default
    :func:`area_noise_sd_px2`) over the segment's large diameter (about twice the
    per-sample diameter noise, px).
    """
    ok = valid if valid.any() else np.ones_like(valid)
    d0 = float(np.quantile(profile.diameter_px[ok], 0.9))
    if d0 <= 0:
        return 1.0
    if area_noise_px2 is None:
        area_noise_px2 = area_noise_sd_px2(profile, valid)
    rel = area_noise_px2 / d0
    return float(np.clip(params.smooth_at_noise_ref_px * (rel / params.smooth_noise_ref) ** params.smooth_noise_power, *params.smooth_range_px))


def smooth_diameter(diameter_px: np.ndarray, valid: np.ndarray, *, sigma_samples: float) -> np.ndarray:
    """Light Gaussian smoothing along the vessel, invalid samples filled by interpolation."""
    d = np.asarray(diameter_px, float)
    idx = np.arange(d.size)
    if valid.any() and not valid.all():
        d = np.interp(idx, idx[valid], d[valid])
    if sigma_samples <= 0:
        return d.copy()
    return ndi.gaussian_filter1d(d, sigma_samples, mode="nearest")


class LesionBottom(NamedTuple):
    """The lesion's bottom: its sample index, the MLD (px), the SD (px) of its blur correction and
    the half-width (px) of the window it was fitted on (inf: no fit, the lowest sample)."""

    index: int
    mld_px: float
    correction_sd_px: float
    half_px: float = float("inf")

    def noise_half_px(self, along_sigma_px: float) -> float:
        """Half-width (px) the MLD's noise averages over: the window fitted, no wider than
        :func:`bottom_window_half_px`."""
        return min(bottom_window_half_px(along_sigma_px), self.half_px)


def bottom_window_half_px(along_sigma_px: float) -> float:
    """Half-width (px) of the lesion bottom's window before any shrink: +-2 along-vessel blur
    sigmas, at least 1.5 px (the 5 samples a fit needs at the default steps)."""
    return max(2.0 * along_sigma_px, 1.5)


def find_mld(arc_px: np.ndarray, diameter_s: np.ndarray, valid: np.ndarray, **kw) -> tuple[int, float]:
    """Index and value (px) of the minimal lumen diameter: :func:`fit_lesion_bottom` (same
    keyword arguments) without its correction's SD."""
    b = fit_lesion_bottom(arc_px, diameter_s, valid, **kw)
    return b.index, b.mld_px


def fit_lesion_bottom(
    arc_px: np.ndarray,
    diameter_s: np.ndarray,
    valid: np.ndarray,
    *,
    along_sigma_px: float,
    exclude_px: float = 0.0,
    within: np.ndarray | None = None,
    noise_sd_px2: float = 0.0,
    corr_px: float = 1.0,
    params: MeasureParams = DEFAULT_PARAMS,
) -> LesionBottom:
    """The lesion's bottom (:class:`LesionBottom`): index and value of the minimal lumen diameter,
    with the along-vessel blur correction, that correction's SD (px: half the correction, see the
    end of the body) and the half-width of the window fitted.

    Parameters
    ----------
    arc_px : (N,) float
    diameter_s : (N,) float
        Lightly smoothed diameters, pixels.
    valid : (N,) bool
    along_sigma_px : float
        Total Gaussian blur along the vessel (imaging + averaging + smoothing), pixels.
    exclude_px : float
        Arc length excluded at each end (snapped end points), pixels.
    within : (N,) bool, optional
        Only these samples are searched (a reader's placement of the MLD).
    noise_sd_px2 : float
        SD of the per-sample lumen-area noise (px^2, :func:`area_noise_sd_px2`); 0 = noiseless.
    corr_px : float
        Correlation length of that noise along the vessel (px).

    Returns
    -------
    LesionBottom
        (index, mld_px, correction_sd_px, half_px)
    """
    arc = np.asarray(arc_px, float)
    d_s = np.asarray(diameter_s, float)
    ok = valid & (arc >= arc[0] + exclude_px) & (arc <= arc[-1] - exclude_px)
    if not ok.any():
        ok = valid if valid.any() else np.ones_like(valid)
    search = ok
    if within is not None:  # the reader's placement limits where the minimum is, not the fit
        search = (ok & within) if (ok & within).any() else within
    i = int(np.argmin(np.where(search, d_s, np.inf)))
    d0 = float(d_s[i])
    if along_sigma_px <= 0 or d0 <= 0:
        return LesionBottom(i, max(d0, 0.0), 0.0)
    # The sample minimum of a noisy profile is biased low (the argmin picks a sample whose
    # noise is negative, and makes the bottom look sharper than it is). The bottom of the
    # lesion is therefore fitted with a parabola in area over a window symmetric about the
    # minimum that stays within the bottom (the samples within ``mld_fit_depth`` of its depth)
    # on its nearer side, at least +-2 blur sigmas (a window reaching into a shoulder makes the
    # parabola dip below the bottom; docs/tuning.md section 6): the fitted vertex averages the
    # noise of those samples, and its curvature gives the along-vessel blur correction:
    # blurred area = area + c2 sigma^2.
    d_hi = float(np.quantile(d_s[ok], 0.9))
    level = d0 + params.mld_fit_depth * max(d_hi - d0, 0.0)
    lo = hi = i
    while lo > 0 and ok[lo - 1] and d_s[lo - 1] <= level:
        lo -= 1
    while hi < d_s.size - 1 and ok[hi + 1] and d_s[hi + 1] <= level:
        hi += 1
    half = max(bottom_window_half_px(along_sigma_px), min(float(arc[i] - arc[lo]), float(arc[hi] - arc[i])))
    # shrunk as far as a fit allows (5 samples, 1.5 px): a bottom's lowest sample within 2 blur
    # sigmas of a steep shoulder (a short flat bottom) holds that shoulder even at +-2 sigmas
    half = _described_half(arc, d_s, ok, i, half, 1.5, params.mld_fit_misfit * noise_sd_px2)
    sel = ok & (np.abs(arc - arc[i]) <= half)
    if sel.sum() >= 5:
        a = d_s[sel] ** 2
        sv = arc[sel] - arc[i]
        c2, c1, c0 = np.polyfit(sv, a, 2)
        if c2 > 0:
            s_v = -c1 / (2.0 * c2)
            if abs(s_v) <= half:
                a_v = c0 - c1 * c1 / (4.0 * c2)
                i = int(np.argmin(np.where(ok, np.abs(arc - (arc[i] + s_v)), np.inf)))
            else:
                a_v = d0**2
            # the curvature of a noisy bottom is itself noisy (a noise dip looks like a sharp
            # lesion): shrink it by its sampling variance, var(c2) = 45 s^2 / (4 n h^4) for a
            # quadratic over n independent samples spread evenly on [-h, h] (Wiener-like
            # c2^2 / (c2^2 + var)); no effect at normal doses, up to ~30% at the lowest
            shrink, var_e4 = 1.0, 0.0
            if noise_sd_px2 > 0:
                h = max(float(np.abs(sv).max()), 1e-6)
                n_ind = max(2.0 * h / max(corr_px, 1e-6), 1.0)
                var_c2 = 45.0 * noise_sd_px2**2 / (4.0 * n_ind * h**4)
                shrink = c2 * c2 / (c2 * c2 + var_c2)
                # the quartic coefficient's: (35/8)^2 x 9 s^2 / (n h^8) (its Legendre term's), h
                # the half-span of the window (the top coefficient does not depend on its centre)
                h4 = max(0.5 * float(np.ptp(sv)), 1e-6)
                var_e4 = 172.27 * noise_sd_px2**2 / (max(2.0 * h4 / max(corr_px, 1e-6), 1.0) * h4**8)
            sigma2 = along_sigma_px**2
            correction = shrink * c2 * sigma2
            if params.mld_bottom_order >= 4 and sel.sum() >= 7 and abs(s_v) <= half and var_e4 > 0:
                # a tight lesion's area is no parabola over the fitted arc ((d_min + k s^2)^2 has
                # a quartic term as large as the quadratic one), and the window's parabola is
                # steeper than the bottom's own: a 85% lesion's MLD read 10-20% small. An even
                # quartic a + b s^2 + c s^4 blurred by sigma is a + b (s^2 + sigma^2) + c (s^4 +
                # 6 s^2 sigma^2 + 3 sigma^4): fitted about the vertex, its blur is removed
                # exactly. It departs from the parabola's reading by as much as its quartic
                # term is significant (Wiener-like, e4^2 / (e4^2 + var e4)): on a noisy bottom
                # it is the parabola's
                e4, _, e2, e1, e0 = np.polyfit(sv - s_v, a, 4)
                a_v4 = e0 - e1 * e1 / (4.0 * e2) if e2 > 0 else -1.0
                # not a bottom the quartic describes (its quadratic part no minimum, or one far
                # off the parabola's vertex: a lopsided or flat bottom; with unknown noise, above,
                # no weight at all): the parabola's reading
                if a_v4 > 0 and abs(e1) <= e2 * h4:
                    w4 = e4 * e4 / (e4 * e4 + var_e4)
                    a_v += w4 * (a_v4 - a_v)
                    correction += w4 * (e2 * sigma2 - 3.0 * e4 * sigma2 * sigma2 - correction)
            a0 = a_v - correction
            # the correction is a model's (a parabola's or quartic's bottom), exact only for a
            # lesion much longer than the blur: it is uncertain by its own size (in diameter,
            # half the unbounded one's, so most of what a bound leaves out is within 2 SD; a
            # correction that would erase the lumen is 1.55 SD from the bounded reading)
            spread = 0.5 * (np.sqrt(max(a_v, 0.0)) - np.sqrt(min(max(a0, 0.0), max(a_v, 0.0))))
            # bounded: a noisy curvature must not erase the lumen (max_blur_correction, see
            # docs/tuning.md), and blur only ever fills a minimum in
            a0 = min(max(a0, (1.0 - params.max_blur_correction) * a_v), a_v)
            return LesionBottom(i, float(np.sqrt(max(a0, 0.0))), float(spread), float(half))
    return LesionBottom(i, d0, 0.0)


def _described_half(arc: np.ndarray, d_s: np.ndarray, ok: np.ndarray, i: int, half: float, floor: float,
                     tolerance_px2: float) -> float:
    """The largest half-width (from ``half`` down to ``floor``, one sample at a time) of a window
    about sample ``i`` whose areas a parabola describes: residual RMS <= ``tolerance_px2``.

    A window reaching into a lesion's shoulder (a flat bottom between steep shoulders) is no
    parabola: the fit dips below the bottom and reads the lesion too tight. Where the noise is
    unknown (``tolerance_px2`` 0) the window is kept.
    """
    if tolerance_px2 <= 0 or (ok & (np.abs(arc - arc[i]) <= half)).sum() < 5:
        return half
    step = float(np.median(np.diff(arc))) if arc.size > 1 else 1.0
    while half > floor:
        sel = ok & (np.abs(arc - arc[i]) <= half)
        a = d_s[sel] ** 2
        sv = arc[sel] - arc[i]
        r = a - np.polyval(np.polyfit(sv, a, 2), sv)
        if float(np.sqrt(np.mean(r * r))) <= tolerance_px2:
            break
        smaller = max(floor, half - step)
        if (ok & (np.abs(arc - arc[i]) <= smaller)).sum() < 5:  # no fit left below: keep this one
            break
        half = smaller
    return half


def lesion_extent(diameter_s: np.ndarray, i_mld: int, reference_px: float, *,
                  fraction: float = DEFAULT_PARAMS.lesion_fraction) -> tuple[int, int]:
    """Contiguous run of samples around the MLD with diameter < fraction x reference (inclusive)."""
    d = np.asarray(diameter_s, float)
    thr = fraction * reference_px
    if d[i_mld] >= thr:
        return i_mld, i_mld
    lo = i_mld
    while lo > 0 and d[lo - 1] < thr:
        lo -= 1
    hi = i_mld
    while hi < d.size - 1 and d[hi + 1] < thr:
        hi += 1
    return lo, hi


def _about_trend(arc: np.ndarray, d: np.ndarray, sel: np.ndarray) -> tuple[np.ndarray, float]:
    """The linear trend (taper) of ``d`` fitted on the samples ``sel``, at every sample, and the
    robust SD (1.4826 MAD) of ``d`` about it over ``sel``."""
    trend = np.polyval(np.polyfit(arc[sel], d[sel], 1), arc)
    r = (d - trend)[sel]
    return trend, 1.4826 * float(np.median(np.abs(r - np.median(r))))


def along_vessel_sd(profile: DiameterProfile, valid: np.ndarray, outside: np.ndarray, corr_px: float) -> float:
    """SD (px) of the diameter along the vessel beyond its quantum noise, outside the lesion.

    The raw diameters of the usable samples ``outside`` the lesion, about their linear trend
    (taper), vary by the quantum noise and by whatever the lumen model turns into diameter
    (anatomy and other vessels behind the artery, vendor processing): robust SD s_all. The
    quantum part is measured on the same samples from differences of diameters two noise
    correlation lengths (``corr_px``) apart, where the noise is independent and slowly varying
    structure cancels: s_noise = SD(d[i + L] - d[i]) / sqrt 2. What is left,
    sqrt(s_all^2 - s_noise^2), is how far a normal sample of this artery departs from its trend
    for reasons the model does not see; about 0 on clean backgrounds.
    """
    sel = valid & outside
    if sel.sum() < 10:
        return 0.0
    arc = profile.arc_px
    d = profile.diameter_px
    _, s_all = _about_trend(arc, d, sel)
    step = float(np.median(np.diff(arc))) if arc.size > 1 else 1.0
    lag = max(int(round(2.0 * corr_px / step)), 1)
    pair = sel[lag:] & sel[:-lag]
    if pair.sum() < 5:
        return 0.0
    dd = (d[lag:] - d[:-lag])[pair]
    s_noise = 1.4826 * float(np.median(np.abs(dd - np.median(dd)))) / np.sqrt(2.0)
    return float(np.sqrt(max(s_all**2 - s_noise**2, 0.0)))


def correlation_length_px(residual: np.ndarray, sel: np.ndarray, step_px: float, floor_px: float) -> float:
    """Correlation length (px) of ``residual`` over the samples ``sel`` (the others filled by
    interpolation): the first lag with autocorrelation below 1/e, at least ``floor_px``."""
    idx = np.arange(residual.size)
    r = np.interp(idx, idx[sel], residual[sel])
    r = r - r.mean()
    var = float(np.dot(r, r))
    if var <= 0:
        return float(floor_px)
    for lag in range(1, r.size // 2):
        if float(np.dot(r[lag:], r[:-lag])) / var < np.exp(-1.0):
            return float(max(lag * step_px, floor_px))
    return float(max((r.size // 2) * step_px, floor_px))


def narrowest_spread_px(arc_px: np.ndarray, diameter_s: np.ndarray, valid: np.ndarray, outside: np.ndarray,
                        mld_px: float, corr_px: float, within: np.ndarray | None = None, *,
                        reach_sd: float = DEFAULT_PARAMS.mld_competing_reach_sd,
                        searched: np.ndarray | None = None) -> tuple[float, float]:
    """SD (px) of the MLD from competing stretches: how far the narrowest of the stretches that
    could hold the MLD departs from its own diameter, for noise and structure alone.

    The smoothed diameters ``diameter_s`` (what the MLD search sees) outside the lesion vary
    about their linear trend by a robust SD s with correlation length L (at least ``corr_px``).
    A stretch competes for the MLD when its trend lies within reach of the MLD: the extreme
    excursion expected over the whole segment (:func:`minimum_rms_factor` of its arc / L) plus
    ``reach_sd`` SDs, in units of s; the lesion's own stretch (``~outside``, its core) is one
    competitor whatever its length. With n = 1 + the competing arc elsewhere / L, the narrowest
    departs by :func:`minimum_rms_factor` (n) x s. A lesion
    deeper than the variation competes alone (n <= 2: s); on a normal artery on a textured
    background every stretch competes, and the "lesion" read there is this extreme.

    Returns (SD px, stretches elsewhere): 1 or more says the MLD is not clearly deeper than the
    artery's own variation. ``searched``: the samples the MLD was searched on (default
    ``valid``), the competitors' (the trend and spread come from ``valid``).
    """
    arc = np.asarray(arc_px, float)
    d = np.asarray(diameter_s, float)
    sel = valid & outside
    if sel.sum() < 10:  # too little artery outside the lesion to tell: no competitor known
        return 0.0, 0.0
    step = float(np.median(np.diff(arc))) if arc.size > 1 else 1.0
    trend, spread = _about_trend(arc, d, sel)
    length = correlation_length_px(d - trend, sel, step, corr_px)
    searched = valid if searched is None else np.asarray(searched, bool)
    reach = minimum_rms_factor(float(searched.sum()) * step / length) + reach_sd
    elsewhere = searched & outside & (trend <= mld_px + reach * spread)
    if within is not None:
        elsewhere &= within
    n_other = float(elsewhere.sum()) * step / length
    return spread * minimum_rms_factor(1.0 + n_other), n_other


def minimum_rms_factor(n: float) -> float:
    """RMS, in SDs, of the minimum of ``n`` independent normal deviates about the mean (1 for
    n <= 2; 1.65 for 10; interpolated in n): how far the narrowest of n stretches of an artery
    departs from its trend when only noise and structure make them differ."""
    if n <= 2.0:  # the RMS of the minimum of two deviates is exactly 1; below, 1 by definition
        return 1.0
    x = np.linspace(-8.0, 8.0, 4001)
    pdf = np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
    cdf = np.cumsum(pdf) * (x[1] - x[0])
    dens = n * pdf * np.clip(cdf, 0.0, 1.0) ** (n - 1.0)
    dens /= dens.sum()
    return float(np.sqrt(np.sum(dens * x * x)))
