"""Perpendicular intensity profiles along a centerline."""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..params import DEFAULT_PARAMS, MeasureParams

__all__ = ["profile_offsets", "sample_profiles", "normals_from_centerline", "profile_geometry", "edge_points"]


def profile_offsets(half_length_px: float, step_px: float = 0.5) -> np.ndarray:
    """(M,) symmetric sample offsets along the normal, pixels."""
    n = int(np.ceil(half_length_px / step_px))
    return np.arange(-n, n + 1) * step_px


def sample_profiles(
    image: np.ndarray,
    centerline_rc: np.ndarray,
    normals_rc: np.ndarray,
    offsets_px: np.ndarray,
    *,
    band_px: float = 1.0,
    band_step_px: float = 0.5,
    order: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Perpendicular intensity profiles, averaged over a short band along the vessel.

    Parameters
    ----------
    image : (H, W) array
        Opacified frame (iodine positive).
    centerline_rc : (N, 2) float
        Sample points (row, col), pixels.
    normals_rc : (N, 2) float
        Unit normals (row, col).
    offsets_px : (M,) float
        Offsets along the normal, pixels.
    band_px : float
        Half-length of the band of parallel profiles averaged along the tangent, pixels.
    order : int
        Interpolation order for :func:`scipy.ndimage.map_coordinates`.

    Returns
    -------
    profiles : (N, M) float64
        Band-averaged profiles.
    inside : (N,) bool
        Whether the whole band lies inside the image.
    """
    img = np.asarray(image, dtype=np.float32)
    pts = np.asarray(centerline_rc, float)
    nrm = np.asarray(normals_rc, float)
    tan = np.stack([nrm[:, 1], -nrm[:, 0]], axis=1)
    nb = int(round(band_px / band_step_px)) if band_px > 0 else 0
    bands = np.arange(-nb, nb + 1) * band_step_px
    # coords: (2, N, B, M)
    coords = (
        pts.T[:, :, None, None]
        + nrm.T[:, :, None, None] * offsets_px[None, None, None, :]
        + tan.T[:, :, None, None] * bands[None, None, :, None]
    )
    h, w = img.shape
    inside = (
        (coords[0] >= -0.5).all(axis=(1, 2))
        & (coords[0] <= h - 0.5).all(axis=(1, 2))
        & (coords[1] >= -0.5).all(axis=(1, 2))
        & (coords[1] <= w - 0.5).all(axis=(1, 2))
    )
    vals = ndi.map_coordinates(img, coords.reshape(2, -1), order=order, mode="nearest", prefilter=order > 1)
    vals = vals.reshape(coords.shape[1:]).astype(np.float64)
    return vals.mean(axis=1), inside


def normals_from_centerline(centerline_rc: np.ndarray) -> np.ndarray:
    """(N, 2) unit normals of a resampled centerline (tangent rotated by +90 degrees)."""
    p = np.asarray(centerline_rc, float)
    t = np.gradient(p, axis=0)
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    return np.stack([-t[:, 1], t[:, 0]], axis=1)


def profile_geometry(radius_hint_px: float, params: MeasureParams = DEFAULT_PARAMS) -> tuple[float, float, float]:
    """(half length, largest radius, largest centre offset) of the profiles, pixels."""
    p = params
    rh = float(max(radius_hint_px, 1.5))
    return (max(p.profile_half_radii * rh + p.profile_half_extra_px, p.profile_half_min_px),
            max(p.fit_r_max_radii * rh + p.fit_r_max_extra_px, 4.0),
            float(np.clip(p.fit_c_max_radii * rh, *p.fit_c_max_range_px)))


def edge_points(centerline_rc: np.ndarray, normal_rc: np.ndarray, centre_px: np.ndarray, radius_px: np.ndarray):
    """(left, right) lumen edge points (N, 2) from the fitted centre offsets and radii."""
    return (centerline_rc + normal_rc * (centre_px - radius_px)[:, None],
            centerline_rc + normal_rc * (centre_px + radius_px)[:, None])

