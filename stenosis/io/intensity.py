"""The pixel intensity relationship of a native run, from its noise, when the header does not say.

Mask subtraction must be done where attenuation adds up: on log intensity
(:mod:`stenosis.opacification`). DICOM says which values a run stores in
PixelIntensityRelationship (LIN: proportional to the detected intensity; LOG: to its
logarithm); exports and some headers leave it out. Read the wrong way, the iodine signal of
a LIN run is scaled by the anatomy's brightness behind it: on our phantoms a LIN run read as
LOG goes from percent MAE 0.88 to 2.24 (max 9.8 points).

The noise tells them apart. Quantum noise has a variance proportional to the detected
intensity I, so values proportional to I have a noise variance that grows with the value
(slope +1 of log variance against log value), while values proportional to log I have a
variance proportional to 1 / I, which falls as the value rises (a steep negative slope).
The difference of two frames with little or no iodine (the first two mask frames, else the
first two frames), high-passed so that anatomy and small motion cancel, is noise; its robust
variance in ten brightness bins against their mean value gives the slope. On our phantoms
LIN runs give +1.0 to +1.1 and LOG runs -4.8 to -5.3 (``docs/tuning.md``). Motion between the
two frames leaves anatomy in the difference, which grows with brightness and can give a steep
positive slope even for LOG values: above +2 (twice what quantum noise gives) nothing is decided.
No real multi-frame run without the tag was available to check this on.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["infer_intensity_relationship", "NOISE_SLOPE_DECISION"]

#: |log-log slope| of the noise variance against the value needed to decide (LIN above +, LOG
#: below -); between them (electronic noise floor, heavy processing) the relationship stays unknown
NOISE_SLOPE_DECISION = 0.5
#: the slope must also be this many of its own standard errors from 0 (a line through 10 bins)
_SLOPE_SE = 3.0
#: quantum noise in values proportional to intensity gives +1; a slope above this is not noise
#: (anatomy left in the difference by motion between the frames, a flat field's narrow range)
#: and decides nothing
_LIN_SLOPE_MAX = 2.0


def infer_intensity_relationship(frames: np.ndarray, mask_frames=()) -> tuple[str | None, float]:
    """("LIN" | "LOG" | None, slope) of a native run (T >= 2 frames), see the module notes.

    Parameters
    ----------
    frames : (T, H, W) array
        Stored values as the pipeline reads them (MONOCHROME2: vessels dark).
    mask_frames : sequence of int
        The run's mask frames (MaskSubtractionSequence), if any.

    Returns
    -------
    relationship : "LIN", "LOG" or None (cannot tell: one frame, too few exposed pixels, a slope
        within +-``NOISE_SLOPE_DECISION`` or within 3 of its standard errors of 0, or above 2, which
        quantum noise does not give: anatomy moved between the frames)
    slope : float
        Log-log slope of the noise variance against the value (NaN when not measured).
    """
    t = int(frames.shape[0]) if np.ndim(frames) == 3 else 0
    if t < 2:
        return None, float("nan")
    masks = [int(m) for m in mask_frames if 0 <= int(m) < t]
    a_i, b_i = (masks[0], masks[1]) if len(masks) >= 2 else (0, 1)
    step = 2 if min(frames.shape[1:]) >= 512 else 1  # every other pixel: the same statistics, a quarter of the work
    a = np.asarray(frames[a_i][::step, ::step], np.float64)
    b = np.asarray(frames[b_i][::step, ::step], np.float64)
    diff = b - a
    hp = diff - ndi.uniform_filter(diff, 5)
    level = ndi.uniform_filter(0.5 * (a + b), 9)
    top = float(max(a.max(), b.max()))
    # exposed, unsaturated pixels away from the frame border (the filters' edges)
    ok = np.zeros(level.shape, bool)
    ok[6:-6, 6:-6] = True
    ok &= (level > np.quantile(level, 0.02)) & (ndi.maximum_filter(np.maximum(a, b), 5) < top) & (level > 0)
    if ok.sum() < 2000:
        return None, float("nan")
    edges = np.quantile(level[ok], np.linspace(0.0, 1.0, 11))
    x, y = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = ok & (level >= lo) & (level < hi)
        if sel.sum() < 200:
            continue
        v = hp[sel]
        mad = 1.4826 * float(np.median(np.abs(v - np.median(v))))
        if mad <= 0:
            continue
        x.append(np.log(float(np.median(level[sel]))))
        y.append(np.log(mad * mad))
    if len(x) < 5 or x[-1] - x[0] <= 0:
        return None, float("nan")
    coef, cov = np.polyfit(x, y, 1, cov=True)
    slope, se = float(coef[0]), float(np.sqrt(max(cov[0, 0], 0.0)))
    if abs(slope) < max(NOISE_SLOPE_DECISION, _SLOPE_SE * se) or slope > _LIN_SLOPE_MAX:
        return None, slope
    return ("LIN" if slope > 0 else "LOG"), slope
