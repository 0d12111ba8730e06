"""DICOM Structured Report of one measurement, so results can go back to PACS.

A Comprehensive 3D SR holding a TID 1500 *Measurement Report* with one TID 1410
*Planar ROI Measurements* group: the finding (stenosis, SCT 415582006) at its site
(the artery of the graded segment), a POINT region on the narrowest lumen that
references the source image (and frame), and three measurements:

* percent diameter stenosis (SCT 408715008 "Lumen Diameter Stenosis", %), WASID
  (Samuels et al., AJNR 2000;21:643-6);
* minimal lumen diameter (SCT 397413000 "Vessel lumen diameter", derivation
  Minimum, mm);
* WASID reference diameter (SCT 397413000, method "WASID reference", a local code
  in the ``99STENOSIS`` scheme, mm).

mm values are left out when the run is uncalibrated. The SR copies the patient and
study modules of the source image (it must attach to that study in PACS); it is
only written on request (``--sr``). Built with highdicom (Herrmann et al., J Digit
Imaging 2022;35:1719-37, doi:10.1007/s10278-022-00683-y).
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from ._version import __version__
from .errors import InputError, MissingExtraError

__all__ = ["require_highdicom", "build_sr", "write_sr"]

_SITES = {  # segment -> SNOMED CT artery
    "M1": ("17232002", "Middle cerebral artery"),
    "ICA": ("86117002", "Internal carotid artery"),
    "V4": ("85234005", "Vertebral artery"),
    "BA": ("59011009", "Basilar artery"),
}


def require_highdicom():
    """Import highdicom or raise :class:`MissingExtraError` naming the extra."""
    try:
        import highdicom
    except ImportError:
        raise MissingExtraError("highdicom", "sr") from None
    return highdicom


def _source_dataset(files: Sequence[str], frame_index: int):
    import pydicom

    if not files:
        raise InputError("no source image to reference in the SR")
    path = files[frame_index] if len(files) > 1 and frame_index < len(files) else files[0]
    try:
        return pydicom.dcmread(path, stop_before_pixels=True), len(files) == 1
    except Exception as exc:
        raise InputError(f"cannot re-read {os.path.basename(path)} for the SR ({exc}); skip --sr") from None


def build_sr(row: Mapping[str, Any], files: Sequence[str]):
    """Build the SR dataset for one ok result row.

    Parameters
    ----------
    row : mapping
        A batch/``measure --json`` row (``percent_stenosis``, ``mld_mm``,
        ``reference_diameter_mm``, ``mld_rc``, ``segment``, ``frame_index``).
    files : sequence of str
        The run's file (multi-frame) or its single-frame files in frame order.

    Returns
    -------
    highdicom.sr.Comprehensive3DSR
    """
    hd = require_highdicom()
    import numpy as np
    from pydicom.sr.codedict import codes

    frame = int(row.get("frame_index") or 0)
    ds, multi = _source_dataset(files, frame)
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    ref_frames = [frame + 1] if multi and n_frames > 1 else None
    src = hd.sr.SourceImageForRegion.from_source_image(ds, referenced_frame_numbers=ref_frames)
    r, c = (float(v) for v in (row.get("mld_rc") or row.get("proximal_rc")))
    # SCOORD: (column, row), origin at the top-left corner of the top-left pixel
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POINT,
        graphic_data=np.array([[c + 0.5, r + 0.5]]),
        source_image=src,
    )
    seg = str(row.get("segment"))
    site_code = _SITES.get(seg)
    sites = (
        [hd.sr.FindingSite(anatomic_location=hd.sr.CodedConcept(site_code[0], "SCT", site_code[1]))]
        if site_code
        else None
    )
    algo = hd.sr.AlgorithmIdentification(name="stenosis (WASID)", version=__version__)
    pct = hd.sr.Measurement(
        name=hd.sr.CodedConcept("408715008", "SCT", "Lumen Diameter Stenosis"),
        value=float(row["percent_stenosis"]),
        unit=codes.UCUM.Percent,
        algorithm_id=algo,
    )
    measurements = [pct]
    if row.get("mld_mm") is not None:
        measurements.append(
            hd.sr.Measurement(
                name=hd.sr.CodedConcept("397413000", "SCT", "Vessel lumen diameter"),
                value=float(row["mld_mm"]),
                unit=codes.UCUM.Millimeter,
                derivation=hd.sr.CodedConcept("255605001", "SCT", "Minimum"),
                algorithm_id=algo,
            )
        )
    if row.get("reference_diameter_mm") is not None:
        measurements.append(
            hd.sr.Measurement(
                name=hd.sr.CodedConcept("397413000", "SCT", "Vessel lumen diameter"),
                value=float(row["reference_diameter_mm"]),
                unit=codes.UCUM.Millimeter,
                method=hd.sr.CodedConcept("WASIDREF", "99STENOSIS", "WASID reference"),
                algorithm_id=algo,
            )
        )
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"{seg} stenosis"),
        referenced_region=region,
        finding_type=hd.sr.CodedConcept("415582006", "SCT", "Stenosis"),
        finding_sites=sites,
        measurements=measurements,
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="stenosis", manufacturer_name="stenosis developers"
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=hd.sr.CodedConcept("77343006", "SCT", "Angiography"),
        imaging_measurements=[group],
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[ds],
        content=report,
        series_number=9901,
        series_instance_uid=hd.UID(),
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="stenosis",
        series_description="Residual stenosis (WASID)",
    )


def write_sr(row: Mapping[str, Any], files: Sequence[str] | Any, path: str | os.PathLike) -> None:
    """Write the SR of one result row to `path` (see :func:`build_sr`).

    `files` may also be an :class:`~stenosis.io.AngioRun` (its ``source`` is used).
    """
    if hasattr(files, "source"):
        files = [str(files.source)]
    elif isinstance(files, (str, os.PathLike)):
        files = [os.fspath(files)]
    sr = build_sr(row, list(files))
    sr.save_as(os.fspath(path), enforce_file_format=True)
