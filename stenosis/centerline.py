"""Vessel centerline between a reader's two points.

Each point is snapped to the nearest vessel ridge; the path between them is the
minimum-cost path on a cost image built from the vessel probability (Dijkstra /
fast-marching style geodesic, ``skimage.graph.MCP_Geometric``; cf. Wink, Niessen,
Viergever, IEEE TMI 2004, doi:10.1109/TMI.2003.819920). The cost is high off the
vessel and lowest on its ridge, so the path stays on the centre of the traced
vessel rather than cutting into a side branch or a crossing vessel. The pixel path
is smoothed with a parametric smoothing spline (``scipy.interpolate.splprep``) and
resampled at a fixed arc step.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .errors import MeasurementError

__all__ = [
    "snap_to_vessel",
    "path_cost",
    "minimum_cost_path",
    "curvature_penalised_path",
    "path_through",
    "smooth_resample",
    "trace_centerline",
    "recenter",
]


def snap_to_vessel(
    probability: np.ndarray,
    point_rc: tuple[float, float],
    *,
    radius_px: float,
    min_probability: float = 0.5,
    name: str = "point",
    origin_rc: tuple[float, float] = (0.0, 0.0),
) -> tuple[int, int]:
    """Nearest vessel ridge pixel to a reader's point.

    The probability inside a disc of ``radius_px`` is weighted by a Gaussian of the
    distance (sigma = radius / 2), so that the nearest vessel wins over a brighter,
    farther one.

    Parameters
    ----------
    probability : (H, W) float
        Vessel probability in [0, 1].
    point_rc : (row, col)
        Reader's point, pixels.
    radius_px : float
        Search radius, pixels.
    origin_rc : (row, col)
        Position of ``probability`` in the frame (a crop): messages quote frame coordinates.

    Returns
    -------
    (row, col) : int
        Snapped pixel.

    Raises
    ------
    MeasurementError
        No pixel within the radius has probability >= ``min_probability``.
    """
    h, w = probability.shape
    r0, c0 = float(point_rc[0]), float(point_rc[1])
    rad = int(np.ceil(radius_px))
    ri, ci = int(round(r0)), int(round(c0))
    r_lo, r_hi = max(ri - rad, 0), min(ri + rad + 1, h)
    c_lo, c_hi = max(ci - rad, 0), min(ci + rad + 1, w)
    win = probability[r_lo:r_hi, c_lo:c_hi]
    rr, cc = np.mgrid[r_lo:r_hi, c_lo:c_hi]
    d2 = (rr - r0) ** 2 + (cc - c0) ** 2
    inside = d2 <= radius_px**2
    cand = inside & (win >= min_probability)
    if not cand.any():
        raise MeasurementError(
            f"the {name}{'' if name.startswith('waypoint') else ' point'} ({r0 + origin_rc[0]:.0f}, {c0 + origin_rc[1]:.0f}) is not on a vessel (nothing within "
            f"{radius_px:.0f} px); place it on the lumen of the artery"
        )
    score = np.where(cand, win * np.exp(-d2 / (2 * (radius_px / 2) ** 2)), -1.0)
    k = int(np.argmax(score))
    return int(rr.flat[k]), int(cc.flat[k])


def path_cost(probability: np.ndarray, *, eps: float = 0.02, power: float = 2.0) -> np.ndarray:
    """Cost image for the minimum-cost path: ``1 / (p + eps) ** power`` (about 1 on a ridge).

    Parameters
    ----------
    probability : (H, W) float
        Vessel probability in [0, 1].

    Returns
    -------
    (H, W) float64
    """
    p = np.clip(np.asarray(probability, dtype=np.float64), 0.0, 1.0)
    return 1.0 / (p + eps) ** power


def minimum_cost_path(cost: np.ndarray, start_rc: tuple[int, int], end_rc: tuple[int, int]) -> np.ndarray:
    """(K, 2) int pixel path from ``start_rc`` to ``end_rc`` minimising the integrated cost."""
    from skimage.graph import MCP_Geometric

    mcp = MCP_Geometric(cost, fully_connected=True)
    mcp.find_costs([tuple(start_rc)], [tuple(end_rc)])
    path = np.asarray(mcp.traceback(tuple(end_rc)), dtype=np.intp)
    return path


#: the headings of the curvature-penalised path: the 16 moves of a king and a knight
_HEADINGS = np.array([(0, 1), (1, 2), (1, 1), (2, 1), (1, 0), (2, -1), (1, -1), (1, -2),
                      (0, -1), (-1, -2), (-1, -1), (-2, -1), (-1, 0), (-2, 1), (-1, 1), (-1, 2)])


def curvature_penalised_path(cost: np.ndarray, stops, *, bend_px: float) -> np.ndarray:
    """(K, 2) int pixel path through ``stops`` ((row, col) pixels, in order) minimising the integrated cost plus a
    penalty on every change of heading: a move that turns by dtheta over a step of length l costs
    ``l c (1 + (bend_px dtheta / l)^2)``, c the mean cost at its two ends (the discrete form of
    an elastica-like length, Chen, Mirebeau & Cohen, IJCV 2017;122:458-83).

    The path moves on the pixel grid in one of 16 headings (the moves of a king and a knight) and
    turns by at most one heading per move. On this grid each change of heading costs about the
    same wherever it happens, so the penalty grows with the path's total turning rather than with
    its curvature: of two routes on the vessel map, the one that turns less overall wins unless
    the other is much cheaper. Where a straight vessel crosses a tightly curved artery, the plain
    minimum-cost path ran down one limb, turned onto the crossing vessel and turned again into the
    other limb (more turning than the curve itself). Dijkstra on the graph of (pixel, heading)
    states (``scipy.sparse.csgraph``); every heading is free at both ends."""
    from scipy import sparse
    from scipy.sparse import csgraph

    c = np.asarray(cost, dtype=np.float64)
    h, w = c.shape
    n = h * w
    k_n = len(_HEADINGS)
    ang = np.arctan2(_HEADINGS[:, 0], _HEADINGS[:, 1])
    step = np.hypot(_HEADINGS[:, 0], _HEADINGS[:, 1])
    rr, cc = np.mgrid[0:h, 0:w]
    src, dst, wt = [], [], []
    for k in range(k_n):
        for dk in (-1, 0, 1):
            k2 = (k + dk) % k_n
            dr, dc = _HEADINGS[k2]
            r2, c2 = rr + dr, cc + dc
            ok = (r2 >= 0) & (r2 < h) & (c2 >= 0) & (c2 < w)
            turn = abs((ang[k2] - ang[k] + np.pi) % (2 * np.pi) - np.pi)
            src.append(k * n + (rr * w + cc)[ok])
            dst.append(k2 * n + (r2 * w + c2)[ok])
            wt.append(step[k2] * 0.5 * (c[rr[ok], cc[ok]] + c[r2[ok], c2[ok]]) * (1.0 + (bend_px * turn / step[k2]) ** 2))
    graph = sparse.csr_matrix((np.concatenate(wt), (np.concatenate(src), np.concatenate(dst))), shape=(k_n * n, k_n * n))
    legs = []
    for start_rc, end_rc in zip(stops[:-1], stops[1:]):  # one graph, a search per leg
        starts = np.arange(k_n) * n + int(start_rc[0]) * w + int(start_rc[1])
        dist, pred, _ = csgraph.dijkstra(graph, indices=starts, min_only=True, return_predecessors=True)
        ends = np.arange(k_n) * n + int(end_rc[0]) * w + int(end_rc[1])
        node = int(ends[np.argmin(dist[ends])])
        if not np.isfinite(dist[node]):
            raise MeasurementError("no path between the points on the vessel map; place them on one artery")
        first = set(int(v) for v in starts)
        path = [node]
        while node not in first:
            node = int(pred[node])
            path.append(node)
        pix = np.asarray(path[::-1]) % n
        legs.append(np.stack([pix // w, pix % w], axis=1))
    return joined(legs).astype(np.intp)


def smooth_resample(
    path_rc: np.ndarray, *, step_px: float, smoothing_px: float = 0.7
) -> tuple[np.ndarray, np.ndarray]:
    """Smooth a pixel path with a parametric spline and resample it at a fixed arc step.

    Parameters
    ----------
    path_rc : (K, 2) float
        Ordered path points (row, col), pixels.
    step_px : float
        Arc-length step of the output, pixels.
    smoothing_px : float
        RMS distance allowed between the spline and the path points, pixels.

    Returns
    -------
    rc : (N, 2) float
        Resampled points.
    arc_px : (N,) float
        Arc length from the first point, pixels.
    """
    p = np.asarray(path_rc, dtype=np.float64)
    # drop duplicates (zero-length steps break the spline parameterisation)
    keep = np.r_[True, np.any(np.diff(p, axis=0) != 0, axis=1)]
    p = p[keep]
    if len(p) < 4:
        seg = np.linalg.norm(p[-1] - p[0])
        n = max(int(seg / step_px) + 1, 2)
        t = np.linspace(0, 1, n)
        rc = p[0] + (p[-1] - p[0]) * t[:, None]
        return rc, t * seg
    from scipy import interpolate  # lazy: ~0.3 s of imports that only tracing needs

    d = np.r_[0, np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))]
    u = d / d[-1]
    k = 3
    s = len(p) * smoothing_px**2
    tck, _ = interpolate.splprep([p[:, 0], p[:, 1]], u=u, s=s, k=k)
    # arc length of the spline on a dense parameter grid, then invert
    dense = np.linspace(0, 1, max(int(d[-1] * 10), 50))
    q = np.stack(interpolate.splev(dense, tck), axis=1)
    arc = np.r_[0, np.cumsum(np.linalg.norm(np.diff(q, axis=0), axis=1))]
    n = int(np.floor(arc[-1] / step_px)) + 1
    arc_out = np.arange(n) * step_px
    u_out = np.interp(arc_out, arc, dense)
    rc = np.stack(interpolate.splev(u_out, tck), axis=1)
    return rc, arc_out


def trace_centerline(
    probability: np.ndarray,
    proximal_rc: tuple[float, float],
    distal_rc: tuple[float, float],
    *,
    step_px: float,
    snap_radius_px: float,
    min_probability: float = 0.5,
    waypoints: tuple[tuple[float, float], ...] | list = (),
    origin_rc: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Centerline of the vessel from the proximal to the distal point.

    Parameters
    ----------
    probability : (H, W) float
        Vessel probability of the analysed frame.
    proximal_rc, distal_rc : (row, col)
        Reader's points, pixels.
    step_px : float
        Output arc step, pixels.
    snap_radius_px : float
        How far a point may be from the vessel, pixels.
    waypoints : sequence of (row, col)
        Inner points, in order from proximal to distal, that the path must pass
        through (a reader's correction when the path takes a wrong vessel).
    origin_rc : (row, col)
        Position of ``probability`` in the frame (messages quote frame coordinates).

    Returns
    -------
    rc : (N, 2) float
        Smoothed centerline, proximal first.
    arc_px : (N,) float
        Arc length, pixels.
    """
    a = snap_to_vessel(probability, proximal_rc, radius_px=snap_radius_px, min_probability=min_probability, name="proximal",
                       origin_rc=origin_rc)
    b = snap_to_vessel(probability, distal_rc, radius_px=snap_radius_px, min_probability=min_probability, name="distal",
                       origin_rc=origin_rc)
    if a == b:
        raise MeasurementError("the proximal and distal points fall on the same spot; place them along the artery, around the lesion")
    stops = [a]
    for k, w in enumerate(waypoints or ()):
        p = snap_to_vessel(probability, w, radius_px=snap_radius_px, min_probability=min_probability,
                           name=f"waypoint {k + 1}", origin_rc=origin_rc)
        if p != stops[-1]:
            stops.append(p)
    if stops[-1] != b:
        stops.append(b)
    return path_through(path_cost(probability), stops, step_px=step_px)


