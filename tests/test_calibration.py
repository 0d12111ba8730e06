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
    PLAUSIBLE_MM_PER_PX,
    Calibration,
    calibration_from_dataset,
    catheter_calibration,
    check_pixel_mm,
    manual_calibration,
)
from stenosis.enums import CalibrationSource
from stenosis.errors import CalibrationError

#: detector pitches whose isocentre size is plausible with any distance below
pitch = st.floats(min_value=0.1, max_value=1.0)
spacing = st.floats(min_value=0.05, max_value=1.0) | st.sampled_from([1e-30, 0.001, 5.0, 150.0, 1e30])
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

    # the first source of the precedence whose pixel size is plausible
    stored = [None if v is None else tuple(float(ds_value(x)) for x in v) for v in (ps, ips)]
    ps_s, ips_s = stored
    sod_s, sid_s = (None, None) if sod is None else (float(ds_value(sod)), float(ds_value(sid)))
    mag_s = None if mag is None else float(ds_value(mag))
    candidates = [(ps_s, CalibrationSource.PIXEL_SPACING)]
    if ips_s is not None and sod_s is not None:
        candidates.append(((ips_s[0] * (sod_s / sid_s), ips_s[1] * (sod_s / sid_s)), CalibrationSource.GEOMETRY))
    if ips_s is not None and mag_s is not None:
        candidates.append(((ips_s[0] / mag_s, ips_s[1] / mag_s), CalibrationSource.MAGNIFICATION))
    lo, hi = PLAUSIBLE_MM_PER_PX
    want, source = next(((mm, src) for mm, src in candidates if mm is not None and all(lo <= v <= hi for v in mm)),
                        (None, CalibrationSource.NONE))

    assert cal.source is source
    if want is None:
        assert cal.mm_per_px is None
        assert any("mm values are not reported" in w for w in warns)
    else:
        assert cal.mm_per_px == pytest.approx(want, rel=1e-9)
        assert not any("mm values are not reported" in w for w in warns)
        assert cal.mm_per_px_mean == pytest.approx(0.5 * (want[0] + want[1]), rel=1e-9)
    assert len([w for w in warns if "ignored" in w or "mm values" in w]) <= 1, warns


@settings(max_examples=30, deadline=None)
@given(ips=st.tuples(pitch, pitch), sod=distance, sid_extra=st.floats(min_value=1.0, max_value=800.0))
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


@pytest.mark.parametrize("primary,secondary", [(0, 0), (90, 0), (-90, 0), (-75, 10), (0, 62)])
def test_no_warning_for_the_beam_angle(primary, secondary):
    """A lateral view of the head (primary angle +-90) is one of neuro angiography's two standard
    projections; the isocentre calibration's error does not depend on the angle: no warning."""
    ds = Dataset()
    ds.PixelSpacing = ["0.2", "0.2"]
    ds.PositionerPrimaryAngle = primary
    ds.PositionerSecondaryAngle = secondary
    cal, warns = calibration_from_dataset(ds)
    assert cal.is_calibrated and warns == []


