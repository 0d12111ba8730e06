"""Layout of one phantom run: the main artery, its lesion, side branches, a crossing vessel.

The main artery is a gently curved spline through the field. Arc positions (mm, from
the start of the spline, which lies outside the field) of its landmarks are kept in
:class:`Scene` so that the truth can be computed from the same numbers that built
the geometry.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import NORMAL_DIAMETER_MM, Stenosis, Tube, apply_stenoses, make_tube, random_curve, spline_through
from ..errors import InputError
from .spec import PhantomSpec

#: arc step of the truth samples (mm)
TRUTH_STEP_MM = 0.1
#: feeding artery diameter relative to the analysed artery
FEEDING_FACTOR = 1.35


@dataclass(frozen=True, eq=False)
class Scene:
    """Geometry of one run (mm at the isocentre, before patient motion)."""

    main: Tube
    others: tuple[Tube, ...]
    normal_diameter_mm: float
    stenoses: tuple[Stenosis, ...]
    landmarks: dict = field(default_factory=dict)  # arc positions (mm) and flags
    reference_choice: str = "proximal"

    @property
    def tubes(self) -> tuple[Tube, ...]:
        return (self.main, *self.others)

    def normal_diameter(self, s_mm: np.ndarray) -> np.ndarray:
        """Normal (disease-free) diameter of the main artery at arc positions (mm)."""
        s = np.asarray(s_mm, dtype=float)
        lm = self.landmarks
        dn = self.normal_diameter_mm * (
            1.0 - lm["taper"] * np.clip((s - lm["analysed_start"]) / (lm["field_end"] - lm["analysed_start"]), 0, 1)
        )
        if lm["feeding"]:
            u = np.clip((s - (lm["analysed_start"] - 4.0)) / 4.0, 0, 1)
            dn = dn * (1.0 + (FEEDING_FACTOR - 1.0) * 0.5 * (1.0 + np.cos(np.pi * u)))
        return dn

    def diameter(self, s_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """True lumen diameter and lumen-centre offset of the main artery (mm)."""
        s = np.asarray(s_mm, dtype=float)
        return apply_stenoses(self.normal_diameter(s), s, self.stenoses)


def _snap(v: float) -> float:
    return round(v / TRUTH_STEP_MM) * TRUTH_STEP_MM


def build_scene(spec: PhantomSpec, rng: np.random.Generator) -> Scene:
    """Lay out the main artery, lesion, branches and crossing for ``spec``.

    Raises
    ------
    InputError
        The field is too small for the lesion, its proximal reference and the
        reader's points.
    """
    h, w = spec.shape
    pr, pc = spec.mm_per_px
    step = min(pr, pc) / 4.0
    fr, fc = (h - 1) * pr, (w - 1) * pc
    dn = spec.normal_diameter_mm
    if dn is None:
        lo, hi = NORMAL_DIAMETER_MM[spec.segment]
        dn = float(np.round(rng.uniform(lo, hi), 2))
    # main artery: spline through 6 control points across the field
    phi = rng.uniform(0, 2 * np.pi)
    u_dir = np.array([np.sin(phi), np.cos(phi)])
    v_dir = np.array([-u_dir[1], u_dir[0]])
    centre = np.array([fr / 2, fc / 2]) + rng.uniform(-0.08, 0.08, 2) * np.array([fr, fc])
    ext = 0.5 * np.hypot(fr, fc) + 6.0
    u = np.linspace(-ext, ext, 6)
    lateral = rng.uniform(-1, 1, 6) * spec.curvature * 0.1 * min(fr, fc)
    lateral[[0, -1]] *= 0.5
    ctrl = centre + u[:, None] * u_dir + lateral[:, None] * v_dir
    if spec.control_points_px is not None:
        ctrl = np.asarray(spec.control_points_px, dtype=float) * np.array([pr, pc])
    base, s = spline_through(ctrl, step)
    # part of the centreline inside the field (margin so the lumen is fully visible)
    margin_px = 0.6 * FEEDING_FACTOR * dn / min(pr, pc) + 3
    rcpx = base / np.array([pr, pc])
    inside = (rcpx[:, 0] >= margin_px) & (rcpx[:, 0] <= h - 1 - margin_px)
    inside &= (rcpx[:, 1] >= margin_px) & (rcpx[:, 1] <= w - 1 - margin_px)
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        raise InputError("the main artery does not cross the field; use a larger shape")
    # longest contiguous inside run
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]])
    k = int(np.argmax(ends - starts))
    s_in, s_out = float(s[starts[k]]), float(s[ends[k]])
    # the feeding segment takes more of the field when it must hold the reference
    s_a = s_in + ((0.3 if spec.artery_diseased else 0.18) * (s_out - s_in) if spec.feeding else 0.0)
    ell = spec.stenosis_length_mm
    whole = spec.artery_diseased
    if spec.proximal_diseased:
        prox_room, dist_room = 3.0 * dn, 5.0 * dn
    elif whole:
        prox_room, dist_room = 2.0 * dn, max(2.0 * dn, 4.0)
    else:
        prox_room, dist_room = 4.0 * dn, max(2.0 * dn, 4.0)
    lo = s_a + 1.0 + prox_room + ell / 2
    hi = s_out - 1.0 - dist_room - ell / 2
    if hi < lo:
        raise InputError("field too small for the lesion, its reference and the reader's points; use a larger shape")
    s0 = _snap(lo + spec.lesion_fraction * (hi - lo))
    les0, les1 = s0 - ell / 2, s0 + ell / 2
    side = 1 if rng.uniform() < 0.5 else -1
    stenoses = [Stenosis(s0, spec.stenosis_percent, ell, spec.eccentricity, side)]
    if spec.proximal_diseased:
        # a long, moderate narrowing of the whole proximal segment
        plen = les0 - s_a + 2.0
        stenoses.append(Stenosis(s_a - 1.0 + plen / 2, 30.0, plen, 0.0, 1))
    if whole:
        # diffuse 30 % narrowing of the whole analysed artery (flat, 2-mm ramps)
        f0, f1 = s_a + 2.0, s_out + 10.0
        stenoses.append(Stenosis((f0 + f1) / 2, 30.0, f1 - f0 + 4.0, 0.0, 1, flat_mm=f1 - f0))
    if spec.proximal_diseased:
        s_p = _snap(les0 - prox_room)
    elif whole:
        s_p = _snap(max(s_a + 0.5, les0 - prox_room))
    else:
        s_p = _snap(max(s_a + 0.5, les0 - 5.0 * dn))
    s_d = _snap(min(s_out - 0.5, les1 + (6.0 if spec.proximal_diseased else 3.0) * dn))
    feed_p = feed_d = None
    if spec.proximal_diseased:
        s_ref = _snap((les1 + 0.5 * dn + s_d) / 2)
        choice = "distal"
    elif whole:
        feed_p, feed_d = _snap(s_in + 1.0), _snap(s_a - 4.5)
        if feed_d - feed_p < 2.0 * dn:
            raise InputError("feeding segment too short for a reference; use a larger shape")
        s_ref = _snap(max((feed_p + feed_d) / 2, feed_d - 1.5 * FEEDING_FACTOR * dn))
        choice = "feeding"
    else:
        s_ref = _snap((s_p + les0) / 2)
        choice = "proximal"
    landmarks = {
        "field_start": s_in,
        "field_end": s_out,
        "analysed_start": s_a,
        "lesion_start": les0,
        "lesion_end": les1,
        "lesion_centre": s0,
        "proximal": s_p,
        "distal": s_d,
        "reference": s_ref,
        "taper": spec.taper,
        "feeding": bool(spec.feeding),
        "feeding_proximal": feed_p,
        "feeding_distal": feed_d,
    }
    prox_lo = feed_d + 1.0 if whole else s_in  # keep branches and crossings off the feeding reference
    scene0 = Scene(
        make_tube(base, s, 1.0, name="main"), (), dn, tuple(stenoses), landmarks, choice
    )
    d, off = scene0.diameter(s)
    main = Tube(base, s, d / 2.0, off, "main", "artery")
    others: list[Tube] = []
    # side branches, outside the reader's points
    regions = [(s_d + dn + 2.0, s_out - 4.0), (prox_lo + 2.0, s_p - dn - 2.0)]
    positions: list[float] = []
    if spec.branch_fractions is not None:
        positions = [s_in + f * (s_out - s_in) for f in spec.branch_fractions]
    else:
        for b in range(spec.n_branches):
            r0, r1 = regions[b % 2]
            if r1 - r0 < 2.0:
                r0, r1 = regions[(b + 1) % 2]
                if r1 - r0 < 2.0:
                    continue
            positions.append(float(rng.uniform(r0, r1)))
    landmarks["branches"] = [float(v) for v in positions]
    for sb in positions:
        g = main.at(np.array([sb]))
        tang = np.array([np.interp(sb, s, main.tangent[:, 0]), np.interp(sb, s, main.tangent[:, 1])])
        bside = 1 if rng.uniform() < 0.5 else -1
        ang = np.arctan2(tang[0], tang[1]) + bside * np.deg2rad(rng.uniform(35, 75))
        origin = g["base"][0] + bside * g["normal"][0] * 0.5 * g["radius"][0]
        pts, sbr = random_curve(
            rng, start_mm=tuple(origin), heading_rad=ang, length_mm=rng.uniform(15, 35), step_mm=step,
            max_curvature_per_mm=0.04,
        )
        dbr = float(scene0.normal_diameter(np.array([sb]))[0]) * rng.uniform(0.4, 0.65)
        others.append(make_tube(pts, sbr, dbr * (1 - 0.15 * sbr / sbr[-1]), name="branch", group="artery"))
    if spec.crossing:
        if spec.crossing_in_segment:
            sc = (les1 + s_d) / 2
        else:
            cand = [(s_out - 5.0 - (s_d + 5.0), (s_d + 5.0 + s_out - 5.0) / 2),
                    (s_p - 5.0 - (prox_lo + 5.0), (prox_lo + 5.0 + s_p - 5.0) / 2)]
            room, sc = max(cand)
            if room < 0:
                sc = None
        if sc is not None:
            g = main.at(np.array([sc]))
            tang = np.array([np.interp(sc, s, main.tangent[:, 0]), np.interp(sc, s, main.tangent[:, 1])])
            ang = np.arctan2(tang[0], tang[1]) + (1 if rng.uniform() < 0.5 else -1) * np.deg2rad(rng.uniform(40, 90))
            cdir = np.array([np.sin(ang), np.cos(ang)])
            cperp = np.array([-cdir[1], cdir[0]])
            p0 = g["base"][0]
            ctrl_c = np.stack([
                p0 - ext * cdir + rng.uniform(-3, 3) * cperp,
                p0,
                p0 + ext * cdir + rng.uniform(-3, 3) * cperp,
            ])
            pts, scr = spline_through(ctrl_c, step)
            others.append(make_tube(pts, scr, dn * rng.uniform(0.5, 0.9), name="crossing"))
            landmarks["crossing"] = float(sc)
    return Scene(main, tuple(others), dn, tuple(stenoses), landmarks, choice)
