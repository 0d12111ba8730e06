"""Uncertainty (1 SD) of the MLD, the reference and the percent stenosis.

The quantum noise of the lumen area along the profile (robust SD of the area about a
2 px smoothing, the larger of the whole profile's and the lesion's, the latter without the
samples where the artery's own shape bends within that smoothing), divided by the
number of independent samples averaged (noise correlation length sqrt(2 pi) x the
along-vessel blur), propagated to diameters (d(area) = 2 d dd), scaled by
``noise_sd_scale``, plus a model floor (``mld_floor_px``; ``reference_floor`` x the
reference), plus, where the lumen model does not describe the profiles, a model term
(:func:`model_sd_px`). The scale and floors were calibrated on phantoms (see
docs/tuning.md). Where the profiles' residuals exceed their own noise (misfit ratio q > 1 at
the MLD or the reference, :func:`model_sd_px`), that whole SD is multiplied by q, an empirical
rule: on hybrid phantoms the errors' spread grows about as q at the MLD (within 2 SD 91% of
cases at q <= 1, 50% at q > 2.2 before the scaling, ``docs/tuning.md``); it overlaps the
model/edge term, which grows with q too. The diameters' own variation along the artery
(the competing-stretch spread at the MLD, the normal artery's variation beyond noise at the
reference; :mod:`stenosis.wasid.mld`) is added after that scaling, not scaled: it is measured
on the fitted diameters and already holds what the misfit does to them; so is the SD of the
MLD's along-vessel blur correction (half of it, :func:`~stenosis.wasid.mld.fit_lesion_bottom`),
a model's error that noise does not scale. It does not cover
reader or centerline mistakes.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..params import DEFAULT_PARAMS, MeasureParams
from ..result import DiameterProfile

__all__ = ["area_noise_sd_px2", "noise_correlation_px", "measurement_sd", "model_sd_px", "misfit_scale"]


def area_noise_sd_px2(profile: DiameterProfile, valid: np.ndarray, *, around: int | None = None,
                      half_px: float = 6.0) -> float:
    """Robust SD (px^2) of the per-sample lumen-area noise: residual about a 2 px smoothing.

    ``around``: only samples within ``half_px`` of this index (at least 6 of them) where the
    artery's own shape does not bend within the smoothing (else the whole profile's).
    """
    arc = profile.arc_px
    if arc.size < 6 or valid.sum() < 6:
        return 0.0
    step = float(np.median(np.diff(arc)))
    idx = np.arange(arc.size)
    d = np.asarray(profile.diameter_px, float)
    if not valid.all():
        d = np.interp(idx, idx[valid], d[valid])
    a = d * d
    smooth = ndi.gaussian_filter1d(a, 2.0 / step, mode="nearest")
    r = a - smooth
    s_all = _robust_sd(r[valid])
    if around is None:
        return s_all
    # near a sample, the residual holds the artery's own shape where it bends within the 2 px
    # (a short lesion's bottom: its residual is the lesion, not noise). Such samples are those
    # whose smoothed areas bend by more than the noise there (their own residual about the same
    # smoothing, over s_all); the local noise is read on the others, else the profile's
    bend = smooth - ndi.gaussian_filter1d(smooth, 2.0 / step, mode="nearest")
    near = valid & (np.abs(arc - arc[around]) <= half_px) & (np.abs(bend) <= s_all)
    return _robust_sd(r[near]) if near.sum() >= 6 else s_all


def _robust_sd(r: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def noise_correlation_px(profile: DiameterProfile, band_var_px2: float) -> float:
    """Correlation length (px) of the diameter noise along the vessel: sqrt(2 pi) x the
    blur of a sample (imaging blur, band of averaged profiles, pixel aperture)."""
    return float(np.sqrt(2.0 * np.pi * (profile.blur_sigma_px**2 + band_var_px2 + 1.0 / 12.0)))


def measurement_sd(profile: DiameterProfile, valid: np.ndarray, *, mld_px: float, mld_index: int,
                   reference_px: float, reference_length_px: float, corr_px: float,
                   area_noise_px2: float, fit_half_px: float, model_mld_px: float = 0.0,
                   model_reference_px: float = 0.0, misfit_mld: float = float("nan"),
                   misfit_reference: float = float("nan"), along_mld_px: float = 0.0, along_reference_px: float = 0.0,
                   correction_mld_px: float = 0.0, params: MeasureParams = DEFAULT_PARAMS) -> tuple[float, float, float]:
    """1-SD uncertainty of (MLD px, reference px, percent stenosis), see the module notes.

    ``area_noise_px2`` is the whole profile's :func:`area_noise_sd_px2`, ``corr_px`` its
    :func:`noise_correlation_px`; ``model_mld_px`` / ``model_reference_px`` the model terms of
    :func:`model_sd_px`, added in quadrature; ``misfit_mld`` / ``misfit_reference`` its misfit
    ratios, which scale the SDs where above 1 (NaN: no scaling); ``along_mld_px`` /
    ``along_reference_px`` the diameters' own variation along the artery (the competing-stretch
    spread of the MLD, the normal artery's variation beyond noise for the reference), added in
    quadrature after that scaling: they are measured on the fitted diameters, so they already
    hold whatever the misfit does to them. ``correction_mld_px``: the SD of the MLD's along-vessel
    blur correction (:func:`~stenosis.wasid.mld.fit_lesion_bottom`: half of it), added in quadrature.
    """
    s_mld = max(area_noise_px2, area_noise_sd_px2(profile, valid, around=mld_index))
    n_mld = max(2.0 * fit_half_px / corr_px, 1.0)
    # vertex of a quadratic fit over n independent samples: var ~ 9/4 sigma^2 / n
    noise_mld = s_mld / (2.0 * max(mld_px, 0.5)) * np.sqrt(2.25 / n_mld)
    sd_mld = float(np.sqrt((params.noise_sd_scale * noise_mld) ** 2 + params.mld_floor_px**2 + model_mld_px**2))
    n_ref = max(reference_length_px / corr_px, 1.0)
    noise_ref = area_noise_px2 / (2.0 * max(reference_px, 0.5)) / np.sqrt(n_ref)
    sd_ref = float(np.sqrt((params.noise_sd_scale * noise_ref) ** 2 + (params.reference_floor * reference_px) ** 2
                           + model_reference_px**2))
    sd_mld *= misfit_scale(misfit_mld)
    sd_ref *= misfit_scale(misfit_reference)
    # the diameters' own variation along the artery is measured on them, misfit and all: not scaled
    sd_mld = float(np.sqrt(sd_mld**2 + along_mld_px**2 + correction_mld_px**2))
    sd_ref = float(np.hypot(sd_ref, along_reference_px))
    if reference_px <= 0:
        return sd_mld, sd_ref, float("nan")
    sd_pct = 100.0 * float(np.hypot(sd_mld / reference_px, mld_px * sd_ref / reference_px**2))
    return sd_mld, sd_ref, sd_pct


def misfit_scale(q: float) -> float:
    """The SD's factor for a misfit ratio ``q``: q above 1, else 1 (also for NaN: no profiles)."""
    return float(q) if np.isfinite(q) and q > 1.0 else 1.0


