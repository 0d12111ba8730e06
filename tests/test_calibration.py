"""Calibration precedence (property tests through real DICOM round trips), catheter and manual."""
from __future__ import annotations

import io
import math

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from stenosis.calibration import (
    Calibration,
    calibration_from_dataset,
    catheter_calibration,
    manual_calibration,
)
from stenosis.enums import CalibrationSource
from stenosis.errors import CalibrationError

spacing = st.floats(min_value=0.05, max_value=1.0)
distance = st.floats(min_value=300.0, max_value=1500.0)
magnification = st.floats(min_value=1.0, max_value=2.5)


def ds_value(x: float) -> str:
    """A DS string as a writer would store it (at most 16 characters)."""
    return format_number_as_ds(float(x))


def roundtrip(ds: Dataset) -> Dataset:
    """Write and read back, so DS formatting is part of what is tested."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.12.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "XA"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    buf.seek(0)
    return pydicom.dcmread(buf)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ps=st.none() | st.tuples(spacing, spacing),
    ips=st.none() | st.tuples(spacing, spacing),
    sod=st.none() | distance,
    sid_extra=st.floats(min_value=0.0, max_value=800.0),
    mag=st.none() | magnification,
)
def test_precedence_matches_formula(ps, ips, sod, sid_extra, mag):
    ds = Dataset()
    if ps is not None:
        ds.PixelSpacing = [ds_value(v) for v in ps]
    if ips is not None:
        ds.ImagerPixelSpacing = [ds_value(v) for v in ips]
    sid = None
    if sod is not None:
        sid = sod + sid_extra
        ds.DistanceSourceToPatient = ds_value(sod)
        ds.DistanceSourceToDetector = ds_value(sid)
    if mag is not None:
        ds.EstimatedRadiographicMagnificationFactor = ds_value(mag)
    cal, warns = calibration_from_dataset(roundtrip(ds))

    if ps is not None:
        want, source = ps, CalibrationSource.PIXEL_SPACING
    elif ips is not None and sod is not None:
        want, source = (ips[0] * sod / sid, ips[1] * sod / sid), CalibrationSource.GEOMETRY
    elif ips is not None and mag is not None:
        want, source = (ips[0] / mag, ips[1] / mag), CalibrationSource.MAGNIFICATION
    else:
        want, source = None, CalibrationSource.NONE

    assert cal.source is source
    if want is None:
        assert cal.mm_per_px is None
        assert any("mm values are not reported" in w for w in warns)
    else:
        assert cal.mm_per_px == pytest.approx(want, rel=1e-3)  # 0.1 %
        assert not any("mm values are not reported" in w for w in warns)
        assert cal.mm_per_px_mean == pytest.approx(0.5 * (want[0] + want[1]), rel=1e-3)


@settings(max_examples=30, deadline=None)
@given(ips=st.tuples(spacing, spacing), sod=distance, sid_extra=st.floats(min_value=1.0, max_value=800.0))
def test_geometry_inside_enhanced_functional_groups(ips, sod, sid_extra):
    # Enhanced XA: the geometry sits in a functional-group macro, not at the top level
    sid = sod + sid_extra
    geo = Dataset()
    geo.DistanceSourceToIsocenter = float(sod)  # FL: enhanced XA names the isocentre distance so
    geo.DistanceSourceToDetector = ds_value(sid)
    det = Dataset()
    det.ImagerPixelSpacing = [ds_value(v) for v in ips]
    shared = Dataset()
    shared.XRayGeometrySequence = Sequence([geo])
    shared.PixelMeasuresSequence = Sequence([det])
    ds = Dataset()
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    cal, _ = calibration_from_dataset(roundtrip(ds))
    assert cal.source is CalibrationSource.GEOMETRY
    assert cal.mm_per_px == pytest.approx((ips[0] * sod / sid, ips[1] * sod / sid), rel=1e-3)


def test_pixel_spacing_in_per_frame_group():
    pm = Dataset()
    pm.PixelSpacing = ["0.31", "0.32"]
    frame = Dataset()
    frame.PixelMeasuresSequence = Sequence([pm])
    ds = Dataset()
    ds.PerFrameFunctionalGroupsSequence = Sequence([frame, frame])
    cal, _ = calibration_from_dataset(ds)
    assert cal.source is CalibrationSource.PIXEL_SPACING and cal.mm_per_px == (0.31, 0.32)


def test_inconsistent_geometry_falls_back_to_magnification():
    ds = Dataset()
    ds.ImagerPixelSpacing = ["0.3", "0.3"]
    ds.DistanceSourceToPatient = "1200"
    ds.DistanceSourceToDetector = "800"  # SOD > SID: impossible
    ds.EstimatedRadiographicMagnificationFactor = "1.5"
    cal, warns = calibration_from_dataset(ds)
    assert cal.source is CalibrationSource.MAGNIFICATION
    assert cal.mm_per_px == pytest.approx((0.2, 0.2))
    assert any("inconsistent" in w for w in warns)


def test_detector_pitch_alone_is_not_isocentre_calibration():
    ds = Dataset()
    ds.ImagerPixelSpacing = ["0.3", "0.3"]
    cal, warns = calibration_from_dataset(ds)
    assert cal.mm_per_px is None and cal.source is CalibrationSource.NONE
    assert any("detector pitch" in w for w in warns)


@pytest.mark.parametrize(
    "primary,secondary,warned", [(0, 0, False), (60, -60, False), (61, 0, True), (-75, 10, True), (0, 62, True)]
)
def test_steep_angle_warning(primary, secondary, warned):
    ds = Dataset()
    ds.PixelSpacing = ["0.2", "0.2"]
    ds.PositionerPrimaryAngle = primary
    ds.PositionerSecondaryAngle = secondary
    _, warns = calibration_from_dataset(ds)
    assert any("steep beam" in w for w in warns) is warned


@settings(max_examples=50, deadline=None)
@given(
    r=st.floats(0, 500),
    c=st.floats(0, 500),
    angle=st.floats(0, 2 * math.pi),
    dist=st.floats(2, 80),
    french=st.sampled_from([4.0, 5.0, 6.0, 8.0]),
)
def test_catheter_calibration(r, c, angle, dist, french):
    p2 = (r + dist * math.sin(angle), c + dist * math.cos(angle))
    cal = catheter_calibration((r, c), p2, french)
    assert cal.source is CalibrationSource.CATHETER
    assert cal.mm_per_px[0] == pytest.approx(french / 3.0 / dist, rel=1e-9)
    assert cal.mm_per_px[0] == cal.mm_per_px[1]
    # symmetric in its two points
    assert catheter_calibration(p2, (r, c), french).mm_per_px == pytest.approx(cal.mm_per_px)


def test_catheter_calibration_errors():
    with pytest.raises(CalibrationError, match="opposite edges"):
        catheter_calibration((10, 10), (10, 10.5), 6)
    with pytest.raises(CalibrationError, match="French"):
        catheter_calibration((10, 10), (10, 30), 0)


def test_manual_and_to_dict():
    cal = manual_calibration(0.25)
    assert cal.to_dict() == {"mm_per_px": [0.25, 0.25], "source": "manual"}
    assert manual_calibration((0.2, 0.3)).mm_per_px == (0.2, 0.3)
    assert Calibration.none().to_dict() == {"mm_per_px": None, "source": "none"}
    assert Calibration(np.array([0.1, 0.2]), "pixel_spacing").source is CalibrationSource.PIXEL_SPACING
    with pytest.raises(CalibrationError):
        manual_calibration(-1)
    with pytest.raises(CalibrationError):
        Calibration(None, CalibrationSource.MANUAL)
    with pytest.raises(CalibrationError):
        Calibration((0.2, 0.2), CalibrationSource.NONE)
