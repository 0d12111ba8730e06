"""Automatic lesion finding: the main trunk of the field and its most severe focal narrowing.

Used by ``stenosis batch --auto`` when no reader placed points. Steps:

1. **Frame.** The frame with the strongest opacification (top-percentile iodine
   signal of :func:`stenosis.opacify`), unless one is given.
2. **Vessel mask.** :func:`stenosis.segmentation.vessel_probability` (U-Net or
   classical vesselness), hysteresis, small holes closed.
3. **Vessel graph.** Skeletonisation (Zhang & Suen, CACM 1984;27:236-9, as in
   scikit-image) and the skeleton graph of skan (Nunez-Iglesias et al., PeerJ
   2018;6:e4312, doi:10.7717/peerj.4312); each branch carries its length and its
   mean calibre (twice the Euclidean distance transform of the mask on the
   skeleton, i.e. the local lumen diameter).
4. **Main trunk.** In the maximum-calibre spanning tree of the branch graph, the
   path maximising sum(length x calibre^2): the largest-calibre long path (a long
   thin side branch or a short thick stub loses to the trunk). End portions
   thinner than 0.7 x the trunk's typical calibre (a side branch the path ran
   into) are trimmed.
5. **Lesion.** Along the trunk the calibre profile is smoothed; the severity at
   each point is 1 - d(s) / d_ref(s), with d_ref the smaller of the two 80th
   percentiles of the calibre in windows of about five diameters before and after
   the point: high only for a *focal* narrowing with wider vessel on both sides
   (a gentle taper scores about 0). The most severe point is the lesion.
6. **Points.** Proximal and distal points on the trunk about six reference
   diameters either side of the lesion (clipped to the trunk); the proximal side
   is the end the contrast reaches first when the run shows the bolus front,
   else the end the side branches point away from (they leave at acute angles
   opening downstream), else the wider end of the trunk (arteries taper).

The confidence in [0, 1] combines how marked the narrowing is (severity), how
clearly it beats the next-best narrowing on the trunk, and how dominant the trunk
is in the vessel graph. It is a heuristic ranking for review, not a probability.
The points are returned so a reader can confirm them (and feed them back through
a points file); the WASID measurement itself is the usual
:func:`stenosis.measure.measure`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .errors import MeasurementError
from .frames import brightest_frame
from .params import DEFAULT_PARAMS

__all__ = ["Lesion", "find_lesion", "main_trunk", "focal_narrowing", "warm_up"]


#: confidence cap when only one or two frames are given (no bolus front to tell the direction)
SINGLE_FRAME_CONFIDENCE = 0.5
#: confidence cap when several frames show no bolus front along the trunk
NO_BOLUS_CONFIDENCE = 0.7
#: a trunk whose median calibre exceeds this share of the image's smaller side is no artery: the
#: vessel map merged into regions (a native frame of dense overlapping vessels, XA1_UNC: 150 px
#: on 1024); the auto mode then refuses instead of handing the measurement points it cannot use
MAX_TRUNK_WIDTH_FRACTION = 0.1
_CUE_TEXT = {
    "branches": "the side-branch angles",
    "calibre": "the wider end",
    "undetermined": "no clear cue",
    "bolus": "the contrast arrival",
}


@dataclass(frozen=True)
class Lesion:
    """Where :func:`find_lesion` put the lesion.

    Attributes
    ----------
    proximal, distal : tuple of float
        Points (row, col) in pixels to measure between, proximal upstream.
    narrowest : tuple of float
        (row, col) of the narrowest trunk point (the lesion centre).
    frame_index : int
        0-based frame the points refer to.
    confidence : float
        In [0, 1]; heuristic (see module docstring).
    severity : float
        1 - d_lesion / d_ref on the mask calibre profile (a rough percent/100).
    trunk_rc : ndarray, shape (N, 2)
        Trunk centreline pixels (row, col), proximal first.
    trunk_diameter_px : ndarray, shape (N,)
        Mask calibre (lumen diameter, px) along the trunk, smoothed.
    orientation : str
        How the proximal side was decided: ``"bolus"`` (contrast arrival),
        ``"branches"`` (side-branch angles), ``"calibre"`` (wider end) or
        ``"undetermined"`` (no cue was clear).
    warnings : tuple of str
        What a reader should check (e.g. one frame: no bolus to settle the direction).
    """

    proximal: tuple[float, float]
    distal: tuple[float, float]
    narrowest: tuple[float, float]
    frame_index: int
    confidence: float
    severity: float
    trunk_rc: np.ndarray = field(repr=False)  # long arrays: out of the repr (their length is in to_dict)
    trunk_diameter_px: np.ndarray = field(repr=False)
    orientation: str = "calibre"
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "proximal_rc": [float(v) for v in self.proximal],
            "distal_rc": [float(v) for v in self.distal],
            "narrowest_rc": [float(v) for v in self.narrowest],
            "frame_index": int(self.frame_index),
            "confidence": round(float(self.confidence), 3),
            "severity": round(float(self.severity), 3),
            "trunk_length_px": int(len(self.trunk_rc)),
            "orientation": self.orientation,
            "warnings": list(self.warnings),
        }


# ----------------------------------------------------------------- frame
def _opacified(run: Any) -> np.ndarray:
    """(T, H, W) float32, iodine positive; falls back to the inverted frames."""
    try:
        from .opacification import opacify

        return np.asarray(opacify(run), dtype=np.float32)
    except ImportError:
        f = np.asarray(run.frames, dtype=np.float32)
        return f.max() - f


def _needs_own_frame(run: Any) -> bool:
    """A native multi-frame run with no mask frame declared: opacify subtracts frame 0,
    which cancels the vessels when frame 0 is opacified too (cine frames). One frame is
    opacified by a top-hat of itself and keeps its vessels."""
    meta = getattr(run, "metadata", None)
    return (meta is not None and not meta.subtracted and not tuple(meta.mask_frames)
            and np.asarray(run.frames).shape[0] > 1)


# ----------------------------------------------------------------- graph
def _mask_and_radius(prob: np.ndarray, *, high: float = 0.5, low: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    seeds = prob >= high
    cand = prob >= low
    lab, n = ndi.label(cand, structure=np.ones((3, 3)))
    keep = np.unique(lab[seeds])
    mask = np.isin(lab, keep[keep > 0])
    mask = ndi.binary_closing(mask, structure=np.ones((3, 3)), iterations=1) | mask
    mask = ndi.binary_fill_holes(mask)
    radius = ndi.distance_transform_edt(mask).astype(np.float64)
    return mask, radius


def main_trunk(mask: np.ndarray, *, radius: np.ndarray | None = None, min_branch_px: float = 3.0) -> tuple[np.ndarray, np.ndarray, float]:
    """The largest-calibre long path of a vessel mask's skeleton graph.

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
        Vessel mask.
    radius : ndarray, shape (H, W), optional
        Euclidean distance transform of `mask` (computed when omitted).

    Returns
    -------
    trunk_rc : ndarray of int, shape (N, 2)
        Pixels (row, col) of the trunk centreline in path order.
    diameter_px : ndarray, shape (N,)
        Lumen diameter along it (2 x distance transform), px.
    dominance : float
        Trunk score / total score of the skeleton (in (0, 1]).

    Raises
    ------
    MeasurementError
        No vessel long enough to hold a trunk.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components, dijkstra, minimum_spanning_tree
    from skan import Skeleton
    from skimage.morphology import skeletonize

    mask = np.asarray(mask, dtype=bool)
    if radius is None:
        radius = ndi.distance_transform_edt(mask)
    skel = skeletonize(mask)
    if skel.sum() < 10:
        raise MeasurementError("no vessel found in the frame for --auto; give points for this run")
    sk = Skeleton(skel, source_image=2.0 * radius)
    paths = sk.paths_list()
    n_paths = len(paths)
    src = np.array([p[0] for p in paths])
    dst = np.array([p[-1] for p in paths])
    lengths = np.maximum(np.asarray(sk.path_lengths(), dtype=float), 1.0)
    calibre = np.array([float(np.mean(2.0 * radius[tuple(sk.coordinates[np.asarray(p)].T.astype(int))])) for p in paths])
    nodes, inv = np.unique(np.concatenate([src, dst]), return_inverse=True)
    u, v = inv[:n_paths], inv[n_paths:]
    n = len(nodes)
    # keep the thickest of parallel branches; self-loops (isolated rings) are dropped
    best: dict[tuple[int, int], int] = {}
    for i in range(n_paths):
        if u[i] == v[i]:
            continue
        k = (min(u[i], v[i]), max(u[i], v[i]))
        if k not in best or calibre[i] > calibre[best[k]]:
            best[k] = i
    if not best:
        raise MeasurementError("the vessel skeleton has no open branch for --auto; give points for this run")
    idx = np.array(list(best.values()))
    a, b = u[idx], v[idx]
    # maximum-calibre spanning forest: minimise 1/calibre
    inv_cal = 1.0 / np.maximum(calibre[idx], 1e-3)
    g = coo_matrix((inv_cal, (a, b)), shape=(n, n)).tocsr()
    mst = minimum_spanning_tree(g + g.T).tocoo()
    edge_of = {(min(i, j), max(i, j)): best[(min(i, j), max(i, j))] for i, j in zip(mst.row, mst.col)}
    ea = np.array([k[0] for k in edge_of])
    eb = np.array([k[1] for k in edge_of])
    ei = np.array(list(edge_of.values()))
    w = lengths[ei] * calibre[ei] ** 2
    tree = coo_matrix((w, (ea, eb)), shape=(n, n)).tocsr()
    tree = tree + tree.T
    n_comp, comp = connected_components(tree, directed=False)
    best_score, best_pair = -1.0, None
    for c in range(n_comp):
        members = np.flatnonzero(comp == c)
        if len(members) < 2:
            continue
        d0 = dijkstra(tree, indices=int(members[0]))
        s = int(members[np.argmax(d0[members])])
        ds, pred = dijkstra(tree, indices=s, return_predecessors=True)
        t = int(members[np.argmax(ds[members])])
        if ds[t] > best_score:
            best_score, best_pair = float(ds[t]), (s, t, pred)
    if best_pair is None:
        raise MeasurementError("no vessel path long enough for --auto; give points for this run")
    s, t, pred = best_pair
    node_path = [t]
    while node_path[-1] != s:
        node_path.append(int(pred[node_path[-1]]))
    node_path.reverse()
    coords: list[np.ndarray] = []
    for x, y in zip(node_path[:-1], node_path[1:]):
        i = edge_of[(min(x, y), max(x, y))]
        pc = sk.coordinates[np.asarray(paths[i])]
        if u[i] != x:  # branch stored dst -> src relative to our walk
            pc = pc[::-1]
        coords.append(pc if not coords else pc[1:])
    trunk = np.concatenate(coords).astype(int)
    diam = 2.0 * radius[trunk[:, 0], trunk[:, 1]]
    total = float(np.sum(lengths * calibre**2))
    return trunk, diam.astype(np.float64), best_score / total if total > 0 else 0.0


