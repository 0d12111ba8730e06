"""Drawing the diameter profile of a result on a matplotlib Axes (no Qt).

Shared by the dock's canvas and the PNG export so that both show the same plot.
Only presentation: every value comes from :class:`stenosis.StenosisResult`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ProfileSeries", "profile_series", "draw_profile"]

#: colours shared by the plot and the viewer overlays
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
    valid = np.asarray(getattr(prof, "valid", np.ones(len(prof.arc_px), bool)), dtype=bool)
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
    """Draw the diameter profile of ``result`` on ``ax`` (cleared first).

    Diameter against arc length, flagged samples greyed, the MLD marked, the
    reference diameter as a line with its window shaded, the lesion shaded.
    """
    ax.clear()
    if result is None:
        ax.text(0.5, 0.5, "no measurement yet", ha="center", va="center", transform=ax.transAxes, color="0.5")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    s = profile_series(result)
    ax.plot(s.x, s.y, color="0.55", lw=1.0, label="diameter (all samples)")
    y_valid = np.where(s.valid, s.y, np.nan)
    ax.plot(s.x, y_valid, color="#1f5fbf", lw=1.8, label="diameter (used)")
    if s.lesion_span is not None:
        ax.axvspan(*s.lesion_span, color=COLOURS["mld"], alpha=0.10, lw=0, label="lesion")
    if s.ref_span is not None:
        ax.axvspan(*s.ref_span, color=COLOURS["reference"], alpha=0.25, lw=0)
    ax.axhline(s.ref_y, color="#1a9c3a", ls="--", lw=1.2, label=f"{s.ref_label} {s.ref_y:.2f} {s.unit}")
    ax.plot([s.mld_x], [s.mld_y], "o", color=COLOURS["mld"], ms=7, label=f"MLD {s.mld_y:.2f} {s.unit}")
    if np.isfinite(s.mld_sd) and s.mld_sd > 0:
        ax.errorbar([s.mld_x], [s.mld_y], yerr=[2 * s.mld_sd], fmt="none", ecolor=COLOURS["mld"], capsize=3, lw=1)
    ax.set_xlabel(f"distance from proximal point ({s.unit})")
    ax.set_ylabel(f"lumen diameter ({s.unit})")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    flag = ">= 50%" if result.meets_50 else "< 50%"
    psd = float(getattr(result, "percent_stenosis_sd", float("nan")))
    pm = f" \u00b1 {psd:.1f}" if np.isfinite(psd) else ""
    ax.set_title(title or f"{result.segment}: {result.percent_stenosis:.1f}%{pm} stenosis ({flag})", fontsize=10)