def model_sd_px(profile: DiameterProfile, valid: np.ndarray, where: np.ndarray) -> tuple[float, float]:
    """(SD px, misfit ratio) of the diameter where the lumen model does not describe the profiles.

    The misfit ratio q is the median over ``where`` (its usable samples when any) of each
    profile's residual RMS over the profiles' own noise (``profile.misfit``): about 1 when the
    blurred cylinder explains the profile up to noise. Then 1 - 1/q^2 is the share of the
    residual variance the model leaves unexplained (structure beside the vessel, vendor edge
    enhancement, an out-of-plane segment, a second vessel), and the diameter is ambiguous by
    that share of the disagreement between the model's and the derivative (maximum-gradient)
    diameters: SD = (1 - 1/q^2) x median |d_model - d_edge| / 2. Zero when q <= 1.
    """
    if profile.misfit is None or not np.any(where):
        return 0.0, float("nan")
    sel = where & valid if np.any(where & valid) else where
    q = float(np.nanmedian(profile.misfit[sel])) if np.isfinite(profile.misfit[sel]).any() else float("nan")
    if not np.isfinite(q) or q <= 1.0:
        return 0.0, q
    gap = float(np.median(np.abs(profile.diameter_px[sel] - profile.edge_diameter_px[sel])))
    return (1.0 - 1.0 / q**2) * 0.5 * gap, q
