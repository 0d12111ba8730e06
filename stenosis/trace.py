"""The traced segment: vessel map on a crop around the reader's points, centerline, checks.

The vessel probability (U-Net or classical vesselness) is computed on a crop around the
points (widened when the path runs along its border), at a scale where the artery is no
wider than the model saw in training; the centerline is the minimum-cost path between
the points (:mod:`stenosis.centerline`). Messages quote the reader's points in the
frame's (row, col), never the crop's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .calibration import Calibration
from .centerline import snap_to_vessel, trace_centerline
from .diameter import measure_diameters, normals_from_centerline
from .enums import ModelName, Segment
from .errors import MeasurementError
from .params import DEFAULT_PARAMS, MeasureParams
from .result import CONFIRM_CALL

__all__ = ["Scale", "Trace", "box_around", "trace_segment", "radius_hint", "clipping_warning", "burnt_out_warning",
           "field_edge_warning", "is_bit_depth_top", "local_reference"]


def box_around(points, shape: tuple[int, int], margin: float) -> tuple[slice, slice]:
    """(row, col) slices of the bounding box of ``points`` (N, 2) grown by ``margin`` px,
    clipped to an image of ``shape``."""
    pts = np.asarray(points, float)
    lo = np.maximum(np.floor(pts.min(axis=0) - margin).astype(int), 0)
    hi = np.minimum(np.ceil(pts.max(axis=0) + margin).astype(int) + 1, shape)
    return slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1]))


@dataclass(frozen=True)
class Scale:
    """Pixel scale of the run and the lengths derived from it (pixels)."""

    mm_per_px: float | None  # isotropic (geometric mean of row and col); None uncalibrated
    step_px: float  # centerline sample step
    snap_px: float  # how far a reader's point may be from the vessel
    prob_factor: int  # block size at which the vessel map is computed
    warnings: tuple[str, ...] = ()

    @classmethod
    def of(cls, calibration: Calibration, segment: Segment, model: str,
           params: MeasureParams = DEFAULT_PARAMS) -> Scale:
        p = params
        mm_rc = calibration.mm_per_px
        if mm_rc is None:
            return cls(None, p.step_px_uncalibrated, p.snap_px_uncalibrated, 1, (
                "the run is uncalibrated: mm values are not reported (percent stenosis is calibration-free); "
                "give --pixel-mm (Python: pixel_mm=) to report mm",))
        mm = float(np.sqrt(mm_rc[0] * mm_rc[1]))
        warns = ()
        if abs(mm_rc[0] - mm_rc[1]) > 0.02 * mm:
            warns = (f"non-square pixels ({mm_rc[0]:.4g} x {mm_rc[1]:.4g} mm); diameters use their geometric mean",)
        # the U-Net's scale also keeps the widest artery <= model_max_width_px; the classical
        # vesselness has its own scales
        widest = p.widest_normal_for(segment) if model == ModelName.UNET.value else 0.0
        factor = int(max(1, round(p.prob_mm / mm), np.ceil(widest / (p.model_max_width_px * mm) - 1e-9)))
        return cls(mm, max(p.step_mm / mm, p.step_min_px), max(p.snap_mm / mm, p.snap_min_px), factor, warns)

    def crop_margin(self, span_px: float, params: MeasureParams = DEFAULT_PARAMS) -> float:
        """Margin (px) of the vessel-map crop around points ``span_px`` apart: a few mm (the
        snap radius and the widest artery fit) and a share of the span (a curving artery)."""
        p = params
        base = p.crop_margin_mm / self.mm_per_px if self.mm_per_px else p.crop_margin_px_uncalibrated
        return float(max(base, p.crop_margin_min_px, p.crop_span_fraction * span_px))


@dataclass(frozen=True, eq=False)
class Trace:
    """A traced centerline and the vessel map it was traced on (a crop at ``origin_rc``)."""

    centerline_rc: np.ndarray  # (N, 2) frame pixels
    arc_px: np.ndarray  # (N,)
    probability: np.ndarray  # (h, w) crop of the frame
    origin_rc: tuple[float, float]
    box: tuple[slice, slice]
    warnings: tuple[str, ...] = ()

    def shifted(self, shift_rc) -> Trace:
        """The same trace moved by ``shift_rc`` (patient motion between frames)."""
        d = np.asarray(shift_rc, float)
        return Trace(self.centerline_rc + d[None, :], self.arc_px, self.probability,
                     (self.origin_rc[0] + float(d[0]), self.origin_rc[1] + float(d[1])), self.box, self.warnings)


def vessel_map(image: np.ndarray, model: str, *, factor: int = 1) -> np.ndarray:
    """Vessel probability of ``image`` (iodine positive); computed on ``factor`` x ``factor``
    block means when ``factor`` > 1 and brought back to the image grid. (Python warnings raised
    meanwhile are not collected: the vessel map raises none, and in a thread pool another
    thread's warnings ended up in this result's.)"""
    from .segmentation import vessel_probability

    small = _blocks(image, factor, np.mean) if factor > 1 else image
    prob = np.asarray(vessel_probability(-small, model=model), dtype=np.float32)
    if factor > 1:
        # block k covers pixels k*f .. k*f+f-1: its centre is at k*f + (f-1)/2
        rr = (np.arange(image.shape[0]) - (factor - 1) / 2) / factor
        cc = (np.arange(image.shape[1]) - (factor - 1) / 2) / factor
        g = np.meshgrid(rr, cc, indexing="ij")
        prob = ndi.map_coordinates(prob, g, order=1, mode="nearest").astype(np.float32)
    return prob


def _blocks(image: np.ndarray, f: int, reduce) -> np.ndarray:
    """``image`` reduced over ``f`` x ``f`` blocks (block k holds pixels k f .. k f + f - 1; the
    last ones padded with the edge) by ``reduce`` (np.mean, np.min, ...)."""
    h, w = image.shape
    hh, ww = -(-h // f) * f, -(-w // f) * f
    padded = np.pad(image, ((0, hh - h), (0, ww - w)), mode="edge")
    return reduce(padded.reshape(hh // f, f, ww // f, f), axis=(1, 3))


def trace_segment(image: np.ndarray, points: list[tuple[float, float]], *, model: str, scale: Scale,
                  params: MeasureParams = DEFAULT_PARAMS) -> Trace:
    """Centerline through ``points`` (proximal, waypoints..., distal) on the vessel map of a crop
    around them, widened (then the whole frame) when the path runs along the crop border or the
    crop's map holds no vessel near a point."""
    p = params
    shape = image.shape
    a, b, wps = points[0], points[-1], list(points[1:-1])
    margin = scale.crop_margin(float(np.hypot(*np.ptp(np.asarray(points), axis=0))), p)
    box = box_around(points, shape, margin)
    full_box = (slice(0, shape[0]), slice(0, shape[1]))
    for attempt in range(3):
        off = np.array([box[0].start, box[1].start], float)
        sub = image[box]
        prob = vessel_map(sub, model, factor=scale.prob_factor)
        follow = dict(step_px=scale.step_px, snap_radius_px=scale.snap_px,
                      waypoints=[tuple(np.subtract(w, off)) for w in wps], origin_rc=tuple(off))
        try:
            rc, arc = trace_centerline(_path_map(sub, prob, p), np.subtract(a, off), np.subtract(b, off), **follow)
        except MeasurementError as err:
            # nothing on the map near a point: the U-Net's map of a small crop lacks the context
            # of a faint thin branch (real CIMAT side branches; the XA1 ICA slid 10 px): the map of
            # the wider crop, then of the whole frame, before the point is refused
            if "is not on a vessel" not in str(err) or box == full_box or attempt == 2:
                if "is not on a vessel" in str(err) and scale.mm_per_px is not None and scale.prob_factor >= 4:
                    # a pixel size too small for the image shrinks every vessel below the map's blocks
                    raise MeasurementError(
                        f"{err}; at {scale.mm_per_px:.3g} mm per pixel the vessel map reads the image in blocks of "
                        f"{scale.prob_factor} px, where an artery under about {scale.prob_factor} px wide vanishes: "
                        "if the artery is that narrow here, check the pixel size") from err
                raise
            box = box_around(points, shape, p.crop_widen_factor * margin) if attempt == 0 else full_box
            continue
        near_border = ((rc[:, 0].min() < 2 and box[0].start > 0) or (rc[:, 1].min() < 2 and box[1].start > 0)
                       or (rc[:, 0].max() > sub.shape[0] - 3 and box[0].stop < shape[0])
                       or (rc[:, 1].max() > sub.shape[1] - 3 and box[1].stop < shape[1]))
        if box == full_box or not near_border or attempt == 2:
            break
        box = box_around(points, shape, p.crop_widen_factor * margin) if attempt == 0 else full_box
    notes: tuple[str, ...] = ()
    curve = _keeps_to_curves(image, points, rc + off, prob, box, model=model, scale=scale, params=p)
    if curve is not None:
        rc, arc, prob, box, note = curve
        off = np.array([box[0].start, box[1].start], float)
        rc = rc - off
        sub = image[box]
        notes = (note,)
    check_contrast(sub, rc, prob if model == ModelName.UNET.value else None, params=p)
    return Trace(rc + off, arc, prob, (float(off[0]), float(off[1])), box, notes)


