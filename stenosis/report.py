"""PNG report of one measurement: the frame around the segment and the diameter plot.

Left: the analysed (opacified) frame cropped around the traced segment, with the
centerline, both lumen edges, the lesion, the MLD and the reference window.
Right: diameter against distance along the centerline, with the reference window,
the MLD, the lesion and the 50% line (diameter = 0.5 x reference). Under it, when the
result combined two or more frames: each frame's own percent stenosis (:func:`draw_frames`).
The title gives percent stenosis, the >= 50% decision, the reference choice and the calibration.
matplotlib (Agg backend) is imported only when a report is drawn.

:func:`plot_diameter_profile` draws the diameter plot; the napari plugin's profile plot
is the same function, and :func:`flagged_samples` is the one definition of a flagged
sample (a :class:`~stenosis.result.QualityFlag` that keeps it from being a reference).
:func:`draw_frames` (data: :func:`frame_series`) is the per-frame plot of both.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .result import CONFIRM_CALL, QualityFlag, StenosisResult

__all__ = ["save_report", "report_figure", "plot_diameter_profile", "clear_for", "flagged_samples", "edge_disagreement",
           "FrameSeries", "frame_series", "draw_frames", "AUTO_POINTS_TEXT"]

#: what a report of automatically placed points says
AUTO_POINTS_TEXT = "points placed automatically \u2014 a reader must confirm"
#: flags that keep a sample from being a reference (the complement of DiameterProfile.valid)
FLAGGED = QualityFlag.unusable()


def flagged_samples(profile: Any) -> np.ndarray:
    """(N,) bool: samples carrying a :data:`FLAGGED` quality flag (never a reference; the
    MLD may still come from them, so plots show them)."""
    return (np.asarray(profile.flags, dtype=np.int64) & int(FLAGGED)) != 0


def _flag_names(profile: Any, flagged: np.ndarray) -> str:
    named = int(FLAGGED | QualityFlag.NON_ROUND)  # non_round says why a poor fit was still read
    bits = int(np.bitwise_or.reduce(np.asarray(profile.flags, np.int64)[flagged] & named)) if flagged.any() else 0
    return ", ".join(QualityFlag.describe(bits)) or "none"


def edge_disagreement(profile: Any) -> np.ndarray:
    """(N,) bool: samples where the max-gradient edge diameter disagrees with the model fit
    by more than its noise.

    Max-gradient edges of a blurred cylinder sit inside the lumen, so the edge diameter is
    compared with the fit scaled by their median ratio over unflagged samples; the noise is
    the robust SD (MAD) of that difference over unflagged samples; disagreement: beyond 3 SD.
    """
    fit = np.asarray(profile.diameter_px, float)
    edge = np.asarray(profile.edge_diameter_px, float)
    ok = np.isfinite(fit) & np.isfinite(edge) & (fit > 0) & ~flagged_samples(profile)
    out = np.zeros(fit.shape, bool)
    if ok.sum() < 5:
        return out
    ratio = float(np.median(edge[ok] / fit[ok]))
    diff = edge - ratio * fit
    noise = 1.4826 * float(np.median(np.abs(diff[ok] - np.median(diff[ok]))))
    noise = max(noise, 1e-3 * float(np.median(fit[ok])))
    out[np.isfinite(diff)] = np.abs(diff[np.isfinite(diff)]) > 3.0 * noise
    return out


def clear_for(ax, result) -> bool:
    """Clear ``ax`` for a plot of ``result``; with no result, write "no measurement yet" in it
    and return True (nothing more to draw)."""
    ax.clear()
    if result is not None:
        return False
    ax.text(0.5, 0.5, "no measurement yet", ha="center", va="center", transform=ax.transAxes, color="0.5")
    ax.set_xticks([])
    ax.set_yticks([])
    return True


def plot_diameter_profile(ax: Any, result: StenosisResult | None, *, legend: bool = True, compact: bool = False,
                          title: str | None = None) -> None:
    """Draw the diameter profile of ``result`` on a matplotlib Axes (cleared first).

    The model-fit diameter (the measurement) along the centerline; flagged samples
    (:func:`flagged_samples`: never a reference, the MLD may come from them) as orange
    crosses on the curve; max-gradient edges only where they disagree with the fit
    beyond their noise (:func:`edge_disagreement`); the reference diameter and its
    window, the 50% line, the lesion, and the MLD with its 2-SD bar, joined to the
    curve (the MLD is the fitted lesion bottom, blur-corrected, so it may lie below the
    sampled curve). Used by the PNG report and the napari plugin.
    """
    if clear_for(ax, result):
        return
    prof = result.profile
    mm = result.mm_per_px
    unit = "mm" if mm else "px"
    k = float(mm) if mm else 1.0
    arc = np.asarray(prof.arc_px, float) * k
    diam = np.asarray(prof.diameter_px, float) * k
    bad = flagged_samples(prof)
    short = compact  # the napari dock is narrow: shorter legend entries
    ax.plot(arc, diam, color="#1f4e9c", lw=1.5, zorder=3,
            label="model fit (the measurement)" if short else "diameter: model fit (the measurement)")
    if bad.any():
        ax.plot(arc[bad], diam[bad], "x", color="#ff8c00", ms=4 if compact else 5, mew=1.2, zorder=4,
                label=f"flagged ({_flag_names(prof, bad)})" if short else f"flagged ({_flag_names(prof, bad)}): never a reference")
    dis = edge_disagreement(prof)
    if dis.any():
        edge = np.where(dis, np.asarray(prof.edge_diameter_px, float) * k, np.nan)
        ax.plot(arc, edge, ".", color="#7f7f7f", ms=3, zorder=2,
                label="edges disagree (check)" if short else "max-gradient edges where they disagree with the fit (a check)")
    rw = result.reference_window
    ref = result.reference_diameter_px * k
    if np.isfinite(rw.start_px):
        ax.axvspan(rw.start_px * k, rw.end_px * k, color="#2ee86a", alpha=0.2, lw=0,
                   label="ref. window" if short else f"reference window ({rw.choice})")
    ax.axhline(ref, color="#1fb555", lw=1.0, ls="--",
               label=f"reference {ref:.2f} {unit}" if short else f"reference ({result.reference_choice}) {ref:.2f} {unit}")
    ax.axhline(0.5 * ref, color="#d62728", lw=1.0, ls=":", label="50% line" if short else "50% stenosis line")
    if result.lesion_end_px > result.lesion_start_px:
        ax.axvspan(result.lesion_start_px * k, result.lesion_end_px * k, color="#ff3b3b", alpha=0.10, lw=0,
                   label="lesion" if short else "lesion (< 0.9 x reference)")
    x_m, mld = result.mld_arc_px * k, result.mld_px * k
    i_m = int(np.argmin(np.abs(arc - x_m))) if arc.size else 0
    on_curve = diam[i_m] if arc.size else mld
    if np.isfinite(on_curve) and abs(on_curve - mld) > 1e-9:
        ax.plot([x_m, x_m], [on_curve, mld], color="#d62728", lw=1.0, zorder=4)
    below = np.isfinite(on_curve) and mld < on_curve - 0.01 * max(ref, 1e-9)
    ax.plot([x_m], [mld], "v", color="#d62728", ms=8 if compact else 9, zorder=5,
            label=f"MLD {mld:.2f} {unit}" + (" (fitted bottom, blur-corrected)" if below and not short else ""))
    if np.isfinite(result.mld_sd_px) and result.mld_sd_px > 0:
        ax.errorbar([x_m], [mld], yerr=[2 * result.mld_sd_px * k], fmt="none", ecolor="#d62728", elinewidth=1.2,
                    capsize=4, label="\u00b12 SD" if short else "MLD \u00b12 SD", zorder=5)
    if result.interpolated_reference_px is not None and not compact:
        ax.plot([x_m], [result.interpolated_reference_px * k], "o", mfc="none", color="#1fb555", ms=7,
                label="interpolated reference (Annex T)")
    finite = diam[np.isfinite(diam)]
    # headroom above the curve for the legend, so it never covers the data
    top = max(float(finite.max()) if finite.size else 1.0, ref) * (1.75 if legend else 1.18)
    ax.set_ylim(0, top)
    if arc.size:
        ax.set_xlim(arc[0], arc[-1])
    ax.set_xlabel(f"distance along centerline from proximal point ({unit})", fontsize=8 if compact else 10)
    ax.set_ylabel(f"lumen diameter ({unit})", fontsize=8 if compact else 10)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(loc="upper left", fontsize=6 if compact else 7.5, ncol=2, framealpha=0.9,
                  columnspacing=0.8, handlelength=1.6)
    if title is not None:
        ax.set_title(title, fontsize=10)


@dataclass(frozen=True)
class FrameSeries:
    """What the per-frame plot shows (from ``result.frames``).

    Plot data only; the frames' measurement is :class:`stenosis.measurement.FrameSeries`.

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


