"""WASID percent stenosis from a diameter profile.

percent stenosis = (1 - D_stenosis / D_normal) x 100 (Samuels, Joseph, Lynn, Smith,
Chimowitz, "A standardized method for measuring intracranial arterial stenosis",
AJNR 2000;21:643-6). D_stenosis is the minimal lumen diameter (MLD) over the valid
samples of the traced segment; D_normal is the mean diameter of the widest,
parallel-margined, non-tortuous, normal window of the artery's 1st-choice site
(proximal for M1/V4/BA, the petrous ICA i.e. proximal for ICA), else the 2nd
(distal; for ICA the extracranial ICA, given as feeding points) when the first is
too short, lesion-involved or diseased (it holds a narrowing of its own below 90%
of its widest window, or its proximal end is narrower than 93% of that window:
arteries taper distally, so a proximal site widening towards the lesion is the
recovering end of a diffuse proximal narrowing, and so is a proximal site narrower
than 97% of the distal one), else the 3rd
(the feeding artery: its most distal parallel, non-tortuous normal window; none
for ICA). A window is *normal* when at most NORMAL_MAX_FLAGGED (10%) of its samples
are flagged (branch origin, overlap, poor fit; its diameter is the mean of the others)
and it lies outside the lesion; *parallel-margined* when its
diameter changes by less than 10% over the window and varies by less than 5%
(SD) about that trend; *non-tortuous* when the centerline turns by less than 30
degrees over it. Windows are 1.5 reference diameters long.

The lesion is the contiguous arc around the MLD where the diameter is below 0.9
of the reference (the rule of the phantom truth, repeated in the result). The
interpolated-reference percent stenosis follows DICOM PS3.17 Annex T (QCA): the
reference diameter at the MLD position is interpolated linearly between the
proximal and the distal reference windows.

Uncertainty (1 SD) of the MLD, the reference and the percent stenosis: the quantum
noise of the lumen area along the profile (robust SD of the area about a 2 px
smoothing, the larger of the whole profile's and the lesion's), divided by the
number of independent samples averaged (noise correlation length
sqrt(2 pi) x the along-vessel blur), propagated to diameters (d(area) = 2 d dd),
scaled by NOISE_SD_SCALE, plus a model floor (MLD_FLOOR_PX; REFERENCE_FLOOR x the
reference). The two constants were calibrated on the development phantom grids
(benchmarks/accuracy.py design, seeds 11 and 13, 96 runs): percent stenosis
errors were within 1 SD in 74% and within 2 SD in 96% of runs (seed 17, not used
for the fit: 69% / 94%). It covers noise and what the phantoms vary, not reader
or centerline mistakes.

The MLD is corrected to first order for the along-vessel blur (imaging blur and
the band of averaged profiles): near a minimum the blurred lumen area is
a0 + a''(s^2 + s_g^2)/2, so a0 = a_measured - a'' s_g^2 / 2.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from .enums import ReferenceChoice, Segment
from .errors import MeasurementError
from .result import DiameterProfile, QualityFlag

__all__ = ["Window", "WasidMeasurement", "smooth_diameter", "find_mld", "lesion_extent",
           "candidate_windows", "turning_angle_deg", "wasid", "area_noise_sd_px2", "noise_correlation_px",
           "measurement_sd"]

PARALLEL_SLOPE = 0.10  # max relative diameter change over a window
PARALLEL_SD = 0.05  # max relative SD about the linear trend
TORTUOUS_DEG = 30.0  # max centerline turn over a window
WINDOW_DIAMETERS = 1.5  # window length in reference diameters
# a window with a few flagged samples (an isolated poor fit, the edge of a branch flag) is
# still normal: with none allowed, one flag more or less from a different vessel map moved
# the reference from a healthy distal site to a diseased proximal one
NORMAL_MAX_FLAGGED = 0.10  # largest share of flagged samples in a normal window
FLAGGED_MLD_FRACTION = 0.75  # a flagged narrowing below this x the unflagged MLD is the MLD (with a warning)
LESION_FRACTION = 0.9  # lesion: diameter < 0.9 x reference
DISEASED_FRACTION = 0.9  # a reference site narrowing below this fraction of its best window is diseased
PROXIMAL_HEAD_FRACTION = 0.93  # proximal end of the proximal site narrower than this x its best window: diseased
PROXIMAL_VS_DISTAL = 0.97  # best proximal window narrower than this x the best distal one: diseased
MAX_BLUR_CORRECTION = 0.4  # largest fraction of the MLD's area the along-vessel blur correction removes
NOISE_SD_SCALE = 0.7  # noise-propagation SD x this (calibrated on phantoms, see the module notes)
MLD_FLOOR_PX = 0.03  # model SD floor of the MLD, px
REFERENCE_FLOOR = 0.005  # model SD floor of the reference, fraction of it
#: along-vessel smoothing of the diameters, px: SMOOTH_AT_NOISE_REF x (relative diameter noise /
#: NOISE_REF) ** SMOOTH_NOISE_POWER, within SMOOTH_RANGE_PX. Smoothing trades noise for the
#: blurring of short lesions; the best fixed value on the development phantoms was 0.25-0.5 px
#: at 80,000 photons per pixel, 0.5-0.75 at 20,000 and >= 1.5 at 5,000 (seeds 11 and 13 of
#: benchmarks/accuracy.py's design and 32 runs of its seed 41 varied as in benchmarks/robustness.py; the accuracy table
#: is seed 7): percent MAE 1.06 -> 0.92, max 6.0 -> 5.1 points against 1 px everywhere; capping at
#: 1.5 px rather than 2 did slightly better on the same sets (0.944 vs 0.954)
SMOOTH_AT_NOISE_REF = 0.65
NOISE_REF = 0.158
SMOOTH_NOISE_POWER = 1.45
SMOOTH_RANGE_PX = (0.25, 1.5)


@dataclass(frozen=True)
class Window:
    """A reference window of a diameter profile (sample indices i0..i1 inclusive)."""

    i0: int
    i1: int
    diameter_px: float
    parallel: bool
    non_tortuous: bool
    normal: bool

    @property
    def centre(self) -> int:
        return (self.i0 + self.i1) // 2


@dataclass(frozen=True)
class WasidMeasurement:
    """WASID numbers on one diameter profile (pixels; the orchestrator converts to mm)."""

    percent_stenosis: float
    mld_px: float
    mld_index: int
    reference_px: float
    reference_choice: ReferenceChoice
    reference_window: Window | None  # on the traced profile (None for feeding / off-segment manual)
    reference_description: str
    lesion_start_index: int
    lesion_end_index: int
    interpolated_reference_px: float | None
    interpolated_percent_stenosis: float | None
    proximal_window: Window | None
    distal_window: Window | None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    mld_sd_px: float = float("nan")
    reference_sd_px: float = float("nan")
    percent_stenosis_sd: float = float("nan")


def area_noise_sd_px2(profile: DiameterProfile, valid: np.ndarray, *, around: int | None = None,
                      half_px: float = 6.0) -> float:
    """Robust SD (px^2) of the per-sample lumen-area noise: residual about a 2 px smoothing.

    ``around``: only samples within ``half_px`` of this index (at least 6 of them).
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
    r = a - ndi.gaussian_filter1d(a, 2.0 / step, mode="nearest")
    sel = valid
    if around is not None:
        near = valid & (np.abs(arc - arc[around]) <= half_px)
        if near.sum() >= 6:
            sel = near
    r = r[sel]
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def noise_correlation_px(profile: DiameterProfile, band_var_px2: float) -> float:
    """Correlation length (px) of the diameter noise along the vessel: sqrt(2 pi) x the
    blur of a sample (imaging blur, band of averaged profiles, pixel aperture)."""
    return float(np.sqrt(2.0 * np.pi * (profile.blur_sigma_px**2 + band_var_px2 + 1.0 / 12.0)))