def _path_map(sub: np.ndarray, prob: np.ndarray, params: MeasureParams) -> np.ndarray:
    """What the path follows: the vessel map, or the iodine signal where it is higher (it peaks on
    the lumen centre: it keeps the path on wide vessels where a line filter of limited scale
    responds only near the walls)."""
    sm = ndi.gaussian_filter(sub, 1.0)
    q = float(np.quantile(sm, params.trace_opacity_quantile))
    opac = np.clip(sm / q, 0.0, 1.0) if q > 0 else np.zeros_like(sm)
    return np.maximum(prob, opac)


def _turns(rc: np.ndarray, arc: np.ndarray, over_px: float) -> np.ndarray:
    """(N - 2w,) degrees the path turns by between the ``over_px`` before and after each sample."""
    step = float(np.median(np.diff(arc))) if len(arc) > 1 else 1.0
    w = max(int(round(over_px / step)), 1)
    if len(rc) <= 2 * w:
        return np.zeros(0)
    t_in, t_out = rc[w:-w] - rc[:-2 * w], rc[2 * w:] - rc[w:-w]
    cos = np.sum(t_in * t_out, axis=1) / np.maximum(np.linalg.norm(t_in, axis=1) * np.linalg.norm(t_out, axis=1), 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _keeps_to_curves(image, points, rc, prob, box, *, model: str, scale: Scale, params: MeasureParams):
    """The trace again along the route a curvature-penalised path takes, when the plain path turns
    sharply and that route differs from it: (rc, arc in the new crop, map, box, note), else None.

    A straight vessel crossing a tightly curved artery twice is a shorter path than the curve: the
    plain minimum-cost path ran along it, turning by 60-90 degrees at each end, and a 70% lesion on
    the curve read 1.5% (``benchmarks/independent.py --radius 10 --crossing``). Where the path
    turns by ``route_turn_deg`` or more within a vessel width (a spline-smoothed 35-degree switch
    turns by about 20), the route is looked for again with a penalty on turning
    (:func:`stenosis.centerline.curvature_penalised_path`, bending length one vessel width) on the
    vessel map of a crop that holds the curve (margin ``crop_curve_fraction`` of the points'
    span); when that route leaves the plain path by more than two vessel widths, the plain path is
    traced again inside a corridor of one width around it. It does not catch a crossing vessel
    that turns no more than the curve (both routes turn alike) nor one that runs along the artery
    over the lesion (``docs/tuning.md`` section 1)."""
    from .centerline import curvature_penalised_path, path_cost, path_through

    p = params
    width = _map_width(prob, rc - np.array([box[0].start, box[1].start], float), p)
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(rc, axis=0), axis=1))]
    turns = _turns(rc, arc, width)
    if turns.size == 0 or turns.max() < p.route_turn_deg:
        return None
    pts = np.asarray(points, float)
    span = float(np.hypot(*np.ptp(pts, axis=0)))
    margin = max(scale.crop_margin(span, p), p.crop_curve_fraction * span)
    wide = box_around(np.vstack([pts, rc]), image.shape, margin)
    off = np.array([wide[0].start, wide[1].start], float)
    sub = image[wide]
    wprob = prob if wide == box else vessel_map(sub, model, factor=scale.prob_factor)
    cost = path_cost(_path_map(sub, wprob, p))
    # a coarser grid (blocks of f px, at most about 200 x 200): the route, not the centre, is wanted
    f = max(1, int(np.ceil(max(cost.shape) / 200)))
    coarse = _blocks(cost, f, np.min)
    near = [rc[int(np.argmin(np.linalg.norm(rc - q, axis=1)))] for q in pts[1:-1]]
    stops = [rc[0], *near, rc[-1]]
    grid = [tuple(int(v) for v in np.clip(np.floor((q - off) / f), 0, np.array(coarse.shape) - 1)) for q in stops]
    try:
        route = curvature_penalised_path(coarse, grid, bend_px=width / f) * f + (f - 1) / 2.0 + off
    except MeasurementError:
        return None
    away = np.min(np.linalg.norm(route[:, None, :] - rc[None, :, :], axis=2), axis=1)
    if away.max() <= 2.0 * width:
        return None
    # the plain path again, kept within a width of the curvature-penalised route
    band = np.zeros(sub.shape, bool)
    idx = np.round(route - off).astype(int)
    ok = (idx[:, 0] >= 0) & (idx[:, 0] < sub.shape[0]) & (idx[:, 1] >= 0) & (idx[:, 1] < sub.shape[1])
    band[idx[ok, 0], idx[ok, 1]] = True
    band = ndi.distance_transform_edt(~band) <= max(width, 2.0)
    ends = [tuple(int(v) for v in np.clip(np.round(q - off), 0, np.array(sub.shape) - 1)) for q in stops]
    for e in ends:
        band[e] = True
    try:
        new_rc, new_arc = path_through(np.where(band, cost, 1e12), ends, step_px=scale.step_px)
    except MeasurementError:  # too short
        return None
    k = int(np.argmax(turns))
    note = (f"the trace keeps to the artery's curve: the shortest path on the vessel map turned by {turns[k]:.0f} "
            f"degrees and took another route, up to {away.max():.0f} px off (a vessel crossing the curve); check the "
            "trace (a waypoint on the artery, --waypoint, fixes the route)")
    return new_rc + off, new_arc, wprob, wide, note