def frame_series(result: StenosisResult) -> FrameSeries:
    """Plot data of ``result.frames``.

    Parameters
    ----------
    result : StenosisResult

    Returns
    -------
    FrameSeries
        The frames combined; the analysed frame alone when the result has no per-frame record.
    """
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


#: the per-frame plot's colours: the report's MLD red, flagged orange and curve blue
_ANALYSED, _DROPPED, _REJECTED, _COMBINED = "#d62728", "#ff8c00", "0.55", "#1f4e9c"


def draw_frames(ax: Any, result: StenosisResult | None) -> None:
    """Draw the percent stenosis of each frame combined on a matplotlib Axes (cleared first).

    Each frame's own value with its 1-SD bar (the analysed frame red), the combined value
    (the result) as a blue line labelled beside the axes, frames the reader dropped (orange x)
    and frames stenosis rejected (grey bar) marked on the frame axis, the frame-to-frame SD
    in the title (``"frame-to-frame SD 0.8 points"``). No legend: it is drawn small (the
    napari dock, the PNG report). Used by the PNG report and the napari plugin.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    result : StenosisResult or None
        None writes "no measurement yet".
    """
    if clear_for(ax, result):
        return
    s = frame_series(result)
    sd = np.where(np.isfinite(s.sd), s.sd, 0.0)
    ax.axhline(s.combined, color=_COMBINED, lw=1.2, zorder=1)
    ax.errorbar(s.frames, s.percent, yerr=sd, fmt="o", ms=4, color="#444444", mfc="white", ecolor="0.45",
                capsize=3, lw=1, zorder=3)
    a = s.frames == s.analysed
    ax.plot(s.frames[a], s.percent[a], "o", ms=5, color=_ANALYSED, zorder=4)
    marks = [(t, "x", _DROPPED) for t in s.dropped] + [(t, "|", _REJECTED) for t in s.rejected]
    for t, marker, colour in marks:  # on the frame axis: they have no value
        ax.plot([t], [0.06], marker, ms=7, mew=1.6, color=colour, transform=ax.get_xaxis_transform(),
                clip_on=False, zorder=5)
    ticks = sorted({*s.frames.tolist(), *s.dropped, *s.rejected})
    ax.set_xticks(ticks)
    colour_of = {**{t: _DROPPED for t in s.dropped}, **{t: _REJECTED for t in s.rejected}, s.analysed: _ANALYSED}
    for t, label in zip(ticks, ax.get_xticklabels()):
        label.set_color(colour_of.get(t, "black"))
    ax.set_xlim(ticks[0] - 0.7, ticks[-1] + 0.7)
    lo = float(np.nanmin(np.r_[s.percent - sd, s.combined]))
    hi = float(np.nanmax(np.r_[s.percent + sd, s.combined]))
    pad = max(1.0, 0.25 * (hi - lo))
    ax.set_ylim(lo - pad * (2.0 if marks else 1.0), hi + pad)
    # the combined value beside the axes, at its line's height: never over a frame's point
    ax.annotate(f"{s.combined:.1f} %\ncombined", (1.0, s.combined), xycoords=ax.get_yaxis_transform(),
                xytext=(3, 0), textcoords="offset points", ha="left", va="center", fontsize=7, color=_COMBINED)
    ax.set_xlabel("frame", fontsize=8, labelpad=1)
    ax.set_ylabel("% stenosis", fontsize=8)
    ax.tick_params(labelsize=7, pad=2)
    ax.grid(True, axis="y", color="0.9", lw=0.6)
    ftf = f"{s.frame_to_frame_sd:.1f} points" if np.isfinite(s.frame_to_frame_sd) else (
        "n/a (< 3 frames)" if len(s.frames) < 3 else "n/a")
    ax.set_title(f"frame-to-frame SD {ftf}", fontsize=9)