def measurement_sd(profile: DiameterProfile, valid: np.ndarray, *, mld_px: float, mld_index: int,
                   reference_px: float, reference_length_px: float, corr_px: float,
                   area_noise_px2: float, fit_half_px: float) -> tuple[float, float, float]:
    """1-SD uncertainty of (MLD px, reference px, percent stenosis), see the module notes.

    ``area_noise_px2`` is the whole profile's :func:`area_noise_sd_px2`, ``corr_px`` its
    :func:`noise_correlation_px`.
    """
    s_mld = max(area_noise_px2, area_noise_sd_px2(profile, valid, around=mld_index))
    n_mld = max(2.0 * fit_half_px / corr_px, 1.0)
    # vertex of a quadratic fit over n independent samples: var ~ 9/4 sigma^2 / n
    noise_mld = s_mld / (2.0 * max(mld_px, 0.5)) * np.sqrt(2.25 / n_mld)
    sd_mld = float(np.hypot(NOISE_SD_SCALE * noise_mld, MLD_FLOOR_PX))
    n_ref = max(reference_length_px / corr_px, 1.0)
    noise_ref = area_noise_px2 / (2.0 * max(reference_px, 0.5)) / np.sqrt(n_ref)
    sd_ref = float(np.hypot(NOISE_SD_SCALE * noise_ref, REFERENCE_FLOOR * reference_px))
    if reference_px <= 0:
        return sd_mld, sd_ref, float("nan")
    sd_pct = 100.0 * float(np.hypot(sd_mld / reference_px, mld_px * sd_ref / reference_px**2))
    return sd_mld, sd_ref, sd_pct