@settings(max_examples=50, deadline=None)
@given(
    r=st.floats(0, 500),
    c=st.floats(0, 500),
    angle=st.floats(0, 2 * math.pi),
    dist=st.floats(2, 60),
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
    assert cal.to_dict() == {"mm_per_px": [0.25, 0.25], "source": "manual", "detail": "manual 0.25\\0.25 mm/px"}
    assert manual_calibration((0.2, 0.3)).mm_per_px == (0.2, 0.3)
    assert Calibration.none().to_dict() == {"mm_per_px": None, "source": "none", "detail": "uncalibrated"}
    assert Calibration(np.array([0.1, 0.2]), "pixel_spacing").source is CalibrationSource.PIXEL_SPACING
    with pytest.raises(CalibrationError):
        manual_calibration(-1)
    with pytest.raises(CalibrationError):
        Calibration(None, CalibrationSource.MANUAL)
    with pytest.raises(CalibrationError):
        Calibration((0.2, 0.2), CalibrationSource.NONE)


@pytest.mark.parametrize("value", [["1e-30", "1e-30"], ["1e30", "1e30"], ["150", "150"], ["0.001", "0.001"], ["0.2", "9"]])
def test_implausible_pixel_spacing_is_ignored_uncalibrated(value):
    """#19 item 1: a file's pixel size outside PLAUSIBLE_MM_PER_PX is never used; one warning says so."""
    ds = Dataset()
    ds.PixelSpacing = value
    cal, warns = calibration_from_dataset(ds)
    assert cal.mm_per_px is None and cal.source is CalibrationSource.NONE
    assert len(warns) == 1 and "ignored, uncalibrated" in warns[0] and "0.02-2" in warns[0], warns


def test_implausible_pixel_spacing_falls_back_to_geometry():
    ds = Dataset()
    ds.PixelSpacing = ["1e30", "1e30"]
    ds.ImagerPixelSpacing = ["0.2", "0.2"]
    ds.DistanceSourceToPatient, ds.DistanceSourceToDetector = "750", "1000"
    cal, warns = calibration_from_dataset(ds)
    assert cal.source is CalibrationSource.GEOMETRY and cal.mm_per_px == pytest.approx((0.15, 0.15))
    assert len(warns) == 1 and "PixelSpacing" in warns[0] and "calibrated from ImagerPixelSpacing" in warns[0]


def test_sod_larger_than_sid_is_one_message():
    """#19 item 5: one warning that says what is wrong, not three that contradict each other."""
    ds = Dataset()
    ds.ImagerPixelSpacing = ["0.3", "0.3"]
    ds.DistanceSourceToPatient, ds.DistanceSourceToDetector = "1200", "1000"
    cal, warns = calibration_from_dataset(ds)
    assert cal.mm_per_px is None
    assert len(warns) == 1, warns
    assert "1200 mm is larger than DistanceSourceToDetector 1000 mm" in warns[0] and "uncalibrated" in warns[0]
    assert "without SID/SOD" not in warns[0] and "no calibration in the file" not in warns[0]


@pytest.mark.parametrize("make", [
    lambda: check_pixel_mm(1000),
    lambda: check_pixel_mm(float("nan")),
    lambda: check_pixel_mm("abc"),
    lambda: manual_calibration(150),
    lambda: manual_calibration(1e-4),
    lambda: manual_calibration((0.2, 1e30)),
    lambda: catheter_calibration((0, 0), (0, 2), 30),  # 5 mm/px
    lambda: Calibration((10.0, 10.0), CalibrationSource.PIXEL_SPACING),
], ids=["check_1000", "check_nan", "check_text", "manual_150", "manual_1e-4", "manual_pair", "catheter", "direct"])
def test_reader_pixel_size_outside_plausible_range_refused(make):
    """#19 item 1: a reader's pixel size outside the range is a one-line CalibrationError."""
    with pytest.raises(CalibrationError) as info:
        make()
    assert "\n" not in str(info.value) and ("0.02-2" in str(info.value) or "number" in str(info.value))


def test_plausible_range_is_inclusive():
    lo, hi = PLAUSIBLE_MM_PER_PX
    assert check_pixel_mm(lo) == lo and check_pixel_mm(hi) == hi and check_pixel_mm("0.2") == 0.2
    assert manual_calibration(hi).mm_per_px == (hi, hi)


def test_a_readers_calibration_replacing_the_files_says_so():
    """A reader's pixel size that contradicts the header's PixelSpacing is used, with a warning naming
    both (a new user's --pixel-mm 0.3 on a 0.15 mm run doubled every mm value silently)."""
    import stenosis

    run = stenosis.read_run(stenosis.sample_dir() / "m1_subtracted_pixelspacing.dcm")
    assert run.calibration.source.value == "pixel_spacing" and run.calibration.mm_per_px == (0.15, 0.15)
    other = run.with_calibration(manual_calibration(0.3))
    assert other.calibration.mm_per_px == (0.3, 0.3)
    said = [w for w in other.warnings if "replaces the file's own" in w]
    assert len(said) == 1 and "0.3 mm/px" in said[0] and "0.15 mm/px, pixel_spacing" in said[0] and "+100%" in said[0]
    # the same value (within 1%), or a run without a file calibration: nothing to say
    assert other.warnings[:-1] == run.warnings
    assert run.with_calibration(manual_calibration(0.1505)).warnings == run.warnings
    bare = stenosis.read_run(stenosis.sample_dir() / "m1_native_uncalibrated.dcm")
    assert not any("replaces the file's own" in w for w in bare.with_calibration(manual_calibration(0.3)).warnings)
    # a second reader calibration is compared with the file's, and replaces the first's warning
    again = other.with_calibration(manual_calibration(0.2))
    said = [w for w in again.warnings if "replaces the file's own" in w]
    assert len(said) == 1 and "(0.2 mm/px)" in said[0] and "+33%" in said[0]
    assert again.with_calibration(manual_calibration(0.15)).warnings == run.warnings  # back to the file's value
    # either axis counts (an anisotropic file calibration)
    aniso = run.with_calibration(run.calibration.__class__((0.15, 0.18), run.calibration.source, "PixelSpacing"))
    assert not any("replaces" in w for w in aniso.warnings)  # the file's own kind: no reader calibration
    assert any("replaces the file's own" in w for w in aniso.with_calibration(manual_calibration(0.165)).warnings)
    # it reaches the result of a measurement given pixel_mm
    res = stenosis.measure(run, "M1", (181, 138), (193, 308), pixel_mm=0.3)
    assert any("replaces the file's own" in w for w in res.warnings)
    assert res.calibration["source"] == "manual" and res.mld_mm == pytest.approx(0.3 * res.mld_px, rel=1e-6)
