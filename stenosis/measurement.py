"""The one orchestrator: a run and two points in, a WASID :class:`StenosisResult` out.

read (if a path) -> calibrate (``pixel_mm`` overrides) -> opacify -> pick the frame
-> vessel probability -> centerline -> diameters (blur and iodine amplitude
estimated once per run) -> re-centred centerline -> diameters -> side-vessel flags ->
diameters with an amplitude that follows the vessel (from the unflagged, resolved
samples) -> WASID.

Only the frames that are needed are registered: the frame choice uses a cheap
unregistered opacification of the run; the analysed frame is opacified with
registration. The probability and the path are computed on a crop around the
reader's points (widened to the whole frame if the path reaches the crop border).
"""
from __future__ import annotations

import dataclasses
import os
import warnings as _warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ._version import __version__
from .centerline import recenter, snap_to_vessel, trace_centerline
from .diameter import flag_side_vessels, measure_diameters, refit_beside_vessels
from .enums import ModelName, ReferenceChoice, Segment
from .errors import InputError, MeasurementError
from .frames import box_around, guess_frame, select_frame
from .result import QualityFlag, ReferenceWindow, StenosisResult
from .wasid import wasid

__all__ = ["measure", "DEFAULT_STEP_MM"]

DEFAULT_STEP_MM = 0.1  # centerline sample step, mm at the isocentre
UNCALIBRATED_STEP_PX = 0.5
SNAP_MM = 2.0
SNAP_PX_UNCALIBRATED = 8.0
CROP_MARGIN_MM = 6.0  # margin of the probability crop around the reader's points
CROP_MARGIN_PX_UNCALIBRATED = 30.0
#: a frame whose vessels moved more than this from the traced frame is traced afresh
MAX_FRAME_SHIFT_PX = 8.0
#: pixel size (mm) at which the vessel probability is computed when the run's pixels are finer
PROB_MM = 0.2
#: widest vessel (px) the U-Net sees whole: it was trained on vessels up to ~17 px and
#: misses the inside of wider ones (a 4.4 mm ICA at 0.15 mm, 30 px, came back empty
#: but for its stenosis), which blinds the side-branch and crossing checks
MODEL_MAX_WIDTH_PX = 20.0
#: widest normal lumen (mm) expected on each graded artery (sizes the probability's scale)
WIDEST_NORMAL_MM = {Segment.ICA: 5.0, Segment.M1: 3.5, Segment.V4: 3.5, Segment.BA: 3.5}
#: iodine needed at the reader's end points, in per-pixel noise SDs (see _check_contrast)
CONTRAST_SIGMAS = 2.5
#: a percent stenosis this close to 50 gets a "confirm the call" warning: the tool's measured
#: error on phantoms (benchmarks/accuracy.py and robustness.py: max 3.4-5.9 points, on low-dose small lumens)
#: does not settle the >= 50% decision there; so does one whose +-2 SD interval reaches 50%
BORDERLINE_POINTS = 5.0


def borderline_warning(percent_stenosis: float, sd: float = float("nan")) -> str | None:
    """The warning for a result near the 50% enrolment threshold, or None."""
    two_sd = 2.0 * sd if np.isfinite(sd) else 0.0
    if abs(percent_stenosis - 50.0) < max(BORDERLINE_POINTS, two_sd):
        why = (f"its +-2 SD interval ({percent_stenosis - two_sd:.1f}-{percent_stenosis + two_sd:.1f}%) includes 50%"
               if abs(percent_stenosis - 50.0) < two_sd else
               f"it is within {BORDERLINE_POINTS:g} points of 50%, inside the tool's largest errors on phantoms")
        return f"percent stenosis {percent_stenosis:.1f}%: {why}; have a reader confirm the >= 50% call"
    return None


def _as_rc(p: Any, name: str) -> tuple[float, float]:
    try:
        r, c = (float(v) for v in p)
    except (TypeError, ValueError):
        raise MeasurementError(f"the {name} point must be (row, col) in pixels, got {p!r}") from None
    if not (np.isfinite(r) and np.isfinite(c)):
        raise MeasurementError(f"the {name} point ({r}, {c}) is not a finite (row, col)")
    return r, c


