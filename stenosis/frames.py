"""Frame selection: the frame in which the traced segment is fully opacified.

Rule: along the traced centerline, the opacity of each frame is sampled (mean over
a small disc around each centerline sample, then smoothed along the vessel), and
normalised per sample by its maximum over frames. A frame is *fully opacified*
when at least ``coverage`` (95%) of the samples reach ``fraction`` (90%) of their
peak. The earliest such frame is chosen: the segment is filled with contrast, and
later frames add nothing but a risk of venous overlap and motion. When no frame
qualifies, the frame with the highest median normalised opacity is chosen.
When this rule doubts that the chosen frame holds the whole segment, it is judged
again before a warning says so (:func:`_held`): every frame on the segment's region
with the mask registered there, the path followed by the anatomy's motion
(:func:`segment_frames`), each frame's opacity averaged over ``fill_smooth_radii``
lumen radii, and only a bolus front (a stretch from an end of the segment) unfilled
(:func:`held_share`): a patient moving by 2-3 px, one frame's noise, or a vein
crossing in later frames no longer say that no frame holds the segment. (Choosing
the frame by that judgement too was measured worse: docs/tuning.md section 2.)
The darkest frame is not the criterion: a bolus can be dense proximally while the
distal segment is still filling.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi

from .diameter import normals_from_centerline
from .errors import MeasurementError
from .opacification import (estimate_shift, mask_frames_of, mask_noise, native_values, opacify, opacify_tracked,
                             refine_shift, shared_noise)
from .params import DEFAULT_PARAMS, MeasureParams
from .reader import as_rc, check_points_within
from .trace import Scale, Trace, box_around, distance_to_path, local_radius, radius_hint, trace_segment

#: smoothing (px) of the two frames' iodine compared to find the guess frame's vessels absent
#: from the chosen frame (:func:`choose_frame`): a pixel's noise, not a vessel's width
_ABSENT_SMOOTH_PX = 1.0
#: interpolation border (px) of the region opacified in the other frames (:func:`follow_frames`)
_FOLLOW_BORDER_PX = 4

__all__ = ["segment_opacity", "select_frame", "brightest_frame", "guess_frame", "box_around", "AnalysedFrame",
           "SegmentFrames", "segment_frames", "held_share",
           "choose_frame", "companion_frames", "frame_fill", "FollowedFrame", "follow_frames",
           "traced_lumen", "map_midline", "iodine_free", "without_shared_noise", "registered_on_segment"]


def segment_opacity(stack: np.ndarray, centerline_rc: np.ndarray, *, radius_px: float = 1.5,
                    smooth_px: float | None = None, sides_px: float | None = None) -> np.ndarray:
    """(T, N) opacity of each frame at each centerline sample.

    Parameters
    ----------
    stack : (T, H, W) float
        Opacified frames (iodine positive).
    centerline_rc : (N, 2) float
        Centerline (row, col), pixels.
    radius_px : float
        Radius of the disc averaged around each sample, pixels.
    smooth_px : float, optional
        Length (px) of the moving average along the centerline (at least 5 samples, at most the
        centerline); 5 samples when None (none on a centerline of 5 samples or fewer).
    sides_px : float, optional
        Read each sample's opacity less the mean of its two sides, this far out along the normal
        (the vessel's own iodine: what the subtraction left of the anatomy, or a moving heart's
        shadow, is about the same across a vessel's width and cancels). None: the opacity itself.
    """
    st = np.asarray(stack, dtype=np.float32)
    pts = np.asarray(centerline_rc, float)
    out = _disc_means(st, pts, radius_px)
    if sides_px is not None and pts.shape[0] >= 2:
        nrm = normals_from_centerline(pts)
        out -= 0.5 * (_disc_means(st, pts + sides_px * nrm, radius_px) + _disc_means(st, pts - sides_px * nrm, radius_px))
    size = _smooth_samples(pts, smooth_px)
    if size > 1:
        out = ndi.uniform_filter1d(out, size=size, axis=1, mode="nearest")
    return out


def _disc_means(st: np.ndarray, pts: np.ndarray, radius_px: float) -> np.ndarray:
    """(T, N) each frame's mean over a disc of ``radius_px`` around each point (bilinear)."""
    r = int(np.ceil(radius_px))
    dr, dc = np.mgrid[-r : r + 1, -r : r + 1]
    disc = (dr**2 + dc**2) <= radius_px**2
    offs = np.stack([dr[disc], dc[disc]], axis=1).astype(float)
    coords = pts[:, None, :] + offs[None, :, :]  # (N, K, 2)
    out = np.empty((st.shape[0], pts.shape[0]), dtype=np.float64)
    for t in range(st.shape[0]):
        v = ndi.map_coordinates(st[t], coords.reshape(-1, 2).T, order=1, mode="nearest")
        out[t] = v.reshape(pts.shape[0], -1).mean(axis=1)
    return out


def _smooth_samples(centerline_rc: np.ndarray, smooth_px: float | None) -> int:
    """Samples of :func:`segment_opacity`'s moving average: ``smooth_px`` along the centerline, at
    least 5 and at most the centerline (a segment shorter than the length asked: all of it); 5 when
    None (1, none, on a centerline of 5 samples or fewer)."""
    pts = np.asarray(centerline_rc, float)
    n = pts.shape[0]
    if smooth_px is None or n < 2:
        return 5 if n > 5 else 1
    step = float(np.mean(np.linalg.norm(np.diff(pts, axis=0), axis=1)))
    return min(max(5, int(round(smooth_px / max(step, 1e-6)))), n)


def select_frame(
    stack: np.ndarray,
    centerline_rc: np.ndarray,
    *,
    fraction: float = 0.9,
    coverage: float = 0.95,
    exclude=(),
) -> tuple[int, np.ndarray]:
    """Earliest frame in which the traced segment is fully opacified.

    Parameters
    ----------
    stack : (T, H, W) float
        Opacified frames.
    centerline_rc : (N, 2) float
        Traced centerline, pixels.
    fraction : float
        A sample is opacified when it reaches this fraction of its peak over frames.
    coverage : float
        Fraction of samples that must be opacified.
    exclude : sequence of int
        Frames not to choose (a reader dropped them); ignored if it names every frame.

    Returns
    -------
    index : int
        Chosen frame (0-based within ``stack``).
    filled : (T,) float
        Fraction of samples opacified in each frame.
    """
    op = segment_opacity(stack, centerline_rc)
    allowed = _allowed(op.shape[0], exclude)
    peak = op.max(axis=0)  # over every frame: a dropped frame's iodine still says where the bolus is
    good = peak > 0
    if not good.any():
        return int(np.argmax(np.where(allowed, op.sum(axis=1), -np.inf))), np.zeros(op.shape[0])
    rel = op[:, good] / peak[good]
    filled = (rel >= fraction).mean(axis=1)
    ok = np.where((filled >= coverage) & allowed)[0]
    if ok.size:
        return int(ok[0]), filled
    return int(np.argmax(np.where(allowed, np.median(rel, axis=1), -np.inf))), filled


def held_share(op: np.ndarray, *, fraction: float, window: int) -> np.ndarray:
    """(T,) the share of the segment each frame holds: all but its bolus fronts, the samples below
    ``fraction`` of their peak over the frames from either end of the segment up to the first
    ``window`` samples in a row that reach it (:func:`_front`); ``op`` (T, N) is each frame's
    opacity along the segment, averaged along it over ``window`` samples.

    The bolus fills a segment from one end (and washes out from one): a stretch below the peak
    with filled stretches on both sides is another frame's excess, a vein crossing the artery a
    few frames later, whose peak the earlier frames do not reach there, or noise."""
    peak = op.max(axis=0)
    good = peak > 0
    if not good.any():
        return np.zeros(op.shape[0])
    below = op[:, good] / peak[good] < fraction
    n = below.shape[1]
    return np.array([1.0 - min(n, _front(b, window) + _front(b[::-1], window)) / n for b in below])


def _front(below: np.ndarray, window: int) -> int:
    """Samples ``below`` the fraction from the start up to the first ``window`` in a row that are not."""
    run = 0
    for i, b in enumerate(below):
        run = 0 if b else run + 1
        if run >= max(window, 1):
            return int(below[: i - run + 1].sum())
    return int(below.sum())


def _allowed(n: int, exclude) -> np.ndarray:
    """(n,) bool: the frames not in ``exclude`` (all of them when it names every frame)."""
    allowed = np.ones(n, bool)
    for t in np.ravel(() if exclude is None else exclude).astype(int):
        if 0 <= t < n:
            allowed[t] = False
    return allowed if allowed.any() else np.ones(n, bool)


def brightest_frame(stack: np.ndarray, box: tuple[slice, slice] | None = None, *, exclude=()) -> int:
    """Frame with the most iodine (sum of the top 2% of pixels) inside ``box``: a first guess
    (never one of the frames in ``exclude``, unless it names them all)."""
    st = np.asarray(stack)
    if box is not None:
        st = st[(slice(None),) + tuple(box)]
    flat = st.reshape(st.shape[0], -1)
    k = max(int(0.02 * flat.shape[1]), 1)
    top = np.partition(flat, flat.shape[1] - k, axis=1)[:, -k:]
    return int(np.argmax(np.where(_allowed(st.shape[0], exclude), top.sum(axis=1), -np.inf)))


def guess_frame(run, points=None, *, margin_px: float = 8.0, stack: np.ndarray | None = None, exclude=()) -> int:
    """First guess of the analysed frame, before any trace: the frame with the most iodine
    around the reader's points (the whole field without points).

    :func:`stenosis.measure` starts from this frame, traces the segment, then moves to the
    earliest frame in which the traced segment is fully opacified (:func:`select_frame`);
    the result's ``frame_index`` is that final choice.

    Parameters
    ----------
    run : AngioRun
    points : sequence of (row, col), optional
        Reader's points (proximal, waypoints, distal), pixels.
    stack : (T, H, W) float, optional
        The run's unregistered opacification, when the caller already has it.
    exclude : sequence of int
        Frames the reader dropped: never guessed.

    Raises
    ------
    ReaderInputError
        A point that is not a finite (row, col) inside the image.
    """
    t = run.frames.shape[0]
    if points is not None and len(points):  # proximal, waypoints, distal: the reader's own check
        pts = list(points)
        names = ["proximal", *(f"waypoint {k + 1}" for k in range(len(pts) - 2)), "distal"] if len(pts) > 1 else ["given"]
        check_points_within([(n, as_rc(p, n)) for n, p in zip(names, pts)], tuple(run.frames.shape[1:]))
    if t <= 1:
        return 0
    if stack is None:
        stack = opacify(run, register=False)
    box = None
    if points is not None and len(points):
        box = box_around(np.asarray(points, float).reshape(-1, 2), stack.shape[1:], margin_px)
    return brightest_frame(stack, box, exclude=exclude)


@dataclass(frozen=True, eq=False)
class AnalysedFrame:
    """The frame a measurement analyses: its index, its registered opacification, the trace on it."""

    index: int
    image: np.ndarray
    trace: Trace
    stack: np.ndarray | None = None  # the run's unregistered opacification, when it was computed


@dataclass(frozen=True, eq=False)
class SegmentFrames:
    """Every frame of a run on the region around a traced segment, the mask registered there, and
    the anatomy's place in each frame (:func:`segment_frames`)."""

    region: tuple[slice, slice]
    crops: np.ndarray  # (T, h, w) opacified, the mask registered on the region
    motion_rc: np.ndarray  # (T, 2) px: the mask's shift onto each frame; 0 where it explains little

    def opacity(self, centerline_rc: np.ndarray, frame: int, *, smooth_px: float | None = None,
                sides_px: float | None = None) -> np.ndarray:
        """(T, N) each frame's opacity along ``centerline_rc`` (a path on frame ``frame``), each
        frame sampled where the anatomy's motion from ``frame`` took the path
        (:func:`segment_opacity`)."""
        origin = np.array([self.region[0].start, self.region[1].start], float)
        local = np.asarray(centerline_rc, float) - origin
        moved = self.motion_rc - self.motion_rc[frame]
        return np.concatenate([segment_opacity(self.crops[t:t + 1], local + moved[t], smooth_px=smooth_px, sides_px=sides_px)
                               for t in range(self.crops.shape[0])])


def segment_frames(run, trace: Trace, params: MeasureParams = DEFAULT_PARAMS) -> SegmentFrames:
    """Every frame of ``run`` opacified on the region around ``trace`` (its crop widened by twice
    ``max_frame_shift_px`` and an interpolation border), the mask registered on that region, and the
    anatomy's motion: the mask's shift onto each frame where it removes at least
    ``motion_explained`` of the mask's difference from the frame, else none.

    The run's unregistered opacification, sampled along a trace made on one frame, judged a patient
    moving by 2-3 px as a bolus not arrived: the trace sampled the vessel's edge in the frames that
    moved, and the anatomy left by the subtraction raised the peak the frames are judged against
    (real anatomy: 8 of 36 runs of ``benchmarks/dsa_motion.py`` said no frame held the whole
    segment). On frames with no anatomy (a flat phantom) the registration's shift is noise (a
    fractional shift smooths the mask's noise: 4-15% of the difference) and is not followed; a real
    head's motion of 2-4 px removes 43-100% of it (docs/tuning.md section 2)."""
    region = _segment_region(trace.box, run.frames.shape[1:], params)
    crops, how = opacify_tracked(replace(run, frames=run.frames[:, region[0], region[1]]), register=True)
    motion = np.zeros((crops.shape[0], 2))
    if how is not None:
        known = how[:, 2] >= params.motion_explained
        motion[known] = how[known, :2]
    return SegmentFrames(region, crops, motion)


def _segment_region(box: tuple[slice, slice], shape: tuple[int, int], params: MeasureParams,
                    reach_px: float = 0.0) -> tuple[slice, slice]:
    """The region the frames are opacified and registered on around a segment: its trace's crop
    ``box`` widened by twice the largest followed motion (``max_frame_shift_px``), ``reach_px``
    (how far the profiles reach) and an interpolation border, within an image of ``shape``."""
    pad = int(np.ceil(2 * params.max_frame_shift_px + reach_px)) + _FOLLOW_BORDER_PX
    h, w = shape
    return (slice(max(box[0].start - pad, 0), min(box[0].stop + pad, h)),
            slice(max(box[1].start - pad, 0), min(box[1].stop + pad, w)))


def choose_frame(run, inputs, scale: Scale, params: MeasureParams = DEFAULT_PARAMS) -> AnalysedFrame:
    """The analysed frame (the reader's, or the earliest in which the traced segment is fully
    opacified), registered, with the segment traced on it.

    Choosing the frame needs a trace and tracing needs a frame: the path is traced on the
    frame with the most iodine around the points (:func:`guess_frame`, on a cheap unregistered
    opacification), the chosen frame (:func:`select_frame`) is opacified with registration,
    and the path follows it by the motion between the two frames (:func:`_frame_shift` on the
    crop; only motion beyond ``max_frame_shift_px`` traces it again); the vessel map is the guess
    frame's less the vessels the chosen frame does not hold (:func:`_without_absent`).
    """
    points = inputs.path_points
    stack = None
    if inputs.frame is None and run.frames.shape[0] > 1:
        stack = opacify(run, register=False)
        guess = guess_frame(run, points, stack=stack, exclude=inputs.exclude_frames)
    else:
        guess = inputs.frame if inputs.frame is not None else 0
    image = opacify(run, frames=[guess], register=True)[0]
    reader_frame = inputs.frame is not None and run.frames.shape[0] > 1
    moved_note = None
    try:
        trace = trace_segment(image, points, model=inputs.model, scale=scale, params=params)
    except MeasurementError as err:
        if reader_frame:
            raise MeasurementError(_reader_frame_refused(run, int(guess), points, err, inputs.exclude_frames)) from err
        found = _frame_under_points(run, stack, points, int(guess), scale, inputs, params, err)
        if found is None:
            raise
        guess, image, trace, moved_note = found
        reader_frame = True
    if reader_frame:
        if moved_note is not None:
            trace = replace(trace, warnings=(moved_note, *trace.warnings))
        stack = opacify(run, register=False)
        return AnalysedFrame(int(guess), image,
                             _reader_frame_filled(run, stack, image, int(guess), trace, params, inputs.exclude_frames),
                             stack)
    if stack is None:
        return AnalysedFrame(int(guess), image, trace)
    chosen, filled = select_frame(stack, trace.centerline_rc, fraction=params.select_fraction,
                                  coverage=params.select_coverage, exclude=inputs.exclude_frames)
    if filled[chosen] < params.select_coverage:  # doubted: judged again on the registered frames
        held = _held(run, image, trace, int(guess), params)
        if held[chosen] < params.select_coverage:  # the chosen frame does not hold the whole segment
            full = [int(t) for t in np.flatnonzero(held >= params.select_coverage) if t not in inputs.exclude_frames]
            trace = replace(trace, warnings=(*trace.warnings, _not_full_note(chosen, held, params, inputs.exclude_frames,
                                                                             full[0] if full else None)))
    if chosen == guess:
        return AnalysedFrame(int(guess), image, trace, stack)
    moved = opacify(run, frames=[chosen], register=True)[0]
    shift = _frame_shift(image[trace.box], moved[trace.box], params)
    if max(abs(shift[0]), abs(shift[1])) <= params.max_frame_shift_px:
        # the path (traced where the iodine is densest) follows the chosen frame, and so does the
        # vessel map, less what the chosen frame does not hold: where its iodine is below
        # combine_fraction of the guess frame's, by more than frame_outlier_sds of the two
        # frames' noise, the guess frame's vessel is not in the analysed frame (a vein filling
        # late over the lesion was flagged as a crossing, and the lesion left unmeasured, in every
        # frame). The chosen frame's own map is noisier at low dose.
        followed = trace.shifted(shift)
        followed = replace(followed, probability=_without_absent(image, moved, trace, shift, params))
        return AnalysedFrame(int(chosen), moved, followed, stack)
    again = trace_segment(moved, points, model=inputs.model, scale=scale, params=params)
    return AnalysedFrame(int(chosen), moved, replace(again, warnings=tuple(dict.fromkeys(trace.warnings + again.warnings))),
                         stack)


def points_iodine(stack: np.ndarray, points, radius_px: float) -> np.ndarray:
    """(T, P) each frame's iodine at each of the reader's ``points``: the most within ``radius_px``
    of it (the tracer's snap radius: where a point looks for its vessel)."""
    st = np.asarray(stack)
    h, w = st.shape[1:]
    out = np.empty((st.shape[0], len(points)))
    for k, (r, c) in enumerate(np.asarray(points, float).reshape(-1, 2)):
        box = box_around(np.array([[r, c]]), (h, w), radius_px)
        rr, cc = np.mgrid[box[0], box[1]]
        disc = (rr - r) ** 2 + (cc - c) ** 2 <= radius_px ** 2
        out[:, k] = st[(slice(None),) + tuple(box)][:, disc].max(axis=1)
    return out


#: the tracer's refusals of a point that lies off every vessel (centerline.snap_to_vessel, trace.check_contrast)
_OFF_VESSEL = ("is not on a vessel", "is not on an opacified vessel")


def _frame_under_points(run, stack: np.ndarray | None, points, guess: int, scale: Scale, inputs,
                        params: MeasureParams, err: MeasurementError):
    """When a point is not on a vessel in the frame guessed (``guess``, no frame given), the frame
    in which every point lies on the opacified artery: the one whose weakest point holds the most
    of its own peak iodine over the frames (:func:`points_iodine`; an artery that moves between
    frames, a coronary's with the heart, lies under the reader's points only in the frame they
    were placed on). ``(frame, image, trace, note)`` when that frame is another and traces;
    None otherwise (the refusal stands). The points must lie on the artery in that frame: within
    ``snap_min_px``, the smallest snap radius, not the run's (2 mm)."""
    if stack is None or stack.shape[0] < 2 or not any(m in str(err) for m in _OFF_VESSEL):
        return None
    # on the artery, not near it: the smallest snap radius, the frame traced with it too (a point
    # 2 mm from a vessel, refused on the frame guessed, is not taken up by another frame's map)
    on = replace(scale, snap_px=min(scale.snap_px, params.snap_min_px))
    io = points_iodine(stack, points, on.snap_px)
    peak = io.max(axis=0)
    if not (peak > 0).all():
        return None
    weakest = np.where(_allowed(io.shape[0], inputs.exclude_frames), (io / peak).min(axis=1), -np.inf)
    frame = int(np.argmax(weakest))
    if frame == guess:
        return None
    image = opacify(run, frames=[frame], register=True)[0]
    try:
        trace = trace_segment(image, points, model=inputs.model, scale=on, params=params)
    except MeasurementError:
        return None
    return frame, image, trace, _moved_note(guess, frame)


def _moved_note(guess: int, frame: int) -> str:
    """The warning of :func:`_frame_under_points`."""
    return (f"the points are not on the artery in frame {guess}, which holds the most iodine around them, but are in "
            f"frame {frame}: the artery moves between frames (the heart, the patient), so the segment is traced and "
            f"measured on frame {frame}, as if the reader had placed the points there; give the frame the points were "
            "placed on (--frame N; batch: the frame column) to be sure")


def _not_full_note(chosen: int, filled: np.ndarray, params: MeasureParams, dropped=(), full: int | None = None) -> str:
    """The warning when the frame chosen automatically does not hold the whole segment (``filled``:
    :func:`held_share`), naming ``full``, a frame not dropped that holds it, when there is one."""
    at = f"at {params.select_fraction:.0%} of its peak iodine"
    holds = f"holds {filled[chosen]:.0%} of it (the rest a bolus front, from an end of the segment)"
    if full is not None:
        return (f"frame {chosen}, the one chosen, does not hold the whole segment {at}: it {holds}; frame {full} "
                f"holds all of it: give --frame {full} (batch: the frame column) to measure on it; where the bolus "
                "had not arrived the lumen reads narrow")
    why = (f"of the frames not dropped ({', '.join(map(str, dropped))} dropped), none holds the whole segment"
           if len(dropped) else "no frame of the run holds the whole segment")
    return (f"{why} {at}: frame {chosen}, the one chosen, {holds}; where the bolus had not arrived the lumen reads "
            "narrow; check the frame")


def _reader_frame_refused(run, frame: int, points, err: MeasurementError, dropped=()) -> str:
    """The message when nothing is traced on the reader's frame: a mask frame, or a frame the
    bolus has not reached (or has left), is named as such, with the frame holding the most iodine
    around the points (of those not ``dropped``) to pick instead; else the tracer's own message."""
    kept = [t for t in range(run.frames.shape[0]) if t not in dropped]
    stack = opacify(run, frames=kept, register=False) if kept else None
    best = kept[guess_frame(run, points, stack=stack)] if kept else frame
    if frame in mask_frames_of(run):
        what = f"frame {frame} is a mask frame (no contrast: it is subtracted from the others)"
    elif best != frame:
        what = f"frame {frame} holds little contrast around the points (the bolus not there yet, or gone)"
    else:
        return str(err)
    return (f"{what}: pick a frame where the artery is opacified (frame {best} holds the most iodine around "
            f"the points) or give no frame (--frame; batch: the frame column) to let the tool choose")


def _held(run, image: np.ndarray, trace: Trace, frame: int, params: MeasureParams) -> np.ndarray:
    """(T,) the share of the segment each frame of ``run`` holds (:func:`held_share`), judged on the
    frames registered on the segment's region with the path followed by the anatomy's motion
    (:func:`segment_frames`; ``trace`` was made on ``frame``, whose opacification is ``image``),
    each frame's opacity averaged along the vessel over ``fill_smooth_radii`` lumen radii
    (:func:`radius_hint`) so that one frame's noise does not decide, and read as the vessel's own:
    less its two sides, beyond the widest lumen the fit searches (``fit_r_max_radii``): the anatomy a
    subtraction leaves, or a beating heart's shadow moving between frames, is about the same across
    the vessel (a cine run's full frame was said to hold 61% of the segment, the heart's shadow
    raising another frame's peak)."""
    rh = radius_hint(image, trace.centerline_rc)
    smooth = params.fill_smooth_radii * rh
    sides = params.fit_r_max_radii * rh + params.fit_r_max_extra_px  # beyond the widest lumen the fit searches
    op = segment_frames(run, trace, params).opacity(trace.centerline_rc, frame, smooth_px=smooth, sides_px=sides)
    return held_share(op, fraction=params.select_fraction, window=_smooth_samples(trace.centerline_rc, smooth))


def _reader_frame_filled(run, stack: np.ndarray, image: np.ndarray, frame: int, trace: Trace, params: MeasureParams,
                         dropped=()) -> Trace:
    """The reader's frame's trace, with a warning when the segment is not fully opacified in it
    (under ``select_coverage`` of its samples at ``select_fraction`` of their peak over frames,
    on the run's unregistered opacification ``stack`` and, when that doubts it, on the frames
    registered around the segment: :func:`_held`): a bolus still filling (or washing out)
    narrows the lumen it shows. The frame named instead is the earliest fully opacified one the
    reader did not drop."""
    _, quick = select_frame(stack, trace.centerline_rc, fraction=params.select_fraction,
                            coverage=params.select_coverage)
    if quick[frame] >= params.select_coverage:
        return trace
    filled = _held(run, image, trace, frame, params)
    if filled[frame] >= params.select_coverage:
        return trace
    full = [t for t in np.flatnonzero(filled >= params.select_coverage) if t not in dropped and t != frame]
    if not full:
        return trace
    note = (f"the segment is not fully opacified in frame {frame} (the reader's): it holds {100 * filled[frame]:.0f}% "
            f"of the segment at {100 * params.select_fraction:.0f}% of its peak iodine over the frames (the rest a "
            f"bolus front, from an end of the segment); a lumen still filling reads narrower: frame {int(full[0])} "
            "is the earliest fully opacified (give no frame to use it)")
    return replace(trace, warnings=(*trace.warnings, note))


def _without_absent(image: np.ndarray, moved: np.ndarray, trace: Trace, shift, params: MeasureParams) -> np.ndarray:
    """The guess frame's vessel map (``trace.probability``, a crop of ``image``) with the vessels
    the chosen frame (``moved``, displaced by ``shift``) does not hold set to 0: its iodine below
    ``combine_fraction`` of the guess frame's by more than ``frame_outlier_sds`` noise SDs of the
    two frames' difference. The traced lumen (within the radius hint + 2 px of the path) keeps
    its map: re-centring needs it where a vein crosses the lesion."""
    box = trace.box
    h, w = image.shape
    pad = int(np.ceil(max(abs(shift[0]), abs(shift[1])))) + 2
    big = (slice(max(box[0].start - pad, 0), min(box[0].stop + pad, h)),
           slice(max(box[1].start - pad, 0), min(box[1].stop + pad, w)))
    g = ndi.gaussian_filter(image[box].astype(np.float32), _ABSENT_SMOOTH_PX)
    c = ndi.shift(ndi.gaussian_filter(moved[big].astype(np.float32), _ABSENT_SMOOTH_PX), (-shift[0], -shift[1]),
                  order=1, mode="nearest")  # onto the guess frame's pixels, with a margin for the edge
    r0, c0 = box[0].start - big[0].start, box[1].start - big[1].start
    c = c[r0:r0 + g.shape[0], c0:c0 + g.shape[1]]
    diff = g - c
    noise = 1.4826 * float(np.median(np.abs(diff - np.median(diff))))  # the frames' difference is mostly noise
    noise = max(noise, 1e-3 * float(np.percentile(g, 99)))  # noise-free frames: a floor, not 0
    absent = (c < params.combine_fraction * g) & (diff > params.frame_outlier_sds * noise)
    near = distance_to_path(trace.centerline_rc - np.asarray(trace.origin_rc, float), g.shape)
    if near is not None:
        absent &= near[0] > radius_hint(image, trace.centerline_rc) + 2.0
    return np.where(absent, 0.0, trace.probability).astype(np.float32)


def companion_frames(run, analysed: AnalysedFrame, centerline_rc: np.ndarray, *,
                     params: MeasureParams = DEFAULT_PARAMS) -> tuple[list[int], np.ndarray | None]:
    """The other frames of the arterial phase, nearest the analysed frame first, and each frame's
    fill at each sample ((T, N): opacity over the sample's peak over the frames; None without any).

    A frame belongs to it when its opacity along the measured segment (:func:`segment_opacity` of
    the run's unregistered opacification), relative to each sample's peak over the frames, is at
    least ``combine_fraction`` at the median over the samples: its iodine is scaled to the analysed
    frame's sample by sample (:func:`stenosis.diameter.stage.iodine_ratio`) and its diameters
    weighted by their noise, so a frame at half the peak still adds a quarter of a peak frame's
    information. Samples of that frame below ``combine_fraction`` (the bolus front inside the
    segment) are not used from it (:func:`stenosis.measurement.measure_frames`). No companions
    when the analysed frame itself is not in that phase (a reader's frame taken early in the
    filling or late in the washout is measured alone)."""
    per_sample = frame_fill(run, analysed, centerline_rc)
    if per_sample is None:
        return [], None
    fill = np.median(per_sample[:, per_sample.max(axis=0) > 0], axis=1)
    if fill[analysed.index] < params.combine_fraction:
        return [], per_sample
    full = [int(t) for t in np.flatnonzero(fill >= params.combine_fraction) if t != analysed.index]
    return sorted(full, key=lambda t: (abs(t - analysed.index), t)), per_sample


def frame_fill(run, analysed: AnalysedFrame, centerline_rc: np.ndarray) -> np.ndarray | None:
    """(T, N): each frame's opacity at each sample along ``centerline_rc`` over the sample's peak
    over the frames (:func:`segment_opacity` of the run's unregistered opacification); 0 where
    no frame holds any; None for a single frame or no opacity anywhere.

    (Not the registered frames the analysed frame was chosen on, :class:`SegmentFrames`: with
    them one phantom run's frame 3 held 0.50 of the peak where it had held 0.51, was no longer
    combined, and the three frames left read a crossing inside the segment as its MLD: 35% for
    11; docs/tuning.md section 2.)"""
    if run.frames.shape[0] < 2:
        return None
    op = segment_opacity(analysed.stack if analysed.stack is not None else opacify(run, register=False), centerline_rc)
    peak = op.max(axis=0)
    good = peak > 0
    if not good.any():
        return None
    return np.where(good[None, :], op / np.where(good, peak, 1.0)[None, :], 0.0)


@dataclass(frozen=True, eq=False)
class FollowedFrame:
    """Another frame of the run, registered, and how far the segment moved from the analysed frame."""

    index: int
    image: np.ndarray
    shift_rc: tuple[float, float]


def _frame_shift(reference: np.ndarray, moving: np.ndarray, params: MeasureParams) -> tuple[float, float]:
    """The segment's motion between two opacified frames (their crops around the trace):
    phase correlation, refined where the frames determine it (:func:`refine_shift`)."""
    limit = 2 * params.max_frame_shift_px
    return refine_shift(reference, moving, estimate_shift(reference, moving, max_shift_px=limit), max_shift_px=limit,
                        min_eigen=params.follow_min_eigen)


def follow_frames(run, analysed: AnalysedFrame, indices: list[int], params: MeasureParams = DEFAULT_PARAMS, *,
                  reach_px: float = 0.0) -> list[FollowedFrame | None]:
    """Frames ``indices`` opacified with registration (one registration set-up for all of them),
    and the segment's motion from the analysed frame (phase correlation on the trace's crop, refined
    where the frames determine it: :func:`_frame_shift`);
    None for a frame that moved more than ``max_frame_shift_px`` (the trace would not follow it).

    Only the region around the trace is opacified and registered (the trace's crop widened by
    twice the largest followed motion, ``reach_px`` (how far the profiles reach from the
    centerline) and a few pixels of interpolation border): the mask is aligned on the anatomy
    around the segment, at a fraction of a whole frame's cost. The images returned are
    frame-sized, zero outside that region."""
    if not indices:
        return []
    box = analysed.trace.box
    h, w = run.frames.shape[1:]
    region = _segment_region(analysed.trace.box, run.frames.shape[1:], params, reach_px)
    crops = opacify(replace(run, frames=run.frames[:, region[0], region[1]]), frames=list(indices), register=True)
    out: list[FollowedFrame | None] = []
    for t, crop in zip(indices, crops):
        image = np.zeros((h, w), np.float32)
        image[region] = crop
        shift = _frame_shift(analysed.image[box], image[box], params)
        moved = max(abs(shift[0]), abs(shift[1])) > params.max_frame_shift_px
        out.append(None if moved else FollowedFrame(int(t), image, (float(shift[0]), float(shift[1]))))
    return out


def registered_on_segment(run, analysed: AnalysedFrame, params: MeasureParams = DEFAULT_PARAMS, *,
                          reach_px: float = 0.0) -> AnalysedFrame:
    """The analysed frame of a native run with mask frames, its mask registered again on the
    segment's region (:func:`_segment_region`, as its companion frames are), that region of
    its image replaced; other runs, and a frame the segment moved out of, unchanged.

    The mask is first registered on the whole frame (to trace on it); a patient's motion is not
    one translation over the whole frame (a head turning by half a degree moves one side of a
    512 px frame 2 px more than the other), and the analysed frame, registered on the whole frame,
    read 63-64% for a 60% lesion where its companion frames, registered around the segment, read
    60 (a probe run of real anatomy turned by 0.7 degrees). The vessel's place is the live frame's
    either way: the trace stays."""
    masks = mask_frames_of(run)
    if run.metadata.subtracted or not masks or analysed.index in masks:
        return analysed
    local = follow_frames(run, analysed, [analysed.index], params, reach_px=reach_px)[0]
    if local is None:
        return analysed
    region = _segment_region(analysed.trace.box, run.frames.shape[1:], params, reach_px)
    image = np.array(analysed.image, dtype=np.float32, copy=True)
    image[region] = local.image[region]
    return replace(analysed, image=image)


def traced_lumen(analysed: AnalysedFrame, margin_px: float, *, beyond_px: float = 0.0,
                 map_reach_radii: float = 0.0, map_threshold: float = 0.5) -> np.ndarray | None:
    """(h, w) bool on the trace's crop (``trace.box``) of the analysed image: the pixels within
    each centerline sample's own half-maximum radius (:func:`stenosis.trace.local_radius`) plus
    ``margin_px`` of the trace; None when no sample lies in the crop. The trace follows the
    analysed frame when it is not the frame the path was traced on; the crop does not.
    ``beyond_px``: the lumen also continued this far past each end of the trace, straight along
    its end direction (over the last few px) with the end's radius: the artery goes on beyond
    the reader's points. ``map_reach_radii`` (> 0): the lumen also taken, with the same radius,
    around the vessel map's mid-line across each sample that lies more than ``margin_px`` off the
    trace (:func:`map_midline`): a trace pulled off the lumen's centre would leave its far edge
    out of the lumen."""
    trace = analysed.trace
    box = trace.box
    origin = np.array([box[0].start, box[1].start], float)
    shape = (box[0].stop - box[0].start, box[1].stop - box[1].start)
    rc = np.asarray(trace.centerline_rc, float)
    own = local_radius(analysed.image, rc)
    radius = own + margin_px
    also = None
    if map_reach_radii > 0 and trace.probability is not None and np.shape(trace.probability) == shape and len(rc) >= 2:
        mid = map_midline(trace.probability, rc - np.asarray(trace.origin_rc, float),  # the map's own place
                          own * map_reach_radii, map_threshold)
        off = np.abs(mid) > margin_px
        if off.any():
            also = (rc + mid[:, None] * normals_from_centerline(rc))[off] - origin, radius[off]
    if beyond_px > 0 and len(rc) >= 2:
        rc, radius = _continued(rc, radius, beyond_px)
    near = distance_to_path(rc - origin, shape)
    if near is None:
        return None
    dist, nearest = near
    lumen = dist <= radius[nearest]
    if also is not None:
        near = distance_to_path(also[0], shape)
        if near is not None:
            lumen |= near[0] <= also[1][near[1]]
    return lumen


def map_midline(probability: np.ndarray, rc: np.ndarray, reach_px: np.ndarray, threshold: float) -> np.ndarray:
    """(N,) signed offset (px, along :func:`stenosis.diameter.profiles.normals_from_centerline`)
    of the vessel map's mid-line from each sample of the path ``rc`` (``probability``'s
    coordinates): the middle of the run of the map above ``threshold`` through the sample,
    followed along its normal up to ``reach_px`` (N,) each side; 0 where the sample is off the map
    or at its edge (the run ends within half a pixel on a side)."""
    normals = normals_from_centerline(rc)
    x = np.arange(0.0, float(np.max(reach_px)) + 0.5, 0.5)
    prob = np.asarray(probability, np.float32)
    runs = []
    for side in (-1.0, 1.0):
        q = rc[:, None, :] + side * normals[:, None, :] * x[None, :, None]
        y = ndi.map_coordinates(prob, q.reshape(-1, 2).T, order=1, mode="nearest").reshape(len(rc), -1)
        off = (y <= threshold) | (x[None, :] > reach_px[:, None])
        first = np.where(off.any(axis=1), np.argmax(off, axis=1), len(x))  # the first sample off the run
        runs.append(x[np.maximum(first - 1, 0)])
    lo, hi = runs
    return np.where((lo > 0) & (hi > 0), 0.5 * (hi - lo), 0.0)


def _continued(rc: np.ndarray, radius: np.ndarray, length_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The path ``rc`` (N, 2) and its ``radius`` with straight continuations ``length_px`` past
    each end, along the direction of its first (last) 5 px, at 0.5 px steps, the end's radius
    kept. The continuations come first and the path last: where one crosses the path (a curving
    trace), :func:`stenosis.trace.distance_to_path` gives the pixel to the path's own sample."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(rc, axis=0), axis=1))])
    steps = np.arange(0.5, length_px + 0.25, 0.5)
    parts, radii = [], []
    for end, first in ((0, True), (len(rc) - 1, False)):
        far = np.flatnonzero(np.abs(arc - arc[end]) >= min(5.0, arc[-1]))  # holds the other end at least
        other = far.min() if first else far.max()
        d = rc[end] - rc[other]
        norm = float(np.hypot(*d))
        if norm > 0:
            parts.append(rc[end] + np.outer(steps, d / norm))
            radii.append(np.full(len(steps), radius[end]))
    return np.concatenate([*parts, rc]), np.concatenate([*radii, radius])


def iodine_free(analysed: AnalysedFrame, margin_px: float) -> np.ndarray:
    """(h, w) bool on the trace's crop (``trace.box``) of the analysed image: the pixels off the
    traced lumen widened by ``margin_px`` (:func:`traced_lumen`) and farther than ``margin_px``
    from the vessel map (> 0.5), placed at ``trace.origin_rc`` (it follows the trace)."""
    trace = analysed.trace
    box = trace.box
    held = traced_lumen(analysed, margin_px)
    if held is None:
        return np.zeros((box[0].stop - box[0].start, box[1].stop - box[1].start), bool)
    shape = held.shape
    vessels = np.zeros(shape, bool)
    prob = trace.probability > 0.5
    dr, dc = (int(round(v)) for v in np.asarray(trace.origin_rc, float) - np.array([box[0].start, box[1].start]))
    r0, c0 = max(dr, 0), max(dc, 0)
    r1, c1 = min(dr + prob.shape[0], shape[0]), min(dc + prob.shape[1], shape[1])
    if r1 > r0 and c1 > c0:
        vessels[r0:r1, c0:c1] = prob[r0 - dr:r1 - dr, c0 - dc:c1 - dc]
    if vessels.any():
        vessels = ndi.distance_transform_edt(~vessels) <= margin_px
    return ~(held | vessels)


def without_shared_noise(analysed: AnalysedFrame, followed: list[FollowedFrame | None],
                         params: MeasureParams = DEFAULT_PARAMS, *,
                         estimate_from: int | None = None,
                         fixed_mask: bool = False, run=None) -> tuple[np.ndarray, list[FollowedFrame | None], float, float]:
    """The analysed image and the followed frames with the noise they share removed where no
    frame holds iodine (:func:`stenosis.opacification.shared_noise`), and its weight ``w``.

    Every frame of a run is the mask subtracted from a live frame, so the mask's quantum noise
    is in all of them alike and averaging frames cannot lower it; off the vessels, though, each
    live frame observes the anatomy the mask observed, so there the mask's noise is estimated
    from the frames themselves. Under the lumen the iodine hides it from the frames; there,
    given the native ``run``, it is estimated from the mask itself (each frame plus its live
    frame is the mask as subtracted from it; :func:`stenosis.opacification.mask_noise`, with
    ``mask_noise_scales_px``). Free of
    iodine: :func:`iodine_free` with ``shared_noise_margin_px``, inside the trace's crop; the
    frames are aligned on the analysed one by their motion rounded to whole pixels (an
    interpolation would smooth the noise being matched), or not at all with ``fixed_mask`` (a
    run stored subtracted: its mask's noise stays where the vendor subtracted it). ``estimate_from``: only the first so
    many followed frames estimate it (a reader's frame limit); it is removed from all.
    Unchanged (``w`` = 0) with ``shared_noise_sigma_px`` = 0, or fewer than 2 followed frames
    inside the image. Returns the images, the followed frames, ``w``, and the share of the frames'
    fine structure off the vessels that the mask predicts (0: not predicted under the lumen)."""
    image = analysed.image
    if not params.shared_noise_sigma_px > 0:
        return image, followed, 0.0, 0.0
    trace = analysed.trace
    box = trace.box
    h, w = image.shape
    # the analysed frame's crop, then each followed frame's (index into followed, its pixels)
    moves: list[tuple[int, tuple[slice, slice]]] = []
    for k, f in enumerate(followed):
        if f is None:
            continue
        # the mask's noise follows the mask: registered onto each live frame here (native runs),
        # where the segment moved; a run stored subtracted keeps it where the vendor left it
        d = (0, 0) if fixed_mask else (int(round(f.shift_rc[0])), int(round(f.shift_rc[1])))
        rows, cols = slice(box[0].start + d[0], box[0].stop + d[0]), slice(box[1].start + d[1], box[1].stop + d[1])
        if rows.start >= 0 and cols.start >= 0 and rows.stop <= h and cols.stop <= w:
            moves.append((k, (rows, cols)))
    crops = np.stack([image[box]] + [followed[k].image[rc] for k, rc in moves])
    n_fit = len(crops) if estimate_from is None else min(len(crops), 1 + estimate_from)  # a reader's limit
    if n_fit < 3:
        return image, followed, 0.0, 0.0
    free = iodine_free(analysed, params.shared_noise_margin_px)
    # free: less the pixels where a frame lies off the others (a vein filling), which hold iodine
    fine, weight, free = shared_noise(crops[:n_fit], free, sigma_px=params.shared_noise_sigma_px,
                                      outlier_sds=params.frame_outlier_sds, with_free=True)
    if weight <= 0:
        return image, followed, 0.0, 0.0
    under, explained = np.zeros_like(crops), 0.0  # the mask's noise under the iodine, per crop
    if run is not None and not fixed_mask and mask_frames_of(run) and len(params.mask_noise_scales_px):
        # each subtracted frame plus its live frame is the mask as subtracted from it
        regions = [(analysed.index, box)] + [(followed[k].index, rc) for k, rc in moves]
        masks = crops + np.stack([native_values(run, t, rc) for t, rc in regions])
        # fitted on the frames that estimate the off-vessel part (a reader's limit), made for all
        under, explained = mask_noise(crops, masks, free, sigma_px=params.shared_noise_sigma_px,
                                      scales_px=tuple(params.mask_noise_scales_px), fit_count=n_fit)
    image = np.array(image, np.float32, copy=True)
    image[box] -= fine + under[0]
    out = list(followed)
    for (k, rc), noise in zip(moves, under[1:]):
        moved = np.array(followed[k].image, np.float32, copy=True)
        moved[rc] -= fine + noise
        out[k] = replace(followed[k], image=moved)
    return image, out, weight, explained