def adaptive_smoothing_px(profile: DiameterProfile, valid: np.ndarray, *, area_noise_px2: float | None = None) -> float:
    """Along-vessel smoothing (px) for this profile's noise (see SMOOTH_AT_NOISE_REF).

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
    return float(np.clip(SMOOTH_AT_NOISE_REF * (rel / NOISE_REF) ** SMOOTH_NOISE_POWER, *SMOOTH_RANGE_PX))


def smooth_diameter(diameter_px: np.ndarray, valid: np.ndarray, *, sigma_samples: float) -> np.ndarray:
    """Light Gaussian smoothing along the vessel, invalid samples filled by interpolation."""
    d = np.asarray(diameter_px, float)
    idx = np.arange(d.size)
    if valid.any() and not valid.all():
        d = np.interp(idx, idx[valid], d[valid])
    if sigma_samples <= 0:
        return d.copy()
    return ndi.gaussian_filter1d(d, sigma_samples, mode="nearest")


def find_mld(
    arc_px: np.ndarray,
    diameter_s: np.ndarray,
    valid: np.ndarray,
    *,
    along_sigma_px: float,
    exclude_px: float = 0.0,
    within: np.ndarray | None = None,
    noise_sd_px2: float = 0.0,
    corr_px: float = 1.0,
) -> tuple[int, float]:
    """Index and value of the minimal lumen diameter, with the along-vessel blur correction.

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
    index : int
    mld_px : float
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
        return i, max(d0, 0.0)
    # The sample minimum of a noisy profile is biased low (the argmin picks a sample whose
    # noise is negative, and makes the bottom look sharper than it is). The bottom of the
    # lesion is therefore fitted with a parabola in area over the arc where the lesion is
    # within a quarter of its depth from the minimum (at least +-2 blur sigmas): the fitted
    # vertex averages the noise of all those samples, and its curvature gives the
    # along-vessel blur correction: blurred area = area + c2 sigma^2.
    d_hi = float(np.quantile(d_s[ok], 0.9))
    level = d0 + 0.25 * max(d_hi - d0, 0.0)
    lo = hi = i
    while lo > 0 and ok[lo - 1] and d_s[lo - 1] <= level:
        lo -= 1
    while hi < d_s.size - 1 and ok[hi + 1] and d_s[hi + 1] <= level:
        hi += 1
    half = max(2.0 * along_sigma_px, 1.5, 0.5 * (arc[hi] - arc[lo]))
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
            if noise_sd_px2 > 0:
                h = max(float(np.abs(sv).max()), 1e-6)
                n_ind = max(2.0 * h / max(corr_px, 1e-6), 1.0)
                var_c2 = 45.0 * noise_sd_px2**2 / (4.0 * n_ind * h**4)
                c2 = c2 * c2 * c2 / (c2 * c2 + var_c2)
            a0 = a_v - c2 * along_sigma_px**2
            # a first-order correction, bounded (a noisy curvature must not erase the lumen):
            # at most MAX_BLUR_CORRECTION of the measured area. 0.4 was chosen on two
            # development grids of 96 phantoms (seeds 11 and 13 of benchmarks/accuracy.py's
            # design; the benchmark itself uses seed 7): 0.25 left short lesions at coarse
            # pixels too mild, 0.5 over-corrected small noisy lumens
            a0 = max(a0, (1.0 - MAX_BLUR_CORRECTION) * a_v)
            return i, float(np.sqrt(max(a0, 0.0)))
    return i, d0


