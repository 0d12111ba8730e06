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

mm values are left out when the run is uncalibrated. By default the SR carries no
patient identifier: it references a pseudonymous copy of the source image (empty
patient name, birth date and sex, PatientID a keyed hash of the source UIDs (the run
id); no institution, referring physician or accession number; Study/Series/SOP
Instance UIDs replaced by keyed hashes of the source UIDs, :func:`pseudonymous_uid`),
so the reference structure stays consistent but points at no real study. The key is
the site secret (:func:`site_key`; what the default key does and does not protect:
``docs/privacy.md``). The SR names the run it measured in the finding's tracking identifier
by its ``run_id`` (as in ``results.csv``; a file or folder name may hold a patient's name),
and by its path relative to the batch folder with ``keep_identifiers``. With
``keep_identifiers=True`` (``stenosis batch --sr --keep-identifiers``) it copies
the patient and study modules of the source image so that it attaches to that
study in PACS. It is only written on request (``--sr``). Missing type-2
attributes in the source (PatientSex, StudyID, ... often dropped by anonymisers)
are written empty. Built with highdicom (Herrmann et al., J Digit
Imaging 2022;35:1719-37, doi:10.1007/s10278-022-00683-y).
"""
from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any, Mapping, Sequence

from ._version import __version__
from .errors import InputError, MissingExtraError
from .io import _id_key, run_id_from_uids
from .io.run import SITE_SECRET_ENV, SITE_SECRET_FILE_ENV, site_secret  # noqa: F401 - the names sites set
from .result import row_from_dict

__all__ = ["require_highdicom", "build_sr", "write_sr", "pseudonymous_uid", "site_key"]

#: Environment variables holding the site secret that keys the SR's pseudonyms (value, or a file).

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


#: Type-2 attributes of the Patient and General Study modules highdicom reads from the evidence.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


def site_key() -> bytes:
    """Key of the SR's pseudonyms: the site secret (``STENOSIS_SITE_SECRET``, else the
    file named by ``STENOSIS_SITE_SECRET_FILE``), else the run-id key (``STENOSIS_ID_KEY``,
    else a public default that does not protect against linkage: ``docs/privacy.md``)."""
    return _id_key()


def _keyed_digest(kind: str, value: str) -> bytes:
    return hmac.new(site_key(), f"{kind}|{value}".encode("utf-8"), hashlib.sha256).digest()


def pseudonymous_uid(kind: str, value: str) -> str:
    """Deterministic stand-in for a UID: ``2.25.<int>`` of HMAC-SHA256 under :func:`site_key`
    of ``kind|value``; 128 bits, at most 44 characters, unrelated to the original without the key."""
    return "2.25." + str(int.from_bytes(_keyed_digest(kind, value)[:16], "big"))


def _patient_id(row: Mapping[str, Any], study: str, series: str, sop: str) -> str:
    """The run id; under a site secret a pseudonym keyed by it instead (the run id's key may be public)."""
    if site_secret() is None:
        return str(row.get("run_id") or run_id_from_uids(study, series, sop))
    return _keyed_digest("patient", f"{study}|{series}|{sop}").hex()[:16]


def _text(ds: Any, keyword: str) -> str:
    try:
        value = ds.get(keyword, None)
    except Exception:  # noqa: BLE001 - a malformed value counts as absent
        return ""
    return "" if value is None else str(value)


def _evidence(ds: Any, row: Mapping[str, Any], keep_identifiers: bool):
    """The dataset the SR is built on: ``ds`` with empty type-2 values filled in, or
    (default) a minimal pseudonymous copy holding no identifier."""
    from pydicom.dataset import Dataset

    if keep_identifiers:
        out = ds.copy() if hasattr(ds, "copy") else ds
        for kw in _TYPE2:
            if kw not in out:
                setattr(out, kw, "")
        return out
    study, series, sop = (_text(ds, k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
    out = Dataset()
    out.SOPClassUID = _text(ds, "SOPClassUID") or "1.2.840.10008.5.1.4.1.1.12.1"
    out.StudyInstanceUID = pseudonymous_uid("study", study)
    out.SeriesInstanceUID = pseudonymous_uid("series", f"{study}|{series}")
    out.SOPInstanceUID = pseudonymous_uid("sop", f"{study}|{series}|{sop}")
    out.Modality = _text(ds, "Modality") or "XA"
    for kw in ("Rows", "Columns", "NumberOfFrames"):
        try:
            value = ds.get(kw, None)
            if value not in (None, ""):
                setattr(out, kw, int(value))
        except Exception:  # noqa: BLE001
            pass
    for kw in _TYPE2:
        setattr(out, kw, "")
    out.PatientID = _patient_id(row, study, series, sop)
    return out


def build_sr(row: Mapping[str, Any], files: Sequence[str], *, keep_identifiers: bool = False):
    """Build the SR dataset for one ok result row.

    Parameters
    ----------
    row : mapping
        A result row (:meth:`stenosis.result.StenosisResult.to_row`, so the SR holds the
        values of ``results.csv``), or a batch/``measure --json`` dict, flattened the same
        way. Its ``path`` names the measured run in the SR.
    files : sequence of str
        The run's file (multi-frame) or its single-frame files in frame order.
    keep_identifiers : bool
        Copy the patient and study modules and UIDs of the source (the SR then
        attaches to that study in PACS). Default: a pseudonymous SR (no identifier,
        deterministic UIDs derived from the source UIDs and the path with :func:`site_key`).

    Returns
    -------
    highdicom.sr.Comprehensive3DSR
    """
    hd = require_highdicom()
    import numpy as np
    from pydicom.sr.codedict import codes

    row = row if "mld_row" in row else row_from_dict(row)
    frame = int(row["frame_index"] or 0)
    source, multi = _source_dataset(files, frame)
    ds = _evidence(source, row, keep_identifiers)
    seg, path = str(row["segment"]), str(row["path"])
    # a file or folder name may hold a patient's name: the pseudonymous SR names the run by its
    # run id (the CSV's run_id column), the identified one by its path
    named = path if keep_identifiers else (f"run {row['run_id']}" if row.get("run_id") else "")
    if keep_identifiers:
        new_uid = lambda kind: hd.UID()  # noqa: E731 - fresh UIDs, as any new instance
    else:
        base = f"{ds.SOPInstanceUID}|{seg}|{frame}|{path}"
        new_uid = lambda kind: pseudonymous_uid(kind, base)  # noqa: E731 - same input, same SR
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    ref_frames = [frame + 1] if multi and n_frames > 1 else None
    src = hd.sr.SourceImageForRegion.from_source_image(ds, referenced_frame_numbers=ref_frames)
    r, c = (float(row[k]) for k in (("mld_row", "mld_col") if row["mld_row"] != "" else ("proximal_row", "proximal_col")))
    # SCOORD: (column, row), origin at the top-left corner of the top-left pixel
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POINT,
        graphic_data=np.array([[c + 0.5, r + 0.5]]),
        source_image=src,
    )
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
    if row["mld_mm"] != "":
        measurements.append(
            hd.sr.Measurement(
                name=hd.sr.CodedConcept("397413000", "SCT", "Vessel lumen diameter"),
                value=float(row["mld_mm"]),
                unit=codes.UCUM.Millimeter,
                derivation=hd.sr.CodedConcept("255605001", "SCT", "Minimum"),
                algorithm_id=algo,
            )
        )
    if row["reference_diameter_mm"] != "":
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
        tracking_identifier=hd.sr.TrackingIdentifier(uid=new_uid("sr-tracking"), identifier=f"{seg} stenosis in {named}" if named else f"{seg} stenosis"),
        referenced_region=region,
        finding_type=hd.sr.CodedConcept("415582006", "SCT", "Stenosis"),
        finding_sites=sites,
        measurements=measurements,
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=new_uid("sr-device"), name="stenosis", manufacturer_name="stenosis developers"
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
        series_instance_uid=new_uid("sr-series"),
        sop_instance_uid=new_uid("sr-sop"),
        instance_number=1,
        manufacturer="stenosis",
        series_description="Residual stenosis (WASID)",
    )


def write_sr(row: Mapping[str, Any], files: Sequence[str] | Any, path: str | os.PathLike, *,
             keep_identifiers: bool = False) -> None:
    """Write the SR of one result row to `path` (see :func:`build_sr`).

    `files` may also be an :class:`~stenosis.io.AngioRun` (its ``source`` is used).
    Without `keep_identifiers` the SR holds no patient identifier.
    """
    if hasattr(files, "source"):
        files = [str(files.source)]
    elif isinstance(files, (str, os.PathLike)):
        files = [os.fspath(files)]
    sr = build_sr(row, list(files), keep_identifiers=keep_identifiers)
    sr.save_as(os.fspath(path), enforce_file_format=True)