def _label(ax: Any, text: str, point: Any, normal: Any, half_width: float, colour: str, crop: tuple) -> None:
    """A boxed label beside a point, off the vessel (along its normal), inside the crop."""
    r0, r1, c0, c1 = crop
    p = np.asarray(point, float)
    n = np.asarray(normal, float)
    n = n / max(float(np.hypot(*n)), 1e-9)
    dist = half_width + max(10.0, 0.08 * max(r1 - r0, c1 - c0))
    best = None
    for sgn in (1.0, -1.0):
        q = p + sgn * dist * n
        inside = r0 + 5 <= q[0] <= r1 - 5 and c0 + 5 <= q[1] <= c1 - 5
        if inside or best is None:
            best = q
        if inside:
            break
    ax.annotate(text, (p[1], p[0]), xytext=(best[1], best[0]), textcoords="data", color=colour, fontsize=9,
                weight="bold", ha="center", va="center", zorder=6,
                bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=colour, lw=0.8, alpha=0.9),
                arrowprops=dict(arrowstyle="-", color=colour, lw=1))


def _frames_key(s: FrameSeries) -> str:
    """What the per-frame panel's marks mean (its key, in the frame axis label)."""
    key = ["each frame's % stenosis \u00b11 SD, red: the analysed frame", "line: combined"]
    if s.dropped:
        key.append("orange x: dropped by the reader")
    if s.rejected:
        key.append("grey bar: rejected")
    return "; ".join(key)


