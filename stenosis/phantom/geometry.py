"""Phantom geometry: curved tubes with a circular lumen, arc-length parametrised.

A :class:`Tube` is a base centreline sampled at a uniform arc step, a lumen radius
``R(s)`` and a lumen-centre offset ``o(s)`` along the centreline normal. The lumen is
the union of circles of radius ``R(s)`` lying in the planes perpendicular to the base
centreline at ``s`` (the beam runs along the third axis, perpendicular to the image
plane), centred at ``base(s) + o(s) n(s)``. A concentric stenosis narrows ``R``; an
eccentric one also shifts the centre so that one wall stays where it was. An elliptical
lumen seen from one view is a tube whose chords are scaled (``Tube.depth_scale``,
:func:`elliptical_view`): the same lesion looks tighter in the view that sees its minor axis.

All lengths are in mm in the isocentre plane; points are (row_mm, col_mm) with the
centre of pixel (0, 0) at (0, 0).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.interpolate import CubicSpline

from ..enums import Segment

#: artery-typical normal lumen diameters (mm), min and max
NORMAL_DIAMETER_MM: dict[Segment, tuple[float, float]] = {
    Segment.ICA: (3.5, 4.8),
    Segment.M1: (2.2, 3.0),
    Segment.V4: (2.4, 3.4),
    Segment.BA: (2.6, 3.4),
}


@dataclass(frozen=True)
class Stenosis:
    """A smooth (raised-cosine, optionally flat-topped) narrowing of the lumen.

    Parameters
    ----------
    position_mm : float
        Arc position of the narrowest point along the main centreline (mm).
    percent : float
        Diameter reduction at ``position_mm`` relative to the local normal
        diameter, 0..100 (100 = occlusion).
    length_mm : float
        Full length of the narrowing (mm); the diameter is normal outside
        ``position_mm +- length_mm / 2``.
    eccentricity : float
        0 = concentric; 1 = fully eccentric (the wall on ``side`` stays put, the
        opposite wall moves by the whole diameter reduction).
    side : int
        +1 or -1: which wall (along the centreline normal) stays put.
    flat_mm : float
        Length of a flat (full-severity) middle part, for diffuse disease; the cosine
        ramps then take ``(length_mm - flat_mm) / 2`` each. 0 = plain raised cosine.
    """

    position_mm: float
    percent: float
    length_mm: float
    eccentricity: float = 0.0
    side: int = 1
    flat_mm: float = 0.0

    def narrowing(self, s_mm: np.ndarray) -> np.ndarray:
        """Fractional diameter reduction w(s) in [0, percent/100], shape of ``s_mm``."""
        s = np.asarray(s_mm, dtype=float)
        if self.flat_mm <= 0:
            u = (s - self.position_mm) / self.length_mm
            w = np.where(np.abs(u) < 0.5, 0.5 * (1.0 + np.cos(2.0 * np.pi * u)), 0.0)
        else:
            ramp = max((self.length_mm - self.flat_mm) / 2.0, 1e-9)
            x = np.abs(s - self.position_mm) - self.flat_mm / 2.0
            w = np.where(x <= 0, 1.0, np.where(x < ramp, 0.5 * (1.0 + np.cos(np.pi * x / ramp)), 0.0))
        return (self.percent / 100.0) * w

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Tube:
    """A curved tube with circular lumen, sampled at a uniform arc step.

    Attributes
    ----------
    base_mm : (N, 2) float64
        Base centreline points (row_mm, col_mm) at arc positions ``s_mm``.
    s_mm : (N,) float64
        Arc positions (mm), uniform step.
    radius_mm : (N,) float64
        Lumen radius R(s) (mm), >= 0.
    offset_mm : (N,) float64
        Lumen-centre shift along the normal ``n(s)`` (mm).
    depth_scale : (N,) float64 or None
        Chord scale along the ray (None: 1, a circular lumen). An elliptical lumen of
        semi-axes a and b, turned by phi from the view, projects as a circle of half-width
        w = sqrt(a^2 cos^2 phi + b^2 sin^2 phi) whose chords are ab / w^2 times a circle's:
        ``radius_mm`` = w, ``depth_scale`` = ab / w^2 (:func:`elliptical_view`).
    name : str
        Role of the tube ("main", "branch", "crossing", ...).
    group : str
        Tubes of one non-empty group lie in one plane and join (a vessel and its
        branches): where they overlap in projection the ray crosses the merged
        lumen, approximated by the larger of the chords. Tubes of different groups
        (or with group "") lie in different planes and their chords add.
    """

    base_mm: np.ndarray
    s_mm: np.ndarray
    radius_mm: np.ndarray
    offset_mm: np.ndarray
    name: str = "tube"
    group: str = ""
    depth_scale: np.ndarray | None = None

    def __post_init__(self):
        t = np.gradient(self.base_mm, axis=0) if len(self.base_mm) > 1 else np.array([[0.0, 1.0]])
        t = t / np.linalg.norm(t, axis=1, keepdims=True)
        object.__setattr__(self, "_tangent", t)
        object.__setattr__(self, "_normal", np.stack([-t[:, 1], t[:, 0]], axis=1))

    @property
    def tangent(self) -> np.ndarray:
        """(N, 2) unit tangents (row, col)."""
        return self._tangent

    @property
    def normal(self) -> np.ndarray:
        """(N, 2) unit normals (row, col): the tangent turned by +90 degrees."""
        return self._normal

    @property
    def lumen_mm(self) -> np.ndarray:
        """(N, 2) lumen centres (row_mm, col_mm) = base + offset * normal."""
        return self.base_mm + self.offset_mm[:, None] * self.normal

    def at(self, s_mm: np.ndarray) -> dict[str, np.ndarray]:
        """Interpolate base, lumen centre, radius and normal at arc positions ``s_mm``."""
        s = np.asarray(s_mm, dtype=float)
        base = np.stack([np.interp(s, self.s_mm, self.base_mm[:, k]) for k in (0, 1)], axis=-1)
        nrm = np.stack([np.interp(s, self.s_mm, self.normal[:, k]) for k in (0, 1)], axis=-1)
        nrm = nrm / np.linalg.norm(nrm, axis=-1, keepdims=True)
        r = np.interp(s, self.s_mm, self.radius_mm)
        o = np.interp(s, self.s_mm, self.offset_mm)
        return {"base": base, "lumen": base + o[..., None] * nrm, "radius": r, "normal": nrm}


def elliptical_view(a_mm: np.ndarray, b_mm: np.ndarray, phi_rad: float) -> tuple[np.ndarray, np.ndarray]:
    """(radius, depth_scale) of an elliptical lumen (semi-axes ``a_mm``, ``b_mm`` per centreline
    sample; ``a`` lies across the vessel in the view at ``phi_rad`` = 0) seen from a view turned by
    ``phi_rad`` about the vessel's axis: the projected half-width w = sqrt(a^2 cos^2 + b^2 sin^2)
    and the chord scale ab / w^2 (the ellipse's chord at offset u is (ab / w^2) 2 sqrt(w^2 - u^2))."""
    a = np.asarray(a_mm, float)
    b = np.asarray(b_mm, float)
    w = np.sqrt((a * np.cos(phi_rad)) ** 2 + (b * np.sin(phi_rad)) ** 2)
    scale = np.where(w > 0, a * b / np.maximum(w, 1e-12) ** 2, 1.0)
    return w, scale


def resample_by_arc(points_mm: np.ndarray, step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample a densely sampled polyline at a uniform arc step.

    Parameters
    ----------
    points_mm : (M, 2) array
        Dense polyline (row_mm, col_mm).
    step_mm : float
        Arc step of the output (mm).

    Returns
    -------
    points : (N, 2) float64, s : (N,) float64
    """
    seg = np.linalg.norm(np.diff(points_mm, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.arange(0.0, cum[-1] + 1e-9, step_mm)
    pts = np.stack([np.interp(s, cum, points_mm[:, k]) for k in (0, 1)], axis=1)
    return pts, s


def spline_through(control_mm: np.ndarray, step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Smooth curve through control points (chord-length cubic spline), arc-resampled.

    Parameters
    ----------
    control_mm : (K, 2) array, K >= 2
        Control points (row_mm, col_mm).
    step_mm : float
        Arc step (mm).

    Returns
    -------
    points : (N, 2) float64, s : (N,) float64
    """
    c = np.asarray(control_mm, dtype=float)
    u = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(c, axis=0), axis=1))])
    if len(c) < 3:
        dense_u = np.linspace(0, u[-1], max(2, int(u[-1] / step_mm * 4) + 2))
        dense = np.stack([np.interp(dense_u, u, c[:, k]) for k in (0, 1)], axis=1)
    else:
        cs = CubicSpline(u, c, axis=0, bc_type="natural")
        dense = cs(np.linspace(0, u[-1], max(50, int(u[-1] / step_mm * 8))))
    return resample_by_arc(dense, step_mm)


