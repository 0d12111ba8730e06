"""The one orchestrator: a run and a reader's points in, a WASID :class:`StenosisResult` out.

The recipe (each step a function of its own module, taking and returning plain data):

1. reader's inputs validated (:class:`stenosis.reader.ReaderInputs`);
2. run read and calibrated (``pixel_mm`` overrides the file), pixel scale (:class:`stenosis.trace.Scale`);
3. analysed frame chosen, opacified and the segment traced on it (:func:`stenosis.frames.choose_frame`);
4. diameters along the trace (:func:`stenosis.diameter.diameter_stage`);
5. the reader's overrides placed on the profile (reference, MLD, feeding artery);
6. WASID (:func:`stenosis.wasid.wasid`);
7. the result assembled, with the warnings of every step, the parameters and the reader's choices.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ._version import __version__
from .enums import ModelName
from .errors import InputError, MeasurementError
from .calibration import UNCALIBRATED_MARK
from .diameter import combine_frames, diameter_stage, measure_diameters, same_samples_in_frame
from .diameter.profiles import profile_geometry
from .diameter.stage import iodine_ratio
from .opacification import log_attenuation, mask_frames_of
from .frames import (AnalysedFrame, FollowedFrame, choose_frame, companion_frames, follow_frames, frame_fill, guess_frame,
                     registered_on_segment, traced_lumen, without_shared_noise)
from .params import DEFAULT_PARAMS, MeasureParams
from .reader import ReaderInputs
from .result import CONFIRM_CALL, DiameterProfile, FrameRead, ReferenceWindow, StenosisResult
from .trace import (Scale, burnt_out_warning, clipping_warning, field_edge_warning, local_reference, radius_hint,
                    trace_segment)
from .wasid import (WasidMeasurement, area_noise_sd_px2, at_same_sites, borderline_warning, start_sensitivity_warning,
                    wasid)

__all__ = ["measure", "guess_frame", "borderline_warning", "DEFAULT_STEP_MM", "BORDERLINE_POINTS"]

DEFAULT_STEP_MM = DEFAULT_PARAMS.step_mm
BORDERLINE_POINTS = DEFAULT_PARAMS.borderline_points

#: threads reading the other frames of a run (:func:`measure_frames`); results do not depend on it
_FRAME_THREADS = 2


def measure(path_or_run, segment=None, proximal=None, distal=None, frame=None, *, model="unet", reference=None,
            reference_choice=None, mld=None, waypoints=(), feeding_proximal=None, feeding_distal=None,
            pixel_mm=None, frames="all", exclude_frames=(), params: MeasureParams = DEFAULT_PARAMS,
            inputs: ReaderInputs | None = None) -> StenosisResult:
    """Measure WASID percent stenosis of one arterial segment of one run.

    Parameters
    ----------
    path_or_run : str, path or AngioRun
        DICOM XA/DSA file (or single-frame series folder), or a run already read.
    segment : {"ICA", "M1", "V4", "BA"}
        Artery graded (sets the WASID reference rule); required.
    proximal, distal : (row, col)
        Reader's points on the artery either side of the lesion, pixels of the frame (0-based).
    frame : int, optional
        0-based frame to analyse; None picks the first fully opacified frame not in ``exclude_frames`` (a warning when none is).
    model : {"unet", "classical"}
        Vessel-probability model used for the centerline.
    reference : (row, col), optional
        Reader-forced reference location (``reference_choice`` "manual").
    reference_choice : {"proximal", "distal", "feeding"}, optional
        Reader-forced WASID reference site; None follows the WASID order.
    mld : (row, col), optional
        Reader-placed MLD: the minimum is searched only near this point.
    waypoints : sequence of (row, col)
        Inner centerline points, proximal to distal, the trace must pass through.
    feeding_proximal, feeding_distal : (row, col), optional
        Two points on the feeding artery (WASID 3rd choice; for ICA the extracranial ICA).
    pixel_mm : float, optional
        Reader's pixel size in mm at the isocentre; overrides the file calibration.
    frames : {"all", "single"} or int
        Frames measured: every frame of the arterial phase (at least ``combine_fraction`` of the
        bolus along the segment; combined per sample before WASID), only the analysed one, or at
        most N.
    exclude_frames : sequence of int
        Frames the reader dropped from the combination (e.g. one with motion or venous overlap);
        recorded in ``result.frames["excluded"]``.
    params : MeasureParams
        Tuned values of the measurement (recorded in ``result.parameters["params"]``).
    inputs : ReaderInputs, optional
        All of the reader's inputs at once (then the arguments above are not used).

    Returns
    -------
    StenosisResult
        ``percent_stenosis`` always; mm values are None when the run is uncalibrated.

    Raises
    ------
    InputError
        The file is not a readable XA/DSA run.
    MeasurementError
        Points outside the image or far from any vessel, segment too short, ...
    """
    if inputs is None:
        inputs = ReaderInputs.create(segment, proximal, distal, frame, model=model, reference=reference,
                                     reference_choice=reference_choice, mld=mld, waypoints=waypoints,
                                     feeding_proximal=feeding_proximal, feeding_distal=feeding_distal,
                                     pixel_mm=pixel_mm, frames=frames, exclude_frames=exclude_frames)
    run = calibrated_run(path_or_run, inputs.pixel_mm)
    inputs = inputs.within(run.frames.shape[0], run.frames.shape[1:])
    return _measure_run(run, inputs, params)


def _measure_run(run, inputs: ReaderInputs, params: MeasureParams, *, mask_checked: bool = False) -> StenosisResult:
    """:func:`measure` of a run read and checked. A native run whose mask holds iodine along the
    segment is measured again with another mask, or its analysed frame alone; an untagged run,
    with its frames before the bolus as the mask (:func:`mask_check`)."""
    scale = Scale.of(run.calibration, inputs.segment, inputs.model, params)
    try:
        analysed = choose_frame(run, inputs, scale, params)
    except MeasurementError as err:
        # nothing to trace after subtraction: a mask holding as much iodine as every frame
        # leaves no vessel; look on the native frame holding the most around the points
        found = None if mask_checked else _traced_natively(run, inputs, scale, params)
        try:
            check = None if found is None else mask_check(run, found, params, whole_vessel=True,
                                                          exclude=inputs.exclude_frames)
        except PathLacksIodine as thin:  # the tracer's refusal stands; say what the native frame shows
            raise MeasurementError(f"{err}; {thin}") from None
        if check is None:
            raise
        _not_dropped(found.index, inputs)
        return _measured_again(run, inputs, params, found.index, *check)
    _not_dropped(analysed.index, inputs)
    if not mask_checked:
        check = mask_check(run, analysed, params, exclude=inputs.exclude_frames)
        if check is not None:
            return _measured_again(run, inputs, params, analysed.index, *check)
    rhint = radius_hint(analysed.image, analysed.trace.centerline_rc)
    analysed = registered_on_segment(run, analysed, params, reach_px=follow_reach(rhint, params))
    image, trace = analysed.image, analysed.trace
    background = single_frame_background(run, analysed, params)
    companions = companions_of(run, analysed, inputs, rhint, params)
    single_native = background is not analysed.image
    image = background if single_native else companions.analysed_image
    profile = _diameters_on(image, analysed, inputs, rhint, scale, params, centred_on_analysed=single_native,
                            log_attenuation=log_attenuation(run))
    if profile.amplitude <= 0:
        raise MeasurementError("no contrast in the traced segment; check the points and the frame")
    clip = clipping_warning(np.asarray(run.frames[analysed.index]), profile.centerline_rc, scale, params)
    placed = place_overrides(image, inputs, profile, rhint, scale, params)
    series = measure_frames(run, analysed, inputs, profile, rhint, scale, placed, companions, params, read_on=image)
    wm = series.combined
    if single_native:
        wm = background_sensitivity(run, analysed, inputs, wm, rhint, scale, placed, params)
    # against the SD the result reports (a single native frame's with its background terms)
    start = start_sensitivity_warning(series.profile, wm, inputs.segment, params, **_grading_inputs(inputs, placed))
    burnt = None if run.metadata.subtracted else burnt_out_warning(np.asarray(run.frames[analysed.index]), series.profile,
                                                                   wm, scale, params)
    # the run's own "no calibration in the file" already says mm are not reported: once is enough
    said = any(UNCALIBRATED_MARK in w for w in run.warnings)
    scale_notes = tuple(w for w in scale.warnings if not (said and UNCALIBRATED_MARK in w))
    swapped = swapped_points_warning(analysed, params)
    odd = implausible_size_warning(wm.reference_px, scale, inputs.segment, run.calibration, params)
    edge = field_edge_warning(run.frames, series.profile.centerline_rc, wm.reference_px)
    notes = (*run.warnings, *scale_notes, *((odd,) if odd else ()), *((swapped,) if swapped else ()),
             *((edge,) if edge else ()), *trace.warnings, *((clip,) if clip else ()), *((burnt,) if burnt else ()),
             *placed.warnings, *wm.warnings, *((start,) if start else ()), *series.warnings)
    return assemble_result(run, inputs, analysed, series.profile, placed, wm, scale, notes, params, series)


def implausible_size_warning(reference_px: float, scale: Scale, segment, calibration,
                             params: MeasureParams = DEFAULT_PARAMS) -> str | None:
    """A warning when the reference diameter in mm is not one the segment has: over
    ``plausible_factor`` times its widest normal lumen (``widest_normal_for``) or under the widest
    over twice that (ICA 10 / 1.25 mm, M1/V4/BA 7 / 0.875 mm by default): the calibration is
    then the likelier error (a wrong --catheter-french or --pixel-mm, a magnification
    off by a factor). The percent depends on it less than the mm do, but the trace's scale (step,
    crop, vessel map) is set in mm. None when uncalibrated."""
    if scale.mm_per_px is None or not np.isfinite(reference_px):
        return None
    ref = reference_px * scale.mm_per_px
    widest = params.widest_normal_for(segment)
    hi, lo = params.plausible_factor * widest, widest / (2 * params.plausible_factor)
    if lo <= ref <= hi:
        return None
    name = str(getattr(segment, "value", segment))
    source = calibration.source.value if calibration is not None else None
    return (f"the reference diameter reads {ref:.2f} mm, {'over' if ref > hi else 'under'} what the {name} measures "
            f"({lo:.2g}-{hi:.2g} mm): check the calibration ({source or 'its source'}; --pixel-mm or "
            "--catheter-french) and measure again (the trace's scale depends on it too)")


def swapped_points_warning(analysed: AnalysedFrame, params: MeasureParams = DEFAULT_PARAMS) -> str | None:
    """A warning when the run shows the contrast reaching the reader's distal point first: the
    points may be swapped, and WASID's reference site (proximal first) depends on which is which.
    The bolus front is read as :func:`stenosis.auto.find_lesion` orients a trunk
    (:func:`stenosis.auto.bolus_trend`: the arrival frame fitted along the traced path changes by
    more than ``swap_span_frames`` from end to end, at least ``bolus_t_stat`` standard errors; a
    segment between a reader's points is shorter than an auto trunk, so its span is smaller).
    The points are not swapped for the reader: a retrograde filling (through the circle of Willis,
    a collateral) is real, and the reader decides. None when the run shows no front, or it runs
    from the proximal point."""
    from .auto import bolus_trend

    if analysed.stack is None or analysed.stack.shape[0] < 3:
        return None
    rc = np.round(analysed.trace.centerline_rc).astype(int)
    h, w = analysed.stack.shape[1:]
    rc = rc[(rc[:, 0] >= 0) & (rc[:, 0] < h) & (rc[:, 1] >= 0) & (rc[:, 1] < w)]
    span, t_stat = bolus_trend(analysed.stack, rc)
    if not (np.isfinite(span) and span < -params.swap_span_frames and t_stat <= -params.bolus_t_stat):
        return None
    return (f"the contrast reaches the distal point {-span:.1f} frames before the proximal one: the points may be "
            "swapped (proximal is upstream, and WASID's reference site depends on it); if so, swap the proximal and "
            "distal points (--proximal / --distal, the batch's proximal_* / distal_* columns), unless the artery "
            f"fills backwards (a collateral); the reference site may be the wrong one: {CONFIRM_CALL}")


def _not_dropped(index: int, inputs: ReaderInputs) -> None:
    if index in inputs.exclude_frames:
        raise MeasurementError(f"frame {index} is the analysed frame and cannot be dropped; choose another "
                               "frame to analyse (--frame N, or frame=N) and drop this one")


#: how mask_check's notes say the analysed frame is measured without a mask
_ALONE = "is measured alone as a native frame, against a background interpolated around the lumen"


def _frames_are(frames) -> str:
    """``"frame 3 was"`` / ``"frames 3, 4 were"``: the start of a note about ``frames``."""
    frames = list(frames)
    return f"frame{'s' if len(frames) > 1 else ''} {', '.join(map(str, frames))} {'were' if len(frames) > 1 else 'was'}"


def _still_note(a: int) -> str:
    """The first warning of a segment measured on a native frame though no frame differs from
    another along it beyond a quiet frame's share: no bolus is seen there."""
    return (f"every frame kept holds about the same along this segment, so no bolus is seen there (a run exported after "
            f"it arrived, or still anatomy shaped like a vessel: a catheter, a bone edge): frame {a} is measured "
            f"alone as a native frame; check that this is an opacified artery, and {CONFIRM_CALL}")


def mask_check(run, analysed: AnalysedFrame, params: MeasureParams = DEFAULT_PARAMS, *,
               whole_vessel: bool = False, exclude=()) -> tuple[tuple[int, ...] | None, str | None] | None:
    """Whether a native run's mask is the right one for the traced segment, and what to do if not.

    Each frame's iodine along the segment is read on the native frames
    (:func:`stenosis.opacification.native_iodine`, sides beyond the largest lumen the fit
    searches). That reading also holds still anatomy shaped like a vessel (a catheter, a bone
    ridge along it), the same in every frame; differences between frames hold the bolus alone.
    So the mask (the tagged mask frames, else frame 0, as :func:`stenosis.opacification.opacify`
    takes it) is judged against the frame holding the least (``exclude``: frames the reader
    dropped, never chosen): when it holds more than ``mask_iodine_fraction`` of the iodine the
    analysed frame gains over that frame, subtracting it removes that much of the lumen's signal,
    unevenly where the bolus was still filling (a run exported after the bolus arrived, or mask
    frames tagged wrongly), and the frame holding the least is the mask instead.

    An untagged run (frame 0 is the tool's guess, not the acquisition's statement) whose every
    frame holds more than ``mask_iodine_fraction`` of the analysed frame's reading, the least
    frame's reading following the analysed frame's narrowing along the segment (:func:`_follows`:
    iodine does, a still ridge of anatomy does not), is measured on the analysed frame alone, as a
    native frame; tagged mask frames are trusted on this. Frames the reader dropped are never the
    mask of an untagged run (the first frame kept is). An untagged run whose frame 0 is a fine mask gets as mask
    every frame from 0 until the bolus arrives (:func:`_before_the_bolus`); a tagged run, its
    (contiguous) tagged frames and the frames after them until the bolus arrives.

    Returns None (the mask is fine; subtracted or single-frame runs; a reading under its noise),
    ``(masks, note)`` with the frames to subtract instead (``note`` None when only more quiet
    frames were found), or ``(None, note)`` (measure the analysed frame alone).
    ``whole_vessel`` (a segment traced on a native frame, nothing having been traced after
    subtraction): refused (:class:`PathLacksIodine`, saying where) unless every
    quarter of the path holds at least ``mask_iodine_fraction`` of the segment's median iodine in
    the analysed frame, so that points off any vessel, whose path crosses background or anatomy,
    are still refused. When no frame differs from another
    along the segment by more than ``mask_quiet_fraction`` of its iodine (and its noise), nothing
    tells a run exported after the bolus arrived from still anatomy shaped like a vessel: the
    analysed frame is measured alone and the note asks a reader to confirm the call."""
    from .diameter import normals_from_centerline
    from .opacification import native_iodine

    a = analysed.index
    masks = mask_frames_of(run)
    if not masks:
        return None
    tagged = bool(run.metadata.mask_frames)
    usable = [t for t in range(run.frames.shape[0]) if t == a or t not in set(exclude)]
    if not tagged and masks[0] not in usable:
        # the reader dropped frame 0, the untagged run's mask: never a dropped frame (the first
        # frame kept is, with the frames before the bolus after it); none kept: the frame alone
        kept = [t for t in usable if t != a]
        if not kept:
            return None, f"every other frame was dropped, frame 0 (the mask of this untagged run) too: frame {a} {_ALONE}"
        masks = [kept[0]]
    rc = analysed.trace.centerline_rc
    side = params.fit_r_max_radii * radius_hint(analysed.image, rc) + params.fit_r_max_extra_px
    per, across = native_iodine(run, rc, normals_from_centerline(rc), side_px=side, sides=True)
    if len(usable) < 2:  # the reader dropped every other frame, the tagged masks kept: trusted
        return None
    quarter_sd = _iodine_noise(across, usable, _quarters(per.shape[1]))
    floor = params.contrast_sigmas * quarter_sd / 2  # a median over four quarters: about their mean's noise
    iodine = np.median(per, axis=1)
    if not iodine[a] > floor:
        return None
    least = min(usable, key=lambda t: iodine[t])
    rise = iodine[a] - iodine[least]  # still anatomy cancels
    # a bolus seen along the segment: the frames differ by more than a quiet frame may (the
    # threshold of _before_the_bolus) and than their noise
    bolus = rise > max(params.mask_quiet_fraction * iodine[a], np.sqrt(2) * floor)
    if whole_vessel:
        thin = [q for q in _quarters(per.shape[1]) if np.median(per[a, q]) < params.mask_iodine_fraction * iodine[a]]
        if thin:
            r, c = rc[thin[0][len(thin[0]) // 2]]
            raise PathLacksIodine(
                f"traced on frame {a} without the mask, the path between the points holds under "
                f"{100 * params.mask_iodine_fraction:.0f}% of its median iodine around ({r:.0f}, {c:.0f}): it crosses "
                "background between vessels there, or a long tight lesion or an occlusion lies there")
        if not bolus:
            return None, _still_note(a)
    which = f"mask frame{'s' if len(masks) > 1 else ''} {', '.join(map(str, masks))}"
    held = (float(np.mean(iodine[masks])) - iodine[least]) / rise if rise > 0 else 0.0
    if not tagged and iodine[least] > params.mask_iodine_fraction * iodine[a]:
        if not bolus:
            return None, _still_note(a)
        sample_sd = _iodine_noise(across, usable)
        follows = _follows(per[a], per[least], sample_sd)
        share = iodine[least] / iodine[a]
        if whole_vessel or (follows is not None and follows > params.mask_iodine_fraction):
            return None, (f"every frame of the run holds at least {100 * share:.0f}% of the analysed frame's iodine "
                          f"along the segment (frame {least} the least: a run exported after the bolus arrived), "
                          f"and no mask frame is tagged: frame {a} {_ALONE}")
    if tuple(masks) != (least,) and bolus and held > params.mask_iodine_fraction:
        what = (f"include the analysed frame {a} (tagged wrongly)" if a in masks else
                f"hold{'' if len(masks) > 1 else 's'} {100 * held:.0f}% of the iodine the analysed frame gains over "
                f"frame {least} along the segment (a run exported after the bolus arrived, or mask frames tagged wrongly)")
        return (least,), (f"the run's {which} {what}: frame {least}, which holds the least, is the mask instead")
    if tagged:
        # frames after the tagged masks and before the bolus see the same anatomy under the
        # segment: averaged in, they lower the mask's noise, which every frame measured shares
        # (under the lumen no other frame observes it). Tags that skip frames are taken as given.
        tags = sorted(masks)
        if tags != list(range(tags[0], tags[-1] + 1)):
            return None
        quiet = _before_the_bolus(per, a, params, usable, quarter_sd, start=tags[-1])
        more = sorted(set(tags) | set(quiet))
        return None if more == tags else (tuple(more), None)
    quiet = _before_the_bolus(per, a, params, usable, quarter_sd, start=masks[0])
    if quiet == [0]:
        return None
    note = None if masks[0] == 0 else (f"frame 0, dropped by the reader, is not the mask: frame"
                                       f"{'s' if len(quiet) > 1 else ''} {', '.join(map(str, quiet))} "
                                       f"{'are' if len(quiet) > 1 else 'is'}")
    return tuple(quiet), note


class PathLacksIodine(MeasurementError):
    """A path traced on a native frame holds too little iodine over a quarter of its length
    (:func:`mask_check` with ``whole_vessel``): background between vessels, or a long tight lesion."""


def _quarters(n: int) -> list[np.ndarray]:
    """The sample indices of the segment's four quarters: a bolus front or a stretch off the vessel
    that covers part of the segment shows in one of them, where a median over all would hide it."""
    return np.array_split(np.arange(n), 4)


def _iodine_noise(across: np.ndarray, usable: list[int], groups: list[np.ndarray] | None = None) -> float:
    """The noise SD of one frame's iodine averaged over one of ``groups`` of samples (the
    segment's quarters; None: each sample alone). ``across``: (T, N) difference of the two sides,
    which holds no iodine, and whose still anatomy cancels between frames: its group means' change
    from one frame to the next is noise alone. The median absolute change (robust to a vein filling
    beside one side, or motion, in a few frames) / 0.6745 / sqrt(2) is the SD of a group mean of
    the sides' difference, and sqrt(3/4) of it that of the iodine's (centre less the sides' mean
    against the two sides' difference: per-pixel variance 1.5 : 2)."""
    kept = across[usable]
    means = kept if groups is None else np.stack([kept[:, g].mean(axis=1) for g in groups], axis=1)
    if len(means) < 2:
        return 0.0
    return float(np.median(np.abs(np.diff(means, axis=0))) / 0.6745 / np.sqrt(2) * np.sqrt(0.75))


def _follows(analysed: np.ndarray, least: np.ndarray, sample_sd: float) -> float | None:
    """How much of the analysed frame's iodine, as it varies along the segment (the narrowing,
    the taper), the least frame's reading follows: the slope of one on the other over the
    samples, its dilution by the analysed frame's own noise (``sample_sd`` per sample) taken
    out. Iodine in every frame follows the lumen's narrowing; still anatomy along the vessel (a
    ridge of bone) does not. None when the segment varies too little beyond its noise to tell."""
    spread = float(np.var(analysed)) - sample_sd ** 2
    if not spread > sample_sd ** 2:
        return None
    return float(np.mean((analysed - analysed.mean()) * (least - least.mean())) / spread)


def _before_the_bolus(per: np.ndarray, analysed: int, params: MeasureParams, usable: list[int],
                      quarter_sd: float, *, start: int = 0) -> list[int]:
    """Frames ``start`` (0, or the first the reader kept), ``start`` + 1, ... (the ``usable``
    ones) while each holds, along every quarter of the segment, no more iodine than the first beyond ``mask_quiet_fraction`` of the analysed frame's or
    ``contrast_sigmas`` of the noise of that difference (``quarter_sd``, one frame's:
    :func:`_iodine_noise`, times sqrt 2), whichever is larger but never beyond
    ``mask_iodine_fraction`` of the analysed frame's: a frame where the bolus has reached part of
    the segment ends them. Their mean must hold no more than the first bound, with the noise of
    that mean (sqrt(1 - 1/n) of one frame's: the first is in it): trailing frames are let go until
    it does."""
    means = np.stack([per[:, q].mean(axis=1) for q in _quarters(per.shape[1])], axis=1)  # (T, 4)
    excess = means - means[start]  # each frame's iodine over the first's, per quarter

    ref = excess[analysed]
    if not np.all(ref > 0):
        return [start]
    quiet = params.mask_quiet_fraction * ref
    allowed = np.minimum(np.maximum(quiet, params.contrast_sigmas * np.sqrt(2) * quarter_sd),
                         params.mask_iodine_fraction * ref)
    out = [start]
    for t in range(start + 1, per.shape[0]):
        if t == analysed:
            break
        if t not in usable:
            continue
        if np.any(excess[t] >= allowed):
            break
        out.append(t)
    while len(out) > 1 and np.any(excess[out].mean(axis=0)
                                  >= np.maximum(quiet, params.contrast_sigmas * quarter_sd * np.sqrt(1 - 1 / len(out)))):
        out.pop()
    return out


def _alone(run, index: int):
    """Frame ``index`` of a run as a single-frame native run (no mask)."""
    return replace(run, frames=run.frames[index:index + 1], metadata=replace(run.metadata, n_frames=1, mask_frames=()))


def _traced_natively(run, inputs: ReaderInputs, scale: Scale, params: MeasureParams) -> AnalysedFrame | None:
    """A native multi-frame run's segment traced on one native frame alone (the reader's, else
    the one not dropped holding the most iodine around the points), or None (nothing traced there either)."""
    from .opacification import native_values

    n = run.frames.shape[0]
    if run.metadata.subtracted or n < 2:
        return None
    if inputs.frame is not None:
        k = int(inputs.frame)
    else:
        kept = [t for t in range(n) if t not in inputs.exclude_frames]
        if not kept:
            return None
        k = kept[guess_frame(run, inputs.path_points, stack=np.stack([-native_values(run, t) for t in kept]))]
    try:
        found = choose_frame(_alone(run, k), replace(inputs, frame=0, exclude_frames=()), scale, params)
    except MeasurementError:
        return None
    return replace(found, index=k)


def _measured_again(run, inputs: ReaderInputs, params: MeasureParams, analysed_index: int,
                    masks: tuple[int, ...] | None, note: str | None) -> StenosisResult:
    """The measurement with ``masks`` as the run's mask frames, or (None) of the analysed frame
    alone as a single native frame, reported in the run's frame numbers, ``note`` first."""
    meta = run.metadata
    first = (note,) if note else ()
    if masks is not None:
        res = _measure_run(replace(run, metadata=replace(meta, mask_frames=tuple(masks))), inputs, params,
                           mask_checked=True)
        return replace(res, warnings=tuple(dict.fromkeys((*first, *res.warnings))))
    a = analysed_index
    res = _measure_run(_alone(run, a), replace(inputs, frame=0, frames="single", exclude_frames=()), params,
                       mask_checked=True)
    idle = list(inputs.exclude_frames)
    if idle:
        first += (f"dropped {_frames_are(idle)} not combined anyway (a single frame measured)",)
    fr = dict(res.frames)
    if fr:
        fr["used"] = [a]
        fr["per_frame"] = [{**p, "frame": a} for p in fr.get("per_frame", [])]
    return replace(res, frame_index=a, frames=fr, warnings=tuple(dict.fromkeys((*first, *res.warnings))),
                   parameters={**res.parameters, "reader": inputs.to_record()},
                   frames_read=tuple(replace(f, index=a) for f in res.frames_read))


@dataclass(frozen=True, eq=False)
class FrameSeries:
    """The segment measured on every frame used: the combined profile and WASID, each frame's own,
    and the frame-to-frame spread of the percent stenosis (a measured precision)."""

    profile: DiameterProfile  # combined over the frames used
    combined: WasidMeasurement  # on the combined profile; its SD includes the frame-to-frame spread
    frames: tuple[int, ...]  # the analysed frame first
    per_frame: tuple[WasidMeasurement, ...]
    frame_sd: float  # SD of the per-frame percent stenosis (nan below 3 frames)
    rejected: tuple[tuple[int, str], ...] = ()
    warnings: tuple[str, ...] = ()
    dropped: tuple[int, ...] = ()  # frames the reader dropped that would have been combined
    shared_noise_weight: float = 0.0  # the mask's noise removed off the vessels (Companions)
    read: tuple[FrameRead, ...] = ()  # each frame used, as its diameters were read (the analysed first)
    mask_noise_explained: float = 0.0  # the mask's noise predicted under the lumen (Companions)


def _frame_read(index: int, image: np.ndarray, shift_rc, profile: DiameterProfile, amplitude: np.ndarray,
                read: np.ndarray, rhint: float, params: MeasureParams) -> FrameRead:
    """A frame as its diameters were read, its image cropped to what the segment's profiles
    reach (:class:`stenosis.result.FrameRead`)."""
    d = np.asarray(shift_rc, float)
    reach = profile_geometry(rhint, params)[0] + params.profile_band_px + 2.0
    pts = np.asarray(profile.centerline_rc, float) + d[None, :]
    lo = np.maximum(np.floor(pts.min(axis=0) - reach).astype(int), 0)
    hi = np.minimum(np.ceil(pts.max(axis=0) + reach).astype(int) + 1, np.asarray(image.shape[:2]))
    crop = np.array(image[lo[0]:hi[0], lo[1]:hi[1]], np.float32, copy=True)
    return FrameRead(int(index), crop, (int(lo[0]), int(lo[1])), (float(d[0]), float(d[1])),
                     np.asarray(amplitude, float), np.asarray(read, bool), float(rhint))


def _area_noise(profile: DiameterProfile) -> float:
    """The profile's lumen-area noise SD (px^2), over its usable samples (all when under 6)."""
    return area_noise_sd_px2(profile, profile.valid if profile.valid.sum() >= 6 else np.ones(len(profile), bool))


def _grading_inputs(inputs: ReaderInputs, placed: PlacedOverrides) -> dict:
    """The reader's inputs to :func:`stenosis.wasid.wasid` (keyword arguments)."""
    return dict(manual_index=placed.manual_index, manual_reference_px=placed.manual_reference_px,
                feeding_profile=placed.feeding_profile, force_choice=inputs.reference_choice,
                mld_near_index=placed.mld_index)


def _diameters_on(image: np.ndarray, analysed: AnalysedFrame, inputs: ReaderInputs, rhint: float, scale: Scale,
                  params: MeasureParams, *, centred_on_analysed: bool = False,
                  log_attenuation: bool = False) -> DiameterProfile:
    """The diameter stage along the analysed frame's trace on ``image`` (the analysed image, the
    frames' shared noise removed, or a single native frame opacified against a background model:
    then ``centred_on_analysed``, the trace centred on the analysed image). ``log_attenuation``:
    the image is natural-log attenuation (:func:`stenosis.opacification.log_attenuation`)."""
    trace = analysed.trace
    return diameter_stage(image, trace.centerline_rc, trace.arc_px, trace.probability, origin_rc=trace.origin_rc,
                          radius_hint_px=rhint, step_px=scale.step_px, mm_per_px=scale.mm_per_px,
                          crossings=inputs.model == ModelName.UNET.value, params=params,
                          centring_image=analysed.image if centred_on_analysed else None,
                          log_attenuation=log_attenuation)


def background_sensitivity(run, analysed: AnalysedFrame, inputs: ReaderInputs, wm: WasidMeasurement, rhint: float,
                           scale: Scale, placed: PlacedOverrides, params: MeasureParams = DEFAULT_PARAMS) -> WasidMeasurement:
    """``wm`` of a single native frame with the background model's uncertainty in its SDs.

    The background under the lumen is never observed, only interpolated from the pixels around
    it; two plausible scales of that interpolation (``background_sigma_px`` and
    ``background_check_sigma_px``) bracket it. The segment is measured again on the second
    (same trace and centring, graded afresh) and the differences in percent stenosis, MLD and
    reference join their SDs in quadrature (recorded as ``parameters.background_sd``); when the
    percent moves by more than its other SD the result says so."""
    s2 = params.background_check_sigma_px
    check = s2 > 0 and s2 != params.background_sigma_px
    if not check and not params.background_moved_gap_sigmas > 0:
        return wm

    def moved_by(image: np.ndarray) -> tuple[WasidMeasurement, list[float]] | None:
        """The segment graded again on ``image`` (same trace and centring) and how far it moved."""
        try:
            w2 = wasid(_diameters_on(image, analysed, inputs, rhint, scale, params, centred_on_analysed=True,
                                     log_attenuation=log_attenuation(run)),
                       inputs.segment, params=params, **_grading_inputs(inputs, placed))
        except MeasurementError:
            return None
        dd = [float(w2.percent_stenosis) - float(wm.percent_stenosis), float(w2.mld_px) - float(wm.mld_px),
              float(w2.reference_px) - float(wm.reference_px)]
        return (w2, dd) if all(np.isfinite(dd)) else None

    wm2, d_pct, d_mld, d_ref = None, 0.0, 0.0, 0.0
    if check:
        got = moved_by(single_frame_background(run, analysed, params, sigma_px=s2))
        if got is not None:
            wm2, (d_pct, d_mld, d_ref) = got[0], np.abs(got[1]).tolist()
    # the interpolation's own error, measured beside the vessel on the sides that show it (RMS)
    moved = [got[1] for got in map(moved_by, moved_hole_images(run, analysed, params)) if got is not None]
    if wm2 is None and not moved:
        return wm
    m_pct, m_mld, m_ref = (np.sqrt(np.mean(np.square(moved), axis=0)) if moved else np.zeros(3)).tolist()
    b_pct, b_mld, b_ref = float(np.hypot(d_pct, m_pct)), float(np.hypot(d_mld, m_mld)), float(np.hypot(d_ref, m_ref))
    notes = wm.warnings
    if wm2 is not None and d_pct > wm.percent_stenosis_sd:
        notes += (f"the background under the vessel is not seen on a single native frame: interpolated at "
                  f"{params.background_sigma_px:g} and {s2:g} px it gives {wm.percent_stenosis:.1f} and "
                  f"{wm2.percent_stenosis:.1f}%; the SD includes the difference",)
    return replace(wm, percent_stenosis_sd=float(np.hypot(wm.percent_stenosis_sd, b_pct)),
                   mld_sd_px=float(np.hypot(wm.mld_sd_px, b_mld)), reference_sd_px=float(np.hypot(wm.reference_sd_px, b_ref)),
                   warnings=notes, background_sd={"percent": b_pct, "mld_px": b_mld, "reference_px": b_ref,
                                                  "scales_percent": d_pct, "moved_hole_percent": m_pct})


def single_frame_background(run, analysed: AnalysedFrame, params: MeasureParams = DEFAULT_PARAMS, *,
                            sigma_px: float | None = None, known: np.ndarray | None = None) -> np.ndarray:
    """The analysed image, with the segment's crop of a single native frame (no mask to subtract)
    opacified against a background interpolated under the traced lumen from the pixels around it
    (:func:`stenosis.opacification.background_off_vessels`) instead of the whole frame's top-hat,
    which the path was traced (and is centred) on. The lumen: the pixels within each centerline
    sample's own half-maximum radius on the top-hat (:func:`stenosis.trace.local_radius`),
    widened by ``background_mask_px`` and continued ``background_beyond_sigmas`` interpolation
    scales past each end of the trace (the artery goes on beyond the reader's points: unmasked,
    it would darken the background near the ends and narrow the lumen there), and taken around the
    vessel map's mid-line where the trace sits off it (``background_map_reach_radii``); ``sigma_px``: the
    interpolation's scale (default ``background_sigma_px``); ``known``: the frame's background
    when it is known (a benchmark's truth, the ceiling of any interpolation), used in place of the
    interpolation. Other runs: the analysed image itself."""
    sigma = params.background_sigma_px if sigma_px is None else sigma_px
    parts = _single_frame_parts(run, analysed, params, sigma, known)
    return analysed.image if parts is None else _opacified(run, analysed, params, *parts)


def _single_frame_parts(run, analysed: AnalysedFrame, params: MeasureParams, sigma: float,
                        known: np.ndarray | None = None) -> tuple | None:
    """(values, vessel, background) on the trace's crop of a single native frame
    (:func:`single_frame_background`), None for other runs or when no lumen can be kept out."""
    from .opacification import background_off_vessels, native_values

    if run.metadata.subtracted or run.frames.shape[0] != 1:
        return None
    box = analysed.trace.box
    values = native_values(run, analysed.index)[box]
    vessel = traced_lumen(analysed, params.background_mask_px, beyond_px=params.background_beyond_sigmas * sigma,
                          map_reach_radii=params.background_map_reach_radii, map_threshold=params.vessel_threshold)
    if vessel is None or vessel.all():
        return None
    bg = background_off_vessels(values, vessel, sigma_px=sigma) if known is None else np.asarray(known, np.float32)[box]
    return values, vessel, bg


def _opacified(run, analysed: AnalysedFrame, params: MeasureParams, values: np.ndarray, vessel: np.ndarray,
               background: np.ndarray) -> np.ndarray:
    """The analysed image with its crop opacified against ``background`` (:func:`contrast_against`)."""
    image = np.array(analysed.image, np.float32, copy=True)
    image[analysed.trace.box] = contrast_against(run, values, background, vessel, params)
    return image


def moved_hole_images(run, analysed: AnalysedFrame, params: MeasureParams = DEFAULT_PARAMS) -> list[np.ndarray]:
    """The single native frame opacified as :func:`single_frame_background` does, with the
    interpolation's own error measured beside the vessel (:func:`moved_hole_error`) added under
    the lumen: one image per side that shows it (none when ``background_moved_gap_sigmas`` is 0)."""
    if not params.background_moved_gap_sigmas > 0:
        return []
    sigma = params.background_sigma_px
    parts = _single_frame_parts(run, analysed, params, sigma)
    if parts is None:
        return []
    values, vessel, bg = parts
    errors = [moved_hole_error(values, vessel, analysed, sigma, side=side, params=params) for side in (1, -1)]
    return [_opacified(run, analysed, params, values, vessel, bg + err) for err in errors if err is not None]


def _shifted(a: np.ndarray, dr: int, dc: int, fill) -> np.ndarray:
    """``a`` moved by (dr, dc) whole pixels, ``fill`` where nothing moved in."""
    out = np.full_like(a, fill)
    h, w = a.shape
    if abs(dr) >= h or abs(dc) >= w:
        return out
    out[max(dr, 0):h + min(dr, 0), max(dc, 0):w + min(dc, 0)] = a[max(-dr, 0):h + min(-dr, 0), max(-dc, 0):w + min(-dc, 0)]
    return out


def moved_hole_error(values: np.ndarray, vessel: np.ndarray, analysed: AnalysedFrame, sigma_px: float, *, side: int,
                     params: MeasureParams = DEFAULT_PARAMS) -> np.ndarray | None:
    """(h, w) float32 on the crop, 0 off ``vessel``: the error the background interpolation makes
    over a hole of the lumen's shape where the background is seen. The hole is moved across the
    vessel (normal to the chord between the trace's ends) to ``side``, by its width (twice its
    largest inscribed radius) plus ``background_moved_gap_sigmas`` interpolation scales, so the two
    holes do not share their support; the pixels there less the background interpolated over the
    moved hole (the lumen kept out too) are moved back under the lumen. Only pixels where the
    background is seen and the interpolation does not lean on a vessel count: not within that gap
    of the lumen (a curved vessel comes back toward its moved hole), not within an interpolation
    scale of another vessel of the map, not off the crop. None when they cover under half of the
    lumen (the side tells little: it is left out, not read as no error). One draw of the
    interpolation's error at the lumen's own scale and shape, from the texture beside it."""
    gap = params.background_moved_gap_sigmas
    rc = np.asarray(analysed.trace.centerline_rc, float)
    if not gap > 0 or len(rc) < 2 or not vessel.any():
        return None
    chord = rc[-1] - rc[0]
    if not np.linalg.norm(chord) > 0:
        return None
    u = chord / np.linalg.norm(chord)
    width = 2.0 * float(ndi.distance_transform_edt(vessel).max())
    step = side * (width + gap * sigma_px) * np.array([-u[1], u[0]])
    dr, dc = int(round(step[0])), int(round(step[1]))
    hole = _shifted(vessel, dr, dc, False)
    probe = hole & (ndi.distance_transform_edt(~vessel) > gap * sigma_px)
    trace = analysed.trace
    box = trace.box
    if trace.probability is not None and np.shape(trace.probability) == vessel.shape and \
            tuple(trace.origin_rc) == (box[0].start, box[1].start):
        others = np.asarray(trace.probability) > params.vessel_threshold
        if others.any():
            probe &= ndi.distance_transform_edt(~others) > sigma_px
    back_probe = _shifted(probe, -dr, -dc, False) & vessel
    if back_probe.sum() < 0.5 * vessel.sum():
        return None
    from .opacification import background_off_vessels

    bg = background_off_vessels(values, vessel | hole, sigma_px=sigma_px)
    err = np.where(probe, values - bg, 0.0).astype(np.float32)
    back = _shifted(err, -dr, -dc, np.float32(0.0))
    return np.where(back_probe, back, 0.0).astype(np.float32)


def contrast_against(run, values: np.ndarray, background: np.ndarray, vessel: np.ndarray,
                     params: MeasureParams = DEFAULT_PARAMS) -> np.ndarray:
    """A single native frame's iodine signal: ``background - values`` (both as
    :func:`stenosis.opacification.native_values` gives them), read relative to the brightness
    behind the vessel when the run's intensity relationship is unknown: times
    ``(m / background) ** background_relative_power``, ``m`` the background's median under the
    ``vessel`` mask (so the contrast keeps its grey-level scale). A LIN run is already in log
    attenuation and a LOG run's contrast is additive: neither is scaled. Where stored values are
    proportional to intensity (power 1), Beer-Lambert makes a vessel's depth follow the brightness
    behind it (iodine transmits a share of what reaches it), so a bone edge or a brightness
    gradient along the vessel would otherwise read as a change of calibre."""
    contrast = background - values
    power = params.background_relative_power
    if not power or run.metadata.pixel_intensity_relationship is not None or not vessel.any():
        return contrast
    level = float(np.median(background[vessel]))
    if not level > 0:
        return contrast
    return contrast * (level / np.maximum(background, 0.05 * level)) ** power


def _within_factor(fill_t: np.ndarray, usual: np.ndarray, fraction: float) -> np.ndarray:
    """(N,) bool: a frame's opacity is within a factor 1 / ``fraction`` of the ``usual`` one."""
    return (fill_t >= fraction * usual) & (fraction * fill_t <= usual)


@dataclass(frozen=True, eq=False)
class Companions:
    """The other frames of the arterial phase, followed, for :func:`measure_frames`."""

    followed: list  # (frame index, FollowedFrame or None: moved too far)
    dropped: tuple[int, ...]  # companions the reader dropped
    notes: tuple[str, ...]
    analysed_image: np.ndarray  # the analysed image, the frames' shared noise removed
    shared_noise_weight: float  # w of :func:`stenosis.opacification.shared_noise` (0: not removed)
    mask_noise_explained: float = 0.0  # R^2 of :func:`stenosis.opacification.mask_noise` (0: not predicted)


def follow_reach(rhint: float, params: MeasureParams = DEFAULT_PARAMS) -> float:
    """How far (px) the profiles reach from the centerline: the margin the frames followed onto
    the analysed one are opacified and registered with (:func:`stenosis.frames.follow_frames`)."""
    return profile_geometry(rhint, params)[0] + params.profile_band_px


def companions_of(run, analysed: AnalysedFrame, inputs: ReaderInputs, rhint: float,
                  params: MeasureParams = DEFAULT_PARAMS) -> Companions:
    """The frames of the arterial phase other than the analysed one (:func:`stenosis.frames.companion_frames`
    along the trace), less those the reader dropped, followed onto the analysed frame
    (:func:`stenosis.frames.follow_frames`), and the noise the frames share removed off the
    vessels from them and from the analysed image, and under the lumen from the mask itself
    (:func:`stenosis.frames.without_shared_noise`; with a frame limit, from the frames it allows)."""
    limit = inputs.frame_limit
    companions = [] if limit == 0 else companion_frames(run, analysed, analysed.trace.centerline_rc, params=params)[0]
    dropped = tuple(t for t in companions if t in inputs.exclude_frames)
    companions = [t for t in companions if t not in inputs.exclude_frames]
    masks = mask_frames_of(run)
    kept_masks = [t for t in inputs.exclude_frames if t not in dropped and t in masks]  # tagged: trusted
    idle = [t for t in inputs.exclude_frames if t not in dropped and t not in masks]
    notes: tuple[str, ...] = ((f"dropped {_frames_are(idle)} not combined anyway (not a frame of the arterial "
                               "phase, or a single frame measured)",) if idle else ())
    if kept_masks:
        notes += (f"dropped frame{'s' if len(kept_masks) > 1 else ''} {', '.join(map(str, kept_masks))} "
                  f"{'are' if len(kept_masks) > 1 else 'is'} the run's tagged mask, subtracted from every frame "
                  "measured (not combined): kept as the mask",)
    followed = follow_frames(run, analysed, companions, params, reach_px=follow_reach(rhint, params))
    image, followed, weight, explained = without_shared_noise(analysed, followed, params, estimate_from=limit,
                                                              fixed_mask=bool(run.metadata.subtracted), run=run)
    return Companions(list(zip(companions, followed)), dropped, notes, image, weight, explained)


def measure_frames(run, analysed: AnalysedFrame, inputs: ReaderInputs, profile: DiameterProfile, rhint: float,
                   scale: Scale, placed: PlacedOverrides, companions: Companions,
                   params: MeasureParams = DEFAULT_PARAMS, *, read_on: np.ndarray) -> FrameSeries:
    """The segment on the other frames of the arterial phase (``companions``: :func:`companions_of`),
    combined; ``profile`` was measured on ``read_on`` (the corrected analysed image, or a single
    native frame opacified against its background model).

    The centred trace of the analysed frame follows each frame by the segment's motion
    (:func:`stenosis.frames.follow_frames`); the same samples are fitted with the run's blur and
    amplitude scaled by the frame's iodine (:func:`stenosis.diameter.same_samples_in_frame`),
    and the diameters combined per sample
    (:func:`stenosis.diameter.combine_frames`) before WASID. Each frame is also read at the
    sites WASID chose on the combined profile (:func:`stenosis.wasid.at_same_sites`); with 3 or
    more frames the SD of those per-frame percent stenoses is the measured precision: the combined SD is at least that
    over sqrt(n), and frames that disagree beyond their modelled noise are reported. The combined percent SD is
    also at least the analysed frame's own x :func:`shared_noise_share` (the masks' noise, in every frame alike);
    when a floor raises it, the MLD and reference SDs are raised with it (:func:`_sd_at_least`).
    """
    def grade(p: DiameterProfile) -> WasidMeasurement:
        return wasid(p, inputs.segment, params=params, **_grading_inputs(inputs, placed))

    profiles, used, rejected = [profile], [analysed.index], []
    read = [_frame_read(analysed.index, read_on, (0.0, 0.0), profile, profile.amplitudes, np.ones(len(profile), bool),
                        rhint, params)]
    trace = analysed.trace
    limit = inputs.frame_limit
    dropped, notes = companions.dropped, companions.notes
    indices = [t for t, _ in companions.followed]
    fill = None if not indices else frame_fill(run, analysed, profile.centerline_rc)
    usual = None if fill is None else np.median(fill[[analysed.index] + indices], axis=0)

    def read_frame(moved: FollowedFrame) -> tuple[DiameterProfile, FrameRead] | str:
        # samples the bolus has not reached (or has left) in this frame are not read from it, nor
        # those holding twice the frames' usual iodine (a vein filling over the artery): a frame's
        # sample is read where its opacity is within a factor 1 / combine_fraction of the median
        # over the analysed and companion frames there (not of the peak over frames, which such a
        # vein would raise, nor of the analysed frame's alone, which may be the one still filling)
        filled = np.ones(len(profile), bool) if fill is None else _within_factor(fill[moved.index], usual,
                                                                                 params.combine_fraction)
        scale_t = iodine_ratio(moved.image, profile, moved.shift_rc, radius_hint_px=rhint, params=params, use=filled)
        if not (np.all(np.isfinite(scale_t[filled])) and np.all(scale_t[filled] > 0)):
            return "no iodine along (part of) the segment"
        frame_t = same_samples_in_frame(moved.image, profile, moved.shift_rc, trace.probability,
                                        origin_rc=trace.origin_rc, radius_hint_px=rhint,
                                        amplitude_scale=np.where(filled, scale_t, 1.0), params=params,
                                        unfilled=None if filled.all() else ~filled)
        return frame_t, _frame_read(moved.index, moved.image, moved.shift_rc, profile, frame_t.amplitudes, filled,
                                    rhint, params)

    # the frames are read independently of each other (the same numbers in any order): all at
    # once, on threads, unless a frame limit stops the reading early (then each when reached)
    present = [m for _, m in companions.followed if m is not None]
    readings = {} if limit is not None else dict(zip((m.index for m in present), _map_frames(read_frame, present)))
    for t, moved in companions.followed:
        if limit is not None and len(used) > limit:
            break
        if moved is None:
            rejected.append((t, "moved too far from the analysed frame"))
            continue
        got = readings[t] if t in readings else read_frame(moved)
        if isinstance(got, str):
            rejected.append((t, got))
            continue
        profiles.append(got[0])
        used.append(t)
        read.append(got[1])
    fewer: tuple[str, ...] = ()
    if isinstance(inputs.frames, int) and len(used) < inputs.frames:
        fewer = (f"{len(used)} of the {inputs.frames} frames asked for were measured: only these are "
                 "in the segment's arterial phase and in place",)
    if len(profiles) == 1:
        return FrameSeries(profile, grade(profile), (analysed.index,), (), float("nan"), tuple(rejected), fewer + notes,
                           dropped, companions.shared_noise_weight, tuple(read), companions.mask_noise_explained)
    combined_profile = combine_frames(profiles, [_area_noise(p) for p in profiles], outlier_sds=params.frame_outlier_sds)
    combined = grade(combined_profile)
    if combined.reference_window is None:
        # a reference measured off the traced segment (feeding artery, a reader's point) is from
        # the analysed frame alone: its SD is that frame's, not the combined profile's
        single = grade(profile)
        sd_pct = 100.0 * float(np.hypot(combined.mld_sd_px / combined.reference_px,
                                        combined.mld_px * single.reference_sd_px / combined.reference_px**2))
        combined = replace(combined, reference_sd_px=single.reference_sd_px, percent_stenosis_sd=sd_pct)
    per_frame = tuple(at_same_sites(p, combined, params) for p in profiles)
    warns: tuple[str, ...] = fewer
    frame_sd = float("nan")
    if len(per_frame) >= 3:
        pcts = np.array([w.percent_stenosis for w in per_frame])
        frame_sd = float(np.std(pcts, ddof=1))
        expected = float(np.median([w.percent_stenosis_sd for w in per_frame]))
        if frame_sd > params.frames_disagree_ratio * expected:
            warns += (f"the {len(per_frame)} frames disagree beyond their noise (percent stenosis SD {frame_sd:.1f} "
                     f"between frames, {expected:.1f} expected): motion, inflow or a misplaced trace; check the frames",)
        combined = _sd_at_least(combined, frame_sd / np.sqrt(len(per_frame)))
    shared = shared_noise_share(run, len(profiles))
    if shared < 1.0:
        # the mask's noise is subtracted from every frame alike: combining n frames cannot lower the
        # SD of the analysed frame's own reading (graded alone: its sites, its competing stretches)
        # below the share of it the frames share (a lower bound: the model's and the background's
        # terms do not average at all). Not the frame read at the combined sites (per_frame), whose
        # SD leaves out the selection of the narrowest of many stretches that the frames share.
        try:
            floor = grade(profile).percent_stenosis_sd * shared
        except MeasurementError:  # a reader's forced site the analysed frame alone cannot grade
            floor = float("nan")
        combined = _sd_at_least(combined, floor)
    return FrameSeries(combined_profile, combined, tuple(used), per_frame, frame_sd, tuple(rejected), warns + notes,
                       dropped, companions.shared_noise_weight, tuple(read), companions.mask_noise_explained)


def _map_frames(fn, items: list) -> list:
    """``[fn(x) for x in items]``, on ``_FRAME_THREADS`` threads when there are two or more items
    (numpy and scipy release the GIL in most of a frame's reading)."""
    if len(items) < 2 or _FRAME_THREADS < 2:
        return [fn(x) for x in items]
    pool = ThreadPoolExecutor(max_workers=_FRAME_THREADS)
    try:
        out = list(pool.map(fn, items))
    except BaseException:  # an interrupt or a failing frame: the frames not started are not read
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return out


def _sd_at_least(m: WasidMeasurement, floor: float) -> WasidMeasurement:
    """``m`` with its percent SD raised to ``floor`` when below it, and the MLD and reference SDs
    with it, so that the percent SD still follows from them: both scaled by the same factor (both
    carry the noise the floor stands for); a reference measured off the traced segment (no
    reference window: a feeding artery, a reader's point) keeps its own SD, from the analysed
    frame alone, and the MLD's SD takes all of the rise."""
    if not floor > m.percent_stenosis_sd:
        return m
    ref, mld = m.reference_px, m.mld_px
    if not (m.percent_stenosis_sd > 0 and ref > 0):
        return replace(m, percent_stenosis_sd=floor)
    if m.reference_window is None:
        ref_term = mld * m.reference_sd_px / ref**2
        return replace(m, percent_stenosis_sd=floor,
                       mld_sd_px=ref * float(np.sqrt(max((floor / 100.0) ** 2 - ref_term**2, 0.0))))
    k = floor / m.percent_stenosis_sd
    return replace(m, percent_stenosis_sd=floor, mld_sd_px=m.mld_sd_px * k, reference_sd_px=m.reference_sd_px * k)


def shared_noise_share(run, n_frames: int) -> float:
    """sqrt of the share of one frame's noise variance that ``n_frames`` combined frames keep when
    each is the same mask (the mean of M mask frames, each frame at one dose) subtracted from it:
    (1/M + 1/n) / (1/M + 1). 1 (nothing to say) for a run stored subtracted (its mask is not
    known) or a native run without a mask."""
    m = 0 if run.metadata.subtracted else len(mask_frames_of(run))
    if m == 0 or n_frames < 2:
        return 1.0
    return float(np.sqrt((1.0 / m + 1.0 / n_frames) / (1.0 / m + 1.0)))


def calibrated_run(path_or_run, pixel_mm: float | None):
    """The run (read when a path), with the reader's pixel size when given."""
    from .calibration import manual_calibration
    from .io import AngioRun, read_run

    if isinstance(path_or_run, AngioRun):
        run = path_or_run
    elif isinstance(path_or_run, (str, os.PathLike)):
        run = read_run(path_or_run)
    else:
        raise InputError(f"measure needs a path or an AngioRun, got {type(path_or_run).__name__}")
    return run if pixel_mm is None else run.with_calibration(manual_calibration(float(pixel_mm)))


@dataclass(frozen=True, eq=False)
class PlacedOverrides:
    """The reader's reference, MLD and feeding-artery inputs, placed on the measured profile."""

    manual_index: int | None = None  # reference on the traced segment
    manual_reference_px: float | None = None  # reference measured off the segment ...
    manual_centre_rc: tuple[float, float] | None = None  # ... there
    mld_index: int | None = None
    feeding_profile: DiameterProfile | None = None
    warnings: tuple[str, ...] = ()


def _nearest_sample(profile: DiameterProfile, rc) -> tuple[int, float]:
    dd = np.hypot(profile.centerline_rc[:, 0] - rc[0], profile.centerline_rc[:, 1] - rc[1])
    k = int(np.argmin(dd))
    return k, float(dd[k])


def place_overrides(image: np.ndarray, inputs: ReaderInputs, profile: DiameterProfile, rhint: float, scale: Scale,
                    params: MeasureParams = DEFAULT_PARAMS) -> PlacedOverrides:
    """Feeding-artery profile (traced and measured with the run's lumen model), the reference
    (a sample of the trace, or a local measurement off it) and the MLD sample."""
    warns: tuple[str, ...] = ()
    feeding = None
    if inputs.feeding_proximal is not None:
        ft = trace_segment(image, [inputs.feeding_proximal, inputs.feeding_distal], model=inputs.model, scale=scale,
                           params=params)
        warns += ft.warnings
        feeding = measure_diameters(image, ft.centerline_rc, ft.arc_px, radius_hint_px=radius_hint(image, ft.centerline_rc),
                                    mm_per_px=scale.mm_per_px, blur_sigma_px=profile.blur_sigma_px,
                                    amplitude=profile.amplitude, params=params,
                                    log_attenuation=profile.attenuation_per_px > 0)
    on_segment_px = max(scale.snap_px, params.on_segment_radii * rhint)
    manual_index = manual_px = manual_centre = None
    if inputs.reference is not None:
        k, d = _nearest_sample(profile, inputs.reference)
        if d <= on_segment_px:
            manual_index = k
        else:
            manual_px, manual_centre = local_reference(image, inputs.reference, profile, model=inputs.model,
                                                       scale=scale, params=params)
    mld_index = None
    if inputs.mld is not None:
        mld_index, d = _nearest_sample(profile, inputs.mld)
        if d > on_segment_px:
            raise MeasurementError(
                f"the MLD point ({inputs.mld[0]:g}, {inputs.mld[1]:g}) is {d:.0f} px from the traced segment; "
                "place it on the lesion of the traced artery")
    return PlacedOverrides(manual_index, manual_px, manual_centre, mld_index, feeding, warns)


def _reference_window(wm: WasidMeasurement, profile: DiameterProfile, placed: PlacedOverrides) -> ReferenceWindow:
    """Where D_normal was measured: a window of the traced profile, of the feeding artery, or off the segment."""
    nan = float("nan")
    if wm.reference_window is not None:
        win = wm.reference_window
        return ReferenceWindow(wm.reference_choice.value, float(profile.arc_px[win.i0]), float(profile.arc_px[win.i1]),
                               wm.reference_px, tuple(float(v) for v in profile.centerline_rc[win.centre]),
                               wm.reference_description)
    if placed.manual_centre_rc is not None:
        centre = placed.manual_centre_rc
    elif wm.feeding_window is not None and placed.feeding_profile is not None:
        centre = tuple(float(v) for v in placed.feeding_profile.centerline_rc[wm.feeding_window.centre])
    else:
        centre = (nan, nan)
    return ReferenceWindow(wm.reference_choice.value, nan, nan, wm.reference_px, centre, wm.reference_description)


def _model_sha(model: str) -> str | None:
    if model != ModelName.UNET.value:
        return None
    try:
        from .segmentation import model_sha256

        return model_sha256()
    except Exception:  # noqa: BLE001 - the hash is informative; the measurement stands
        return None


def assemble_result(run, inputs: ReaderInputs, analysed: AnalysedFrame, profile: DiameterProfile,
                    placed: PlacedOverrides, wm: WasidMeasurement, scale: Scale, notes: tuple[str, ...],
                    params: MeasureParams = DEFAULT_PARAMS, series: FrameSeries | None = None) -> StenosisResult:
    """The :class:`StenosisResult` of a measurement, with every step's warnings (deduplicated, in
    order), the borderline-call warning, the parameters and the reader's choices."""
    source = getattr(run, "source", "") or ""
    pct = float(np.clip(wm.percent_stenosis, -100.0, 100.0))
    border = borderline_warning(pct, wm.percent_stenosis_sd, params)
    i = wm.mld_index
    rwin = _reference_window(wm, profile, placed)
    return StenosisResult(
        file=Path(source).name if source and not source.startswith("<") else source,
        run_id=run.metadata.run_id,
        segment=inputs.segment.value,
        frame_index=int(analysed.index),
        percent_stenosis=pct,
        mld_px=wm.mld_px,
        mld_rc=tuple(float(v) for v in (profile.centerline_rc[i] + profile.normal_rc[i] * profile.centre_offset_px[i])),
        mld_arc_px=float(profile.arc_px[i]),
        reference_diameter_px=wm.reference_px,
        reference_rc=tuple(float(v) for v in rwin.centre_rc),
        reference_choice=wm.reference_choice.value,
        reference_window=rwin,
        lesion_start_px=float(profile.arc_px[wm.lesion_start_index]),
        lesion_end_px=float(profile.arc_px[wm.lesion_end_index]),
        interpolated_percent_stenosis=wm.interpolated_percent_stenosis,
        interpolated_reference_px=wm.interpolated_reference_px,
        calibration=run.calibration.to_dict(),
        mm_per_px=scale.mm_per_px,
        proximal_rc=inputs.proximal,
        distal_rc=inputs.distal,
        model=inputs.model,
        software={"version": __version__, "model_sha256": _model_sha(inputs.model)},
        profile=profile,
        warnings=tuple(dict.fromkeys((*notes, *((border,) if border else ())))),
        parameters={
            "step_mm": params.step_mm if scale.mm_per_px else None,
            "step_px": round(float(scale.step_px), 4),
            "blur_sigma_px": round(float(profile.blur_sigma_px), 4),
            "attenuation_per_px": round(float(profile.attenuation_per_px), 6),
            "lesion_rule": f"contiguous arc around the MLD with diameter < {params.lesion_fraction:g} x reference",
            "reference_rule": ("WASID: widest parallel non-tortuous normal window "
                               f"({params.window_diameters:g} reference diameters)"),
            "reference_description": wm.reference_description,
            "model_misfit": {k: (round(float(v), 3) if np.isfinite(v) else None) for k, v in wm.model_misfit.items()},
            "along_vessel_sd_px": round(float(wm.along_vessel_sd_px), 4),
            "background_sd": {k: round(float(v), 4) for k, v in wm.background_sd.items()} or None,
            "reader": inputs.to_record(),
            "params": params.to_record(),
        },
        image=analysed.image,
        feeding_profile=placed.feeding_profile,
        percent_stenosis_sd=float(wm.percent_stenosis_sd),
        mld_sd_px=float(wm.mld_sd_px),
        reference_sd_px=float(wm.reference_sd_px),
        frames=({**_frames_record(series, profile, scale), "mask": mask_frames_of(run)} if series is not None else {}),
        frames_read=series.read if series is not None else (),
    )


def _frames_record(series: FrameSeries, profile: DiameterProfile, scale: Scale) -> dict:
    """The frames used and each frame's own percent stenosis and MLD (JSON-ready)."""
    mm = scale.mm_per_px
    rnd = lambda v, nd: None if v is None or not np.isfinite(v) else round(float(v), nd)  # noqa: E731
    return {
        "used": [int(t) for t in series.frames],
        "per_frame": [{"frame": int(t), "percent_stenosis": rnd(w.percent_stenosis, 2), "mld_px": rnd(w.mld_px, 3),
                       "mld_mm": rnd(w.mld_px * mm, 4) if mm else None,
                       "percent_stenosis_sd": rnd(w.percent_stenosis_sd, 2)}
                      for t, w in zip(series.frames, series.per_frame)],
        "frame_to_frame_sd": rnd(series.frame_sd, 2),
        "rejected": [{"frame": int(t), "why": why} for t, why in series.rejected],
        "excluded": [int(t) for t in series.dropped],
        "shared_noise_weight": rnd(series.shared_noise_weight, 3),
        "mask_noise_explained": rnd(series.mask_noise_explained, 3),
    }