def _arc(trunk: np.ndarray) -> np.ndarray:
    step = np.hypot(*np.diff(trunk.astype(float), axis=0).T)
    return np.concatenate([[0.0], np.cumsum(step)])


def focal_narrowing(diameter_px: np.ndarray, arc_px: np.ndarray) -> tuple[int, float, float, np.ndarray]:
    """Most severe focal narrowing of a calibre profile.

    Parameters
    ----------
    diameter_px : ndarray, shape (N,)
        Lumen diameter along a centreline, px.
    arc_px : ndarray, shape (N,)
        Arc length of each sample, px (increasing).

    Returns
    -------
    index : int
        Sample of the most severe narrowing.
    severity : float
        1 - d / d_ref there, d_ref the smaller of the 80th-percentile calibres in
        windows before and after (about 5 reference diameters long).
    runner_up : float
        Severity of the best narrowing outside the lesion's neighbourhood.
    d_ref : float
        Reference diameter (px) at the lesion.
    """
    d = ndi.gaussian_filter1d(np.asarray(diameter_px, float), 1.5, mode="nearest")
    n = len(d)
    d_typ = float(np.percentile(d, 75))
    win = max(10.0, 5.0 * d_typ)
    gap = max(2.0, 0.75 * d_typ)
    end_skip = max(3.0, 1.0 * d_typ)  # the skeleton shrinks into the vessel's ends
    sev = np.full(n, -np.inf)
    refs = np.zeros(n)
    for i in range(n):
        s = arc_px[i]
        if s < end_skip or s > arc_px[-1] - end_skip:
            continue
        left = d[(arc_px >= s - win - gap) & (arc_px < s - gap)]
        right = d[(arc_px > s + gap) & (arc_px <= s + win + gap)]
        sides = [np.percentile(x, 80) for x in (left, right) if x.size >= 3]
        if len(sides) < 2:
            continue
        ref = min(sides)
        refs[i] = ref
        sev[i] = 1.0 - d[i] / ref if ref > 0 else -np.inf
    if not np.isfinite(sev).any():
        raise MeasurementError("the main vessel is too short to find a lesion for --auto; give points for this run")
    # most severe; among near-equal (plateau of a long lesion) take the narrowest
    top = np.flatnonzero(sev >= np.max(sev) - 0.02)
    k = int(top[np.argmin(d[top])])
    far = np.abs(arc_px - arc_px[k]) > max(win, 2.0 * d_typ)
    runner = float(np.max(sev[far & np.isfinite(sev)])) if np.any(far & np.isfinite(sev)) else 0.0
    return k, float(sev[k]), max(runner, 0.0), float(refs[k])