#: the report's per-frame panel (inches): its height with the gap above it (the diameter plot's
#: axis label and the panel's title), the gap, the room for a second line of its key below
_FRAMES_PANEL_IN, _FRAMES_GAP_IN, _FRAMES_KEY_IN = 2.3, 0.75, 0.15


def report_figure(result: StenosisResult, image: np.ndarray | None = None, *, auto_confidence: float | None = None,
                  auto_points: bool = False):
    """A matplotlib Figure of the report (Agg canvas); `auto_confidence`, `auto_points`: see :func:`save_report`."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if image is not None and hasattr(image, "frames"):  # an AngioRun: use the analysed frame
        image = result.image if result.image is not None else np.asarray(image.frames[result.frame_index], float) * -1.0
    img = image if image is not None else result.image
    prof = result.profile
    mm = result.mm_per_px

    # warnings footer: wrapped to the figure width, the plots moved up to make room
    warn_lines: list[str] = []
    if result.warnings:
        # the call a reader must confirm first: the footer is cut after 8 lines
        for i, w in enumerate(sorted(result.warnings, key=lambda w: CONFIRM_CALL not in w)):
            warn_lines += textwrap.wrap(("warnings: " if i == 0 else "") + "\u2022 " + w, width=200,
                                        subsequent_indent="    ")
        if len(warn_lines) > 8:
            warn_lines = warn_lines[:7] + [f"    ... ({len(result.warnings)} warnings in all: see the JSON)"]
    # several frames combined: a per-frame panel under the diameter plot, the figure taller by it
    per_frame = len((getattr(result, "frames", None) or {}).get("used") or []) >= 2
    extra, key = (_FRAMES_PANEL_IN, _FRAMES_KEY_IN) if per_frame else (0.0, 0.0)
    height = 5.6 + extra + key + 0.13 * len(warn_lines)
    fig = Figure(figsize=(12.5, height), dpi=110)
    FigureCanvasAgg(fig)
    foot = (0.11 * 5.6 + key + 0.13 * len(warn_lines)) / height
    auto = auto_points or auto_confidence is not None
    gs = fig.add_gridspec(1, 2, width_ratios=[1.0, 1.35], wspace=0.18, left=0.03, right=0.98,
                          top=1 - (0.175 if auto else 0.14) * 5.6 / height, bottom=foot)
    ax_im = fig.add_subplot(gs[0])
    if per_frame:
        # the diameter plot keeps its single-frame height; the rest (less the gap) is the panel
        plot_in = (1 - (0.175 if auto else 0.14) - 0.11) * 5.6
        right = gs[1].subgridspec(2, 1, height_ratios=[plot_in, extra - _FRAMES_GAP_IN],
                                  hspace=2 * _FRAMES_GAP_IN / (plot_in + extra - _FRAMES_GAP_IN))
        ax_pl = fig.add_subplot(right[0])
        # narrower by the combined value's label, written beside it
        ax_fr = fig.add_subplot(right[1].subgridspec(1, 2, width_ratios=[1.0, 0.09], wspace=0.0)[0])
    else:
        ax_pl = fig.add_subplot(gs[1])

    # ---- image panel -------------------------------------------------------------
    pts = [prof.centerline_rc, prof.left_rc, prof.right_rc, np.asarray([result.proximal_rc, result.distal_rc])]
    allp = np.vstack(pts)
    ref_rc = np.asarray(result.reference_rc, float)
    if np.all(np.isfinite(ref_rc)):
        allp = np.vstack([allp, ref_rc[None]])
    pad = max(12.0, 0.15 * float(np.ptp(allp, axis=0).max()))
    r0, c0 = allp.min(axis=0) - pad
    r1, c1 = allp.max(axis=0) + pad
    # square-ish crop
    size = max(r1 - r0, c1 - c0)
    rm, cm = (r0 + r1) / 2, (c0 + c1) / 2
    if img is not None:
        h, w = img.shape
        r0, r1 = max(rm - size / 2, 0), min(rm + size / 2, h - 1)
        c0, c1 = max(cm - size / 2, 0), min(cm + size / 2, w - 1)
        crop = img[int(r0) : int(np.ceil(r1)) + 1, int(c0) : int(np.ceil(c1)) + 1]
        lo, hi = np.percentile(crop, [1, 99.7]) if crop.size else (0, 1)
        # vessels dark on light, as readers see a DSA
        ax_im.imshow(img, cmap="gray_r", vmin=lo, vmax=hi, interpolation="nearest")
    ax_im.set_xlim(c0 - 0.5, c1 + 0.5)
    ax_im.set_ylim(r1 + 0.5, r0 - 0.5)
    cl = prof.centerline_rc
    ax_im.plot(cl[:, 1], cl[:, 0], color="#ffd21f", lw=0.9, alpha=0.9, label="centerline")
    ax_im.plot(prof.left_rc[:, 1], prof.left_rc[:, 0], color="#00c8ff", lw=0.9, label="lumen edges")
    ax_im.plot(prof.right_rc[:, 1], prof.right_rc[:, 0], color="#00c8ff", lw=0.9)
    bad = flagged_samples(prof)
    if bad.any():
        ax_im.plot(cl[bad, 1], cl[bad, 0], ".", color="#ff8c00", ms=2.5, label="flagged samples")
    i0 = int(np.searchsorted(prof.arc_px, result.lesion_start_px))
    i1 = int(np.searchsorted(prof.arc_px, result.lesion_end_px))
    if i1 > i0:
        for edge in (prof.left_rc, prof.right_rc):
            ax_im.plot(edge[i0 : i1 + 1, 1], edge[i0 : i1 + 1, 0], color="#ff3b3b", lw=1.6)
    k = int(np.argmin(np.abs(prof.arc_px - result.mld_arc_px)))
    ax_im.plot([prof.left_rc[k, 1], prof.right_rc[k, 1]], [prof.left_rc[k, 0], prof.right_rc[k, 0]], color="#ff3b3b", lw=2.2)
    crop = (r0, r1, c0, c1)
    _label(ax_im, "MLD", result.mld_rc, prof.normal_rc[k], 0.5 * float(prof.diameter_px[k]), "#d62728", crop)
    rw = result.reference_window
    if np.isfinite(rw.start_px):
        j0 = int(np.searchsorted(prof.arc_px, rw.start_px))
        j1 = min(int(np.searchsorted(prof.arc_px, rw.end_px)), len(prof) - 1)
        for edge in (prof.left_rc, prof.right_rc):
            ax_im.plot(edge[j0 : j1 + 1, 1], edge[j0 : j1 + 1, 0], color="#2ee86a", lw=2.0)
    if np.all(np.isfinite(ref_rc)):
        j = int(np.argmin(np.hypot(*(prof.centerline_rc - ref_rc).T)))
        _label(ax_im, "REF", ref_rc, prof.normal_rc[j], 0.5 * float(result.reference_diameter_px), "#138a3f", crop)
    for p, lab in ((result.proximal_rc, "P"), (result.distal_rc, "D")):
        ax_im.plot(p[1], p[0], "+", color="#ff00ff", ms=10, mew=1.6)
        ax_im.annotate(lab, (p[1], p[0]), xytext=(5, 5), textcoords="offset points", color="#ff00ff", fontsize=9, weight="bold")
    if mm:
        # 5 mm scale bar, lower left
        bar = 5.0 / mm
        yb = r1 - 0.06 * (r1 - r0)
        xb = c0 + 0.05 * (c1 - c0)
        # white with a dark outline: readable on a dark (subtracted) and a light (native) image alike
        from matplotlib import patheffects

        halo = [patheffects.withStroke(linewidth=5, foreground="black")]
        ax_im.plot([xb, xb + bar], [yb, yb], color="white", lw=3, solid_capstyle="butt", path_effects=halo)
        ax_im.text(xb + bar / 2, yb - 0.02 * (r1 - r0), "5 mm", ha="center", va="bottom", fontsize=8, color="white",
                   path_effects=[patheffects.withStroke(linewidth=2.5, foreground="black")])
    ax_im.set_xticks([])
    ax_im.set_yticks([])
    ax_im.set_title(f"frame {result.frame_index} (opacified){frames_text(result)}", fontsize=10)
    ax_im.legend(loc="upper right", fontsize=7, framealpha=0.8)

    # ---- diameter plot -----------------------------------------------------------
    plot_diameter_profile(ax_pl, result)
    if per_frame:
        draw_frames(ax_fr, result)
        ax_fr.set_xlabel(textwrap.fill(f"frame    ({_frames_key(frame_series(result))})", 95), fontsize=8, labelpad=1)

    # ---- title -------------------------------------------------------------------
    verdict = f">= 50%: {result.call_text}"
    cal = result.calibration or {}
    if mm:
        cal_txt = f"{cal.get('source', '?')}, {mm:.4g} mm/px"
        nums = f"MLD {result.mld_mm:.2f} mm   reference {result.reference_diameter_mm:.2f} mm   lesion {result.lesion_length_mm:.1f} mm"
    else:
        cal_txt = "uncalibrated (no mm values)"
        nums = f"MLD {result.mld_px:.2f} px   reference {result.reference_diameter_px:.2f} px   lesion {result.lesion_length_px:.1f} px"
    interp = ""
    if result.interpolated_percent_stenosis is not None:
        interp = f"   (interpolated reference: {result.interpolated_percent_stenosis:.1f}%)"
    fig.suptitle(
        f"{result.segment}  WASID stenosis {result.percent_stenosis:.1f}% \u00b1 {result.percent_stenosis_sd:.1f} (1 SD)"
        f"   [{verdict}]{interp}",
        fontsize=14, weight="bold", x=0.03, ha="left", y=1 - 0.025 * 5.6 / height,
        # the napari table's colours: red >= 50%, orange when a reader must confirm, else green
        color="#b00020" if result.meets_50 else ("#c05600" if result.needs_confirmation else "#14532d"),
    )
    fig.text(0.03, 1 - 0.095 * 5.6 / height,
             f"{nums}   |   reference: {rw.description}   |   calibration: {cal_txt}   |   {result.file}",
             fontsize=8.5, ha="left")
    if auto:
        text = AUTO_POINTS_TEXT
        if auto_confidence is not None:
            text = text.replace(" \u2014", f" (confidence {auto_confidence:.2f}) \u2014")
        fig.text(0.98, 1 - 0.15 * 5.6 / height, text, fontsize=9.5, weight="bold",
                 color="#b35900", ha="right", bbox=dict(boxstyle="round,pad=0.25", fc="#fff3e0", ec="#b35900", lw=0.8))
    if warn_lines:
        fig.text(0.03, 0.012, "\n".join(warn_lines), fontsize=7, color="#8a4b00", ha="left", va="bottom",
                 linespacing=1.35)
    return fig


def frames_text(result: StenosisResult) -> str:
    """``"; frames 4, 5, 6 combined (per-frame SD 0.3)"`` when several frames were measured, else ``""``."""
    fr = getattr(result, "frames", None) or {}
    used = fr.get("used") or []
    if len(used) < 2:
        return ""
    sd = fr.get("frame_to_frame_sd")
    return f"; frames {', '.join(str(t) for t in used)} combined" + (f" (per-frame SD {sd:.1f})" if sd is not None else "")


#: the formats :func:`save_report` writes when the path's suffix names one (else PNG)
REPORT_FORMATS = frozenset({"png", "jpg", "jpeg", "pdf", "svg", "tif", "tiff"})


def save_report(result: StenosisResult, image: np.ndarray | None, path: str | Path, *,
                auto_confidence: float | None = None, auto_points: bool = False) -> Path:
    """Write the PNG report of ``result`` to ``path``.

    Parameters
    ----------
    result : StenosisResult
    image : (H, W) array, AngioRun or None
        The analysed frame (opacified, iodine positive); ``result.image`` when None
        or when the run is given.
    path : str or Path
        Output file: PNG, or the format its suffix names (``.pdf``, ``.svg``, ``.jpg``, ...).
    auto_confidence : float, optional
        The points were placed automatically with this confidence: the report says so
        and asks a reader to confirm them (implies `auto_points`).
    auto_points : bool
        The points were placed automatically: the report prints
        :data:`AUTO_POINTS_TEXT` ("points placed automatically - a reader must confirm").

    Returns
    -------
    Path
    """
    if hasattr(result, "views") and not hasattr(result, "profile"):
        raise TypeError("save_report takes one view's result: for several views save each one, e.g. "
                        "for k, v in enumerate(views.views): save_report(v, None, f'report-view{k + 1}.png')")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = report_figure(result, image, auto_confidence=auto_confidence, auto_points=auto_points)
    # the format the name asks for (.pdf, .svg, .jpg, .tif); any other name gets a PNG
    kind = path.suffix.lower().lstrip(".")
    fig.savefig(path, format=kind if kind in REPORT_FORMATS else "png")
    return path