def path_through(cost: np.ndarray, stops, *, step_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The smoothed minimum-cost path through ``stops`` ((row, col) pixels, in order) on ``cost``,
    resampled every ``step_px``: (rc, arc_px); MeasurementError when it is too short to measure."""
    path = joined([minimum_cost_path(cost, s, e) for s, e in zip(stops[:-1], stops[1:])])
    rc, arc = smooth_resample(path.astype(float), step_px=step_px)
    if arc[-1] < 5 * step_px or len(rc) < 8:
        raise MeasurementError("the traced segment is too short to measure; place the points further apart along the artery")
    return rc, arc


def joined(legs) -> np.ndarray:
    """Consecutive pixel paths as one (each leg starts where the last one ended)."""
    return np.concatenate([legs[0]] + [leg[1:] for leg in legs[1:]], axis=0)


def recenter(
    centerline_rc: np.ndarray,
    normals_rc: np.ndarray,
    offsets_px: np.ndarray,
    weights: np.ndarray,
    *,
    step_px: float,
    smoothing_px: float = 0.3,
    max_shift_px: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Move the centerline onto fitted lumen centres and re-smooth / resample it.

    Parameters
    ----------
    centerline_rc : (N, 2) float
    normals_rc : (N, 2) float
    offsets_px : (N,) float
        Fitted lumen-centre offset along each normal, pixels.
    weights : (N,) bool or float
        Samples to trust (others keep their original position).

    Returns
    -------
    rc : (N', 2) float, arc_px : (N',) float
    """
    w = np.asarray(weights, dtype=float)
    off = np.where(w > 0, np.clip(offsets_px, -max_shift_px, max_shift_px), 0.0)
    # smooth the offsets along the vessel so that noise does not wiggle the path
    off = ndi.gaussian_filter1d(off, 3.0, mode="nearest")
    moved = np.asarray(centerline_rc, float) + normals_rc * off[:, None]
    return smooth_resample(moved, step_px=step_px, smoothing_px=smoothing_px)