def lesion_extent(diameter_s: np.ndarray, i_mld: int, reference_px: float, *, fraction: float = LESION_FRACTION) -> tuple[int, int]:
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


def turning_angle_deg(centerline_rc: np.ndarray, i0: int, i1: int) -> float:
    """Total turn of the centerline direction between samples i0 and i1, degrees."""
    p = np.asarray(centerline_rc, float)
    t = np.gradient(p, axis=0)
    ang = np.unwrap(np.arctan2(t[:, 0], t[:, 1]))
    seg = ang[i0 : i1 + 1]
    return float(np.degrees(seg.max() - seg.min())) if seg.size else 0.0


def candidate_windows(
    profile: DiameterProfile,
    diameter_s: np.ndarray,
    lo: int,
    hi: int,
    window_n: int,
    *,
    stride: int | None = None,
) -> list[Window]:
    """All windows of ``window_n`` samples inside samples [lo, hi] with their WASID properties."""
    out: list[Window] = []
    if hi - lo + 1 < window_n or window_n < 3:
        return out
    valid = profile.valid
    stride = stride or max(window_n // 6, 1)
    d = diameter_s
    raw = profile.diameter_px
    for i0 in range(lo, hi - window_n + 2, stride):
        i1 = i0 + window_n - 1
        seg = raw[i0 : i1 + 1]
        ok = valid[i0 : i1 + 1]
        normal = _is_normal(ok)
        s = np.arange(seg.size)
        mean = float(np.mean(seg[ok])) if ok.any() else float(np.mean(d[i0 : i1 + 1]))
        if ok.sum() >= 3 and mean > 0:
            coef = np.polyfit(s[ok], seg[ok], 1)
            change = abs(coef[0]) * (seg.size - 1) / mean
            sd = float(np.std(seg[ok] - np.polyval(coef, s[ok]))) / mean
            parallel = change <= PARALLEL_SLOPE and sd <= PARALLEL_SD
        else:
            parallel = False
        nt = turning_angle_deg(profile.centerline_rc, i0, i1) <= TORTUOUS_DEG
        out.append(Window(i0, i1, mean, parallel, nt, normal))
    return out


def _is_normal(ok: np.ndarray) -> bool:
    """Whether a window whose valid samples are ``ok`` counts as normal (few enough flagged)."""
    return bool(ok.size and (ok.size - int(ok.sum())) <= NORMAL_MAX_FLAGGED * ok.size)


def _diseased(d_s: np.ndarray, valid: np.ndarray, i0: int, i1: int, best: Window | None) -> bool:
    """Whether samples i0..i1 hold a narrowing below DISEASED_FRACTION of the best window."""
    if best is None or i1 - i0 < 2:
        return False
    seg = d_s[max(i0, 0) : i1 + 1][valid[max(i0, 0) : i1 + 1]]
    return bool(seg.size and seg.min() < DISEASED_FRACTION * best.diameter_px)


def _best(windows: list[Window], *, strict: bool, most_distal: bool = False) -> Window | None:
    if strict:
        ws = [w for w in windows if w.normal and w.parallel and w.non_tortuous]
    else:
        ws = [w for w in windows if w.normal] or list(windows)
    if not ws:
        return None
    if most_distal:
        return max(ws, key=lambda w: w.i1)
    return max(ws, key=lambda w: w.diameter_px)


def wasid(
    profile: DiameterProfile,
    segment: Segment | str,
    *,
    manual_index: int | None = None,
    manual_reference_px: float | None = None,
    feeding_profile: DiameterProfile | None = None,
    force_choice: ReferenceChoice | str | None = None,
    mld_near_index: int | None = None,
    smooth_px: float | None = None,
    band_var_px2: float = 0.5,
) -> WasidMeasurement:
    """WASID measurement of a diameter profile.

    Parameters
    ----------
    profile : DiameterProfile
        Proximal first.
    segment : Segment
        ICA, M1, V4 or BA (sets the order of the reference choices).
    manual_index : int, optional
        Reader-forced reference: sample index on ``profile`` (a window centred there).
    manual_reference_px : float, optional
        Reader-forced reference diameter measured elsewhere (off the segment), pixels.
    feeding_profile : DiameterProfile, optional
        Profile of the feeding artery (3rd choice; for ICA the extracranial ICA, 2nd).
    force_choice : {"proximal", "distal", "feeding"}, optional
        Reader-chosen reference site: its best window is used whatever the WASID
        order would pick (strict criteria first, relaxed when none qualifies).
    mld_near_index : int, optional
        Reader-placed MLD: the minimum is searched only within half a reference
        diameter (at least two blur widths) of this sample.
    smooth_px : float, optional
        Gaussian smoothing of the diameters along the vessel, pixels of arc (default: for the
        profile's own noise, :func:`adaptive_smoothing_px`).
    band_var_px2 : float
        Variance of the band of profiles averaged along the vessel, px^2.

    Returns
    -------
    WasidMeasurement
    """
    seg = Segment(str(segment))
    arc = profile.arc_px
    step = float(np.median(np.diff(arc))) if arc.size > 1 else 1.0
    valid = profile.valid
    warns: list[str] = []
    if valid.sum() < max(5, 0.3 * valid.size):
        warns.append("most diameter samples are flagged (branches, overlaps or poor fits); check the result")
        valid = valid | ((profile.flags & 8) == profile.flags)  # keep at least the edge-mismatch ones
        if valid.sum() < 5:
            valid = np.ones_like(valid)
    area_noise = area_noise_sd_px2(profile, valid)
    if smooth_px is None:
        smooth_px = adaptive_smoothing_px(profile, valid, area_noise_px2=area_noise)
    d_s = smooth_diameter(profile.diameter_px, valid, sigma_samples=smooth_px / step)
    # first reference guess: a robust maximum of the segment
    d0 = float(np.quantile(d_s[valid], 0.9))
    along = float(np.sqrt(profile.blur_sigma_px**2 + band_var_px2 + smooth_px**2))
    within = None
    if mld_near_index is not None:
        k = int(np.clip(mld_near_index, 0, arc.size - 1))
        within = np.abs(arc - arc[k]) <= max(0.5 * d0, 2.0 * along, 2.0 * step)
    corr = noise_correlation_px(profile, band_var_px2)
    i_mld, mld = find_mld(arc, d_s, valid, along_sigma_px=along, exclude_px=0.25 * d0, within=within,
                          noise_sd_px2=area_noise, corr_px=corr)
    # the lesion itself may be flagged: a vessel crossing near it runs beside the narrowing
    # (its profiles are refitted short of that vessel but stay POOR_FIT), or touches its
    # bottom (BRANCH, the fit itself fine). Searched over the valid samples only, the MLD
    # would land on the lesion's shoulder and read a 74% stenosis as 38% with a small SD.
    # Samples flagged only as poor fits, or only as branches, are searched too, and a
    # narrowing there clearly below the valid one is taken, with a warning. Not samples
    # flagged both (a junction that could not be refitted reads near zero) nor OVERLAP (a
    # crossing adds iodine).
    soft = profile.flags & ~int(QualityFlag.EDGE_MISMATCH)
    wide_ok = valid | (soft == int(QualityFlag.POOR_FIT)) | (soft == int(QualityFlag.BRANCH))
    if (wide_ok & ~valid).any():
        d_w = smooth_diameter(profile.diameter_px, wide_ok, sigma_samples=smooth_px / step)
        i_w, mld_w = find_mld(arc, d_w, wide_ok, along_sigma_px=along, exclude_px=0.25 * d0, within=within,
                              noise_sd_px2=area_noise, corr_px=corr)
        if not valid[i_w] and mld_w < FLAGGED_MLD_FRACTION * mld:
            mmpp, unit = (profile.mm_per_px, "mm") if profile.mm_per_px else (1.0, "px")
            warns.append(f"the narrowest part of the segment is flagged (a vessel beside or touching it); its MLD "
                         f"({mld_w * mmpp:.2f} {unit}, vs {mld * mmpp:.2f} {unit} on the unflagged samples) was used: "
                         "check it, or place the MLD point")
            i_mld, mld, d_s = i_w, mld_w, d_w
    # an occlusion: no lumen over several consecutive samples -> MLD 0 (not a smoothed residue)
    closed = ndi.binary_erosion((profile.diameter_px <= 0.05) & valid, iterations=1)
    if within is not None:
        closed &= within
    if closed.any():
        run = np.where(closed)[0]
        i_mld, mld = int(run[len(run) // 2]), 0.0
    window_n = max(int(round(WINDOW_DIAMETERS * d0 / step)) + 1, 5)
    gap_n = int(round(0.5 * d0 / step))
    n = arc.size

    def sites(ref_guess):
        lo, hi = lesion_extent(d_s, i_mld, ref_guess)
        prox = candidate_windows(profile, d_s, 0, lo - gap_n - 1, window_n)
        dist = candidate_windows(profile, d_s, hi + gap_n + 1, n - 1, window_n)
        return lo, hi, prox, dist

    lo, hi, prox, dist = sites(d0)
    # refine the lesion with the proximal / distal reference (two passes)
    for _ in range(2):
        w = _best(prox, strict=True) or _best(dist, strict=True) or _best(prox + dist, strict=False)
        if w is None:
            break
        lo, hi, prox, dist = sites(w.diameter_px)
    w_prox = _best(prox, strict=True)
    w_dist = _best(dist, strict=True)
    # a site with a narrowing of its own (below DISEASED_FRACTION of its best window)
    # is "diseased" in the WASID sense: the next choice is used
    excl = int(round(0.25 * d0 / step))
    prox_diseased = _diseased(d_s, valid, excl, lo - gap_n - 1, w_prox)
    # arteries taper distally: a proximal site whose proximal end is clearly narrower
    # than its best window is the recovering end of a diffuse proximal narrowing
    if w_prox is not None and not prox_diseased:
        j1 = min(excl + int(round(d0 / step)), w_prox.i0)
        head = d_s[excl : j1 + 1][valid[excl : j1 + 1]]
        prox_diseased = bool(head.size >= 3 and head.mean() < PROXIMAL_HEAD_FRACTION * w_prox.diameter_px)
    # ... and a proximal site clearly narrower than the distal one is diseased too
    if w_prox is not None and w_dist is not None and not prox_diseased:
        prox_diseased = w_prox.diameter_px < PROXIMAL_VS_DISTAL * w_dist.diameter_px
    dist_diseased = _diseased(d_s, valid, hi + gap_n + 1, n - 1 - excl, w_dist)
    w_prox_site = None if prox_diseased else w_prox
    w_dist_site = None if dist_diseased else w_dist

    feed_w = None
    feed_ref = None
    if feeding_profile is not None and len(feeding_profile) >= 5:
        fd = smooth_diameter(feeding_profile.diameter_px, feeding_profile.valid, sigma_samples=smooth_px / step)
        fvalid = feeding_profile.valid
        fd0 = float(np.quantile(fd[fvalid] if fvalid.any() else fd, 0.9))
        fwin = max(int(round(WINDOW_DIAMETERS * fd0 / step)) + 1, 5)
        fw_list = candidate_windows(feeding_profile, fd, 0, len(feeding_profile) - 1, min(fwin, len(feeding_profile)))
        feed_w = _best(fw_list, strict=True, most_distal=True) or _best(fw_list, strict=False, most_distal=True)
        if feed_w is not None:
            feed_ref = feed_w.diameter_px

    choice: ReferenceChoice
    win: Window | None
    desc: str
    if manual_index is not None or manual_reference_px is not None:
        choice = ReferenceChoice.MANUAL
        if manual_reference_px is not None:
            ref, win, desc = float(manual_reference_px), None, "reader-forced reference, measured off the traced segment"
        else:
            half = window_n // 2
            i0, i1 = max(manual_index - half, 0), min(manual_index + half, n - 1)
            ok = valid[i0 : i1 + 1]
            segd = profile.diameter_px[i0 : i1 + 1]
            ref = float(np.mean(segd[ok])) if ok.any() else float(np.mean(segd))
            win = Window(i0, i1, ref, True, True, _is_normal(ok))
            desc = "reader-forced reference on the traced segment"
            if i0 <= hi and i1 >= lo:
                warns.append("the forced reference overlaps the lesion")
    elif force_choice is not None:
        choice = ReferenceChoice(str(getattr(force_choice, "value", force_choice)).lower())
        if choice is ReferenceChoice.MANUAL:
            raise MeasurementError("a manual reference needs a location (--reference ROW,COL), not a site")
        if choice is ReferenceChoice.FEEDING:
            if feed_w is None:
                raise MeasurementError("no feeding-artery reference: place two points on the feeding artery (feeding proximal and distal)")
            win, ref = None, float(feed_ref)
            desc = "feeding artery (reader-chosen site)"
        else:
            cands = prox if choice is ReferenceChoice.PROXIMAL else dist
            win = _best(cands, strict=True)
            relaxed = win is None
            if relaxed:
                win = _best(cands, strict=False)
            if win is None:
                raise MeasurementError(
                    f"the {choice.value} part of the traced segment is too short for a reference window; "
                    f"extend the trace {'before' if choice is ReferenceChoice.PROXIMAL else 'beyond'} the lesion"
                )
            ref = win.diameter_px
            desc = f"{choice.value} {seg.value} (reader-chosen site{', relaxed criteria' if relaxed else ''})"
            if seg is Segment.ICA and choice is ReferenceChoice.DISTAL:
                warns.append("WASID has no distal reference for the ICA; the reader chose the distal segment")
    else:
        if seg is Segment.ICA:
            order = [("proximal", w_prox_site, "petrous ICA (1st choice)"),
                     ("feeding", feed_w, "extracranial ICA (2nd choice)")]
        else:
            feed_name = {Segment.M1: "supraclinoid ICA", Segment.V4: "extracranial VA", Segment.BA: "dominant V4"}[seg]
            order = [("proximal", w_prox_site, f"proximal {seg.value} (1st choice)"),
                     ("distal", w_dist_site, f"distal {seg.value} (2nd choice)"),
                     ("feeding", feed_w, f"feeding artery, {feed_name} (3rd choice)")]
        picked = next(((c, w, s) for c, w, s in order if w is not None), None)
        if picked is None:
            # no site qualifies: relax (normal windows, then anything) and say so
            w_rel = _best(prox, strict=False) or _best(dist, strict=False)
            if w_rel is None:
                w_rel = Window(0, min(window_n, n) - 1, float(np.max(d_s)), False, False, False)
                c_rel = "proximal"
            else:
                c_rel = "proximal" if w_rel in prox else "distal"
            if seg is Segment.ICA and c_rel == "distal":
                warns.append("WASID has no distal reference for the ICA; used the distal segment for lack of a normal proximal one")
            warns.append("no normal, parallel, non-tortuous reference segment found; "
                         "the reference is the best available window, check it or force one with --reference")
            picked = (c_rel, w_rel, f"{c_rel} {seg.value}, relaxed criteria")
        cname, win, desc = picked
        choice = ReferenceChoice(cname)
        ref = feed_ref if choice is ReferenceChoice.FEEDING else win.diameter_px
        if choice is ReferenceChoice.FEEDING:
            win = None
        if choice is not ReferenceChoice.PROXIMAL:
            why = "diseased (narrowed)" if prox_diseased else "too short or lesion-involved"
            warns.append(f"proximal reference segment {why}; used the {desc}")

    if ref <= 0:
        raise MeasurementError("the reference diameter is zero; place the reference on a normal, opacified part of the artery")
    pct = (1.0 - mld / ref) * 100.0
    lo, hi = lesion_extent(d_s, i_mld, ref)

    interp_ref = interp_pct = None
    if w_prox is not None and w_dist is not None:
        sp, sd_ = arc[w_prox.centre], arc[w_dist.centre]
        t = (arc[i_mld] - sp) / (sd_ - sp) if sd_ != sp else 0.5
        interp_ref = float(w_prox.diameter_px + np.clip(t, 0, 1) * (w_dist.diameter_px - w_prox.diameter_px))
        interp_pct = (1.0 - mld / interp_ref) * 100.0
    if mld <= 0:
        warns.append("the lumen is not visible at the MLD (occlusion): 100% stenosis")
    ref_len = float(arc[win.i1] - arc[win.i0]) if win is not None else window_n * step
    sd_mld, sd_ref, sd_pct = measurement_sd(
        profile, valid, mld_px=float(mld), mld_index=i_mld, reference_px=float(ref), reference_length_px=ref_len,
        corr_px=corr, area_noise_px2=area_noise, fit_half_px=max(2.0 * along, 1.5))
    return WasidMeasurement(
        percent_stenosis=float(pct),
        mld_px=float(mld),
        mld_index=i_mld,
        reference_px=float(ref),
        reference_choice=choice,
        reference_window=win,
        reference_description=desc,
        lesion_start_index=lo,
        lesion_end_index=hi,
        interpolated_reference_px=interp_ref,
        interpolated_percent_stenosis=interp_pct,
        proximal_window=w_prox,
        distal_window=w_dist,
        warnings=tuple(warns),
        mld_sd_px=sd_mld,
        reference_sd_px=sd_ref,
        percent_stenosis_sd=sd_pct,
    )
