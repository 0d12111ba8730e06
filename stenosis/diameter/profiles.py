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
        Spline order of the interpolation between pixels (:func:`scipy.ndimage.map_coordinates`).
        1 (bilinear, the diameters'): it blurs by t (1 - t) px^2 along each axis at a sub-pixel
        position t (1/6 on average), which also averages the noise; 3 (cubic spline, the
        projected width of :mod:`stenosis.diameter.shape`): the image's own profile, no
        interpolation blur that changes from sample to sample. The spline's coefficients are
        computed on the pixels around the samples only (their influence decays by 0.27 a pixel).

    Returns
    -------
    profiles : (N, M) float64
        Band-averaged profiles.
    inside : (N,) bool
        Whether the whole band lies inside the image.
    """
    img = np.asarray(image, dtype=np.float32)
    coords = _profile_points(centerline_rc, normals_rc, offsets_px, band_px, band_step_px)
    h, w = img.shape
    inside = (
        (coords[0] >= -0.5).all(axis=(1, 2))
        & (coords[0] <= h - 0.5).all(axis=(1, 2))
        & (coords[1] >= -0.5).all(axis=(1, 2))
        & (coords[1] <= w - 0.5).all(axis=(1, 2))
    )
    vals = _interpolate(img, coords.reshape(2, -1), order).reshape(coords.shape[1:])
    return vals.mean(axis=1), inside


def _profile_points(centerline_rc, normals_rc, offsets_px, band_px: float, band_step_px: float) -> np.ndarray:
    """(2, N, B, M) the (row, col) of every point :func:`sample_profiles` reads: each sample's M
    offsets along its normal, on the B parallel profiles of its band along the tangent."""
    pts = np.asarray(centerline_rc, float)
    nrm = np.asarray(normals_rc, float)
    tan = np.stack([nrm[:, 1], -nrm[:, 0]], axis=1)
    nb = int(round(band_px / band_step_px)) if band_px > 0 else 0
    bands = np.arange(-nb, nb + 1) * band_step_px
    return (pts.T[:, :, None, None]
            + nrm.T[:, :, None, None] * np.asarray(offsets_px, float)[None, None, None, :]
            + tan.T[:, :, None, None] * bands[None, None, :, None])


#: pixels of the image kept around the samples for the spline's coefficients: a pixel's weight
#: in a cubic spline's coefficient decays by 2 - sqrt(3) = 0.27 per pixel, 0.27^10 = 2e-6 (an
#: image that is itself a crop around the samples, as a frame's kept for the views is, has its
#: own edge nearer: its outermost profile points then differ from the whole frame's spline by
#: about 1% of the pixel noise)
_SPLINE_MARGIN_PX = 10


def _interpolate(img: np.ndarray, coords: np.ndarray, order: int) -> np.ndarray:
    """(K,) float64 values of ``img`` at ``coords`` (2, K), spline of ``order``, nearest beyond
    the edges. Order > 1: the coefficients of the pixels around the coordinates only (a whole
    1024 x 1024 frame's would cost more than the profiles); non-finite pixels there (a spline
    would spread them over every coefficient) or no finite coordinate: bilinear."""
    if order > 1 and coords.size:
        finite = np.isfinite(coords).all(axis=0)
        if finite.any():
            shape = np.array(img.shape)
            lo = np.clip(np.floor(coords[:, finite].min(axis=1)).astype(int) - _SPLINE_MARGIN_PX, 0, shape - 1)
            hi = np.clip(np.ceil(coords[:, finite].max(axis=1)).astype(int) + _SPLINE_MARGIN_PX + 1, lo + 1, shape)
            sub = img[lo[0]:hi[0], lo[1]:hi[1]]
            if np.isfinite(sub).all():
                return ndi.map_coordinates(sub.astype(np.float64), coords - lo[:, None], order=order, mode="nearest")
    return ndi.map_coordinates(img, coords, order=min(order, 1), mode="nearest", output=np.float64)


def bilinear_blur_var_px2(centerline_rc: np.ndarray, normals_rc: np.ndarray, offsets_px: np.ndarray, *,
                          band_px: float = 1.0, band_step_px: float = 0.5) -> float:
    """Mean blur variance (px^2, along each profile's normal) that bilinear interpolation adds to
    profiles sampled as :func:`sample_profiles` samples them: at a point with sub-pixel parts
    (t_r, t_c) its kernel has variance t_r (1 - t_r) along rows and t_c (1 - t_c) along columns,
    so n_r^2 t_r (1 - t_r) + n_c^2 t_c (1 - t_c) along the normal n; averaged over every point
    (0 for profiles on pixel centres, 1/6 for points spread evenly over sub-pixel positions)."""
    nrm = np.asarray(normals_rc, float)
    if nrm.size == 0:
        return 0.0
    q = _profile_points(centerline_rc, nrm, offsets_px, band_px, band_step_px)
    t = q - np.floor(q)
    return float((t * (1.0 - t) * (nrm.T ** 2)[:, :, None, None]).sum(axis=0).mean())


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

