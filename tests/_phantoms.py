"""Named test phantoms shared by the tests (so a test says which case it measures, not how to build it).

``tube_image`` / ``straight``: a blurred projected tube drawn directly (no DICOM), for the
diameter and profile tests. ``SPECS`` / ``phantom(name, folder)``: physical phantom runs
(:mod:`stenosis.phantom`) written as DICOM with their truth sidecars, by name.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from stenosis.phantom import PhantomSpec, load_truth, make_phantom


def tube_image(shape, radius_fn, *, row0, sigma, amp=0.05, noise=0.0, ss=4, seed=0):
    """A horizontal projected tube of radius ``radius_fn(col)`` at ``row0``, blurred by ``sigma`` px,
    iodine positive (``amp`` per pixel of path), supersampled ``ss`` x per pixel side."""
    h, w = shape
    rr = (np.arange(h * ss) + 0.5) / ss - 0.5
    cc = (np.arange(w * ss) + 0.5) / ss - 0.5
    R = radius_fn(cc)[None, :]
    chord = 2 * np.sqrt(np.clip(R**2 - (rr[:, None] - row0) ** 2, 0, None))
    img = chord.reshape(h, ss, w, ss).mean(axis=(1, 3)) * amp
    img = ndi.gaussian_filter(img, sigma)
    if noise:
        img = img + np.random.default_rng(seed).normal(0, noise, img.shape)
    return img.astype(np.float32)


def straight(cols, row=30.0):
    """(N, 2) centerline along row ``row`` at columns ``cols``."""
    return np.stack([np.full(len(cols), row), cols], axis=1).astype(float)


#: named physical phantoms (seed, artery, lesion, pixel, frames, dose)
SPECS = {
    # 8 frames: 2 mask, 2 arrival, 4 plateau; a quarter of the usual dose
    "low_dose_m1_8frames": dict(seed=5, segment="M1", normal_diameter_mm=2.8, stenosis_percent=60, stenosis_length_mm=5,
                                shape=(384, 384), mm_per_px=(0.15, 0.15), n_frames=8, photons=5000.0),
    # the same artery twice, 45% and 60%: two "views" of one lesion
    "view_a_45": dict(seed=11, segment="M1", normal_diameter_mm=3.0, stenosis_percent=45.0, stenosis_length_mm=5.0,
                      shape=(384, 384), mm_per_px=(0.15, 0.15), n_frames=6, photons=80000.0),
    "view_b_60": dict(seed=11, segment="M1", normal_diameter_mm=3.0, stenosis_percent=60.0, stenosis_length_mm=5.0,
                      shape=(384, 384), mm_per_px=(0.15, 0.15), n_frames=6, photons=80000.0),
}


def phantom(name: str, folder: str | Path, **overrides) -> tuple[Path, dict]:
    """Write the named phantom (``SPECS``) as DICOM in ``folder``; (path, truth)."""
    spec = PhantomSpec(name=name, **{**SPECS[name], **overrides})
    dcm, _ = make_phantom(spec, Path(folder) / f"{name}.dcm")
    return dcm, load_truth(dcm)


def measure_truth(run, truth: dict, **kw):
    """``stenosis.measure`` of ``run`` at its truth's segment and reader points (warnings silenced)."""
    import warnings

    import stenosis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return stenosis.measure(run, truth["segment"], tuple(truth["proximal_rc"]), tuple(truth["distal_rc"]), **kw)


def with_pixels(src, dst, edit) -> None:
    """``src`` written to ``dst`` uncompressed, its stored frames replaced by ``edit(frames, ds)``
    (a copy of the stored array; the result is stored in the same dtype)."""
    import pydicom

    ds = pydicom.dcmread(src)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    dtype = ds.pixel_array.dtype
    ds.PixelData = np.asarray(edit(ds.pixel_array.copy(), ds)).astype(dtype).tobytes()
    ds.save_as(dst)
