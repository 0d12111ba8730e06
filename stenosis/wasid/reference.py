"""WASID reference windows: normal, parallel-margined, non-tortuous segments of the artery.

A window is *normal* when at most ``normal_max_flagged`` of its samples are flagged
(branch origin, overlap, poor fit; they are left out of its diameter) and it lies
outside the lesion; *parallel-margined* when its diameter changes by less than
``parallel_slope`` over the window and varies by less than ``parallel_sd`` (SD) about
that trend; *non-tortuous* when the centerline turns by less than ``tortuous_deg`` over
it. Windows are ``window_diameters`` reference diameters long. WASID states these
criteria in words; the thresholds are the tool's reading of them (see docs/tuning.md).

A window's diameter is the value of its site's diameter *trend* at the window's centre: a
robust straight line through the usable samples spanned by the site's normal windows
(:func:`site_trend`). "The widest window" is then the widest part of the artery's taper,
not the window whose own noise (or the anatomy behind it) happened to widen it most: the
maximum of many short noisy window means is biased wide (on real backgrounds by about half
the artery's along-vessel variation, which gave normal arteries ~10 points of false
stenosis; docs/tuning.md). The window's own mean still decides whether its margins are parallel.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..params import DEFAULT_PARAMS, MeasureParams
from ..result import DiameterProfile

__all__ = ["Window", "turning_angle_deg", "candidate_windows", "is_normal", "diseased", "best_window", "site_trend",
           "trend_diameter"]


@dataclass(frozen=True)
class Window:
    """A reference window of a diameter profile (sample indices i0..i1 inclusive)."""

    i0: int
    i1: int
    diameter_px: float
    parallel: bool
    non_tortuous: bool
    normal: bool
    site: tuple[int, int] | None = None  # samples the site trend was fitted over (None: the window's own mean)
    widest_smoothed: bool = False  # the relaxed last resort: the largest smoothed diameter of the window

    @property
    def centre(self) -> int:
        return (self.i0 + self.i1) // 2


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
    params: MeasureParams = DEFAULT_PARAMS,
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
        normal = is_normal(ok, params)
        s = np.arange(seg.size)
        mean = float(np.mean(seg[ok])) if ok.any() else float(np.mean(d[i0 : i1 + 1]))
        if ok.sum() >= 3 and mean > 0:
            coef = np.polyfit(s[ok], seg[ok], 1)
            change = abs(coef[0]) * (seg.size - 1) / mean
            sd = float(np.std(seg[ok] - np.polyval(coef, s[ok]))) / mean
            parallel = change <= params.parallel_slope and sd <= params.parallel_sd
        else:
            parallel = False
        nt = turning_angle_deg(profile.centerline_rc, i0, i1) <= params.tortuous_deg
        out.append(Window(i0, i1, mean, parallel, nt, normal))
    return _on_site_trend(profile, out, params)


def site_trend(profile: DiameterProfile, valid: np.ndarray, i0: int, i1: int,
               params: MeasureParams = DEFAULT_PARAMS) -> np.ndarray | None:
    """Robust straight line (slope, intercept; diameter px against arc px) through the ``valid``
    samples i0..i1, refitted twice without samples beyond ``reference_trend_mads`` robust SDs
    (a branch origin, a crossing); None with fewer than 5 samples."""
    sel = np.zeros(profile.arc_px.size, bool)
    sel[max(i0, 0) : i1 + 1] = True
    sel &= np.asarray(valid, bool)
    if sel.sum() < 5:
        return None
    a, y = profile.arc_px[sel], profile.diameter_px[sel]
    coef = np.polyfit(a, y, 1)
    for _ in range(2):
        r = y - np.polyval(coef, a)
        mad = 1.4826 * float(np.median(np.abs(r - np.median(r)))) + 1e-9
        keep = np.abs(r) <= params.reference_trend_mads * mad
        if keep.sum() < 5:
            break
        coef = np.polyfit(a[keep], y[keep], 1)
    return coef


def trend_diameter(profile: DiameterProfile, valid: np.ndarray, window: Window,
                   params: MeasureParams = DEFAULT_PARAMS, diameter_s: np.ndarray | None = None) -> float:
    """``window``'s diameter on ``profile`` by the rule it was chosen with: the site trend at its
    centre when it has a site, the largest of ``diameter_s`` (smoothed) over it for the relaxed
    last resort, else the mean of its usable samples."""
    if window.widest_smoothed and diameter_s is not None:
        return float(np.max(diameter_s[window.i0 : window.i1 + 1]))
    if window.site is not None:
        coef = site_trend(profile, valid, *window.site, params=params)
        if coef is not None:
            return float(np.polyval(coef, profile.arc_px[window.centre]))
    ok = valid[window.i0 : window.i1 + 1]
    seg = profile.diameter_px[window.i0 : window.i1 + 1]
    return float(np.mean(seg[ok])) if ok.any() else float(np.mean(seg))


def _on_site_trend(profile: DiameterProfile, windows: list[Window], params: MeasureParams) -> list[Window]:
    """The windows with their diameter read off the trend of the site's normal windows."""
    normal = [w for w in windows if w.normal]
    if not normal:
        return windows
    site = (min(w.i0 for w in normal), max(w.i1 for w in normal))
    coef = site_trend(profile, profile.valid, *site, params=params)
    if coef is None:
        return windows
    return [replace(w, diameter_px=float(np.polyval(coef, profile.arc_px[w.centre])), site=site) for w in windows]


def is_normal(ok: np.ndarray, params: MeasureParams = DEFAULT_PARAMS) -> bool:
    """Whether a window whose valid samples are ``ok`` counts as normal (few enough flagged)."""
    return bool(ok.size and (ok.size - int(ok.sum())) <= params.normal_max_flagged * ok.size)


def diseased(d_s: np.ndarray, valid: np.ndarray, i0: int, i1: int, best: Window | None,
             params: MeasureParams = DEFAULT_PARAMS) -> bool:
    """Whether samples i0..i1 hold a narrowing below ``diseased_fraction`` of the best window."""
    if best is None or i1 - i0 < 2:
        return False
    seg = d_s[max(i0, 0) : i1 + 1][valid[max(i0, 0) : i1 + 1]]
    return bool(seg.size and seg.min() < params.diseased_fraction * best.diameter_px)


def best_window(windows: list[Window], *, strict: bool, most_distal: bool = False) -> Window | None:
    """The widest (or most distal) window: normal, parallel and non-tortuous when ``strict``, else normal, else any."""
    if strict:
        ws = [w for w in windows if w.normal and w.parallel and w.non_tortuous]
    else:
        ws = [w for w in windows if w.normal] or list(windows)
    if not ws:
        return None
    if most_distal:
        return max(ws, key=lambda w: w.i1)
    return max(ws, key=lambda w: w.diameter_px)