def _map_width(prob: np.ndarray, rc_crop: np.ndarray, params: MeasureParams) -> float:
    """The vessel map's width (px) along a path: twice the median distance from the path to the
    map's edge, at least 3 px."""
    inside = prob >= params.vessel_threshold
    if not inside.any():
        return 3.0
    edt = ndi.distance_transform_edt(inside)
    v = ndi.map_coordinates(edt, rc_crop.T, order=1, mode="nearest")
    return float(max(2.0 * np.median(v), 3.0))


def check_contrast(image: np.ndarray, rc: np.ndarray, probability: np.ndarray | None = None,
                   params: MeasureParams = DEFAULT_PARAMS) -> None:
    """Both ends of the path must be on a vessel, not on a noise ridge: the vessel map holds a
    vessel there (``probability`` above ``vessel_threshold``: a detector that sees the vessel's
    context, so a faint vessel in a textured background still counts), or the 5-pixel mean
    exceeds the frame's median by ``contrast_sigmas`` x the per-pixel noise SD (about 5 SD of
    that mean's own noise). ``probability`` None (the classical map, which answers background
    texture): the contrast alone."""
    hp = image - ndi.uniform_filter(image, 5)
    sd = 1.4826 * float(np.median(np.abs(hp - np.median(hp)))) + 1e-12
    bg = float(np.median(image))
    for k, name in ((0, "proximal"), (-1, "distal")):
        r, c = rc[k]
        if probability is not None and ndi.map_coordinates(
                probability, [[r], [c]], order=1, mode="nearest")[0] >= params.vessel_threshold:
            continue
        v = ndi.map_coordinates(image, [[r - 1, r, r + 1, r, r], [c, c - 1, c, c + 1, c]], order=1, mode="nearest").mean()
        if v - bg < params.contrast_sigmas * sd:
            raise MeasurementError(
                f"the {name} point is not on an opacified vessel (no contrast there); place it on the lumen of the artery")


