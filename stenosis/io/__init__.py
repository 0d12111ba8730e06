"""Reading X-ray angiography (XA/XRF) runs from DICOM.

A *run* is one acquisition: a multi-frame XA/XRF file, or the single-frame
files of one series. :func:`read_run` turns it into an :class:`AngioRun`:
frames (T, H, W) in the stored dtype and displayed polarity, the isocentre
:class:`~stenosis.calibration.Calibration`, the metadata the measurement needs
(:class:`RunMetadata`, no patient identifiers) and warnings.

Decoding goes through pydicom 3 (with GDCM, pylibjpeg-rle and Pillow plugins)
frame by frame into one preallocated array; uncompressed pixel data is read
straight from the file into that array, so a run needs about its decoded size
in memory. GDCM itself is the fallback for encodings pydicom refuses (12-bit
lossy JPEG, "JPEG Extended"). Pixel processing follows DICOM PS3.3 C.7.6.3:
only BitsStored bits are kept (sign-extended for PixelRepresentation 1) and
MONOCHROME1 is inverted so that vessels are darker than the background.

Folders: :func:`find_runs` walks a folder, recognises DICOM by the 128-byte
preamble followed by ``DICM`` (not by extension) and returns one
:class:`RunSource` per run. :func:`read_run` reads one :class:`RunSource`
(raising :class:`~stenosis.errors.InputError` for that run only), so a batch
reads a folder as::

    for src in find_runs(folder):
        try:
            run = read_run(src)
        except InputError as exc:
            report(src.path, exc)

:func:`read_runs` does this loop and collects the errors in an optional list.

Modules by role: :mod:`.run` (the run and its metadata), :mod:`.tags` (single
attributes), :mod:`.header` (checks before any pixel is allocated),
:mod:`.decode` (pixel decoding), :mod:`.series` (files, series and folders).
"""
from __future__ import annotations

from .decode import _DecoderStalled, _decode_in_child
from .header import MAX_DECODED_BYTES, is_dicom_file
from .run import AngioRun, RunMetadata, RunReadError, RunSource, _id_key, run_id_from_uids
from .image import IMAGE_SUFFIXES, read_image
from .series import find_runs, read_run, read_runs

__all__ = [
    "AngioRun",
    "RunMetadata",
    "RunSource",
    "RunReadError",
    "read_run",
    "read_runs",
    "read_image",
    "IMAGE_SUFFIXES",
    "find_runs",
    "is_dicom_file",
    "run_id_from_uids",
    "MAX_DECODED_BYTES",
]
