"""Fixtures of the napari-stenosis tests: tiny DICOM runs and a result built from known geometry.

The napari fixtures (``make_napari_viewer``) come from napari's own pytest plugin;
pytest-xvfb gives them an X server.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


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


def tube_frames(shape=(3, 96, 128), *, radius_px=6.0, row0=48.0, background=3000, contrast=1500) -> np.ndarray:
    """Frames with one dark horizontal band (a vessel) in every frame after the first."""
    t, h, w = shape
    rows = np.arange(h)[:, None].repeat(w, 1).astype(float)
    chord = 2 * np.sqrt(np.clip(radius_px**2 - (rows - row0) ** 2, 0, None)) / (2 * radius_px)
    out = np.full(shape, background, dtype=np.uint16)
    for i in range(1, t):
        out[i] = (background - contrast * chord).astype(np.uint16)
    return out


@pytest.fixture
def xa_file(tmp_path: Path) -> Path:
    """A 3-frame 96x128 XA run with PixelSpacing 0.25 mm and a DICOM window."""
    return write_xa(tmp_path / "run1.dcm", tube_frames(), pixel_spacing=0.25, window=(2500.0, 2000.0))


@pytest.fixture
def sample_runs() -> list[Path]:
    """The bundled phantom runs (skipped with a reason when none is built yet)."""
    from napari_stenosis._sample_data import sample_files

    files = sample_files()
    if not files:
        pytest.skip("no phantom runs in sample_dicom/ (build them with stenosis.phantom)")
    return files
