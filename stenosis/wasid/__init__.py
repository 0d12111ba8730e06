"""WASID percent stenosis from a diameter profile.

percent stenosis = (1 - D_stenosis / D_normal) x 100 (Samuels, Joseph, Lynn, Smith,
Chimowitz, "A standardized method for measuring intracranial arterial stenosis",
AJNR 2000;21:643-6). D_stenosis is the minimal lumen diameter (MLD) of the traced
segment (:mod:`.mld`); D_normal is the diameter of the widest normal,
parallel-margined, non-tortuous window, read off its site's fitted taper (:mod:`.reference`) of the artery's 1st-choice
site (proximal for M1/V4/BA, the petrous ICA i.e. proximal for ICA), else the 2nd
(distal; for ICA the extracranial ICA, given as feeding points) when the first is too
short, lesion-involved or diseased, else the 3rd (the feeding artery's most distal
window; none for ICA). A site is diseased when it holds a narrowing of its own below
``diseased_fraction`` of its widest window, when its proximal end is narrower than
``proximal_head_fraction`` of that window (arteries taper distally, so a proximal site
widening towards the lesion is the recovering end of a diffuse narrowing), or, for the
proximal site, when it is narrower than ``proximal_vs_distal`` of the distal one (the
values and why: docs/tuning.md).

The lesion is the contiguous arc around the MLD where the diameter is below
``lesion_fraction`` of the reference. The interpolated-reference percent stenosis
follows DICOM PS3.17 Annex T (QCA): the reference at the MLD position is interpolated
linearly between the proximal and the distal windows. Uncertainty: :mod:`.uncertainty`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
from scipy import ndimage as ndi

from ..enums import ReferenceChoice, Segment
from ..errors import MeasurementError, StenosisError
from ..params import DEFAULT_PARAMS, MeasureParams
from ..result import CONFIRM_CALL, DiameterProfile, QualityFlag, two_sd_interval
from .mld import (LesionBottom, adaptive_smoothing_px, along_vessel_sd, bottom_window_half_px, find_mld,
                  fit_lesion_bottom, lesion_extent, narrowest_spread_px, smooth_diameter)
from .reference import Window, best_window, candidate_windows, diseased, is_normal, trend_diameter, turning_angle_deg
from .uncertainty import area_noise_sd_px2, measurement_sd, model_sd_px, noise_correlation_px

__all__ = ["Window", "WasidMeasurement", "smooth_diameter", "find_mld", "lesion_extent", "adaptive_smoothing_px",
           "candidate_windows", "turning_angle_deg", "wasid", "area_noise_sd_px2", "noise_correlation_px",
           "measurement_sd", "borderline_warning", "is_borderline_warning", "at_same_sites", "start_sensitivity_warning"]

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
    feeding_window: Window | None = None  # on the feeding profile, when that is the reference
    model_misfit: dict = field(default_factory=dict)  # misfit ratio at the MLD and the reference (model_sd_px)
    along_vessel_sd_px: float = 0.0  # diameter variation of the normal artery beyond noise (along_vessel_sd)
    background_sd: dict = field(default_factory=dict)  # single native frame: percent / MLD / reference moved by the background model


@dataclass(frozen=True)
class _Sites:
    """The lesion's extent and the reference windows either side of it."""

    lo: int
    hi: int
    proximal: list[Window]
    distal: list[Window]
    best_proximal: Window | None
    best_distal: Window | None
    proximal_diseased: bool
    distal_diseased: bool
    window_n: int


def borderline_warning(percent_stenosis: float, sd: float = float("nan"),
                       params: MeasureParams = DEFAULT_PARAMS) -> str | None:
    """The warning for a result whose >= 50% call a reader should confirm, or None: within
    ``borderline_points`` of 50, or its +-2 SD interval reaches 50."""
    two_sd = 2.0 * sd if np.isfinite(sd) else 0.0
    if abs(percent_stenosis - 50.0) < max(params.borderline_points, two_sd):
        lo, hi = two_sd_interval(percent_stenosis, sd)
        why = (f"its +-2 SD interval ({lo:.1f} to {hi:.1f}%) includes 50%"
               if abs(percent_stenosis - 50.0) < two_sd else
               f"it is within {params.borderline_points:g} points of 50%, inside the tool's largest errors on phantoms")
        return f"percent stenosis {percent_stenosis:.1f}%: {why}; {CONFIRM_CALL}"
    return None