def _check_inside(p: tuple[float, float], shape: tuple[int, int], name: str) -> None:
    h, w = shape
    if not (0 <= p[0] <= h - 1 and 0 <= p[1] <= w - 1):
        raise MeasurementError(
            f"the {name} point ({p[0]:g}, {p[1]:g}) is outside the image "
            f"(rows 0..{h - 1}, cols 0..{w - 1}); give ROW,COL inside the frame"
        )


def _probability(image: np.ndarray, model: str, notes: list[str], *, factor: int = 1) -> np.ndarray:
    """Vessel probability of ``image`` (iodine positive), computed on ``factor`` x ``factor``
    block means when ``factor`` > 1 and brought back to the image grid (linear)."""
    from .segmentation import vessel_probability

    small = image
    if factor > 1:
        h, w = image.shape
        hh, ww = -(-h // factor) * factor, -(-w // factor) * factor
        padded = np.pad(image, ((0, hh - h), (0, ww - w)), mode="edge")
        small = padded.reshape(hh // factor, factor, ww // factor, factor).mean(axis=(1, 3))
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        p = vessel_probability(-small, model=model)
    for w in caught:
        msg = str(w.message).split(";")[0]
        if msg not in notes:
            notes.append(msg)
    p = np.asarray(p, dtype=np.float32)
    if factor > 1:
        # block k covers pixels k*f .. k*f+f-1: its centre is at k*f + (f-1)/2
        rr = (np.arange(image.shape[0]) - (factor - 1) / 2) / factor
        cc = (np.arange(image.shape[1]) - (factor - 1) / 2) / factor
        g = np.meshgrid(rr, cc, indexing="ij")
        p = ndi.map_coordinates(p, g, order=1, mode="nearest").astype(np.float32)
    return p


def _prob_factor(mm_per_px: float | None, segment: Segment | None = None) -> int:
    """Block size that brings fine pixels to about PROB_MM for the vessel-probability model
    and the segment's widest normal artery to at most MODEL_MAX_WIDTH_PX (the models'
    scales are set for arteries a few to ~17 px wide; at 0.1 mm an ICA is 50 px)."""
    if not mm_per_px:
        return 1
    widest = WIDEST_NORMAL_MM[segment] if segment is not None else 0.0
    return int(max(1, round(PROB_MM / mm_per_px), np.ceil(widest / (MODEL_MAX_WIDTH_PX * mm_per_px) - 1e-9)))


def _nearest_sample(profile, rc: tuple[float, float]) -> tuple[int, float]:
    """Index of the centerline sample nearest ``rc`` and its distance, pixels."""
    dd = np.hypot(profile.centerline_rc[:, 0] - rc[0], profile.centerline_rc[:, 1] - rc[1])
    k = int(np.argmin(dd))
    return k, float(dd[k])


def _crop_margin(mm_per_px: float | None, span_px: float) -> float:
    """Margin (px) of the probability crop around two points ``span_px`` apart.

    A few mm beyond the points (the snap radius and the widest artery fit inside),
    and a quarter of the span, so that a curving artery stays inside the crop; the
    crop is widened when the traced path reaches its border."""
    base = CROP_MARGIN_MM / mm_per_px if mm_per_px else CROP_MARGIN_PX_UNCALIBRATED
    return float(max(base, 24.0, 0.25 * span_px))


def _trace(image, a, b, *, model, step_px, snap_px, notes, margin, factor=1, waypoints=()):
    """Probability and centerline on a crop around a, b (and the waypoints; whole frame when
    the path hits the crop border)."""
    shape = image.shape
    pts = [a, *waypoints, b]
    box = box_around(pts, shape, margin)
    full_box = (slice(0, shape[0]), slice(0, shape[1]))
    for attempt in range(3):
        off = np.array([box[0].start, box[1].start], float)
        sub = image[box]
        prob = _probability(sub, model, notes, factor=factor)
        # the iodine signal itself peaks on the lumen centre: it keeps the path on wide
        # vessels where a line filter of limited scale responds only near the walls
        sm = ndi.gaussian_filter(sub, 1.0)
        q = float(np.quantile(sm, 0.995))
        opac = np.clip(sm / q, 0.0, 1.0) if q > 0 else np.zeros_like(sm)
        trace_p = np.maximum(prob, opac)
        rc, arc = trace_centerline(trace_p, np.subtract(a, off), np.subtract(b, off), step_px=step_px, snap_radius_px=snap_px,
                                   waypoints=[tuple(np.subtract(w, off)) for w in waypoints])
        full = box == full_box
        near_border = (
            (rc[:, 0].min() < 2 and box[0].start > 0)
            or (rc[:, 1].min() < 2 and box[1].start > 0)
            or (rc[:, 0].max() > sub.shape[0] - 3 and box[0].stop < shape[0])
            or (rc[:, 1].max() > sub.shape[1] - 3 and box[1].stop < shape[1])
        )
        if full or not near_border:
            _check_contrast(sub, rc)
            return rc + off, arc, prob, box
        # the path ran along the crop border: the vessel leaves the crop; widen it
        box = box_around(pts, shape, 3.0 * margin) if attempt == 0 else full_box
    _check_contrast(sub, rc)
    return rc + off, arc, prob, box


def _check_contrast(image: np.ndarray, rc: np.ndarray) -> None:
    """Both ends of the path must sit on iodine well above the noise (not on a noise ridge).

    The 5-pixel mean at each end must exceed the frame's median by CONTRAST_SIGMAS x the
    per-pixel noise SD, i.e. about 5 SD of that mean's own noise (4 x rejected a 2.25 mm V4
    at 0.35 mm and the lowest dose of the accuracy grid, SNR 3.7, a valid input)."""
    hp = image - ndi.uniform_filter(image, 5)
    sd = 1.4826 * float(np.median(np.abs(hp - np.median(hp)))) + 1e-12
    bg = float(np.median(image))
    for k, name in ((0, "proximal"), (-1, "distal")):
        r, c = rc[k]
        v = ndi.map_coordinates(image, [[r - 1, r, r + 1, r, r], [c, c - 1, c, c + 1, c]], order=1, mode="nearest").mean()
        if v - bg < CONTRAST_SIGMAS * sd:
            raise MeasurementError(
                f"the {name} point is not on an opacified vessel (no contrast there); place it on the lumen of the artery"
            )


def _clipping_warning(frame: np.ndarray, rc: np.ndarray, step_px: float, mm_per_px: float | None) -> str | None:
    """A warning when the stored pixel values sit at the frame's darkest value along the lumen.

    A run exported with a display window (or an 8-bit export) clips the densest iodine at
    the stored limit: the lumen's profile loses its bottom there and no fit can recover its
    diameter. Flagged when at least 0.3 mm of consecutive centerline samples are clipped.
    """
    f = np.asarray(frame)
    lo = f.min()
    if np.count_nonzero(f == lo) < 3:
        return None
    r = np.clip(np.rint(rc[:, 0]).astype(int), 0, f.shape[0] - 1)
    c = np.clip(np.rint(rc[:, 1]).astype(int), 0, f.shape[1] - 1)
    at = f[r, c] <= lo
    need = max(3, int(np.ceil((0.3 / mm_per_px if mm_per_px else 2.0) / max(step_px, 1e-6))))
    runs, n_runs = ndi.label(at)
    longest = int(np.bincount(runs)[1:].max()) if n_runs else 0
    if longest < need:
        return None
    length = f"{longest * step_px * mm_per_px:.1f} mm" if mm_per_px else f"{longest * step_px:.0f} px"
    return (f"the stored pixel values are clipped at the frame's darkest value along {length} of the traced "
            "artery: diameters there are not measurable; re-export the run without a display window "
            "(raw, unclipped pixel data)")


def _radius_hint(image: np.ndarray, rc: np.ndarray) -> float:
    """Rough largest lumen radius (px) from the half-maximum width of the iodine profiles."""
    from .diameter import normals_from_centerline

    idx = np.linspace(0, len(rc) - 1, min(len(rc), 25)).astype(int)
    nrm = normals_from_centerline(rc)[idx]
    x = np.arange(-80.0, 80.5, 0.5)
    q = rc[idx, None, :] + nrm[:, None, :] * x[None, :, None]
    y = ndi.map_coordinates(image, q.reshape(-1, 2).T, order=1, mode="nearest").reshape(len(idx), -1)
    centre = np.abs(x) <= 3
    hw = []
    for row in y:
        peak = row[centre].max()
        if peak <= 0:
            continue
        k0 = int(np.argmax(np.where(centre, row, -np.inf)))
        below = row < 0.5 * peak
        left = np.where(below[:k0])[0]
        right = np.where(below[k0:])[0]
        if left.size and right.size:
            hw.append(0.5 * (x[k0 + right[0]] - x[left[-1]]))
    if not hw:
        return 4.0
    # a blurred projected cylinder is at half maximum about 0.87 R from its centre
    return float(np.clip(np.quantile(hw, 0.9) / 0.85, 1.5, 80.0))


def _read(path_or_run):
    from .io import AngioRun, read_run

    if isinstance(path_or_run, AngioRun):
        return path_or_run
    if isinstance(path_or_run, (str, os.PathLike)):
        return read_run(path_or_run)
    raise InputError(f"measure needs a path or an AngioRun, got {type(path_or_run).__name__}")


def measure(
    path_or_run,
    segment: str | Segment = "M1",
    proximal: tuple[float, float] | None = None,
    distal: tuple[float, float] | None = None,
    frame: int | None = None,
    *,
    model: str | ModelName = "unet",
    reference: tuple[float, float] | None = None,
    reference_choice: str | ReferenceChoice | None = None,
    mld: tuple[float, float] | None = None,
    waypoints: list[tuple[float, float]] | tuple = (),
    feeding_proximal: tuple[float, float] | None = None,
    feeding_distal: tuple[float, float] | None = None,
    pixel_mm: float | None = None,
) -> StenosisResult:
    """Measure WASID percent stenosis of one arterial segment of one run.

    Parameters
    ----------
    path_or_run : str, path or AngioRun
        DICOM XA/DSA file (or single-frame series folder), or a run already read.
    segment : {"ICA", "M1", "V4", "BA"}
        Artery graded (sets the WASID reference rule).
    proximal, distal : (row, col)
        Reader's points on the artery, proximal and distal to the lesion, pixels of
        the frame (0-based).
    frame : int, optional
        0-based frame to analyse; None picks the first fully opacified frame.
    model : {"unet", "classical"}
        Vessel-probability model used for the centerline.
    reference : (row, col), optional
        Force the reference location (reader override; ``reference_choice`` "manual").
    reference_choice : {"proximal", "distal", "feeding"}, optional
        Force the WASID reference site (reader override); None follows the WASID order.
    mld : (row, col), optional
        Reader-placed MLD: the minimal diameter is searched only near this point.
    waypoints : sequence of (row, col)
        Inner centerline points, proximal to distal, the trace must pass through.
    feeding_proximal, feeding_distal : (row, col), optional
        Two points on the feeding artery (WASID 3rd choice; for ICA, the
        extracranial ICA).
    pixel_mm : float, optional
        Reader's pixel size in mm at the isocentre; overrides the file calibration.

    Returns
    -------
    StenosisResult
        ``percent_stenosis`` is always reported; mm values are None when the run
        is uncalibrated.

    Raises
    ------
    InputError
        The file is not a readable XA/DSA run.
    MeasurementError
        Points outside the image or far from any vessel, segment too short, ...
    """
    try:
        seg = Segment(str(segment).upper())
    except ValueError:
        raise MeasurementError(f"unknown segment {segment!r}; choose one of ICA, M1, V4, BA") from None
    try:
        model_name = ModelName(str(model).lower()).value
    except ValueError:
        raise MeasurementError(f"unknown model {model!r}; choose unet or classical") from None
    if proximal is None or distal is None:
        raise MeasurementError("measure needs both a proximal and a distal point (row, col)")
    prox = _as_rc(proximal, "proximal")
    dist = _as_rc(distal, "distal")
    run = _read(path_or_run)
    notes: list[str] = list(run.warnings)
    if pixel_mm is not None:
        from .calibration import manual_calibration

        if not (float(pixel_mm) > 0 and np.isfinite(float(pixel_mm))):
            raise MeasurementError(f"--pixel-mm must be a positive number of mm per pixel, got {pixel_mm!r}")
        run = run.with_calibration(manual_calibration(float(pixel_mm)))
        notes = list(run.warnings)
    cal = run.calibration
    mm_rc = cal.mm_per_px
    mm_per_px = None
    if mm_rc is not None:
        mm_per_px = float(np.sqrt(mm_rc[0] * mm_rc[1]))
        if abs(mm_rc[0] - mm_rc[1]) > 0.02 * mm_per_px:
            notes.append(f"non-square pixels ({mm_rc[0]:.4g} x {mm_rc[1]:.4g} mm); diameters use their geometric mean")
    else:
        notes.append("the run is uncalibrated: mm values are not reported (percent stenosis is calibration-free); give --pixel-mm to report mm")
    t_total, h, w = run.frames.shape
    for p, name in ((prox, "proximal"), (dist, "distal")):
        _check_inside(p, (h, w), name)
    for p, name in ((reference, "reference"), (feeding_proximal, "feeding proximal"), (feeding_distal, "feeding distal")):
        if p is not None:
            _check_inside(_as_rc(p, name), (h, w), name)
    wps = [_as_rc(p, f"waypoint {k + 1}") for k, p in enumerate(waypoints or ())]
    for k, p in enumerate(wps):
        _check_inside(p, (h, w), f"waypoint {k + 1}")
    mld_rc_in = None if mld is None else _as_rc(mld, "MLD")
    if mld_rc_in is not None:
        _check_inside(mld_rc_in, (h, w), "MLD")
    force = None
    if reference_choice is not None:
        try:
            force = ReferenceChoice(str(getattr(reference_choice, "value", reference_choice)).lower())
        except ValueError:
            raise MeasurementError(f"unknown reference choice {reference_choice!r}; choose proximal, distal or feeding") from None
        if force is ReferenceChoice.MANUAL:
            if reference is None:
                raise MeasurementError("a manual reference needs its location: give --reference ROW,COL")
            force = None  # the location makes it manual
        elif reference is not None:
            raise MeasurementError(f"give either a reference location or the {force.value} reference site, not both")
        elif force is ReferenceChoice.FEEDING and feeding_proximal is None:
            raise MeasurementError("the feeding reference needs two points on the feeding artery (feeding proximal and distal); place them first")
    if (feeding_proximal is None) != (feeding_distal is None):
        raise MeasurementError("give both --feeding-proximal and --feeding-distal, or neither")
    if frame is not None:
        frame = int(frame)
        if not 0 <= frame < t_total:
            raise MeasurementError(f"frame {frame} is outside the run (0..{t_total - 1}); pick a frame from 0 to {t_total - 1}")

    from .opacification import estimate_shift, opacify

    step_px = DEFAULT_STEP_MM / mm_per_px if mm_per_px else UNCALIBRATED_STEP_PX
    snap_px = max(SNAP_MM / mm_per_px, 5.0) if mm_per_px else SNAP_PX_UNCALIBRATED
    span = float(np.hypot(*np.ptp(np.asarray([prox, *wps, dist]), axis=0)))
    margin = _crop_margin(mm_per_px, span)
    # the U-Net's scale also keeps the widest artery <= MODEL_MAX_WIDTH_PX; the classical
    # vesselness has its own scales (coarser blocks lost a lesion at 0.2 mm)
    pfac = _prob_factor(mm_per_px, seg if model_name == ModelName.UNET.value else None)

    stack = None
    if frame is None and t_total > 1:
        stack = opacify(run, register=False)
        guess = guess_frame(run, [prox, *wps, dist], stack=stack)
    else:
        guess = frame if frame is not None else 0
    image = opacify(run, frames=[guess], register=True)[0]
    rc, arc, prob, box = _trace(image, prox, dist, model=model_name, step_px=step_px, snap_px=snap_px, notes=notes, margin=margin, factor=pfac, waypoints=wps)
    prob_origin = (float(box[0].start), float(box[1].start))
    chosen = guess
    if stack is not None:
        chosen, _ = select_frame(stack, rc)
        if chosen != guess:
            new_image = opacify(run, frames=[chosen], register=True)[0]
            # the vessels of the chosen frame are those of the traced frame, moved by the
            # patient's motion between the two frames: translate the path (and the
            # vessel map) by the phase-correlation shift instead of tracing again; the
            # re-centring below absorbs the rest. Large motion: trace afresh.
            shift = estimate_shift(image[box], new_image[box], max_shift_px=2 * MAX_FRAME_SHIFT_PX)
            image = new_image
            if max(abs(shift[0]), abs(shift[1])) <= MAX_FRAME_SHIFT_PX:
                rc = rc + np.asarray(shift, float)[None, :]
                prob_origin = (prob_origin[0] + shift[0], prob_origin[1] + shift[1])
            else:
                rc, arc, prob, box = _trace(image, prox, dist, model=model_name, step_px=step_px, snap_px=snap_px, notes=notes, margin=margin, factor=pfac, waypoints=wps)
                prob_origin = (float(box[0].start), float(box[1].start))
    rhint = _radius_hint(image, rc)

    prof0 = measure_diameters(image, rc, arc, radius_hint_px=rhint, mm_per_px=mm_per_px)
    # re-centre on the fitted lumen centres, then measure again with the run's blur and amplitude
    rc2, arc2 = recenter(rc, prof0.normal_rc, prof0.centre_offset_px, prof0.valid & (prof0.diameter_px > 1.0),
                         step_px=step_px, max_shift_px=max(3.0, 0.5 * rhint))
    prof = measure_diameters(
        image, rc2, arc2, radius_hint_px=rhint, mm_per_px=mm_per_px,
        blur_sigma_px=prof0.blur_sigma_px, amplitude=prof0.amplitude,
    )
    crossings = model_name == ModelName.UNET.value
    prof = flag_side_vessels(prof, prob, origin_rc=prob_origin, crossings=crossings)
    if not prof.valid.all():
        # the run's blur and amplitude again, without the flagged samples: a crossing's profiles
        # look like a wide blurred lumen and biased them (blur 1.25 px for 0.77, every diameter
        # of the run +4%)
        again = measure_diameters(image, rc2, arc2, radius_hint_px=rhint, mm_per_px=mm_per_px,
                                  estimate_from=prof.valid)
        if (abs(again.blur_sigma_px / prof.blur_sigma_px - 1.0) > 0.01
                or abs(again.amplitude / prof.amplitude - 1.0) > 0.01):
            prof = flag_side_vessels(again, prob, origin_rc=prob_origin, crossings=crossings)
    # the final fit: an amplitude that follows the vessel, from the unflagged resolved samples
    # (scatter under a varying background changes the iodine signal along the vessel); the
    # side-vessel flags of the pass before are kept (same vessel map, diameters barely moved)
    loc = measure_diameters(image, prof.centerline_rc, prof.arc_px, radius_hint_px=rhint, mm_per_px=mm_per_px,
                            blur_sigma_px=prof.blur_sigma_px, amplitude=prof.amplitude, local_amplitude_from=prof.valid)
    side = int(QualityFlag.BRANCH | QualityFlag.OVERLAP)
    prof = dataclasses.replace(loc, flags=loc.flags | (prof.flags & side))
    clip = _clipping_warning(np.asarray(run.frames[chosen]), prof.centerline_rc, step_px, mm_per_px)
    if clip:
        notes.append(clip)
    prof = refit_beside_vessels(image, prof, prob, radius_hint_px=rhint, origin_rc=prob_origin)
    if prof.amplitude <= 0:
        raise MeasurementError("no contrast in the traced segment; check the points and the frame")

    feeding_profile = None
    if feeding_proximal is not None:
        fa, fb = _as_rc(feeding_proximal, "feeding proximal"), _as_rc(feeding_distal, "feeding distal")
        frc, farc, fprob, fbox = _trace(image, fa, fb, model=model_name, step_px=step_px, snap_px=snap_px, notes=notes, factor=pfac,
                                        margin=_crop_margin(mm_per_px, float(np.hypot(fa[0] - fb[0], fa[1] - fb[1]))))
        feeding_profile = measure_diameters(
            image, frc, farc, radius_hint_px=_radius_hint(image, frc), mm_per_px=mm_per_px,
            blur_sigma_px=prof.blur_sigma_px, amplitude=prof.amplitude,
        )

    on_segment_px = max(snap_px, 1.5 * rhint)  # a reader's point this close is on the traced segment
    manual_index = manual_ref_px = None
    manual_centre = None
    if reference is not None:
        ref_rc = _as_rc(reference, "reference")
        k, dist_px = _nearest_sample(prof, ref_rc)
        if dist_px <= on_segment_px:
            manual_index = k
        else:
            manual_ref_px, manual_centre = _local_reference(image, ref_rc, prof, model_name, snap_px, step_px, notes, factor=pfac)

    mld_near = None
    if mld_rc_in is not None:
        mld_near, dist_px = _nearest_sample(prof, mld_rc_in)
        if dist_px > on_segment_px:
            raise MeasurementError(
                f"the MLD point ({mld_rc_in[0]:g}, {mld_rc_in[1]:g}) is {dist_px:.0f} px from the traced segment; "
                "place it on the lesion of the traced artery"
            )
    wm = wasid(prof, seg, manual_index=manual_index, manual_reference_px=manual_ref_px, feeding_profile=feeding_profile,
               force_choice=force, mld_near_index=mld_near)
    notes.extend(wm.warnings)

    # reference window description in the result
    if wm.reference_window is not None:
        win = wm.reference_window
        ref_rc_out = tuple(prof.centerline_rc[win.centre])
        rwin = ReferenceWindow(wm.reference_choice.value, float(prof.arc_px[win.i0]), float(prof.arc_px[win.i1]),
                               wm.reference_px, ref_rc_out, wm.reference_description)
    elif manual_centre is not None:
        ref_rc_out = manual_centre
        rwin = ReferenceWindow(wm.reference_choice.value, float("nan"), float("nan"), wm.reference_px, ref_rc_out, wm.reference_description)
    else:  # feeding artery
        fw = None
        if feeding_profile is not None:
            # centre of the feeding window: recompute its position for the marker
            dd = np.abs(feeding_profile.diameter_px - wm.reference_px)
            fw = int(np.argmin(dd))
        ref_rc_out = tuple(feeding_profile.centerline_rc[fw]) if fw is not None else (float("nan"), float("nan"))
        rwin = ReferenceWindow(wm.reference_choice.value, float("nan"), float("nan"), wm.reference_px, ref_rc_out, wm.reference_description)

    try:
        from .segmentation import model_sha256

        sha = model_sha256() if model_name == "unet" else None
    except Exception:  # noqa: BLE001 - the hash is informative; the measurement stands
        sha = None
    source = getattr(run, "source", "") or ""
    fname = Path(source).name if source and not source.startswith("<") else source
    i_mld = wm.mld_index
    pct = float(np.clip(wm.percent_stenosis, -100.0, 100.0))
    border = borderline_warning(pct, wm.percent_stenosis_sd)
    if border:
        notes.append(border)
    res = StenosisResult(
        file=fname,
        run_id=run.metadata.run_id,
        segment=seg.value,
        frame_index=int(chosen),
        percent_stenosis=pct,
        mld_px=wm.mld_px,
        mld_rc=tuple(float(v) for v in (prof.centerline_rc[i_mld] + prof.normal_rc[i_mld] * prof.centre_offset_px[i_mld])),
        mld_arc_px=float(prof.arc_px[i_mld]),
        reference_diameter_px=wm.reference_px,
        reference_rc=tuple(float(v) for v in ref_rc_out),
        reference_choice=wm.reference_choice.value,
        reference_window=rwin,
        lesion_start_px=float(prof.arc_px[wm.lesion_start_index]),
        lesion_end_px=float(prof.arc_px[wm.lesion_end_index]),
        interpolated_percent_stenosis=wm.interpolated_percent_stenosis,
        interpolated_reference_px=wm.interpolated_reference_px,
        calibration=cal.to_dict(),
        mm_per_px=mm_per_px,
        proximal_rc=prox,
        distal_rc=dist,
        model=model_name,
        software={"version": __version__, "model_sha256": sha},
        profile=prof,
        warnings=tuple(dict.fromkeys(notes)),
        parameters={
            "step_mm": DEFAULT_STEP_MM if mm_per_px else None,
            "step_px": round(float(step_px), 4),
            "blur_sigma_px": round(float(prof.blur_sigma_px), 4),
            "lesion_rule": "contiguous arc around the MLD with diameter < 0.9 x reference",
            "reference_rule": "WASID: widest parallel non-tortuous normal window (1.5 reference diameters)",
            "reference_description": wm.reference_description,
            "reader": _reader_choices(reference, force, mld_rc_in, wps, feeding_proximal, feeding_distal, frame, pixel_mm),
        },
        image=image,
        feeding_profile=feeding_profile,
        percent_stenosis_sd=float(wm.percent_stenosis_sd),
        mld_sd_px=float(wm.mld_sd_px),
        reference_sd_px=float(wm.reference_sd_px),
    )
    return res


def _reader_choices(reference, force, mld_rc, waypoints, feeding_proximal, feeding_distal, frame, pixel_mm) -> dict:
    """The reader's overrides, for the audit trail (empty when the tool chose everything)."""
    out: dict[str, Any] = {}
    if frame is not None:
        out["frame"] = int(frame)
    if reference is not None:
        out["reference_rc"] = [round(float(v), 2) for v in reference]
    if force is not None:
        out["reference_choice"] = force.value
    if mld_rc is not None:
        out["mld_rc"] = [round(float(v), 2) for v in mld_rc]
    if waypoints:
        out["waypoints_rc"] = [[round(float(v), 2) for v in p] for p in waypoints]
    if feeding_proximal is not None:
        out["feeding_proximal_rc"] = [round(float(v), 2) for v in feeding_proximal]
        out["feeding_distal_rc"] = [round(float(v), 2) for v in feeding_distal]
    if pixel_mm is not None:
        out["pixel_mm"] = float(pixel_mm)
    return out


def _local_reference(image, ref_rc, prof, model_name, snap_px, step_px, notes, factor=1):
    """Diameter at a reader's reference point off the traced segment: a short local trace."""
    r = max(float(np.quantile(prof.diameter_px, 0.9)), 4.0)
    box = box_around([ref_rc], image.shape, 4 * r + 2 * snap_px)
    off = np.array([box[0].start, box[1].start], float)
    prob = _probability(image[box], model_name, notes, factor=factor)
    p = np.asarray(snap_to_vessel(prob, np.subtract(ref_rc, off), radius_px=snap_px, name="reference"), float)
    # local direction: principal axis of the vessel pixels near the point
    rr, cc = np.nonzero(prob > 0.5)
    near = (rr - p[0]) ** 2 + (cc - p[1]) ** 2 <= (2 * r) ** 2
    if near.sum() < 5:
        raise MeasurementError("the reference point is not on a vessel; place it on a normal part of the artery")
    pts = np.stack([rr[near], cc[near]], 1).astype(float)
    cov = np.cov((pts - pts.mean(0)).T)
    evals, evecs = np.linalg.eigh(cov)
    t = evecs[:, -1]
    half = 1.0 * r
    line = p[None, :] + np.linspace(-half, half, max(int(2 * half / step_px), 5))[:, None] * t[None, :]
    arc = np.r_[0, np.cumsum(np.linalg.norm(np.diff(line, axis=0), axis=1))]
    lp = measure_diameters(image, line + off, arc, radius_hint_px=r / 2 + 1, mm_per_px=prof.mm_per_px,
                           blur_sigma_px=prof.blur_sigma_px, amplitude=prof.amplitude)
    ok = lp.valid
    d = lp.diameter_px[ok] if ok.any() else lp.diameter_px
    return float(np.mean(d)), tuple(float(v) for v in (p + off))
