"""Drawing a result on matplotlib Axes (no Qt): the diameter profile and the per-frame curve.

The profile plot is :func:`stenosis.report.plot_diameter_profile`, the same as the PNG
report's; flagged samples are :func:`stenosis.report.flagged_samples` (one definition).
The per-frame plot (:func:`draw_frames`) shows ``result.frames``: each combined frame's own
percent stenosis with its 1-SD bar, the combined value, the frame-to-frame SD. Only
presentation: every value comes from :class:`stenosis.StenosisResult`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ProfileSeries", "profile_series", "draw_profile", "FrameSeries", "frame_series", "draw_frames", "FRAMES_HELP"]

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
    flag = ">= 50%" if result.meets_50 else "< 50%"
    psd = float(getattr(result, "percent_stenosis_sd", float("nan")))
    pm = f" \u00b1 {psd:.1f}" if np.isfinite(psd) else ""
    ax.set_title(title or f"{result.segment}: {result.percent_stenosis:.1f}%{pm} stenosis ({flag})", fontsize=10)


@dataclass(frozen=True)
class FrameSeries:
    """What the per-frame plot shows (from ``result.frames``).

    Attributes
    ----------
    frames, percent, sd : (N,) arrays
        The frames combined, each one's own percent stenosis and its 1-SD (NaN when unknown).
    analysed : int
        The analysed frame.
    combined : float
        The result's percent stenosis (the frames combined).
    frame_to_frame_sd : float
        SD of the per-frame values (NaN when stenosis gives none, e.g. two frames).
    dropped, rejected : tuple of int
        Frames the reader dropped; frames stenosis rejected.
    """

    frames: np.ndarray
    percent: np.ndarray
    sd: np.ndarray
    analysed: int
    combined: float
    frame_to_frame_sd: float
    dropped: tuple[int, ...] = ()
    rejected: tuple[int, ...] = ()


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def frame_series(result: Any) -> FrameSeries:
    """Plot data of ``result.frames`` (the analysed frame alone when it has no per-frame record)."""
    fr = getattr(result, "frames", None) or {}
    per = list(fr.get("per_frame") or [])
    if not per:
        per = [{"frame": int(result.frame_index), "percent_stenosis": result.percent_stenosis,
                "percent_stenosis_sd": getattr(result, "percent_stenosis_sd", None)}]
    return FrameSeries(
        frames=np.array([int(p["frame"]) for p in per]),
        percent=np.array([_num(p.get("percent_stenosis")) for p in per]),
        sd=np.array([_num(p.get("percent_stenosis_sd")) for p in per]),
        analysed=int(result.frame_index),
        combined=float(result.percent_stenosis),
        frame_to_frame_sd=_num(fr.get("frame_to_frame_sd")),
        dropped=tuple(int(t) for t in fr.get("excluded") or []),
        rejected=tuple(int(r["frame"]) for r in fr.get("rejected") or []),
    )


def draw_frames(ax: Any, result: Any | None) -> None:
    """Percent stenosis per frame (1-SD bars; the analysed frame red), the combined value as
    a line (labelled beside the axes), dropped (orange x) and rejected (grey bar) frames marked on the frame
    axis; the frame-to-frame SD in the title. No legend: the dock is small (the markers are
    explained in :data:`FRAMES_HELP`). ``ax`` is cleared first."""
    from stenosis.report import clear_for

    if clear_for(ax, result):
        return
    s = frame_series(result)
    sd = np.where(np.isfinite(s.sd), s.sd, 0.0)
    ax.axhline(s.combined, color="#1f4e9c", lw=1.2, zorder=1)
    ax.errorbar(s.frames, s.percent, yerr=sd, fmt="o", ms=4, color="#444444", mfc="white", ecolor="0.45",
                capsize=3, lw=1, zorder=3)
    a = s.frames == s.analysed
    ax.plot(s.frames[a], s.percent[a], "o", ms=5, color=COLOURS["mld"], zorder=4)
    marks = [(t, "x", "#ff8c00") for t in s.dropped] + [(t, "|", "0.55") for t in s.rejected]
    for t, marker, colour in marks:  # on the frame axis: they have no value
        ax.plot([t], [0.06], marker, ms=7, mew=1.6, color=colour, transform=ax.get_xaxis_transform(),
                clip_on=False, zorder=5)
    ticks = sorted({*s.frames.tolist(), *s.dropped, *s.rejected})
    ax.set_xticks(ticks)
    colour_of = {**{t: "#ff8c00" for t in s.dropped}, **{t: "0.55" for t in s.rejected}, s.analysed: COLOURS["mld"]}
    for t, label in zip(ticks, ax.get_xticklabels()):
        label.set_color(colour_of.get(t, "black"))
    ax.set_xlim(ticks[0] - 0.7, ticks[-1] + 0.7)
    lo = float(np.nanmin(np.r_[s.percent - sd, s.combined]))
    hi = float(np.nanmax(np.r_[s.percent + sd, s.combined]))
    pad = max(1.0, 0.25 * (hi - lo))
    ax.set_ylim(lo - pad * (2.0 if marks else 1.0), hi + pad)
    # the combined value beside the axes, at its line's height: never over a frame's point
    ax.annotate(f"{s.combined:.1f} %\ncombined", (1.0, s.combined), xycoords=ax.get_yaxis_transform(),
                xytext=(3, 0), textcoords="offset points", ha="left", va="center", fontsize=7, color="#1f4e9c")
    ax.set_xlabel("frame", fontsize=8, labelpad=1)
    ax.set_ylabel("% stenosis", fontsize=8)
    ax.tick_params(labelsize=7, pad=2)
    ax.grid(True, axis="y", color="0.9", lw=0.6)
    ftf = f"{s.frame_to_frame_sd:.1f} points" if np.isfinite(s.frame_to_frame_sd) else (
        "n/a (< 3 frames)" if len(s.frames) < 3 else "n/a")
    ax.set_title(f"frame-to-frame SD {ftf}", fontsize=9)


#: what the per-frame plot's marks mean (the dock's tooltip)
FRAMES_HELP = ("Percent stenosis of each frame combined, with its 1-SD bar; red: the analysed frame; "
               "blue line: the combined value (the result); orange x: frames you dropped; "
               "grey bar: frames stenosis rejected (the list says why)")