def random_curve(
    rng: np.random.Generator,
    *,
    start_mm: tuple[float, float],
    heading_rad: float,
    length_mm: float,
    step_mm: float,
    max_curvature_per_mm: float = 0.03,
    wavelength_mm: tuple[float, float] = (15.0, 60.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random curve by integrating a smooth random curvature kappa(s).

    kappa(s) is a sum of three sinusoids of random phase with wavelengths drawn from
    ``wavelength_mm`` and peak |kappa| <= ``max_curvature_per_mm``.

    Returns
    -------
    points : (N, 2) float64 (row_mm, col_mm), s : (N,) float64
    """
    s = np.arange(0.0, length_mm + 1e-9, step_mm)
    kappa = np.zeros_like(s)
    for _ in range(3):
        wl = rng.uniform(*wavelength_mm)
        kappa += rng.uniform(-1, 1) * np.sin(2 * np.pi * s / wl + rng.uniform(0, 2 * np.pi))
    kappa *= max_curvature_per_mm / 3.0
    theta = heading_rad + np.concatenate([[0.0], np.cumsum(0.5 * (kappa[1:] + kappa[:-1]) * step_mm)])
    d = np.stack([np.sin(theta), np.cos(theta)], axis=1) * step_mm  # (row, col)
    pts = np.asarray(start_mm, dtype=float) + np.concatenate([[[0.0, 0.0]], np.cumsum(0.5 * (d[1:] + d[:-1]), axis=0)])
    return resample_by_arc(pts, step_mm)


def make_tube(
    base_mm: np.ndarray,
    s_mm: np.ndarray,
    diameter_mm: np.ndarray | float,
    *,
    stenoses: tuple[Stenosis, ...] = (),
    name: str = "tube",
    group: str = "",
) -> Tube:
    """Build a tube from a centreline, a normal diameter profile and stenoses.

    Each stenosis multiplies the diameter by ``1 - w(s)`` (see
    :meth:`Stenosis.narrowing` and :func:`apply_stenoses`); an eccentric one shifts
    the lumen centre by ``side * eccentricity * (reduction) / 2`` so that the wall on
    ``side`` stays put (eccentricity 1).
    """
    s = np.asarray(s_mm, dtype=float)
    dn = np.broadcast_to(np.asarray(diameter_mm, dtype=float), s.shape).copy()
    d, offset = apply_stenoses(dn, s, stenoses)
    return Tube(np.asarray(base_mm, dtype=float), s, d / 2.0, offset, name, group)


def apply_stenoses(
    normal_diameter_mm: np.ndarray, s_mm: np.ndarray, stenoses: tuple[Stenosis, ...] | list[Stenosis]
) -> tuple[np.ndarray, np.ndarray]:
    """Diameter and lumen-centre offset after the stenoses (mm).

    Narrowings compound multiplicatively (a focal lesion of p % inside diffuse
    disease removes p % of the already narrowed lumen); each shifts the centre by
    ``side * eccentricity * (its reduction) / 2``.

    Returns
    -------
    diameter : ndarray, offset : ndarray (shape of ``s_mm``)
    """
    d = np.asarray(normal_diameter_mm, dtype=float).copy()
    offset = np.zeros_like(d)
    for st in stenoses:
        reduction = d * st.narrowing(s_mm)
        d = d - reduction
        offset = offset + st.side * st.eccentricity * reduction / 2.0
    return np.clip(d, 0.0, None), offset
