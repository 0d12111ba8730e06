"""Greyscale image exports (PNG, TIFF, JPEG, BMP) as runs: :func:`read_image`.

An angiogram exported as a picture (a teaching file, a frame saved from a viewer, the public
CIMAT/DCA1 sets) carries no calibration and no intensity relationship. It is read as the stored
values of a native run, vessels dark, with ``pixel_intensity_relationship`` None: a single frame's
contrast is then read relative to the brightness behind the vessel
(:func:`stenosis.measurement.contrast_against`), as the real-image benchmark reads CIMAT.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from .run import AngioRun

#: file suffixes :func:`read_image` reads (lower case)
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def read_image(path: str | os.PathLike, *, subtracted: bool = False) -> AngioRun:
    """A greyscale image export as an uncalibrated native run (one frame per page of a TIFF);
    ``subtracted``: the pictures are DSA frames (no mask is subtracted again).

    Vessels must be dark (as displayed; a palette or grey-and-alpha picture is read as shown).
    Give the pixel size to :func:`stenosis.measure` (``pixel_mm=``) to report mm. Raises
    :class:`InputError` for a missing or unreadable file (a decompression bomb too), a colour
    image, or one smaller than 16 x 16 pixels."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file; check the path")
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pillow comes with scikit-image and matplotlib
        raise InputError("reading image files needs pillow: pip install pillow") from None
    frames = []
    try:
        with Image.open(p) as im:
            for k in range(getattr(im, "n_frames", 1)):
                im.seek(k)
                if im.mode in ("L", "I", "F"):  # grey as stored
                    frames.append(np.array(im))
                elif im.mode.startswith("I;"):  # 16-bit grey
                    frames.append(np.array(im.convert("I")))
                elif im.mode == "1":
                    frames.append(np.array(im.convert("L")))
                else:  # palette, grey + alpha, RGB(A), CMYK, YCbCr...: the colours shown, then checked grey
                    frames.append(np.array(im.convert("RGBA")))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        from .header import is_dicom_file

        if p.is_file() and is_dicom_file(p):
            raise InputError(f"{p}: a DICOM file, not a picture; read it with stenosis.read_run(path)") from None
        raise InputError(f"{p}: not a readable image ({type(exc).__name__}); pass a PNG/TIFF/JPEG/BMP export (a DICOM "
                         "run: stenosis.read_run)") from None
    grey = []
    for f in frames:
        if f.ndim == 3:
            rgb = f[..., :3]
            if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
                raise InputError(f"{p}: a colour image; export the angiogram in greyscale")
            f = rgb[..., 0]
        if f.ndim != 2 or min(f.shape) < 16 or f.shape != frames[0].shape[:2]:
            raise InputError(f"{p}: not a greyscale picture of at least 16 x 16 pixels (shape {f.shape}); "
                             "pass the angiogram itself")
        grey.append(f)
    how = ("the frame's contrast is read relative to the brightness behind the vessel (as if stored values were "
           "proportional to intensity)" if len(grey) == 1 else "pixel values taken as log-scaled for subtraction")
    if subtracted:
        how = "read as subtracted (DSA) frames"
    run = AngioRun.from_array(np.stack(grey), pixel_intensity_relationship=None, subtracted=subtracted, source=str(p))
    return replace(run, warnings=(f"an image export ({p.suffix.lstrip('.').upper() or 'picture'}) carries no intensity "
                                  f"relationship: {how}; measure the DICOM run for an exact reading",))
