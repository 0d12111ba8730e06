"""Drawing a result on matplotlib Axes (no Qt): the diameter profile and the per-frame curve.

The profile plot is :func:`stenosis.report.plot_diameter_profile`, the same as the PNG
report's; flagged samples are :func:`stenosis.report.flagged_samples` (one definition).
The per-frame plot is :func:`stenosis.report.draw_frames` (data: :func:`stenosis.report.frame_series`),
the same as the PNG report's: each combined frame's own percent stenosis with its 1-SD bar, the
combined value, the frame-to-frame SD. Only presentation: every value comes from
:class:`stenosis.StenosisResult`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from stenosis.report import FrameSeries, draw_frames, frame_series
from stenosis.result import CONFIRM_MARK

__all__ = ["ProfileSeries", "profile_series", "draw_profile", "FrameSeries", "frame_series", "draw_frames", "FRAMES_HELP"]

#: colours of the viewer overlays (the plots use the report's: :mod:`stenosis.report`)
COLOURS = {
    "centerline": "#ffd400",  # yellow
    "edges": "#00e5ff",  # cyan
    "mld": "#ff3030",  # red
    "reference": "#30ff60",  # green
    "proximal": "#ff8c00",
    "distal": "#ff00ff",
    "catheter": "#ffffff",
    "waypoint": "#b388ff",  # light violet
}


@dataclass(frozen=True)
class ProfileSeries:
    """What the profile plot shows, in mm when the run is calibrated, else pixels.

    Attributes
    ----------
    x, y : (N,) float
        Arc length from the proximal end and lumen diameter.
    valid : (N,) bool
        Samples without a quality flag that excludes them.
    unit : {"mm", "px"}
    mld_x, mld_y : float
        Position and diameter of the minimal lumen diameter (D_stenosis).
    ref_y : float
        Reference diameter D_normal.
    ref_span : (float, float) or None
        Arc interval of the reference window on the traced segment (None when it is off
        the segment, e.g. a feeding-artery or manual reference).
    lesion_span : (float, float) or None
    ref_label : str
        "reference (proximal)", ...
    mld_sd : float
        1-SD uncertainty of the MLD (NaN when the result has none).
    """

    x: np.ndarray
    y: np.ndarray
    valid: np.ndarray
    unit: str
    mld_x: float
    mld_y: float
    ref_y: float
    ref_span: tuple[float, float] | None
    lesion_span: tuple[float, float] | None
    ref_label: str
    mld_sd: float = float("nan")


def _finite_span(a: Any, b: Any, k: float) -> tuple[float, float] | None:
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return None
    if not (np.isfinite(a) and np.isfinite(b)):
        return None
    return (min(a, b) * k, max(a, b) * k)


def profile_series(result: Any) -> ProfileSeries:
    """Plot data of ``result`` (a :class:`stenosis.StenosisResult`)."""
    prof = result.profile
    mm = result.mm_per_px
    k = 1.0 if mm is None else float(mm)
    unit = "px" if mm is None else "mm"
    from stenosis.report import flagged_samples

    valid = ~flagged_samples(prof)
    win = result.reference_window
    return ProfileSeries(
        x=np.asarray(prof.arc_px, float) * k,
        y=np.asarray(prof.diameter_px, float) * k,
        valid=valid,
        unit=unit,
        mld_x=float(result.mld_arc_px) * k,
        mld_y=float(result.mld_px) * k,
        ref_y=float(result.reference_diameter_px) * k,
        ref_span=_finite_span(win.start_px, win.end_px, k),
        lesion_span=_finite_span(result.lesion_start_px, result.lesion_end_px, k),
        ref_label=f"reference ({result.reference_choice})",
        mld_sd=float(getattr(result, "mld_sd_px", float("nan"))) * k,
    )


def draw_profile(ax: Any, result: Any | None, *, title: str | None = None) -> None:
    """Draw the diameter profile of ``result`` on ``ax`` (cleared first): the report's plot
    (:func:`stenosis.report.plot_diameter_profile`) in its compact form, with the grade as title."""
    from stenosis.report import plot_diameter_profile

    plot_diameter_profile(ax, result, compact=True)
    if result is None:
        return
    flag = (">= 50%" if result.meets_50 else "< 50%") + (f"; {CONFIRM_MARK}" if result.needs_confirmation else "")
    psd = float(getattr(result, "percent_stenosis_sd", float("nan")))
    pm = f" \u00b1 {psd:.1f}" if np.isfinite(psd) else ""
    ax.set_title(title or f"{result.segment}: {result.percent_stenosis:.1f}%{pm} stenosis ({flag})", fontsize=10)


#: what the per-frame plot's marks mean (the dock's tooltip)
FRAMES_HELP = ("Percent stenosis of each frame combined, with its 1-SD bar; red: the analysed frame; "
               "blue line: the combined value (the result); orange x: frames you dropped; "
               "grey bar: frames stenosis rejected (the list says why)")
