"""Helpers of the napari-stenosis tests (a unique module name: the repo has two conftest.py).

``write_xa``/``tube_frames`` make tiny DICOM runs; ``known_result`` is a
:class:`stenosis.StenosisResult` built from a known geometry (a straight 100 px
centerline, a 10 px lumen narrowed to 4 px) for checking presentation and export.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_xa(path: Path, frames: np.ndarray, *, pixel_spacing: float | None = None,
             window: tuple[float, float] | None = None, photometric: str = "MONOCHROME2") -> Path:
    """Write a minimal multi-frame XA DICOM (uncompressed, uint16) for reader tests."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    frames = np.asarray(frames, dtype=np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.12.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "XA"
    ds.PatientName = "SECRET^PATIENT"
    ds.PatientID = "ID-DO-NOT-SHOW"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    ds.NumberOfFrames = int(frames.shape[0])
    ds.FrameIncrementPointer = (0x0018, 0x1063)
    ds.FrameTime = 66.7
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelIntensityRelationship = "LOG"
    if pixel_spacing is not None:
        ds.PixelSpacing = [pixel_spacing, pixel_spacing]
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = frames.tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def tube_frames(shape=(3, 96, 128), *, radius_px=6.0, row0=None, background=3000, contrast=1500) -> np.ndarray:
    """Frames with one dark horizontal band (a vessel) in every frame after the first."""
    t, h, w = shape
    row0 = h / 2.0 if row0 is None else row0
    rows = np.arange(h)[:, None].repeat(w, 1).astype(float)
    chord = 2 * np.sqrt(np.clip(radius_px**2 - (rows - row0) ** 2, 0, None)) / (2 * radius_px)
    out = np.full(shape, background, dtype=np.uint16)
    for i in range(1, t):
        out[i] = (background - contrast * chord).astype(np.uint16)
    return out


MM = 0.2  # mm per pixel of the known result


def known_result(*, mm_per_px=MM, run_id="abc123") -> "stenosis.StenosisResult":
    from stenosis.result import DiameterProfile, ReferenceWindow, StenosisResult

    n = 101
    arc = np.arange(n, dtype=float)
    cl = np.stack([np.full(n, 48.0), 10.0 + arc], axis=1)
    diam = np.full(n, 10.0)
    diam[45:56] = 10.0 - 6.0 * (1 - np.abs(np.arange(-5, 6)) / 5.0)  # 4 px at arc 50
    normal = np.tile([1.0, 0.0], (n, 1))
    prof = DiameterProfile(
        arc_px=arc, centerline_rc=cl, normal_rc=normal, diameter_px=diam,
        left_rc=cl - normal * diam[:, None] / 2, right_rc=cl + normal * diam[:, None] / 2,
        flags=np.zeros(n, int), edge_diameter_px=diam.copy(), centre_offset_px=np.zeros(n),
        blur_sigma_px=1.0, amplitude=1.0, mm_per_px=mm_per_px,
    )
    window = ReferenceWindow("proximal", 10.0, 30.0, 10.0, (48.0, 30.0), "widest parallel proximal M1")
    cal = {"mm_per_px": None if mm_per_px is None else [mm_per_px, mm_per_px],
           "source": "none" if mm_per_px is None else "pixel_spacing"}
    return StenosisResult(
        file="/data/run1.dcm", run_id=run_id, segment="M1", frame_index=2,
        percent_stenosis=60.0, mld_px=4.0, mld_rc=(48.0, 60.0), mld_arc_px=50.0,
        reference_diameter_px=10.0, reference_rc=(48.0, 30.0), reference_choice="proximal",
        reference_window=window, lesion_start_px=45.0, lesion_end_px=55.0,
        interpolated_percent_stenosis=None, interpolated_reference_px=None,
        calibration=cal, mm_per_px=mm_per_px, proximal_rc=(48.0, 10.0), distal_rc=(48.0, 110.0),
        model="unet", software={"version": "9.9.9", "model_sha256": "f" * 64}, profile=prof,
        warnings=("a warning for the reader",),
    )