def is_borderline_warning(warning: str) -> bool:
    """Whether ``warning`` is :func:`borderline_warning`'s (a result's own borderline percent)."""
    return warning.startswith("percent stenosis ") and CONFIRM_CALL in warning


def _usable(profile: DiameterProfile) -> tuple[np.ndarray, list[str]]:
    valid = profile.valid
    if valid.sum() >= max(5, 0.3 * valid.size):
        return valid, []
    warns = ["most diameter samples are flagged (branches, overlaps or poor fits); check the result"]
    valid = valid | ((profile.flags & ~int(QualityFlag.EDGE_MISMATCH)) == 0)
    if valid.sum() < 5:
        valid = np.ones_like(valid)
    return valid, warns


def _mld_usable(profile: DiameterProfile, valid: np.ndarray) -> np.ndarray:
    """The samples the MLD is searched on: ``valid`` and those a lumen of their own amplitude
    describes (POOR_FIT and NON_ROUND only, :func:`stenosis.diameter.stage.read_non_round`).

    An eccentric lumen seen obliquely is where the run's amplitude fails, i.e. at the lesion:
    left out, the MLD lands on the lesion's shoulder and the stenosis is missed. Such a sample
    is read as its area-equivalent diameter, with the misfit of the lumen that describes it.
    The reference and its sites keep to ``valid`` (diameters smoothed over them alone)."""
    return valid | QualityFlag.mld_usable(profile.flags)