def _trim_thin_ends(trunk: np.ndarray, diam: np.ndarray, *, ratio: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """Drop end portions thinner than `ratio` x the trunk's typical calibre.

    The longest path ends in some leaf, often a thin side branch leaving the trunk;
    its start would look like a narrowing that never recovers. A lesion inside the
    trunk is kept: the vessel is wide again beyond it.
    """
    d = ndi.gaussian_filter1d(np.asarray(diam, float), 1.5, mode="nearest")
    keep = np.flatnonzero(d >= ratio * np.percentile(d, 75))
    if keep.size < 10:
        return trunk, diam
    return trunk[keep[0] : keep[-1] + 1], diam[keep[0] : keep[-1] + 1]


def _arrival_frame(curves: np.ndarray) -> float:
    """Interpolated frame at which a mean opacification curve (T,) first reaches half its peak."""
    c = np.asarray(curves, float)
    c = c - c[: max(1, int(np.argmax(c)))].min()
    peak = c.max()
    if peak <= 0:
        return float("nan")
    above = np.flatnonzero(c >= 0.5 * peak)
    i = int(above[0])
    if i == 0:
        return 0.0
    lo, hi = c[i - 1], c[i]
    return float(i - 1 + (0.5 * peak - lo) / max(hi - lo, 1e-12))


def branch_vote(mask: np.ndarray, trunk: np.ndarray, diam: np.ndarray) -> float:
    """Do side branches leave the trunk pointing along increasing trunk index?

    Arteries branch at acute angles that open downstream. For every skeleton piece
    that touches the trunk but is not on it, the cosine between its direction (from
    the attachment out to ~3 trunk diameters) and the trunk tangent there is summed
    (pieces at |cos| < 0.2, and a crossing vessel's two opposite arms, cancel). A piece
    within two diameters of a trunk end and within 25 degrees of the trunk's line is the
    vessel's own continuation (the trunk was cut at a crossing): not counted.

    Returns
    -------
    float
        Positive: index order is downstream (the first end is proximal); negative:
        upstream; about 0: no evidence.
    """
    from skimage.morphology import skeletonize

    skel = skeletonize(np.asarray(mask, bool))
    d_typ = float(np.median(diam)) if len(diam) else 4.0
    near = np.zeros(skel.shape, bool)
    near[trunk[:, 0], trunk[:, 1]] = True
    near = ndi.binary_dilation(near, iterations=max(2, int(round(0.5 * d_typ)) + 2))
    # arms, not networks: a piece is cut at its own junctions (a crossing's arms and the
    # vessel's continuation beyond it vote separately)
    side = skel & ~near & ~ndi.binary_dilation(_skeleton_junctions(skel), iterations=1)
    lab, n = ndi.label(side, structure=np.ones((3, 3)))
    if n == 0:
        return 0.0
    reach = max(3.0 * d_typ, 12.0)
    end_skip = int(max(2.0 * d_typ, 6.0))
    vote = 0.0
    for k in range(1, n + 1):
        pix = np.argwhere(lab == k)
        if len(pix) < max(5, d_typ):
            continue
        # attachment: the piece's pixel nearest the trunk, and the trunk index there
        dd = np.hypot(pix[:, None, 0] - trunk[None, ::4, 0], pix[:, None, 1] - trunk[None, ::4, 1])
        ip, it = np.unravel_index(int(np.argmin(dd)), dd.shape)
        if dd[ip, it] > d_typ + 4:
            continue  # a separate vessel, not a branch of the trunk
        it *= 4
        at_end = min(it, len(trunk) - 1 - it) < end_skip
        a = pix[ip].astype(float)
        out = pix[np.hypot(*(pix - a).T) <= reach]
        v = out.mean(axis=0) - a
        h = max(3, int(d_typ))
        tan = trunk[min(it + h, len(trunk) - 1)] - trunk[max(it - h, 0)]
        nv, nt = np.hypot(*v), np.hypot(*tan)
        if nv < 2 or nt == 0:
            continue
        cos = float(np.dot(v, tan) / (nv * nt))
        if at_end and abs(cos) > 0.9:
            continue  # the vessel's own continuation beyond a trunk end (cut at a crossing)
        if abs(cos) >= 0.2:
            vote += cos
    return vote


def bolus_trend(opac: np.ndarray, trunk: np.ndarray) -> tuple[float, float]:
    """How the contrast arrival frame changes along the trunk (the bolus front).

    The trunk is cut into up to 40 stretches; in each, the mean opacification curve
    gives the frame at which it first reaches half its peak (:func:`_arrival_frame`),
    and a straight line is fitted to arrival frame against arc length.

    Returns
    -------
    span : float
        Arrival frame at the last trunk end minus at the first (from the fitted line);
        positive: the contrast reaches the first end first. NaN with fewer than 3 frames.
    t_stat : float
        The fitted slope over its standard error (0 when the arrival is uniform).
    """
    opac = np.asarray(opac)
    if opac.ndim != 3 or opac.shape[0] < 3 or len(trunk) < 8:
        return float("nan"), 0.0
    arc = _arc(trunk)
    n_bins = int(np.clip(arc[-1] // 6.0, 4, 40))
    edges = np.linspace(0.0, arc[-1], n_bins + 1)
    xs, ts = [], []
    for b in range(n_bins):
        sel = (arc >= edges[b]) & (arc <= edges[b + 1])
        if sel.sum() < 2:
            continue
        t = _arrival_frame(opac[:, trunk[sel, 0], trunk[sel, 1]].mean(axis=1))
        if np.isfinite(t):
            xs.append(float(arc[sel].mean()))
            ts.append(t)
    if len(xs) < 4:
        return float("nan"), 0.0
    x, y = np.asarray(xs), np.asarray(ts)
    slope, icpt = np.polyfit(x, y, 1)
    res = y - (icpt + slope * x)
    sxx = float(np.sum((x - x.mean()) ** 2))
    se = float(np.sqrt(np.sum(res**2) / max(len(x) - 2, 1) / sxx)) if sxx > 0 else float("inf")
    t_stat = float(slope / se) if se > 0 else (float("inf") if slope else 0.0)
    return float(slope * arc[-1]), t_stat


def _skeleton_junctions(skel: np.ndarray) -> np.ndarray:
    """(H, W) bool: skeleton pixels with three or more skeleton neighbours."""
    nb = ndi.convolve(skel.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant") - 1
    return skel & (nb >= 3)


def _cut_at_turns(trunk: np.ndarray, lesion_index: int, junctions: np.ndarray, d_typ: float,
                  *, guard_px: float = 0.0, max_turn_deg: float = 30.0) -> tuple[int, int]:
    """Index range of the trunk around the lesion that stays on one vessel.

    The longest path may leave the artery at a crossing or a branch and carry on along
    the other vessel: there the path turns sharply at a skeleton junction, which an
    artery's own curve does not do over a couple of diameters. Returns (start, stop)
    (stop exclusive) between the nearest such turns on either side of the lesion, at
    least `guard_px` of arc from it (where the points go; tortuous real arteries with
    many branches would otherwise be cut short).
    """
    arc = _arc(trunk)
    h = max(8.0, 1.5 * d_typ)
    if not junctions.any():
        return 0, len(trunk)
    reach = int(round(max(3.0, d_typ)))
    near = ndi.maximum_filter(junctions, size=2 * reach + 1)
    near_j = near[trunk[:, 0], trunk[:, 1]]
    turn = np.zeros(len(trunk))
    for i in np.flatnonzero(near_j):
        if arc[i] - h < 0 or arc[i] + h > arc[-1]:
            continue
        a = trunk[i] - trunk[int(np.searchsorted(arc, arc[i] - h))]
        b = trunk[min(int(np.searchsorted(arc, arc[i] + h)), len(trunk) - 1)] - trunk[i]
        na, nb = np.hypot(*a), np.hypot(*b)
        if na > 0 and nb > 0:
            turn[i] = np.degrees(np.arccos(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0)))
    cuts = np.flatnonzero(turn > max_turn_deg)
    guard = max(2.0 * d_typ, 6.0, guard_px)  # a lesion at a junction keeps its neighbourhood
    before = cuts[arc[cuts] < arc[lesion_index] - guard]
    after = cuts[arc[cuts] > arc[lesion_index] + guard]
    start = int(before[-1]) if before.size else 0
    stop = int(after[0]) + 1 if after.size else len(trunk)
    return start, stop


def _last_end_is_proximal(
    trunk: np.ndarray,
    diam: np.ndarray,
    opac: np.ndarray | None,
    lesion_index: int | None = None,
    mask: np.ndarray | None = None,
) -> tuple[bool, str]:
    """Which end of the trunk is upstream.

    Contrast arrives upstream first: when the run shows the bolus front (the arrival
    frame fitted along the trunk changes by more than 0.5 frame from end to end, slope
    at least 3 standard errors, :func:`bolus_trend`) the earlier end is proximal. Else
    side branches vote (:func:`branch_vote`: they leave at acute angles opening
    downstream). Else the wider end is (arteries taper downstream).
    """
    if opac is not None:
        span, t_stat = bolus_trend(opac, trunk)
        if (np.isfinite(span) and abs(span) > DEFAULT_PARAMS.bolus_span_frames
                and abs(t_stat) >= DEFAULT_PARAMS.bolus_t_stat):
            return bool(span < 0), "bolus"
    if mask is not None:
        vote = branch_vote(mask, trunk, diam)
        if abs(vote) >= 0.5:
            return bool(vote < 0), "branches"
    # calibre trend: a straight-line fit of diameter over arc, the lesion left out
    arc = _arc(trunk)
    keep = np.abs(arc - arc[lesion_index]) > 3.0 * max(float(np.median(diam)), 1.0) if lesion_index is not None else np.ones(len(arc), bool)
    if keep.sum() < 10:
        keep = np.ones(len(arc), bool)
    slope, icpt = np.polyfit(arc[keep], np.asarray(diam, float)[keep], 1)
    d_first, d_last = icpt, icpt + slope * arc[-1]
    how = "calibre" if abs(d_last - d_first) > 0.08 * max(d_first, d_last, 1e-6) else "undetermined"
    return bool(d_last > d_first), how


def find_lesion(frame_or_run: Any, *, model: str = "unet", frame: int | None = None) -> Lesion:
    """Find the main trunk and its most severe focal narrowing.

    Parameters
    ----------
    frame_or_run : AngioRun or array_like, shape (H, W)
        A run (the most opacified frame is used unless `frame` is given) or one
        frame as displayed (vessels darker than the background).
    model : {"unet", "classical"}
        Vessel-probability model.
    frame : int, optional
        0-based frame of a run to use.

    Returns
    -------
    Lesion
        Proximal/distal points (row, col) around the narrowing, its centre, the
        frame, a confidence in [0, 1] and the trunk.

    Raises
    ------
    MeasurementError
        No vessel trunk long enough to hold a lesion.
    """
    from skimage.morphology import skeletonize

    from .segmentation import vessel_probability

    opac = None
    notes: list[str] = []
    if hasattr(frame_or_run, "frames"):
        opac = _opacified(frame_or_run)
        t = brightest_frame(opac) if frame is None else int(frame)
        if not 0 <= t < opac.shape[0]:
            raise MeasurementError(f"frame {t} is outside the run (0..{opac.shape[0] - 1}); pick an existing frame")
        if _needs_own_frame(frame_or_run):
            # the U-Net reads the frame as displayed (vessels darker) instead
            display = np.asarray(frame_or_run.frames[t], dtype=np.float32)
        else:
            display = -opac[t]  # vessels darker, as vessel_probability expects
        n_frames = int(opac.shape[0])
    else:
        try:
            display = np.asarray(frame_or_run, dtype=np.float32)
        except (TypeError, ValueError):
            display = np.empty(0)
        if display.ndim != 2 or min(display.shape) < 16 or not np.isfinite(display).all():
            raise MeasurementError(f"find_lesion needs a run (stenosis.read_run / read_image) or one 2-D frame of "
                                   f"finite grey levels, got {type(frame_or_run).__name__}")
        t = 0
        n_frames = 1
    prob = vessel_probability(display, model=model)
    mask, radius = _mask_and_radius(prob)
    trunk, diam, dominance = main_trunk(mask, radius=radius)
    trunk, diam = _trim_thin_ends(trunk, diam)
    width = float(np.median(diam)) if len(diam) else 0.0
    if width > MAX_TRUNK_WIDTH_FRACTION * min(display.shape):
        raise MeasurementError(
            f"--auto found no distinct artery on frame {t}: its vessel map merges into regions about {width:.0f} px wide "
            f"(over {100 * MAX_TRUNK_WIDTH_FRACTION:.0f}% of the image; dense overlapping vessels, a native frame); "
            "give the points in a points file (batch --points) or on the command line (measure --proximal/--distal)")
    arc = _arc(trunk)
    k, severity, runner, d_ref = focal_narrowing(diam, arc)
    # keep the stretch of trunk that stays on the lesion's vessel (no turn into a crossing)
    d_typ = float(np.median(diam)) if len(diam) else 4.0
    i0, i1 = _cut_at_turns(trunk, k, _skeleton_junctions(skeletonize(mask)), d_typ,
                           guard_px=max(15.0, 6.0 * d_ref))
    if i1 - i0 >= 10 and (i0 > 0 or i1 < len(trunk)):
        trunk, diam, k = trunk[i0:i1], diam[i0:i1], k - i0
        arc = _arc(trunk)
    flip, orientation = _last_end_is_proximal(trunk, diam, opac if n_frames >= 3 else None, k, mask)
    if flip:
        trunk, diam = trunk[::-1], diam[::-1]
        k = len(trunk) - 1 - k
        arc = _arc(trunk)
    cap = 1.0
    if orientation != "bolus":
        if n_frames < 3:
            notes.append(f"{'one frame' if n_frames == 1 else f'{n_frames} frames'}: no contrast arrival to tell "
                         f"proximal from distal (taken from {_CUE_TEXT[orientation]}); check which point is proximal")
            cap = SINGLE_FRAME_CONFIDENCE
        else:
            notes.append(f"the contrast reaches the whole trunk in the same frame: proximal taken from "
                         f"{_CUE_TEXT[orientation]}; check which point is proximal")
            cap = NO_BOLUS_CONFIDENCE
    margin = max(15.0, 6.0 * d_ref)
    lo = arc[k] - margin
    hi = arc[k] + margin
    i_prox = int(np.searchsorted(arc, max(lo, min(3.0, arc[k] / 2))))
    i_dist = int(np.searchsorted(arc, min(hi, arc[-1] - min(3.0, (arc[-1] - arc[k]) / 2))))
    i_prox = min(max(i_prox, 0), k)
    i_dist = max(min(i_dist, len(trunk) - 1), k)
    smooth = ndi.gaussian_filter1d(diam, 1.5, mode="nearest")
    c_sev = float(np.clip((severity - 0.15) / 0.35, 0.0, 1.0))
    c_unique = float(np.clip((severity - runner) / max(severity, 1e-6), 0.0, 1.0))
    c_trunk = float(np.clip(dominance / 0.5, 0.0, 1.0))
    confidence = min(c_sev * (0.4 + 0.4 * c_unique + 0.2 * c_trunk), cap)
    return Lesion(
        proximal=(float(trunk[i_prox, 0]), float(trunk[i_prox, 1])),
        distal=(float(trunk[i_dist, 0]), float(trunk[i_dist, 1])),
        narrowest=(float(trunk[k, 0]), float(trunk[k, 1])),
        frame_index=int(t),
        confidence=float(np.clip(confidence, 0.0, 1.0)),
        severity=float(severity),
        trunk_rc=trunk,
        trunk_diameter_px=smooth,
        orientation=orientation,
        warnings=tuple(notes),
    )


def warm_up() -> None:
    """Compile skan's numba kernels once (a few seconds per process)."""
    from skan import Skeleton, summarize

    a = np.zeros((16, 24), bool)
    a[8, 2:22] = True
    a[2:8, 10] = True
    summarize(Skeleton(a, source_image=a.astype(float)), separator="_")