def _half_max_half_widths(image: np.ndarray, rc: np.ndarray, normals: np.ndarray, *, half_px: float) -> np.ndarray:
    """(N,) half of the half-maximum width (px) of the iodine profile across each point (out to
    ``half_px`` along its normal; the peak within 3 px of the point), NaN where the profile has
    no peak or does not fall to half of it on both sides."""
    x = np.arange(-half_px, half_px + 0.5, 0.5)
    q = rc[:, None, :] + normals[:, None, :] * x[None, :, None]
    y = ndi.map_coordinates(image, q.reshape(-1, 2).T, order=1, mode="nearest").reshape(len(rc), -1)
    centre = np.abs(x) <= 3
    hw = np.full(len(rc), np.nan)
    for i, row in enumerate(y):
        k0 = int(np.argmax(np.where(centre, row, -np.inf)))
        peak = row[k0]
        if peak <= 0:
            continue
        below = row < 0.5 * peak
        left = np.where(below[:k0])[0]
        right = np.where(below[k0:])[0]
        if left.size and right.size:
            hw[i] = 0.5 * (x[k0 + right[0]] - x[left[-1]])
    return hw


def radius_hint(image: np.ndarray, rc: np.ndarray) -> float:
    """Rough largest lumen radius (px) from the half-maximum width of the iodine profiles."""
    idx = np.linspace(0, len(rc) - 1, min(len(rc), 25)).astype(int)
    hw = _half_max_half_widths(image, rc[idx], normals_from_centerline(rc)[idx], half_px=80.0)
    hw = hw[np.isfinite(hw)]
    if not hw.size:
        return 4.0
    # a blurred projected cylinder is at half maximum about 0.87 R from its centre
    return float(np.clip(np.quantile(hw, 0.9) / 0.85, 1.5, 80.0))


