"""The diameter stage: a traced centerline in, a flagged :class:`DiameterProfile` out.

:func:`diameter_stage` is the measurement's one pass over the profiles, in order:

1. **lumen model** -- profiles across the trace are fitted with a nominal blur to find the
   samples with a lumen, from which the run's blur sigma and iodine amplitude are estimated
   (:func:`estimate_lumen_model`); their fitted centres give the lumen's centre line;
2. **centring** -- the trace (the vessel map's ridge) is moved onto the fitted lumen
   centres and the profiles are sampled once, perpendicular to it (:func:`sample_along`);
3. **fit and flags** -- each profile is fitted with the run's blur and amplitude; the
   residuals and the vessel map beside and across the lumen set the quality flags; if any
   sample is flagged, blur and amplitude are estimated again without them (a crossing
   looks like a wide, blurred lumen) and the fit is redone when they moved;
4. **local amplitude** -- the final fit lets the amplitude follow the vessel where resolved
   lumens show it (:func:`stenosis.diameter.fit.local_amplitude`);
5. **refit beside vessels** -- samples with another vessel beside the lumen are refitted
   on profiles cut short of it (:func:`refit_beside_vessels`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi

from ..centerline import recenter
from ..params import DEFAULT_PARAMS, MeasureParams
from ..result import DiameterProfile, QualityFlag
from .fit import (ProfileFit, _project_out, _projector, derivative_edges, estimate_blur, fit_profiles, free_amplitude, local_amplitude,
                  misfit_ratio, profile_noise)
from .flags import poor_fit_threshold, probe_beside, residual_flags, side_vessel_flags
from .model import chord_table
from .profiles import (bilinear_blur_var_px2, edge_points, normals_from_centerline, profile_geometry, profile_offsets,
                       sample_profiles)

__all__ = ["Profiles", "sample_along", "estimate_lumen_model", "measure_diameters", "refit_beside_vessels",
           "diameter_stage", "iodine_ratio", "same_samples_in_frame", "combine_frames"]

#: flags set from the vessel map (kept through the final fit)
SIDE_FLAGS = int(QualityFlag.BRANCH | QualityFlag.OVERLAP)
_UNUSABLE = QualityFlag.unusable()


@dataclass(frozen=True, eq=False)
class Profiles:
    """Profiles sampled across a centerline, with the geometry of their fit."""

    centerline_rc: np.ndarray  # (N, 2)
    arc_px: np.ndarray  # (N,)
    normal_rc: np.ndarray  # (N, 2)
    offsets_px: np.ndarray  # (M,)
    values: np.ndarray  # (N, M), iodine positive
    inside: np.ndarray  # (N,) bool: the whole band lies in the image
    radius_hint_px: float
    r_max_px: float
    c_max_px: float
    log_attenuation: bool = False  # values are natural-log attenuation (the lumen model blurs the transmission)

    def attenuation(self, amplitude: float) -> float:
        """The lumen model's attenuation for a run amplitude: the amplitude itself on natural-log
        attenuation profiles, else 0 (the linear model; :func:`~stenosis.diameter.model.chord_table`)."""
        return float(amplitude) if self.log_attenuation and np.isfinite(amplitude) and amplitude > 0 else 0.0

    def table(self, sigma_px: float, attenuation_per_px: float = 0.0):
        return chord_table(sigma_px, self.r_max_px, float(np.abs(self.offsets_px).max()) + 3.0, attenuation_per_px)

    def fit(self, sigma_px: float, amplitude, attenuation_per_px: float = 0.0) -> ProfileFit:
        return fit_profiles(self.values, self.offsets_px, self.table(sigma_px, attenuation_per_px), amplitude=amplitude,
                            r_max_px=self.r_max_px, c_max_px=self.c_max_px)


def sample_along(image: np.ndarray, centerline_rc: np.ndarray, arc_px: np.ndarray, *, radius_hint_px: float,
                 params: MeasureParams = DEFAULT_PARAMS, log_attenuation: bool = False, order: int = 1) -> Profiles:
    """Band-averaged profiles across ``centerline_rc``, long enough for a lumen of ``radius_hint_px``
    (``log_attenuation``: ``image`` is natural-log attenuation, :attr:`Profiles.log_attenuation`;
    ``order``: the interpolation's, :func:`~stenosis.diameter.profiles.sample_profiles`)."""
    pts = np.asarray(centerline_rc, float)
    nrm = normals_from_centerline(pts)
    half, r_max, c_max = profile_geometry(radius_hint_px, params)
    x = profile_offsets(half, params.profile_step_px)
    Y, inside = sample_profiles(image, pts, nrm, x, band_px=params.profile_band_px, order=order)
    return Profiles(pts, np.asarray(arc_px, float), nrm, x, Y, inside, float(max(radius_hint_px, 1.5)), r_max, c_max,
                    bool(log_attenuation and params.log_model_passes > 0))


def estimate_lumen_model(prof: Profiles, *, usable: np.ndarray | None = None,
                         params: MeasureParams = DEFAULT_PARAMS) -> tuple[float, float, ProfileFit, float]:
    """Run's blur sigma (px) and iodine amplitude from the usable samples, the nominal-blur fit
    that found them, and the blur variance (px^2) the profiles' bilinear interpolation holds in
    that sigma (:func:`~stenosis.diameter.profiles.bilinear_blur_var_px2` over the profiles it
    was estimated on: their sub-pixel positions set it, 0 on pixel centres to 1/4 half-way).

    A fit with a nominal blur finds the samples with a lumen; those with a typical amplitude
    (overlaps and branches raise it) go to :func:`estimate_blur`. By default every such sample
    counts: on real images an estimate from the segment's widest samples moved with the
    reader's end points (``docs/tuning.md``, section 3). ``blur_wide_quantile`` > 0 keeps only
    the samples at least that wide, ranked by their radius smoothed along the vessel (ranking
    single noisy profiles picks those whose noise widened them, biasing the blur low).
    ``usable``: samples allowed (at least 5 of them, else all). On natural-log attenuation
    profiles the blur and amplitude are estimated again with the tables at the amplitude found
    (``log_model_passes`` times: the transmission's blur depends on it).
    """
    p = params
    Y, x = prof.values, prof.offsets_px
    f0 = prof.fit(p.blur_nominal_px, None)
    ok = prof.inside & (f0.radius_px > 0)
    if usable is not None and (ok & usable).sum() >= 5:
        ok &= np.asarray(usable, bool)
    cand = np.where(ok)[0]
    if cand.size == 0:
        cand = np.arange(len(Y))
    wide = cand
    if p.blur_wide_quantile > 0:
        arc = prof.arc_px
        step = float(np.median(np.diff(arc))) if len(arc) > 1 else 1.0
        r_s = ndi.gaussian_filter1d(np.where(ok, f0.radius_px, np.median(f0.radius_px[cand])),
                                    max(2.0 * prof.radius_hint_px / step, 1.0), mode="nearest")
        wide = cand[r_s[cand] >= np.quantile(r_s[cand], p.blur_wide_quantile)]
    a = f0.amplitude[wide]
    med = np.median(a)
    mad = np.median(np.abs(a - med)) + 1e-12
    wide = wide[np.abs(a - med) <= p.blur_amplitude_mads * 1.4826 * mad]
    if wide.size > p.blur_max_profiles:
        wide = wide[np.linspace(0, wide.size - 1, p.blur_max_profiles).astype(int)]
    sigmas = np.geomspace(*p.blur_sigma_grid_px)
    sigma, amp = estimate_blur(Y[wide], x, sigmas_px=sigmas, r_max_px=prof.r_max_px, c_max_px=prof.c_max_px,
                               refine=p.blur_refine)
    for _ in range(p.log_model_passes if prof.log_attenuation else 0):
        sigma, amp = estimate_blur(Y[wide], x, sigmas_px=sigmas, r_max_px=prof.r_max_px, c_max_px=prof.c_max_px,
                                   attenuation_per_px=prof.attenuation(amp), refine=p.blur_refine)
    interp = bilinear_blur_var_px2(prof.centerline_rc[wide], prof.normal_rc[wide], x, band_px=p.profile_band_px)
    return sigma, amp, f0, interp


def _profile(prof: Profiles, fit: ProfileFit, sigma: float, amplitude: float, flags: np.ndarray, *,
             mm_per_px: float | None, local_amp: np.ndarray | None, params: MeasureParams,
             misfit: np.ndarray | None = None, attenuation_per_px: float = 0.0,
             blur_interp_var_px2: float = float("nan")) -> DiameterProfile:
    R, C = fit.radius_px, fit.centre_px
    el, er = derivative_edges(prof.values, prof.offsets_px, C, smooth_px=params.derivative_smooth_px)
    left, right = edge_points(prof.centerline_rc, prof.normal_rc, C, R)
    return DiameterProfile(
        arc_px=prof.arc_px, centerline_rc=prof.centerline_rc, normal_rc=prof.normal_rc, diameter_px=2.0 * R,
        left_rc=left, right_rc=right, flags=flags, edge_diameter_px=er - el, centre_offset_px=C,
        blur_sigma_px=float(sigma), amplitude=float(amplitude), mm_per_px=mm_per_px, local_amplitude=local_amp,
        misfit=misfit, attenuation_per_px=float(attenuation_per_px), blur_interp_var_px2=float(blur_interp_var_px2))


def _flags_of(prof: Profiles, fit: ProfileFit, sigma: float, amplitude: float, params: MeasureParams,
              attenuation_per_px: float = 0.0) -> np.ndarray:
    free = free_amplitude(prof.values, prof.offsets_px, prof.table(sigma, attenuation_per_px), fit.radius_px, fit.centre_px)
    return residual_flags(prof.values, prof.offsets_px, fit, free, prof.inside, sigma, amplitude, params)


#: the amplitude ratios A / A_run a non-round lumen may have: an ellipse of axis ratio up to 8
#: seen along either axis (the range the views read k on, ``stenosis.diameter.shape.K_GRID``)
NON_ROUND_K = (0.125, 8.0)


def read_non_round(prof: Profiles, fit: ProfileFit, flags: np.ndarray, sigma: float,
                   params: MeasureParams = DEFAULT_PARAMS, *, skip: np.ndarray | None = None,
                   attenuation_per_px: float = 0.0) -> tuple[ProfileFit, np.ndarray]:
    """``(fit, flags)`` with each sample flagged only POOR_FIT that a lumen of its own amplitude
    describes read as that lumen: flagged NON_ROUND, its diameter the area-equivalent one.

    A fixed iodine amplitude sets a lumen's depth by its width: a round lumen. An eccentric
    lumen seen obliquely is deeper (or shallower) than a round one of its projected width, so
    the run-amplitude fit fails on it exactly at a lesion. An ellipse projects to a scaled
    semicircle, so the blurred-cylinder fit with a free amplitude A describes it (residual RMS
    within the POOR_FIT threshold, :func:`~stenosis.diameter.flags.poor_fit_threshold`), and
    its lumen area is that of a round lumen of radius R sqrt(A / A_run): the densitometric
    diameter, 2 R sqrt(A / A_run), whatever the lumen's shape (A / A_run within
    :data:`NON_ROUND_K`). The sample's residuals (its misfit) are that fit's. A profile that no
    such lumen describes (structure, a junction, a vessel's end) stays POOR_FIT only: searched
    for the MLD only behind the flagged-MLD gate (:func:`stenosis.wasid.wasid`). ``skip``: samples
    not to read so (a frame's samples the bolus has not filled: their lower iodine is not a
    lumen's shape). ``attenuation_per_px``: the run's lumen model (the tables')."""
    poor_mask = (flags & ~int(QualityFlag.EDGE_MISMATCH)) == int(QualityFlag.POOR_FIT)
    if skip is not None:
        poor_mask &= ~np.asarray(skip, bool)
    poor = np.flatnonzero(poor_mask)
    if poor.size == 0:
        return fit, flags
    own = fit_profiles(prof.values[poor], prof.offsets_px, prof.table(sigma, attenuation_per_px), amplitude=None,
                       r_max_px=prof.r_max_px, c_max_px=prof.c_max_px)
    a_run = np.broadcast_to(np.asarray(fit.amplitude, float), fit.radius_px.shape)[poor]
    k = np.where(a_run > 0, own.amplitude / np.where(a_run > 0, a_run, 1.0), 0.0)
    ok = ((np.sqrt(own.rss / prof.values.shape[1]) <= poor_fit_threshold(fit, params))
          & (k >= NON_ROUND_K[0]) & (k <= NON_ROUND_K[1]))
    if not ok.any():
        return fit, flags
    idx = poor[ok]
    R, C, rss, res = (np.array(v, float, copy=True) for v in (fit.radius_px, fit.centre_px, fit.rss, fit.residuals))
    R[idx] = own.radius_px[ok] * np.sqrt(k[ok])
    C[idx] = own.centre_px[ok]
    rss[idx] = own.rss[ok]
    res[idx] = own.residuals[ok]
    out = np.array(flags, copy=True)
    out[idx] |= int(QualityFlag.NON_ROUND)
    return ProfileFit(R, C, fit.amplitude, rss, res), out


def measure_diameters(image: np.ndarray, centerline_rc: np.ndarray, arc_px: np.ndarray, *, radius_hint_px: float,
                      mm_per_px: float | None = None, blur_sigma_px: float | None = None, amplitude: float | None = None,
                      params: MeasureParams = DEFAULT_PARAMS, log_attenuation: bool = False) -> DiameterProfile:
    """Model-based diameter profile along a centerline, one amplitude for the run.

    ``blur_sigma_px`` / ``amplitude``: known lumen model (estimated from the usable samples
    when None, :func:`estimate_lumen_model`). Flags come from the fit's residuals only (no
    non-round reading, :func:`read_non_round`: these profiles give references, never an MLD).
    ``log_attenuation``: ``image`` is natural-log attenuation (:attr:`Profiles.log_attenuation`).
    """
    prof = sample_along(image, centerline_rc, arc_px, radius_hint_px=radius_hint_px, params=params,
                        log_attenuation=log_attenuation)
    interp = float("nan")
    if blur_sigma_px is None or amplitude is None:
        s_est, a_est, _, v_est = estimate_lumen_model(prof, params=params)
        interp = v_est if blur_sigma_px is None else interp
        blur_sigma_px = s_est if blur_sigma_px is None else blur_sigma_px
        amplitude = a_est if amplitude is None else amplitude
    att = prof.attenuation(amplitude)
    fit = prof.fit(blur_sigma_px, amplitude, att)
    flags = _flags_of(prof, fit, blur_sigma_px, amplitude, params, att)
    return _profile(prof, fit, blur_sigma_px, amplitude, flags, mm_per_px=mm_per_px, local_amp=None, params=params,
                    attenuation_per_px=att, blur_interp_var_px2=interp)


def diameter_stage(image: np.ndarray, centerline_rc: np.ndarray, arc_px: np.ndarray, probability: np.ndarray, *,
                   origin_rc: tuple[float, float], radius_hint_px: float, step_px: float, mm_per_px: float | None,
                   crossings: bool, params: MeasureParams = DEFAULT_PARAMS,
                   centring_image: np.ndarray | None = None, log_attenuation: bool = False) -> DiameterProfile:
    """The flagged diameter profile of a traced segment (the steps are in the module notes).

    ``probability`` is the vessel map of a crop at ``origin_rc`` of ``image``; ``crossings``
    uses it to flag crossing vessels (a clean map, the U-Net's, only). ``log_attenuation``: the
    images are natural-log attenuation (the lumen model blurs the transmission,
    :mod:`stenosis.diameter.model`).
    """
    p = params
    rh = float(max(radius_hint_px, 1.5))
    # 1. the lumen model and the lumen's centres, from profiles across the trace
    traced = sample_along(image if centring_image is None else centring_image, centerline_rc, arc_px,
                          radius_hint_px=rh, params=p, log_attenuation=log_attenuation)
    sigma, amp, _, interp = estimate_lumen_model(traced, params=p)
    att = traced.attenuation(amp)
    first = traced.fit(sigma, amp, att)
    first_ok = (_flags_of(traced, first, sigma, amp, p, att) & _UNUSABLE) == 0
    # 2. centring: the trace follows the vessel map's ridge, not the lumen's centre, and its
    # normals tilt where it is off-centre; every later profile is sampled on the centred trace
    # a fitted centre off the vessel map is another structure's (a neighbouring vessel, a band of
    # anatomy), not this lumen's: the trace keeps its place there
    centres = traced.centerline_rc + traced.normal_rc * first.centre_px[:, None] - np.asarray(origin_rc, float)
    on_map = ndi.map_coordinates(probability, centres.T, order=1, mode="nearest") >= p.vessel_threshold
    rc, arc = recenter(centerline_rc, traced.normal_rc, first.centre_px,
                       first_ok & (2.0 * first.radius_px > 1.0) & on_map,
                       step_px=step_px, max_shift_px=max(p.recenter_max_px, p.recenter_max_radius * rh))
    prof = sample_along(image, rc, arc, radius_hint_px=rh, params=p, log_attenuation=log_attenuation)
    if centring_image is not None:  # the lumen model of the image measured, not of the one centred on
        sigma, amp, _, interp = estimate_lumen_model(prof, params=p)

    # 3. fit with the run's lumen model; flags from the residuals and the vessel map
    def fit_and_flag(s, a):
        att_a = prof.attenuation(a)
        f = prof.fit(s, a, att_a)
        flags = _flags_of(prof, f, s, a, p, att_a)
        d = _profile(prof, f, s, a, flags, mm_per_px=mm_per_px, local_amp=None, params=p)
        return f, flags | side_vessel_flags(d, probability, origin_rc=origin_rc, crossings=crossings, params=p)

    fit, flags = fit_and_flag(sigma, amp)
    usable = (flags & _UNUSABLE) == 0
    if not usable.all():
        s2, a2, _, v2 = estimate_lumen_model(prof, usable=usable, params=p)
        if abs(s2 / sigma - 1.0) > p.reestimate_change or abs(a2 / amp - 1.0) > p.reestimate_change:
            sigma, amp, interp = s2, a2, v2
            fit, flags = fit_and_flag(sigma, amp)
            usable = (flags & _UNUSABLE) == 0
    att = prof.attenuation(amp)  # the run's lumen model from here on
    # 4. the final fit: an amplitude that follows the vessel, from the resolved samples inside the
    # image without another vessel; a poor fit counts (the run's amplitude where the vessel's differs is one)
    amp_local = None
    if p.local_amplitude_half_radii > 0:
        clear = (flags & (_UNUSABLE & ~int(QualityFlag.POOR_FIT))) == 0
        amp_local = local_amplitude(prof.values, prof.offsets_px, prof.table(sigma, att), prof.arc_px, float(amp),
                                    float(sigma), prof.inside & clear, fit.radius_px,
                                    half_px=p.local_amplitude_half_radii * rh, r_max_px=prof.r_max_px,
                                    c_max_px=prof.c_max_px, params=p)
        if np.any(amp_local != amp):
            fit = prof.fit(sigma, amp_local, att)
    # how well the model describes each profile: its residual against the profiles' own noise
    noise = profile_noise(prof.values, prof.offsets_px, prof.arc_px, lag_px=p.noise_lag_px)
    fit, final_flags = read_non_round(prof, fit, _flags_of(prof, fit, sigma, amp, p, att) | (flags & SIDE_FLAGS), sigma, p,
                                      attenuation_per_px=att)
    final = _profile(prof, fit, sigma, amp, final_flags, mm_per_px=mm_per_px, local_amp=amp_local, params=p,
                     misfit=misfit_ratio(fit.residuals, noise), attenuation_per_px=att, blur_interp_var_px2=interp)
    # 5. samples beside another vessel, refitted on shortened profiles
    return refit_beside_vessels(image, final, probability, radius_hint_px=rh, origin_rc=origin_rc, params=p,
                                noise_sd=noise)


def refit_beside_vessels(
    image: np.ndarray,
    profile: DiameterProfile,
    probability: np.ndarray,
    *,
    radius_hint_px: float,
    origin_rc: tuple[float, float] = (0.0, 0.0),
    params: MeasureParams = DEFAULT_PARAMS,
    noise_sd: float | None = None,
) -> DiameterProfile:
    """Refit BRANCH-flagged samples on profiles cut short of the other vessel.

    A vessel running beside the lumen (not touching it) lies in the tail of the full-length
    profile, raises the fitted background line and shrinks the fitted lumen; flagging the
    sample drops it, which at a lesion drops the MLD. Where the vessel map shows the other
    vessel at distance D from the lumen centre on the nearer side, the profile is sampled
    again only out to D - 2 sigma - 1 px (symmetric) and refitted with the run's blur and
    amplitude; if at least ``refit_min_room_px`` of background remain beyond the blurred lumen edge the
    refit replaces the sample and its BRANCH flag is cleared. Branch origins (the other
    vessel touches the lumen) leave no room and stay flagged. Samples that are also poor
    fits are refitted too (the other vessel is often why) and keep their POOR_FIT flag:
    a lesion beside a crossing vessel is then still found by the MLD search
    (:func:`stenosis.wasid.wasid`).
    """
    flags = profile.flags
    other = int(QualityFlag.OVERLAP | QualityFlag.OUTSIDE)
    idx = np.where(((flags & int(QualityFlag.BRANCH)) != 0) & ((flags & other) == 0))[0]
    if idx.size == 0:
        return profile
    sig = float(profile.blur_sigma_px)
    half_full, r_max, c_max = profile_geometry(radius_hint_px, params)
    r = profile.diameter_px[idx] / 2.0
    c = profile.centre_offset_px[idx]
    pts = profile.centerline_rc[idx] - np.asarray(origin_rc, float)
    ks = np.arange(0.0, half_full + 3.0, 0.5)
    start = r + 2.0 * sig + 1.0
    dist = np.full(idx.size, np.inf)
    for v in probe_beside(probability, pts, profile.normal_rc[idx], c, start, ks):
        hit = v > params.vessel_threshold
        first = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
        d = np.where(first >= 0, start + ks[np.maximum(first, 0)], np.inf)  # from the lumen centre
        dist = np.minimum(dist, d)
    lim = np.minimum(dist - 2.0 * sig - 1.0, half_full)  # background tail ends here (from the centre)
    room = lim - (r + 2.0 * sig)
    # only where the vessel map shows the other vessel: a flag from the profile's own residuals
    # (a branch the map missed) or from the flag's dilation is kept
    ok = np.isfinite(dist) & (room >= params.refit_min_room_px)
    if not ok.any():
        return profile
    diam = profile.diameter_px.copy()
    cen = profile.centre_offset_px.copy()
    new_flags = flags.copy()
    misfit = None if profile.misfit is None else profile.misfit.copy()
    refitted = np.zeros(len(profile), bool) if profile.refitted is None else profile.refitted.copy()
    # group by the cut (whole pixels) so each group is one vectorised fit
    cut = np.floor(lim[ok] - np.abs(c[ok]))
    for h in np.unique(cut):
        sel = idx[ok][cut == h]
        hh = max(float(h), 3.0)
        x = profile_offsets(hh, params.profile_step_px)
        Y, inside = sample_profiles(image, profile.centerline_rc[sel], profile.normal_rc[sel], x, band_px=params.profile_band_px)
        tab = chord_table(sig, r_max, float(np.abs(x).max()) + 3.0, profile.attenuation_per_px)
        amp = profile.amplitude if profile.local_amplitude is None else profile.local_amplitude[sel]
        fit = fit_profiles(Y, x, tab, amplitude=amp, r_max_px=r_max, c_max_px=min(c_max, hh / 2))
        good = inside & (fit.radius_px > 0)
        diam[sel[good]] = 2.0 * fit.radius_px[good]
        cen[sel[good]] = fit.centre_px[good]
        new_flags[sel[good]] &= ~int(QualityFlag.BRANCH)
        refitted[sel[good]] = True
        if misfit is not None and noise_sd is not None:
            misfit[sel[good]] = misfit_ratio(fit.residuals[good], noise_sd)
    left, right = edge_points(profile.centerline_rc, profile.normal_rc, cen, diam / 2)
    return replace(profile, diameter_px=diam, centre_offset_px=cen, flags=new_flags, left_rc=left, right_rc=right,
                   misfit=misfit, refitted=refitted)



def _median_diameter(profile: DiameterProfile) -> float:
    """Median diameter (px) of the usable samples (all when under 6)."""
    ok = profile.valid if profile.valid.sum() >= 6 else np.ones(len(profile), bool)
    return max(float(np.median(profile.diameter_px[ok])), 0.5)


def iodine_ratio(image: np.ndarray, analysed: DiameterProfile, shift_rc, *, radius_hint_px: float,
                 params: MeasureParams = DEFAULT_PARAMS, use: np.ndarray | None = None) -> np.ndarray:
    """Iodine signal of the segment on ``image`` over that on the analysed frame, per sample (N,).

    The lumen is the same, so this is the ratio of the bolus concentrations. Each usable sample's
    least-squares scale of the analysed frame's fitted lumen model (its blurred cylinder,
    background line removed) in ``image``'s profile of the same sample has variance proportional
    to 1 / ||model||^2; a line along the arc is fitted to them with those weights (while the
    segment fills or washes out the concentration changes along it, smoothly at the frame's
    scale) and evaluated at every sample. All ones when no sample holds a model."""
    d = np.asarray(shift_rc, float)
    n = len(analysed)
    ok = analysed.valid if analysed.valid.sum() >= 5 else np.ones(n, bool)
    prof = sample_along(image, analysed.centerline_rc[ok] + d[None, :], analysed.arc_px[ok],
                        radius_hint_px=radius_hint_px, params=params)
    x = prof.offsets_px
    _, E = _projector(x)
    amp = analysed.amplitude if analysed.local_amplitude is None else analysed.local_amplitude[ok]
    model = _project_out(prof.table(analysed.blur_sigma_px, analysed.attenuation_per_px)(analysed.diameter_px[ok, None] / 2,
                                                           x[None, :] - analysed.centre_offset_px[ok, None]), E)
    model = model * np.broadcast_to(np.asarray(amp, float), (int(ok.sum()),))[:, None]
    w = (model * model).sum(axis=1)  # weight of each sample's scale (1 / its variance, up to the noise)
    if not np.any(w > 0):
        return np.ones(n)
    r = np.where(w > 0, (_project_out(prof.values, E) * model).sum(axis=1) / np.where(w > 0, w, 1.0), 0.0)
    t = analysed.arc_px[ok]
    held = w > 0
    if np.ptp(t[held]) <= 0:  # one place along the arc: no slope to fit
        return np.full(n, float((w * r).sum() / w.sum()))
    # polyfit weights multiply the residuals: sqrt of the inverse variances
    return np.polyval(np.polyfit(t[held], r[held], 1, w=np.sqrt(w[held])), analysed.arc_px)


def same_samples_in_frame(image: np.ndarray, analysed: DiameterProfile, shift_rc, probability: np.ndarray, *,
                          origin_rc: tuple[float, float], radius_hint_px: float, amplitude_scale,
                          params: MeasureParams = DEFAULT_PARAMS, unfilled: np.ndarray | None = None) -> DiameterProfile:
    """The analysed frame's samples measured on another frame of the run, moved by ``shift_rc``.

    The blur is the run's and the iodine amplitude the analysed frame's (following the vessel)
    times ``amplitude_scale`` (a number, or one per sample: :func:`iodine_ratio`, the bolus
    concentration); the vessel-map flags are the analysed frame's; residual flags,
    the refit beside other vessels and the misfit are the frame's own. Returned on the analysed
    frame's coordinates, so that its samples line up with the analysed profile's. ``unfilled``:
    samples the bolus has not filled in this frame, flagged POOR_FIT (not read from it).
    """
    d = np.asarray(shift_rc, float)
    rh = float(max(radius_hint_px, 1.5))
    prof = sample_along(image, analysed.centerline_rc + d[None, :], analysed.arc_px, radius_hint_px=rh, params=params,
                        log_attenuation=analysed.attenuation_per_px > 0)
    sigma = analysed.blur_sigma_px
    scale = np.asarray(amplitude_scale, float)
    amp = analysed.amplitude * float(np.median(scale))
    att = prof.attenuation(amp)
    base = analysed.amplitude if analysed.local_amplitude is None else analysed.local_amplitude
    local = None if (scale.ndim == 0 and analysed.local_amplitude is None) else np.broadcast_to(
        np.asarray(base, float) * scale, (len(analysed),)).copy()
    fit = prof.fit(sigma, amp if local is None else local, att)
    noise = profile_noise(prof.values, prof.offsets_px, prof.arc_px, lag_px=params.noise_lag_px)
    side = analysed.flags & SIDE_FLAGS
    if analysed.refitted is not None:  # the analysed frame's refit cleared these samples' BRANCH flag
        side = side | np.where(analysed.refitted, int(QualityFlag.BRANCH), 0)
    flags = _flags_of(prof, fit, sigma, amp, params, att) | side
    if unfilled is not None:
        flags = np.where(unfilled, flags | int(QualityFlag.POOR_FIT), flags)
    fit, flags = read_non_round(prof, fit, flags, sigma, params, skip=unfilled, attenuation_per_px=att)
    frame = _profile(prof, fit, sigma, amp, flags, mm_per_px=analysed.mm_per_px, local_amp=local, params=params,
                     misfit=misfit_ratio(fit.residuals, noise), attenuation_per_px=att,
                     blur_interp_var_px2=analysed.blur_interp_var_px2)
    frame = refit_beside_vessels(image, frame, probability, radius_hint_px=rh, params=params, noise_sd=noise,
                                 origin_rc=(origin_rc[0] + d[0], origin_rc[1] + d[1]))
    return replace(frame, centerline_rc=analysed.centerline_rc, left_rc=frame.left_rc - d, right_rc=frame.right_rc - d)


def combine_frames(profiles: list[DiameterProfile], area_noise_px2: list[float], *,
                   outlier_sds: float = DEFAULT_PARAMS.frame_outlier_sds) -> DiameterProfile:
    """One profile from several frames' profiles of the same samples (the first is the analysed
    frame's): at each sample usable in most frames (for the MLD: :meth:`QualityFlag.mld_usable`),
    the inverse-variance mean of those frames' diameters; elsewhere the inverse-variance mean of
    the frames flagged there as the analysed frame is, with its flags. ``area_noise_px2``:
    each frame's lumen-area noise SD, so a frame's diameter noise at a diameter D is that over
    2 D (its weight takes D at the frame's median diameter). The quantum noise of separate frames
    is independent, so n frames divide its variance by n; the lumen does not change between them.

    So the frames may differ at a sample by their noise only: where 3 or more frames are usable,
    a frame whose diameter lies more than ``outlier_sds`` of its noise SD from the frames' median
    there is left out at that sample (a vein filling over the artery in late frames, inflow,
    local motion); where only the analysed frame and one other are, the other is left out when
    they differ by more than ``outlier_sds`` of their joint noise SD."""
    first = profiles[0]
    if len(profiles) == 1:
        return first
    D = np.stack([p.diameter_px for p in profiles])
    # the samples an MLD may be read on (a non-round lumen's too: QualityFlag.mld_usable)
    ok = np.stack([QualityFlag.mld_usable(p.flags) for p in profiles])
    clean = np.stack([p.valid for p in profiles]).sum(axis=0) * 2 > len(profiles)
    area = np.asarray(area_noise_px2, float)

    def sd_at(k, d):  # frame(s) k's diameter noise SD at diameter(s) d
        return area[k] / (2.0 * np.maximum(d, 0.5))

    var = np.maximum(sd_at(np.arange(len(profiles)), np.array([_median_diameter(p) for p in profiles])) ** 2, 1e-9)
    use = ok.sum(axis=0) * 2 > len(profiles)
    # not usable in most frames: the frames that read the sample as the analysed frame does (the
    # same flags) are combined there, the analysed frame's flags kept (a branch's origin beside a
    # severe lesion flags it in every frame, and the analysed frame's noise alone was its MLD)
    soft = ~int(QualityFlag.EDGE_MISMATCH)  # as mld_usable: an edge mismatch alone does not set a sample apart
    same = np.stack([(np.asarray(p.flags) & soft) == (np.asarray(first.flags) & soft) for p in profiles])
    ok = np.where(use[None, :], ok, same)
    several = ok.sum(axis=0) >= 3
    if several.any():
        med = np.nanmedian(np.where(ok, D, np.nan)[:, several], axis=0)
        far = np.zeros_like(ok)
        far[:, several] = np.abs(D[:, several] - med[None, :]) > outlier_sds * sd_at(np.arange(len(D))[:, None],
                                                                                       med[None, :])
        ok = ok & ~far
        use &= ok.any(axis=0)  # frames split beyond their noise around the median: the analysed frame's
    two = np.flatnonzero(ok[0] & (ok.sum(axis=0) == 2))
    if two.size:
        # two frames only: no median to tell which one is off; beyond their joint noise, the
        # analysed frame's diameter stands
        j = np.argmax(ok[1:, two], axis=0) + 1  # the other usable frame
        off = np.abs(D[j, two] - D[0, two]) > outlier_sds * np.hypot(sd_at(0, D[0, two]), sd_at(j, D[j, two]))
        ok[j[off], two[off]] = False
    w = ok / var[:, None]
    d = np.where(ok.any(axis=0), (w * D).sum(axis=0) / np.maximum(w.sum(axis=0), 1e-300), first.diameter_px)
    # usable in most frames: the combined sample is; read in most frames only with non-round
    # lumens among them, it is one (searched for the MLD, never a reference)
    edge = first.flags & int(QualityFlag.EDGE_MISMATCH)
    flags = np.where(use & clean, edge,
                     np.where(use, edge | int(QualityFlag.POOR_FIT | QualityFlag.NON_ROUND), first.flags))
    misfit = None
    if all(p.misfit is not None for p in profiles):
        misfit = np.nanmean(np.stack([p.misfit for p in profiles]), axis=0)
    left, right = edge_points(first.centerline_rc, first.normal_rc, first.centre_offset_px, d / 2)
    return replace(first, diameter_px=d, flags=flags, left_rc=left, right_rc=right, misfit=misfit)
