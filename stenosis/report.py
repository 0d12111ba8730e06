"""PNG report of one measurement: the frame around the segment and the diameter plot.

Left: the analysed (opacified) frame cropped around the traced segment, with the
centerline, both lumen edges, the lesion, the MLD and the reference window.
Right: diameter against distance along the centerline, with the reference window,
the MLD, the lesion and the 50% line (diameter = 0.5 x reference). The title gives
percent stenosis, the >= 50% decision, the reference choice and the calibration.
matplotlib (Agg backend) is imported only when a report is drawn.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .result import StenosisResult

__all__ = ["save_report", "report_figure"]


def report_figure(result: StenosisResult, image: np.ndarray | None = None, *, auto_confidence: float | None = None):
    """A matplotlib Figure of the report (Agg canvas); `auto_confidence`: see :func:`save_report`."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if image is not None and hasattr(image, "frames"):  # an AngioRun: use the analysed frame
        image = result.image if result.image is not None else np.asarray(image.frames[result.frame_index], float) * -1.0
    img = image if image is not None else result.image
    prof = result.profile
    mm = result.mm_per_px
    unit = "mm" if mm else "px"
    scale = mm if mm else 1.0
    arc = prof.arc_px * scale
    diam = prof.diameter_px * scale

    fig = Figure(figsize=(12.5, 5.6), dpi=110)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(1, 2, width_ratios=[1.0, 1.35], wspace=0.18, left=0.03, right=0.98, top=0.86, bottom=0.11)
    ax_im = fig.add_subplot(gs[0])
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
    bad = prof.flags != 0
    if bad.any():
        ax_im.plot(cl[bad, 1], cl[bad, 0], ".", color="#ff8c00", ms=2.5, label="flagged samples")
    i0 = int(np.searchsorted(prof.arc_px, result.lesion_start_px))
    i1 = int(np.searchsorted(prof.arc_px, result.lesion_end_px))
    if i1 > i0:
        for edge in (prof.left_rc, prof.right_rc):
            ax_im.plot(edge[i0 : i1 + 1, 1], edge[i0 : i1 + 1, 0], color="#ff3b3b", lw=1.6)
    k = int(np.argmin(np.abs(prof.arc_px - result.mld_arc_px)))
    ax_im.plot([prof.left_rc[k, 1], prof.right_rc[k, 1]], [prof.left_rc[k, 0], prof.right_rc[k, 0]], color="#ff3b3b", lw=2.2)
    ax_im.annotate("MLD", (result.mld_rc[1], result.mld_rc[0]), xytext=(12, -14), textcoords="offset points",
                   color="#ff3b3b", fontsize=10, weight="bold",
                   arrowprops=dict(arrowstyle="-", color="#ff3b3b", lw=1))
    rw = result.reference_window
    if np.isfinite(rw.start_px):
        j0 = int(np.searchsorted(prof.arc_px, rw.start_px))
        j1 = min(int(np.searchsorted(prof.arc_px, rw.end_px)), len(prof) - 1)
        for edge in (prof.left_rc, prof.right_rc):
            ax_im.plot(edge[j0 : j1 + 1, 1], edge[j0 : j1 + 1, 0], color="#2ee86a", lw=2.0)
    if np.all(np.isfinite(ref_rc)):
        ax_im.annotate("REF", (ref_rc[1], ref_rc[0]), xytext=(-14, 14), textcoords="offset points",
                       color="#1fb555", fontsize=10, weight="bold", ha="right",
                       arrowprops=dict(arrowstyle="-", color="#1fb555", lw=1))
    for p, lab in ((result.proximal_rc, "P"), (result.distal_rc, "D")):
        ax_im.plot(p[1], p[0], "+", color="#ff00ff", ms=10, mew=1.6)
        ax_im.annotate(lab, (p[1], p[0]), xytext=(5, 5), textcoords="offset points", color="#ff00ff", fontsize=9, weight="bold")
    if mm:
        # 5 mm scale bar, lower left
        bar = 5.0 / mm
        yb = r1 - 0.06 * (r1 - r0)
        xb = c0 + 0.05 * (c1 - c0)
        ax_im.plot([xb, xb + bar], [yb, yb], color="black", lw=3, solid_capstyle="butt")
        ax_im.text(xb + bar / 2, yb - 0.02 * (r1 - r0), "5 mm", ha="center", va="bottom", fontsize=8)
    ax_im.set_xticks([])
    ax_im.set_yticks([])
    ax_im.set_title(f"frame {result.frame_index} (opacified)", fontsize=10)
    ax_im.legend(loc="upper right", fontsize=7, framealpha=0.8)

    # ---- diameter plot -----------------------------------------------------------
    ref = result.reference_diameter_px * scale
    ax_pl.plot(arc, diam, color="#1f4e9c", lw=1.4, label="diameter (model fit)")
    ax_pl.plot(arc, prof.edge_diameter_px * scale, color="#8aa6d6", lw=0.8, alpha=0.8, label="max-gradient edges (check)")
    if bad.any():
        ax_pl.plot(arc[bad], diam[bad], ".", color="#ff8c00", ms=3, label="flagged")
    ax_pl.axhline(ref, color="#1fb555", lw=1.0, ls="--", label=f"reference {ref:.2f} {unit}")
    ax_pl.axhline(0.5 * ref, color="#d62728", lw=1.0, ls=":", label="50% stenosis line")
    if np.isfinite(rw.start_px):
        ax_pl.axvspan(rw.start_px * scale, rw.end_px * scale, color="#2ee86a", alpha=0.2, label=f"reference window ({rw.choice})")
    if result.lesion_end_px > result.lesion_start_px:
        ax_pl.axvspan(result.lesion_start_px * scale, result.lesion_end_px * scale, color="#ff3b3b", alpha=0.10, label="lesion (< 0.9 x reference)")
    mld = result.mld_px * scale
    ax_pl.plot([result.mld_arc_px * scale], [mld], "v", color="#d62728", ms=9, label=f"MLD {mld:.2f} {unit}")
    if np.isfinite(result.mld_sd_px) and result.mld_sd_px > 0:
        ax_pl.errorbar([result.mld_arc_px * scale], [mld], yerr=[2 * result.mld_sd_px * scale], fmt="none",
                       ecolor="#d62728", elinewidth=1.2, capsize=4, label="MLD +-2 SD")
    if result.interpolated_reference_px is not None:
        ax_pl.plot([result.mld_arc_px * scale], [result.interpolated_reference_px * scale], "o", mfc="none",
                   color="#1fb555", ms=7, label="interpolated reference (Annex T)")
    top = max(float(np.nanmax(diam)) if diam.size else 1.0, ref) * 1.18
    ax_pl.set_ylim(0, top)
    ax_pl.set_xlim(arc[0], arc[-1])
    ax_pl.set_xlabel(f"distance along centerline from proximal point ({unit})")
    ax_pl.set_ylabel(f"lumen diameter ({unit})")
    ax_pl.grid(alpha=0.3)
    ax_pl.legend(loc="lower left", fontsize=7.5, ncol=2, framealpha=0.85)

    # ---- title -------------------------------------------------------------------
    verdict = ">= 50%: YES" if result.meets_50 else ">= 50%: no"
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
        fontsize=14, weight="bold", x=0.03, ha="left", y=0.975,
        color="#b00020" if result.meets_50 else "#14532d",
    )
    fig.text(0.03, 0.905,
             f"{nums}   |   reference: {rw.description}   |   calibration: {cal_txt}   |   {result.file}",
             fontsize=8.5, ha="left")
    if auto_confidence is not None:
        fig.text(0.98, 0.872, f"points placed automatically (confidence {auto_confidence:.2f}): a reader must confirm them",
                 fontsize=9, weight="bold", color="#b35900", ha="right")
    if result.warnings:
        fig.text(0.03, 0.015, "warnings: " + " | ".join(result.warnings)[:260], fontsize=7, color="#8a4b00", ha="left")
    return fig


def save_report(result: StenosisResult, image: np.ndarray | None, path: str | Path, *,
                auto_confidence: float | None = None) -> Path:
    """Write the PNG report of ``result`` to ``path``.

    Parameters
    ----------
    result : StenosisResult
    image : (H, W) array, AngioRun or None
        The analysed frame (opacified, iodine positive); ``result.image`` when None
        or when the run is given.
    path : str or Path
        Output PNG.
    auto_confidence : float, optional
        The points were placed automatically with this confidence: the report says so
        and asks a reader to confirm them.

    Returns
    -------
    Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = report_figure(result, image, auto_confidence=auto_confidence)
    fig.savefig(path, format="png")
    return path