def local_radius(image: np.ndarray, rc: np.ndarray, *, smooth_samples: int = 11) -> np.ndarray:
    """(N,) lumen radius (px) at each centerline sample from the half-maximum width of the iodine
    profile across it (as :func:`radius_hint`, per sample), a running median over
    ``smooth_samples``; samples without a half-maximum crossing take the median of the others."""
    hw = _half_max_half_widths(image, rc, normals_from_centerline(rc), half_px=40.0)
    ok = np.isfinite(hw)
    if not ok.any():
        return np.full(len(rc), 4.0)
    hw = np.where(ok, hw, np.median(hw[ok]))
    return np.clip(ndi.median_filter(hw, size=max(int(smooth_samples), 1), mode="nearest") / 0.85, 1.5, 80.0)


def distance_to_path(rc: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """(distance (px), index of the nearest path sample) for every pixel of an image of ``shape``
    from the path ``rc`` (that image's coordinates, rounded to pixels); None when no sample lies
    inside it."""
    pix = np.round(np.asarray(rc, float)).astype(int)
    inside = (pix[:, 0] >= 0) & (pix[:, 0] < shape[0]) & (pix[:, 1] >= 0) & (pix[:, 1] < shape[1])
    if not inside.any():
        return None
    owner = np.full(shape, -1, int)
    owner[pix[inside, 0], pix[inside, 1]] = np.flatnonzero(inside)
    dist, (ir, ic) = ndi.distance_transform_edt(owner < 0, return_indices=True)
    return dist, owner[ir, ic]


def _clipped_stretches(at: np.ndarray, scale: Scale, params: MeasureParams) -> tuple[np.ndarray, int]:
    """``(long, longest)``: the samples of ``at`` (N,) bool in runs of consecutive samples at least
    ``clipping_min_mm`` long (``clipping_min_px_uncalibrated`` uncalibrated; 3 samples at least),
    and the longest run's length in samples."""
    mm = scale.mm_per_px
    min_px = params.clipping_min_mm / mm if mm else params.clipping_min_px_uncalibrated
    need = max(3, int(np.ceil(min_px / max(scale.step_px, 1e-6))))
    runs, n_runs = ndi.label(at)
    sizes = np.bincount(runs)[1:] if n_runs else np.zeros(0, int)
    return np.isin(runs, np.flatnonzero(sizes >= need) + 1), int(sizes.max()) if n_runs else 0


def _length_text(length_px: float, scale: Scale) -> str:
    """A length along the trace as the clipping warnings say it: mm when calibrated, else px."""
    return f"{length_px * scale.mm_per_px:.1f} mm" if scale.mm_per_px else f"{length_px:.0f} px"


def clipping_warning(frame: np.ndarray, rc: np.ndarray, scale: Scale, params: MeasureParams = DEFAULT_PARAMS) -> str | None:
    """A warning when the stored pixel values sit at the frame's darkest value along the lumen.

    A run exported with a display window (or an 8-bit export) clips the densest iodine at
    the stored limit: the profile loses its bottom there and no fit can recover it.
    """
    f = np.asarray(frame)
    lo = f.min()
    if np.count_nonzero(f == lo) < 3:
        return None
    r = np.clip(np.rint(rc[:, 0]).astype(int), 0, f.shape[0] - 1)
    c = np.clip(np.rint(rc[:, 1]).astype(int), 0, f.shape[1] - 1)
    long, longest = _clipped_stretches(f[r, c] <= lo, scale, params)
    if not long.any():
        return None
    length = _length_text(longest * scale.step_px, scale)
    return (f"the stored pixel values are clipped at the frame's darkest value along {length} of the traced "
            "artery: diameters there are not measurable; re-export the run without a display window "
            "(raw, unclipped pixel data)")


def field_edge_warning(frames: np.ndarray, rc: np.ndarray, diameter_px: float) -> str | None:
    """A warning when the traced artery comes within a vessel width (``diameter_px``, at least
    3 px) of the part of the frame outside the exposed field (:func:`stenosis.opacification.unexposed`,
    a collimator shutter): an artery that runs under the shutter's edge vanishes there, which
    reads as a narrowing or an occlusion (the auto mode placed points across such an edge)."""
    from .opacification import unexposed

    blank = unexposed(frames)
    if blank is None:
        return None
    reach = max(float(diameter_px) if np.isfinite(diameter_px) else 0.0, 3.0)
    box = box_around(rc, blank.shape, reach + 1)
    sub = blank[box]
    if not sub.any():
        return None
    off = np.array([box[0].start, box[1].start], float)
    d = ndi.map_coordinates(ndi.distance_transform_edt(~sub), (rc - off).T, order=1, mode="nearest")
    k = int(np.argmin(d))
    if d[k] > reach:
        return None
    r, c = rc[k]
    return (f"the traced artery runs to the edge of the exposed field (a collimator shutter) at ({r:.0f}, {c:.0f}): "
            "an artery that goes on under the shutter vanishes there and reads as a narrowing; place the points "
            f"inside the field, away from its edge; {CONFIRM_CALL}")


def is_bit_depth_top(value, dtype) -> bool:
    """Whether ``value`` is the top of a stored bit depth, where a clipped pixel sits: 2**b - 1 for
    b = 8-32 (255, 1023, 4095, 65535, ...), the same shifted into the high bits (a 12-bit frame
    scaled by 16 tops at 65520 = 4095 x 16), or 1.0 in a floating-point frame (normalised)."""
    v = float(value)
    if np.issubdtype(np.dtype(dtype), np.floating) and v == 1.0:
        return True
    if not v.is_integer() or v < 255:
        return False
    k = int(v)
    k >>= (k & -k).bit_length() - 1  # the high-bit-aligned depth's own top: drop the trailing zero bits
    return k >= 255 and (k + 1) & k == 0


def burnt_out_warning(frame: np.ndarray, profile, wm, scale: Scale,
                      params: MeasureParams = DEFAULT_PARAMS) -> str | None:
    """A warning when the background beside the measured lumen is clipped at the frame's brightest
    value, the top of a bit depth (:func:`is_bit_depth_top`: 255, 1023, 4095, 65520, 1.0 in a float
    frame, ...): over-exposed or cut by a display window
    (vessels dark). A side of a sample is clipped when the median of the stored values from one to
    two blur sigmas plus a pixel past the fitted edge is at that value (the background's level
    itself, not a few noisy pixels reaching it). The lumen's blurred edges lose their contrast
    there and it reads narrow, by an amount the image does not hold. Along at least
    ``clipping_min_mm`` of the trace (as :func:`clipping_warning`). A reader is asked to confirm
    the call where that can have made it: the MLD in such a stretch of a result reading >= 50%
    (read too narrow: too severe), or the reference window in one of a result reading under 50%
    (read too narrow: too mild). ``wm``: the graded measurement (``percent_stenosis``,
    ``mld_index``, ``reference_window``) on ``profile``."""
    f = np.asarray(frame)
    if f.size == 0 or len(profile.centerline_rc) < 2:
        return None
    hi = f.max()
    # clipped at the top of a stored bit depth: a frame's plain brightest pixel is not a clip
    if not is_bit_depth_top(hi, f.dtype) or np.count_nonzero(f == hi) < 3:
        return None
    rc = np.asarray(profile.centerline_rc, float)
    nrm = np.asarray(profile.normal_rc, float)
    r = 0.5 * np.asarray(profile.diameter_px, float)
    r = np.where(np.isfinite(r), r, np.nanmedian(r) if np.isfinite(r).any() else 0.0)
    sigma = float(profile.blur_sigma_px)
    t = np.arange(sigma, 2.0 * sigma + 1.0 + 1e-9, 0.5)
    at = np.zeros(len(rc), bool)
    for side in (-1.0, 1.0):
        q = rc[:, None, :] + side * nrm[:, None, :] * (r[:, None, None] + t[None, :, None])
        rr = np.clip(np.rint(q[..., 0]).astype(int), 0, f.shape[0] - 1)
        cc = np.clip(np.rint(q[..., 1]).astype(int), 0, f.shape[1] - 1)
        at |= np.median(f[rr, cc], axis=1) >= hi
    clipped, _ = _clipped_stretches(at, scale, params)
    if not clipped.any():
        return None
    length = _length_text(float(clipped.sum()) * scale.step_px, scale)
    pct = float(wm.percent_stenosis)
    i = int(wm.mld_index)
    window = wm.reference_window
    why = None
    if pct >= 50 and 0 <= i < len(rc) and clipped[i]:
        why = f"the MLD lies there and the result reads >= 50%: {CONFIRM_CALL}"
    elif pct < 50 and window is not None and clipped[max(window.i0, 0) : window.i1 + 1].any():
        why = f"the reference lies there and the result reads under 50%: {CONFIRM_CALL}"
    return (f"the stored pixel values beside the traced artery are clipped at the frame's brightest value along {length} "
            "(a background over-exposed or cut by a display window): the lumen's edges lose their contrast there and it "
            "reads narrow; re-export the run without a display window (raw, unclipped pixel data)"
            + (f"; {why}" if why else ""))


def local_reference(image: np.ndarray, ref_rc: tuple[float, float], profile, *, model: str, scale: Scale,
                    params: MeasureParams = DEFAULT_PARAMS) -> tuple[float, tuple[float, float]]:
    """Diameter (px) at a reader's reference point off the traced segment (a short local trace
    along the vessel's principal axis there) and the snapped centre."""
    r = max(float(np.quantile(profile.diameter_px, 0.9)), 4.0)
    box = box_around([ref_rc], image.shape, 4 * r + 2 * scale.snap_px)
    off = np.array([box[0].start, box[1].start], float)
    prob = vessel_map(image[box], model, factor=scale.prob_factor)
    pt = np.asarray(snap_to_vessel(prob, np.subtract(ref_rc, off), radius_px=scale.snap_px, name="reference",
                                   origin_rc=tuple(off)), float)
    rr, cc = np.nonzero(prob > params.vessel_threshold)
    near = (rr - pt[0]) ** 2 + (cc - pt[1]) ** 2 <= (2 * r) ** 2
    if near.sum() < 5:
        raise MeasurementError("the reference point is not on a vessel; place it on a normal part of the artery")
    pts = np.stack([rr[near], cc[near]], 1).astype(float)
    _, evecs = np.linalg.eigh(np.cov((pts - pts.mean(0)).T))
    t = evecs[:, -1]
    line = pt[None, :] + np.linspace(-r, r, max(int(2 * r / scale.step_px), 5))[:, None] * t[None, :]
    arc = np.r_[0, np.cumsum(np.linalg.norm(np.diff(line, axis=0), axis=1))]
    lp = measure_diameters(image, line + off, arc, radius_hint_px=r / 2 + 1, mm_per_px=profile.mm_per_px,
                           blur_sigma_px=profile.blur_sigma_px, amplitude=profile.amplitude, params=params,
                           log_attenuation=profile.attenuation_per_px > 0)
    d = lp.diameter_px[lp.valid] if lp.valid.any() else lp.diameter_px
    return float(np.mean(d)), tuple(float(v) for v in (pt + off))
