"""Classical multi-scale vesselness: the fallback and second opinion to the U-Net.

A frame as displayed (vessels darker than the background) is normalised with
robust percentiles, filtered with the multi-scale Hessian line filter of Sato
et al. for dark ridges, and the response is turned into a probability-like map
in [0, 1] by standardising it against the background (median / MAD) and
passing it through a logistic curve. A binary mask is cut from that map by
hysteresis thresholding.

References
----------
Sato Y. et al., "Three-dimensional multi-scale line filter for segmentation and
visualization of curvilinear structures in medical images", Medical Image
Analysis 1998;2(2):143-168. https://doi.org/10.1016/S1361-8415(98)80009-1
Frangi A.F. et al., "Multiscale vessel enhancement filtering", MICCAI 1998,
LNCS 1496:130-137. https://doi.org/10.1007/BFb0056195
Canny J., "A computational approach to edge detection" (hysteresis), IEEE PAMI
1986;8(6):679-698. https://doi.org/10.1109/TPAMI.1986.4767851
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = [
    "DEFAULT_SIGMAS_PX",
    "as_float_frame",
    "normalize_intensity",
    "vesselness",
    "classical_probability",
    "hysteresis_mask",
]

#: Gaussian scales (px). A bar of radius r answers best near sigma ~ r / sqrt(3);
#: 0.7..4 px covers vessel radii of about 1..7 px (vessels 2..12 px wide).
DEFAULT_SIGMAS_PX: tuple[float, ...] = tuple(float(s) for s in np.geomspace(0.7, 4.0, 6))

# Logistic mapping of the background-standardised response z (median/MAD units):
# p = 0.5 at z = _Z_MID, width _Z_WIDTH; both set on the mask Dice of the CIMAT
# training angiograms (see docs/tuning.md).
_Z_MID = 5.0
_Z_WIDTH = 1.5


def as_float_frame(frame) -> np.ndarray:
    """Check a frame and return it as a new float32 array.

    Parameters
    ----------
    frame : array_like, shape (H, W)
        One 2-D image of any real numeric dtype (bool, uint8, uint16, int, float).
        A grey image stored as RGB or RGBA, shape (H, W, 3|4) with equal colour
        channels (e.g. a PNG read by OpenCV or imageio), is taken as its grey channel.

    Returns
    -------
    ndarray, shape (H, W), float32

    Raises
    ------
    InputError
        If the frame is not 2-D, is empty, is not numeric, or holds NaN/inf.
    """
    a = np.asarray(frame)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        rgb = a[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise InputError(
                f"colour image of shape {a.shape}: pass one grey frame (H, W), e.g. convert it to grey first"
            )
        a = rgb[..., 0]
    if a.ndim != 2:
        raise InputError(
            f"expected one 2-D frame (H, W), got an array of shape {a.shape}; pass a single frame"
        )
    if a.shape[0] < 8 or a.shape[1] < 8:
        raise InputError(f"frame of shape {a.shape} is too small; pass a frame of at least 8x8 px")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) or np.iscomplexobj(a):
        raise InputError(f"frame dtype {a.dtype} is not a real number type; pass a grey image")
    a = a.astype(np.float32, copy=True)
    if not np.isfinite(a).all():
        raise InputError("frame holds NaN or infinite values; replace them before segmenting")
    return a


def normalize_intensity(frame, *, low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
    """Robust linear rescaling of a frame to [0, 1] (polarity kept).

    Parameters
    ----------
    frame : array_like, shape (H, W)
        Frame as displayed, any real dtype.
    low_pct, high_pct : float
        Percentiles mapped to 0 and 1; values outside are clipped.

    Returns
    -------
    ndarray, shape (H, W), float32 in [0, 1]
        A constant frame gives all zeros.
    """
    a = as_float_frame(frame)
    lo, hi = np.percentile(a, [low_pct, high_pct])
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        lo, hi = float(a.min()), float(a.max())
    if hi - lo <= 0:
        return np.zeros_like(a)
    out = (a - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def vesselness(frame, *, sigmas=DEFAULT_SIGMAS_PX, method: str = "sato") -> np.ndarray:
    """Multi-scale Hessian response to dark tubular structures.

    Parameters
    ----------
    frame : array_like, shape (H, W)
        Frame as displayed (vessels darker), any real dtype; normalised internally.
    sigmas : sequence of float
        Gaussian scales in px.
    method : {"sato", "frangi"}
        Line filter (Sato et al. 1998 or Frangi et al. 1998, see module references).

    Returns
    -------
    ndarray, shape (H, W), float32, >= 0
        Raw filter response (arbitrary units).
    """
    from skimage import filters  # lazy: ~0.3 s of imports the U-Net path does not need

    a = normalize_intensity(frame)
    sig = [float(s) for s in sigmas]
    if method == "sato":
        r = filters.sato(a, sigmas=sig, black_ridges=True, mode="reflect")
    elif method == "frangi":
        r = filters.frangi(a, sigmas=sig, black_ridges=True, mode="reflect")
    else:
        raise ValueError(f"unknown vesselness method {method!r}; use 'sato' or 'frangi'")
    return np.clip(r, 0, None).astype(np.float32)


def classical_probability(frame, *, sigmas=DEFAULT_SIGMAS_PX) -> np.ndarray:
    """Probability-like vessel map from multi-scale Sato vesselness.

    The response is standardised against the background with the median and
    the MAD (vessels are a small fraction of a frame), then mapped through a
    logistic curve so that 0.5 is the operating point found on real
    angiograms.

    Parameters
    ----------
    frame : array_like, shape (H, W)
        Frame as displayed (vessels darker), any real dtype.
    sigmas : sequence of float
        Gaussian scales in px.

    Returns
    -------
    ndarray, shape (H, W), float32 in [0, 1]
    """
    r = vesselness(frame, sigmas=sigmas, method="sato").astype(np.float64)
    med = float(np.median(r))
    mad = 1.4826 * float(np.median(np.abs(r - med)))
    scale = max(mad, 1e-6 * max(float(r.max()), 1e-12), 1e-12)
    z = (r - med) / scale
    p = 1.0 / (1.0 + np.exp(-np.clip((z - _Z_MID) / _Z_WIDTH, -60.0, 60.0)))
    return p.astype(np.float32)


def hysteresis_mask(
    probability, *, high: float = 0.5, low: float | None = None, min_size_px: int = 30
) -> np.ndarray:
    """Binary vessel mask from a probability map by hysteresis thresholding.

    Parameters
    ----------
    probability : array_like, shape (H, W)
        Values in [0, 1].
    high : float
        Seeds: pixels with probability >= ``high``.
    low : float, optional
        Pixels >= ``low`` connected to a seed are kept; default ``high / 2``.
    min_size_px : int
        Connected components smaller than this (px) are dropped.

    Returns
    -------
    ndarray, shape (H, W), bool
    """
    p = np.asarray(probability, dtype=np.float32)
    lo = high / 2.0 if low is None else float(low)
    if lo > high:
        raise ValueError(f"low ({lo}) must not exceed high ({high})")
    from skimage import filters, morphology

    m = filters.apply_hysteresis_threshold(p, lo, high)
    if min_size_px > 0 and m.any():
        m = morphology.remove_small_objects(m, max_size=int(min_size_px) - 1)
    return m
