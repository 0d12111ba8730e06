"""Write a rendered phantom as a DICOM XA multi-frame file plus its truth sidecar.

X-Ray Angiographic Image Storage (SOP class 1.2.840.10008.5.1.4.1.1.12.1), Modality
XA, 12 bits stored, MONOCHROME2 (vessels darker; MONOCHROME1 optional, inverted
stored values), PixelIntensityRelationship LOG (LIN optional for native runs).
Native runs carry a MaskSubtractionSequence (AVG_SUB of the mask frames, 1-based
MaskFrameNumbers) and RecommendedViewingMode SUB; subtracted runs carry ImageType
DERIVED\\PRIMARY\\SINGLE PLANE\\SUBTRACTED and the log-subtracted frames with an offset.

Calibration encodings (``spec.calibration``), mm/px at the isocentre = ``mm_per_px``:
- ``pixel_spacing``: PixelSpacing = mm_per_px;
- ``geometry``: ImagerPixelSpacing = mm_per_px x SID / SOD, DistanceSourceToDetector
  = SID, DistanceSourceToPatient = SOD;
- ``magnification``: ImagerPixelSpacing as above, EstimatedRadiographicMagnificationFactor
  = SID / SOD;
- ``none``: no spacing tags.

UIDs are derived from the spec (seed and name), dates are fixed and the
implementation UID is the project's own, so a regenerated file is bit-for-bit
identical. Patient identity is clearly synthetic (PHANTOM^STENOSIS).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .engine import Phantom

XA_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.12.1"
PATIENT_NAME = "PHANTOM^STENOSIS"
IMPLEMENTATION_VERSION = "STENOSIS_PH1"


def _ds(v: float) -> str:
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(v))


def _uid(spec, role: str) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["stenosis-phantom", role, spec.name, str(spec.seed), json.dumps(spec.to_dict(), sort_keys=True)])


def to_dataset(phantom: Phantom):
    """Build the pydicom ``FileDataset`` of a phantom run (pixel data encoded).

    Returns
    -------
    pydicom.dataset.FileDataset
    """
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

    spec = phantom.spec
    arr = np.ascontiguousarray(phantom.stored, dtype=np.uint16)
    n, h, w = arr.shape
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = XA_SOP_CLASS
    sop_uid = _uid(spec, "sop")
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(entropy_srcs=["stenosis-phantom-implementation"])
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = (
        ["DERIVED", "PRIMARY", "SINGLE PLANE", "SUBTRACTED"] if spec.subtracted else ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    )
    ds.SOPClassUID = XA_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = "20000101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = "XA"
    ds.Manufacturer = "stenosis phantom"
    ds.InstitutionName = "synthetic"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Synthetic stenosis phantom"
    ds.SeriesDescription = (
        f"PHANTOM {spec.segment} {phantom.truth['percent_stenosis']:.1f}% "
        f"{'SUB' if spec.subtracted else 'NATIVE'} {spec.calibration}"
    )
    ds.ManufacturerModelName = "stenosis.phantom"
    ds.SoftwareVersions = IMPLEMENTATION_VERSION
    ds.PatientName = PATIENT_NAME
    ds.PatientID = f"PHANTOM-{spec.seed}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.BodyPartExamined = "HEAD"
    ds.KVP = "80"
    ds.RadiationSetting = "GR"
    ds.XRayTubeCurrent = "400"
    ds.ExposureTime = "100"
    ds.ContrastBolusAgent = "IODINE"
    ds.PositionerMotion = "STATIC"
    ds.PositionerPrimaryAngle = _ds(spec.primary_angle_deg)
    ds.PositionerSecondaryAngle = _ds(spec.secondary_angle_deg)
    ds.FrameTime = _ds(spec.frame_time_ms)
    ds.CineRate = str(int(round(1000.0 / spec.frame_time_ms)))
    ds.StudyInstanceUID = _uid(spec, "study")
    ds.SeriesInstanceUID = _uid(spec, "series")
    ds.StudyID = "1"
    ds.SeriesNumber = "1"
    ds.AcquisitionNumber = "1"
    ds.InstanceNumber = "1"
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = spec.photometric
    ds.NumberOfFrames = str(n)
    ds.FrameIncrementPointer = 0x00181063  # FrameTime
    ds.Rows = h
    ds.Columns = w
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = spec.intensity_relationship
    if spec.intensity_relationship == "LOG":
        # Modality LUT module (required with LOG): identity, the stored values are the log data
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "US"
    ds.LossyImageCompression = "00"
    pr, pc = spec.mm_per_px
    mag = spec.sid_mm / spec.sod_mm
    cal = str(spec.calibration)
    if cal == "pixel_spacing":
        ds.PixelSpacing = [_ds(pr), _ds(pc)]
        ds.PixelSpacingCalibrationType = "GEOMETRY"
        ds.PixelSpacingCalibrationDescription = "isocentre plane of the synthetic phantom"
    elif cal == "geometry":
        ds.ImagerPixelSpacing = [_ds(pr * mag), _ds(pc * mag)]
        ds.DistanceSourceToDetector = _ds(spec.sid_mm)
        ds.DistanceSourceToPatient = _ds(spec.sod_mm)
    elif cal == "magnification":
        ds.ImagerPixelSpacing = [_ds(pr * mag), _ds(pc * mag)]
        ds.EstimatedRadiographicMagnificationFactor = _ds(mag)
    if spec.subtracted:
        ds.DerivationDescription = (
            f"log subtraction: stored = {phantom.truth['encoding']['offset']:g} + "
            f"{phantom.truth['encoding']['scale_per_ln']:g} * (ln I - mean ln I of frames "
            f"1-{spec.n_mask_frames})"
        )
        wc, ww = 1820.0, 500.0
        if spec.photometric == "MONOCHROME1":
            wc = 4095.0 - wc
    else:
        item = Dataset()
        item.MaskOperation = "AVG_SUB"
        item.SubtractionItemID = 1
        item.MaskFrameNumbers = [k + 1 for k in range(spec.n_mask_frames)]
        ds.MaskSubtractionSequence = Sequence([item])
        ds.RecommendedViewingMode = "SUB"
        lo, hi = np.percentile(arr[phantom.frame_index], [1, 99])
        wc, ww = float(np.round((lo + hi) / 2)), float(np.round(max(hi - lo, 64)))
    ds.WindowCenter = _ds(wc)
    ds.WindowWidth = _ds(ww)
    if spec.compression == "rle":
        ds.compress(RLELossless, arr, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    else:
        ds.PixelData = arr.tobytes()
    return ds


def write_phantom(phantom: Phantom, path: str | Path) -> tuple[Path, Path]:
    """Write ``<name>.dcm`` and ``<name>.truth.json``.

    Parameters
    ----------
    phantom : Phantom
    path : path of the .dcm file (the sidecar goes next to it)

    Returns
    -------
    (dcm_path, truth_path)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = to_dataset(phantom)
    ds.save_as(path, enforce_file_format=True)
    truth_path = truth_path_for(path)
    truth_path.write_text(dumps_truth(phantom.truth))
    return path, truth_path


def dumps_truth(truth: dict) -> str:
    """JSON text of a truth dict: one key per line, values compact (arrays stay short)."""
    lines = [f" {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in truth.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def truth_path_for(dcm_path: str | Path) -> Path:
    """The sidecar path ``<name>.truth.json`` of ``<name>.dcm``."""
    p = Path(dcm_path)
    return p.with_name(p.stem + ".truth.json")


def load_truth(dcm_or_truth_path: str | Path) -> dict:
    """Read the truth sidecar of a phantom run (pass the .dcm or the .truth.json)."""
    p = Path(dcm_or_truth_path)
    if not p.name.endswith(".truth.json"):
        p = truth_path_for(p)
    return json.loads(p.read_text())