def _lesion_bottom(profile, valid, d_s, *, smooth_px, along, within, area_noise, corr, d0, params):
    """(:class:`~stenosis.wasid.mld.LesionBottom`, smoothed diameters, warnings) of the lesion's bottom.

    ``valid``: the samples searched (:func:`_mld_usable`: a non-round lumen's included). The
    lesion itself may be flagged: a vessel crossing near it runs beside the narrowing
    (refitted short of that vessel but still POOR_FIT) or touches its bottom (BRANCH, the fit
    fine); searched without them, the MLD lands on the lesion's shoulder. Samples flagged only
    POOR_FIT, or only BRANCH, are searched too, and a narrowing there below
    ``flagged_mld_fraction`` x the other one is taken, with a warning. Not samples flagged both
    (an unrefitted junction reads near zero) nor OVERLAP (a crossing adds iodine). An occlusion
    (no lumen over consecutive samples) is MLD 0.
    """
    arc = profile.arc_px
    step = float(np.median(np.diff(arc))) if arc.size > 1 else 1.0
    kw = dict(along_sigma_px=along, exclude_px=params.end_exclude_diameters * d0, within=within,
              noise_sd_px2=area_noise, corr_px=corr, params=params)
    warns = []
    bottom = fit_lesion_bottom(arc, d_s, valid, **kw)
    soft = profile.flags & ~int(QualityFlag.EDGE_MISMATCH)
    wide_ok = valid | (soft == int(QualityFlag.POOR_FIT)) | (soft == int(QualityFlag.BRANCH))
    if (wide_ok & ~valid).any():
        d_w = smooth_diameter(profile.diameter_px, wide_ok, sigma_samples=smooth_px / step)
        wide = fit_lesion_bottom(arc, d_w, wide_ok, **kw)
        if not valid[wide.index] and wide.mld_px < params.flagged_mld_fraction * bottom.mld_px:
            mmpp, unit = (profile.mm_per_px, "mm") if profile.mm_per_px else (1.0, "px")
            warns.append(f"the narrowest part of the segment is flagged (a vessel beside or touching it); its MLD "
                         f"({wide.mld_px * mmpp:.2f} {unit}, vs {bottom.mld_px * mmpp:.2f} {unit} on the unflagged "
                         "samples) was used: check it, or place the MLD point")
            bottom, d_s = wide, d_w
    closed = ndi.binary_erosion((profile.diameter_px <= 0.05) & valid, iterations=1)
    if within is not None:
        closed &= within
    if closed.any():
        run = np.where(closed)[0]
        bottom = LesionBottom(int(run[len(run) // 2]), 0.0, 0.0)
    return bottom, d_s, warns


def _open_lesion_warnings(lo: int, hi: int, n: int, mld: float, fraction: float) -> list[str]:
    """A narrowing (samples below ``fraction`` of the reference: ``lesion_fraction``) that runs
    into an end of the trace is not closed by normal artery on the trace there: a taper or a
    change of calibre beyond the lesion reads as part of it, or the reader's point cut the lesion.
    WASID grades a lesion between normal segments; the result says so rather than grading the end
    silently. The whole trace below the reference (a reference from elsewhere wider than all of
    it): the reference is what to check."""
    if not (hi > lo and mld > 0):
        return []
    below = f"below {100 * fraction:.0f}% of the reference"
    if lo <= 0 and hi >= n - 1:
        return [f"the whole traced segment is {below}: check the reference (a reader's or the feeding artery's "
                "wider than this artery, or the trace is all lesion)"]
    if hi >= n - 1:
        return [f"the artery stays {below} up to the distal point (the lesion is not closed by normal artery on the "
                "trace): a taper or a change of calibre beyond the lesion reads as part of it; check where the lesion "
                "ends, or extend the trace"]
    if lo <= 0:
        return [f"the artery is {below} from the proximal point on (the lesion is not closed by normal artery on the "
                "trace): check where the lesion starts, or extend the trace before it"]
    return []


def _reference_sites(profile, valid, d_s, i_mld, d0, step, params, d_ref=None) -> _Sites:
    """Lesion extent (on ``d_s``, the MLD's diameters) and the proximal / distal reference
    windows (on ``d_ref``, the usable samples' diameters; default ``d_s``), refined twice with
    the reference."""
    d_ref = d_s if d_ref is None else d_ref
    n = profile.arc_px.size
    window_n = max(int(round(params.window_diameters * d0 / step)) + 1, 5)
    gap_n = int(round(params.lesion_gap_diameters * d0 / step))

    def sites(ref_guess):
        lo, hi = lesion_extent(d_s, i_mld, ref_guess, fraction=params.lesion_fraction)
        prox = candidate_windows(profile, d_ref, 0, lo - gap_n - 1, window_n, params=params)
        dist = candidate_windows(profile, d_ref, hi + gap_n + 1, n - 1, window_n, params=params)
        return lo, hi, prox, dist

    lo, hi, prox, dist = sites(d0)
    for _ in range(2):
        w = (best_window(prox, strict=True) or best_window(dist, strict=True)
             or best_window(prox + dist, strict=False))
        if w is None:
            break
        lo, hi, prox, dist = sites(w.diameter_px)
    w_prox = best_window(prox, strict=True)
    w_dist = best_window(dist, strict=True)
    excl = int(round(params.end_exclude_diameters * d0 / step))
    prox_diseased = diseased(d_ref, valid, excl, lo - gap_n - 1, w_prox, params)
    if w_prox is not None and not prox_diseased:  # the recovering end of a diffuse proximal narrowing
        j1 = min(excl + int(round(d0 / step)), w_prox.i0)
        head = d_ref[excl : j1 + 1][valid[excl : j1 + 1]]
        prox_diseased = bool(head.size >= 3 and head.mean() < params.proximal_head_fraction * w_prox.diameter_px)
    if w_prox is not None and w_dist is not None and not prox_diseased:
        prox_diseased = w_prox.diameter_px < params.proximal_vs_distal * w_dist.diameter_px
    dist_diseased = diseased(d_ref, valid, hi + gap_n + 1, n - 1 - excl, w_dist, params)
    return _Sites(lo, hi, prox, dist, w_prox, w_dist, prox_diseased, dist_diseased, window_n)


def _feeding_window(feeding_profile, smooth_px, step, params) -> Window | None:
    """The feeding artery's most distal parallel, non-tortuous normal window (relaxed if none)."""
    if feeding_profile is None or len(feeding_profile) < 5:
        return None
    fvalid = feeding_profile.valid
    fd = smooth_diameter(feeding_profile.diameter_px, fvalid, sigma_samples=smooth_px / step)
    fd0 = float(np.quantile(fd[fvalid] if fvalid.any() else fd, 0.9))
    fwin = max(int(round(params.window_diameters * fd0 / step)) + 1, 5)
    ws = candidate_windows(feeding_profile, fd, 0, len(feeding_profile) - 1, min(fwin, len(feeding_profile)),
                           params=params)
    return best_window(ws, strict=True, most_distal=True) or best_window(ws, strict=False, most_distal=True)


def _manual_reference(profile, valid, sites, manual_index, manual_reference_px, params):
    if manual_reference_px is not None:
        return float(manual_reference_px), None, "reader-forced reference, measured off the traced segment", []
    n = profile.arc_px.size
    half = sites.window_n // 2
    i0, i1 = max(manual_index - half, 0), min(manual_index + half, n - 1)
    ok = valid[i0 : i1 + 1]
    segd = profile.diameter_px[i0 : i1 + 1]
    ref = float(np.mean(segd[ok])) if ok.any() else float(np.mean(segd))
    warns = ["the forced reference overlaps the lesion"] if (i0 <= sites.hi and i1 >= sites.lo) else []
    return ref, Window(i0, i1, ref, True, True, is_normal(ok, params)), "reader-forced reference on the traced segment", warns


def _forced_site(seg, choice, sites, feed_w):
    if choice is ReferenceChoice.MANUAL:
        raise MeasurementError("a manual reference needs a location (--reference ROW,COL), not a site")
    if choice is ReferenceChoice.FEEDING:
        if feed_w is None:
            raise MeasurementError("no feeding-artery reference: place two points on the feeding artery (feeding proximal and distal)")
        return None, "feeding artery (reader-chosen site)", []
    cands = sites.proximal if choice is ReferenceChoice.PROXIMAL else sites.distal
    win = best_window(cands, strict=True)
    relaxed = win is None
    if relaxed:
        win = best_window(cands, strict=False)
    if win is None:
        raise MeasurementError(
            f"the {choice.value} part of the traced segment is too short for a reference window; "
            f"extend the trace {'before' if choice is ReferenceChoice.PROXIMAL else 'beyond'} the lesion")
    warns = (["WASID has no distal reference for the ICA; the reader chose the distal segment"]
             if seg is Segment.ICA and choice is ReferenceChoice.DISTAL else [])
    return win, f"{choice.value} {seg.value} (reader-chosen site{', relaxed criteria' if relaxed else ''})", warns


def _wasid_order(seg, sites, feed_w, d_s):
    """(choice, window, description, warnings) by the WASID order of the artery."""
    w_prox = None if sites.proximal_diseased else sites.best_proximal
    w_dist = None if sites.distal_diseased else sites.best_distal
    if seg is Segment.ICA:
        order = [("proximal", w_prox, "petrous ICA (1st choice)"), ("feeding", feed_w, "extracranial ICA (2nd choice)")]
    else:
        feed_name = {Segment.M1: "supraclinoid ICA", Segment.V4: "extracranial VA", Segment.BA: "dominant V4"}[seg]
        order = [("proximal", w_prox, f"proximal {seg.value} (1st choice)"),
                 ("distal", w_dist, f"distal {seg.value} (2nd choice)"),
                 ("feeding", feed_w, f"feeding artery, {feed_name} (3rd choice)")]
    warns = []
    picked = next(((c, w, s) for c, w, s in order if w is not None), None)
    if picked is None:  # no site qualifies: relax (normal windows, then anything) and say so
        prox, dist = sites.proximal, sites.distal
        w_rel = best_window(prox, strict=False) or best_window(dist, strict=False)
        if w_rel is None:
            k = int(np.argmax(d_s))  # the widest smoothed sample, in a window of the usual length there
            half = min(sites.window_n, d_s.size) // 2
            i0 = int(np.clip(k - half, 0, max(d_s.size - 2 * half - 1, 0)))
            w_rel = Window(i0, min(i0 + 2 * half, d_s.size - 1), float(d_s[k]), False, False, False,
                           widest_smoothed=True)
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
    if choice is not ReferenceChoice.PROXIMAL:
        why = "diseased (narrowed)" if sites.proximal_diseased else "too short or lesion-involved"
        warns.append(f"proximal reference segment {why}; used the {desc}")
    return choice, (None if choice is ReferenceChoice.FEEDING else win), desc, warns


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
    params: MeasureParams = DEFAULT_PARAMS,
) -> WasidMeasurement:
    """WASID measurement of a diameter profile (proximal first).

    Parameters
    ----------
    profile : DiameterProfile
    segment : Segment
        ICA, M1, V4 or BA (sets the order of the reference choices).
    manual_index : int, optional
        Reader-forced reference: sample index on ``profile`` (a window centred there).
    manual_reference_px : float, optional
        Reader-forced reference diameter measured off the segment, pixels.
    feeding_profile : DiameterProfile, optional
        Profile of the feeding artery (3rd choice; for ICA the extracranial ICA, 2nd).
    force_choice : {"proximal", "distal", "feeding"}, optional
        Reader-chosen reference site: its best window whatever the WASID order would pick.
    mld_near_index : int, optional
        Reader-placed MLD: the minimum is searched only within ``mld_search_diameters``
        reference diameters (at least two blur widths) of this sample.
    smooth_px : float, optional
        Smoothing of the diameters along the vessel, px (default :func:`adaptive_smoothing_px`).
    """
    p = params
    seg = Segment(str(segment))
    arc = profile.arc_px
    step = float(np.median(np.diff(arc))) if arc.size > 1 else 1.0
    valid, warns = _usable(profile)
    mld_ok = _mld_usable(profile, valid)
    area_noise = area_noise_sd_px2(profile, valid)
    if smooth_px is None:
        smooth_px = adaptive_smoothing_px(profile, valid, area_noise_px2=area_noise, params=p)
    d_s = smooth_diameter(profile.diameter_px, mld_ok, sigma_samples=smooth_px / step)  # the MLD's side
    d_ref = smooth_diameter(profile.diameter_px, valid, sigma_samples=smooth_px / step)  # the reference's
    d0 = float(np.quantile(d_ref[valid], 0.9))  # first reference guess: a robust maximum
    along = float(np.sqrt(profile.blur_sigma_px**2 + p.band_var_px2 + smooth_px**2))
    within = None
    if mld_near_index is not None:
        k = int(np.clip(mld_near_index, 0, arc.size - 1))
        within = np.abs(arc - arc[k]) <= max(p.mld_search_diameters * d0, 2.0 * along, 2.0 * step)
    corr = noise_correlation_px(profile, p.band_var_px2)
    bottom, d_s, w = _lesion_bottom(profile, mld_ok, d_s, smooth_px=smooth_px, along=along, within=within,
                                    area_noise=area_noise, corr=corr, d0=d0, params=p)
    i_mld, mld, corr_sd = bottom.index, bottom.mld_px, bottom.correction_sd_px
    warns += w
    if int(profile.flags[i_mld]) & int(QualityFlag.NON_ROUND) and mld > 0:
        warns.append("the lumen at the MLD is not round (its profiles fit only with an iodine amplitude of their own): "
                     "its area-equivalent diameter is read; seen along its narrow axis it is narrower, so measure the "
                     "lesion in another view too")
    sites = _reference_sites(profile, valid, d_s, i_mld, d0, step, p, d_ref=d_ref)
    feed_w = _feeding_window(feeding_profile, smooth_px, step, p)

    if manual_index is not None or manual_reference_px is not None:
        choice = ReferenceChoice.MANUAL
        ref, win, desc, w = _manual_reference(profile, valid, sites, manual_index, manual_reference_px, p)
    elif force_choice is not None:
        choice = ReferenceChoice(str(getattr(force_choice, "value", force_choice)).lower())
        win, desc, w = _forced_site(seg, choice, sites, feed_w)
        ref = feed_w.diameter_px if choice is ReferenceChoice.FEEDING else win.diameter_px
    else:
        choice, win, desc, w = _wasid_order(seg, sites, feed_w, d_ref)
        ref = feed_w.diameter_px if choice is ReferenceChoice.FEEDING else win.diameter_px
    warns += w
    if ref <= 0:
        raise MeasurementError("the reference diameter is zero; place the reference on a normal, opacified part of the artery")
    pct = (1.0 - mld / ref) * 100.0
    lo, hi = lesion_extent(d_s, i_mld, ref, fraction=p.lesion_fraction)
    warns += _open_lesion_warnings(lo, hi, arc.size, mld, p.lesion_fraction)

    interp_ref = interp_pct = None
    w_prox, w_dist = sites.best_proximal, sites.best_distal
    if w_prox is not None and w_dist is not None:
        sp, sd_ = arc[w_prox.centre], arc[w_dist.centre]
        t = (arc[i_mld] - sp) / (sd_ - sp) if sd_ != sp else 0.5
        interp_ref = float(w_prox.diameter_px + np.clip(t, 0, 1) * (w_dist.diameter_px - w_prox.diameter_px))
        interp_pct = (1.0 - mld / interp_ref) * 100.0
    if mld <= 0:
        warns.append("the lumen is not visible at the MLD (occlusion): 100% stenosis")
    ref_len = float(arc[win.i1] - arc[win.i0]) if win is not None else sites.window_n * step
    fit_half = bottom_window_half_px(along)
    m_mld, q_mld = model_sd_px(profile, mld_ok, np.abs(arc - arc[i_mld]) <= fit_half)
    in_ref = np.zeros(arc.size, bool)
    if win is not None:
        in_ref[win.i0 : win.i1 + 1] = True
    m_ref, q_ref = model_sd_px(profile, valid, in_ref)
    # how far a normal sample of this artery departs from its trend beyond noise (the reference
    # window's term; the MLD's is the competing-stretch spread below)
    gap_n = int(round(p.lesion_gap_diameters * d0 / step))
    outside = np.ones(arc.size, bool)
    outside[max(lo - gap_n, 0) : hi + gap_n + 1] = False
    s_along = along_vessel_sd(profile, valid, outside, corr)
    # the MLD is the narrowest of the stretches that could hold it (noise and structure alone)
    # (outside the lesion's core: the contiguous stretch narrower than half its depth)
    c_lo, c_hi = lesion_extent(d_s, i_mld, ref, fraction=0.5 * (1.0 + mld / ref))
    core_out = np.ones(arc.size, bool)
    core_out[c_lo : c_hi + 1] = False
    s_mld_along, n_other = narrowest_spread_px(arc, d_s, valid, core_out, float(mld), corr, within,
                                               reach_sd=p.mld_competing_reach_sd, searched=mld_ok)
    if n_other >= 1.0 and mld > 0:
        k = max(int(round(n_other)), 1)
        warns.append(f"the narrowing is not clearly deeper than the artery's own variation along the vessel "
                     f"(about {k} stretch{'es' if k > 1 else ''} elsewhere could read as narrow): the uncertainty "
                     "includes it; check that the MLD is a real lesion")
    if s_along > p.structure_warn_fraction * ref:
        u, f = ("mm", profile.mm_per_px) if profile.mm_per_px else ("px", 1.0)
        warns.append(f"the diameter of the normal artery varies along it by {s_along * f:.2f} {u} beyond noise "
                     "(anatomy or vessels behind it, image processing): the uncertainty includes it")
    unit, mmpp = ("mm", profile.mm_per_px) if profile.mm_per_px else ("px", 1.0)
    for where, q, m in (("MLD", q_mld, m_mld), ("reference", q_ref, m_ref)):
        if np.isfinite(q) and q >= p.misfit_warn_ratio:
            warns.append(f"the lumen model does not describe the profiles at the {where} (residuals {q:.1f}x the noise): "
                         f"its SD is {q:.1f}x larger and includes the model/edge disagreement ({m * mmpp:.2f} {unit}); "
                         "check the edges")
    sd_mld, sd_ref, sd_pct = measurement_sd(
        profile, mld_ok, mld_px=float(mld), mld_index=i_mld, reference_px=float(ref), reference_length_px=ref_len,
        corr_px=corr, area_noise_px2=area_noise, fit_half_px=bottom.noise_half_px(along), model_mld_px=m_mld,
        model_reference_px=m_ref, misfit_mld=q_mld, misfit_reference=q_ref, along_mld_px=s_mld_along,
        along_reference_px=s_along, correction_mld_px=corr_sd, params=p)
    return WasidMeasurement(
        percent_stenosis=float(pct), mld_px=float(mld), mld_index=i_mld, reference_px=float(ref),
        reference_choice=choice, reference_window=win, reference_description=desc,
        lesion_start_index=lo, lesion_end_index=hi, interpolated_reference_px=interp_ref,
        interpolated_percent_stenosis=interp_pct, proximal_window=w_prox, distal_window=w_dist,
        warnings=tuple(warns), mld_sd_px=sd_mld, reference_sd_px=sd_ref, percent_stenosis_sd=sd_pct,
        feeding_window=feed_w if choice is ReferenceChoice.FEEDING else None,
        model_misfit={"mld": q_mld, "reference": q_ref}, along_vessel_sd_px=s_along)


def at_same_sites(profile: DiameterProfile, graded: WasidMeasurement, params: MeasureParams = DEFAULT_PARAMS) -> WasidMeasurement:
    """The WASID reading of another frame's profile of the same samples at the sites ``graded``
    chose (its lesion and reference window): the frame's MLD within the lesion, its reference by
    the graded one's rule (:func:`~stenosis.wasid.reference.trend_diameter`: the site trend at the
    window, the window's mean, or the graded reference when that is off the segment), and its own
    noise SD. Frame-to-frame differences at fixed sites are the measurement's repeatability."""
    arc = profile.arc_px
    step = float(np.median(np.diff(arc))) if arc.size > 1 else 1.0
    valid, _ = _usable(profile)
    mld_ok = _mld_usable(profile, valid)
    area_noise = area_noise_sd_px2(profile, valid)
    smooth_px = adaptive_smoothing_px(profile, valid, area_noise_px2=area_noise, params=params)
    d_s = smooth_diameter(profile.diameter_px, mld_ok, sigma_samples=smooth_px / step)
    along = float(np.sqrt(profile.blur_sigma_px**2 + params.band_var_px2 + smooth_px**2))
    lo, hi = graded.lesion_start_index, graded.lesion_end_index
    within = (arc >= arc[lo] - 2.0 * along) & (arc <= arc[hi] + 2.0 * along)
    corr = noise_correlation_px(profile, params.band_var_px2)
    bottom = fit_lesion_bottom(arc, d_s, mld_ok, along_sigma_px=along, within=within, noise_sd_px2=area_noise,
                               corr_px=corr, params=params)
    i_mld, mld, corr_sd = bottom.index, bottom.mld_px, bottom.correction_sd_px
    win = graded.reference_window
    ref = graded.reference_px
    if win is not None:  # by the rule the graded frame's reference was read with
        d_ref = smooth_diameter(profile.diameter_px, valid, sigma_samples=smooth_px / step)
        ref = trend_diameter(profile, valid, win, params, diameter_s=d_ref)
    # a reference off the traced segment is the graded frame's for every frame: no noise of its own here
    ref_len = float(arc[win.i1] - arc[win.i0]) if win is not None else float("inf")
    sd_mld, sd_ref, sd_pct = measurement_sd(profile, mld_ok, mld_px=float(mld), mld_index=i_mld, reference_px=float(ref),
                                            reference_length_px=ref_len, corr_px=corr, area_noise_px2=area_noise,
                                            fit_half_px=bottom.noise_half_px(along), correction_mld_px=corr_sd,
                                            params=params)
    pct = (1.0 - mld / ref) * 100.0 if ref > 0 else float("nan")
    return replace(graded, percent_stenosis=float(pct), mld_px=float(mld), mld_index=i_mld, reference_px=float(ref),
                   warnings=(), mld_sd_px=sd_mld, reference_sd_px=sd_ref, percent_stenosis_sd=sd_pct)


def start_sensitivity_warning(profile: DiameterProfile, graded: WasidMeasurement, segment,
                              params: MeasureParams = DEFAULT_PARAMS, **wasid_kw) -> str | None:
    """A warning when the percent stenosis depends on where the trace starts, else None.

    The same profile is graded again with its first ``start_check_px`` cut off (the reader's
    proximal point placed that much further along the artery). When the percent stenosis moves
    by more than its SD, the reference (or the lesion) came from the trace's first pixels, and a
    reader placing the point a little differently would read another value: the result says so.
    Not for a reference measured off the traced segment (a reader's or the feeding artery's).
    ``wasid_kw``: the reader's inputs :func:`wasid` was called with.
    """
    if graded.reference_choice in (ReferenceChoice.MANUAL, ReferenceChoice.FEEDING) or len(profile) < 4:
        return None
    if wasid_kw.get("manual_index") is not None or wasid_kw.get("mld_near_index") is not None:
        return None  # a reader's reference or MLD on the profile: the reader chose, nothing to test
    n = len(profile)
    arc = profile.arc_px
    k = int(np.searchsorted(arc, arc[0] + params.start_check_px))
    if k <= 0 or n - k < max(20, n // 3):
        return None
    per_sample = {f.name: getattr(profile, f.name) for f in fields(profile)}
    cut = {name: v[k:] for name, v in per_sample.items() if isinstance(v, np.ndarray) and v.shape[:1] == (n,)}
    try:
        other = wasid(replace(profile, **cut), segment, params=params, **wasid_kw)
    except StenosisError:
        return None
    moved = other.percent_stenosis - graded.percent_stenosis
    if not abs(moved) > graded.percent_stenosis_sd:
        return None
    return (f"the percent stenosis depends on where the trace starts: starting it {params.start_check_px:g} px "
            f"further along reads {other.percent_stenosis:.1f}% ({moved:+.1f} points, more than its SD); "
            "place the proximal point on a longer normal stretch before the lesion, or set the reference")
