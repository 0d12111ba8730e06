"""Hostile inputs a helper built in session 32 that got past the checks: raw exceptions from the
API, a header whose frame count does not match its pixel data (frames silently lost), a DICOMDIR
read as a corrupt run, and pydicom's own warnings printed by a batch. Each now gets a one-line
:class:`~stenosis.errors.InputError` that says what to do, or is skipped as what it is."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pydicom
import pytest

import stenosis
from stenosis.io import AngioRun, find_runs

F = np.zeros((3, 64, 64), np.uint16)


@pytest.mark.parametrize("make, words", [
    (lambda: AngioRun.from_array([F[0], F[1][:20]]), "all frames of one shape"),
    (lambda: AngioRun.from_array(F.astype(str)), "must be real numbers"),
    (lambda: AngioRun.from_array(F.astype(complex)), "must be real numbers"),
    (lambda: AngioRun.from_array(F > 0), "a binary mask, not an angiogram"),
    (lambda: AngioRun.from_array(np.where(np.eye(64) > 0, np.nan, 1.0)), "NaN or infinite"),
    (lambda: AngioRun.from_array(F.astype(np.float32) + 1e30), "not grey levels"),
    (lambda: AngioRun.from_array(np.zeros((64, 64, 3))), "channels last"),
    (lambda: AngioRun.from_array(np.zeros((64, 64, 1))), "channels last"),
    (lambda: AngioRun.from_array(np.zeros((0, 64, 64))), "no pixel"),
    (lambda: AngioRun.from_array(F, mask_frames=(99,)), r"mask_frames \[99\] are not frames of this run \(0\.\.2\)"),
    (lambda: AngioRun.from_array(F, mask_frames=(-1,)), "not frames of this run"),
    (lambda: AngioRun.from_array(F, pixel_intensity_relationship="FOO"), "'LIN', 'LOG' or None"),
    (lambda: stenosis.read_run(None), "takes a path"),
    (lambda: AngioRun.from_array(F).with_calibration(None), "takes a Calibration"),
], ids=["ragged", "str", "complex", "bool", "nan", "huge", "hw3", "hw1", "empty", "mask99", "mask-1", "pir", "none",
        "calibration"])
def test_bad_arrays_and_arguments_are_one_line_input_errors(make, words):
    """They raised numpy's ValueError / UFuncTypeError, TypeError or AttributeError (NaN on a native
    run: 'cannot convert float NaN to integer' deep in the registration), or were accepted: a bool
    array measured 26%, (H, W, 3) read as H frames of W x 3."""
    with pytest.raises(stenosis.InputError, match=words):
        make()


def test_good_arrays_still_read():
    assert AngioRun.from_array(np.zeros((64, 64))).frames.shape == (1, 64, 64)
    assert AngioRun.from_array(np.ones((4, 64, 64), np.float32), mask_frames=(0,)).metadata.mask_frames == (0,)


def _with_frames(src, tmp_path, value, name="x.dcm"):
    """``src`` uncompressed with NumberOfFrames stored as the text ``value`` (an IS element, raw)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds = pydicom.dcmread(src)
    ds.decompress()
    text = str(value).encode()
    text += b" " * (len(text) % 2)
    ds._dict[Tag(0x00280008)] = RawDataElement(Tag(0x00280008), "IS", len(text), text, 0, False, True)
    out = tmp_path / name
    ds.save_as(out)
    return out


@pytest.mark.parametrize("value, words", [
    (3, "pixel data holds 7 frames of 384x384 but NumberOfFrames says 3"),
    ("abc", "NumberOfFrames 'abc' is not a positive number of frames"),
    (0, "pixel data holds 7 frames of 384x384 but NumberOfFrames is absent or 0 \\(read as 1\\)"),
    (-3, "NumberOfFrames '-3' is not a positive number of frames"),
])
def test_a_frame_count_that_does_not_match_the_pixel_data_is_refused(sample_dicom_dir, tmp_path, value, words):
    """NumberOfFrames 3 over 7 stored frames measured frame 2 of the first three (36.15% for 35.18%)
    with no warning; 'abc' or 0 read one frame and blamed the points."""
    path = _with_frames(sample_dicom_dir / "m1_subtracted_pixelspacing.dcm", tmp_path, value)
    with pytest.raises(stenosis.InputError, match=words):
        stenosis.read_run(path)


def test_reading_a_folder_prints_no_pydicom_warning(sample_dicom_dir, tmp_path):
    """``batch --auto`` printed pydicom's 'Invalid value for VR IS' with its file and line."""
    _with_frames(sample_dicom_dir / "m1_subtracted_pixelspacing.dcm", tmp_path, "abc")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = find_runs(tmp_path)
    assert len(runs) == 1 and not caught


def test_a_dicomdir_is_not_a_run(sample_dicom_dir, tmp_path):
    """A DICOMDIR was listed as a corrupt run ('DICOM header is truncated or corrupt'), and a folder
    with one run and its DICOMDIR as holding 2 runs."""
    shutil.copy(sample_dicom_dir / "ba_subtracted_geometry.dcm", tmp_path / "IM0001")
    shutil.copy(sample_dicom_dir / "m1_subtracted_pixelspacing.dcm", tmp_path / "DICOMDIR")  # any DICOM named so
    assert [s.path for s in find_runs(tmp_path)] == [str(tmp_path / "IM0001")]
    assert stenosis.read_run(tmp_path).frames.shape[0] > 1
    with pytest.raises(stenosis.InputError, match="a DICOMDIR .* pass the folder that holds the run"):
        stenosis.read_run(tmp_path / "DICOMDIR")


def test_mask_frame_numbers_outside_the_run_are_named(sample_dicom_dir, tmp_path):
    """MaskFrameNumbers 50 and 60 in a 7-frame run were ignored without a word."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(sample_dicom_dir / "v4_native_magnification.dcm")
    item = Dataset()
    item.MaskOperation = "AVG_SUB"
    item.MaskFrameNumbers = [50, 60]
    ds.MaskSubtractionSequence = Sequence([item])
    ds.save_as(tmp_path / "m.dcm")
    run = stenosis.read_run(tmp_path / "m.dcm")
    assert run.metadata.mask_frames == ()
    assert any("MaskFrameNumbers 50, 60 are not frames of this run (1..7): ignored" in w for w in run.warnings)


@pytest.mark.parametrize("value", ["nan", "inf", "0"])
def test_a_catheter_size_that_is_not_a_positive_number_is_a_usage_error(sample_dicom_dir, value):
    """``--catheter-french nan`` got past click's range (nan compares False) to exit 3, while 0
    was a usage error (exit 2)."""
    from click.testing import CliRunner

    from stenosis.cli.main import cli

    r = CliRunner().invoke(cli, ["measure", str(sample_dicom_dir / "m1_subtracted_pixelspacing.dcm"), "--segment",
                                 "M1", "--proximal", "181,138", "--distal", "193,308", "--catheter-french", value,
                                 "--catheter-points", "1,1,1,5"])
    assert r.exit_code == 2 and "--catheter-french" in r.output
