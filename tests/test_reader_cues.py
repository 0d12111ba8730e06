"""Cues for a reader's first mistakes (a new-user test, session 13): points given distal first,
a mask frame or a frame still filling picked with --frame."""
from __future__ import annotations

import json

import pytest

import stenosis

SWAPPED = "the points may be swapped"


@pytest.fixture(scope="module")
def case(sample_dicom_dir):
    truth = json.loads((sample_dicom_dir / "ica_native_geometry.truth.json").read_text())
    run = stenosis.read_run(sample_dicom_dir / "ica_native_geometry.dcm")
    return run, truth


@pytest.mark.parametrize("name", ["ica_native_geometry", "m1_subtracted_pixelspacing", "ba_subtracted_geometry"])
def test_points_given_distal_first_are_flagged_not_swapped(sample_dicom_dir, name):
    """The run shows the contrast reaching the reader's distal point first (the bolus front fitted
    along the segment: 0.3-0.6 frames end to end, 5-12 standard errors on these phantoms)."""
    truth = json.loads((sample_dicom_dir / f"{name}.truth.json").read_text())
    seg = truth.get("segment", "M1")
    fwd = stenosis.measure(sample_dicom_dir / f"{name}.dcm", seg, tuple(truth["proximal_rc"]), tuple(truth["distal_rc"]))
    back = stenosis.measure(sample_dicom_dir / f"{name}.dcm", seg, tuple(truth["distal_rc"]), tuple(truth["proximal_rc"]))
    assert not any(SWAPPED in w for w in fwd.warnings)
    (w,) = [w for w in back.warnings if SWAPPED in w]
    assert "swap the proximal and distal points (--proximal / --distal, the batch's proximal_* / distal_* columns)" in w
    assert back.proximal_rc == fwd.distal_rc   # the reader's points are kept as given
    assert back.needs_confirmation  # the reference site depends on the direction: a reader confirms the call


def test_a_single_frame_says_nothing_about_direction(case):
    run, truth = case
    from stenosis.io import AngioRun
    import numpy as np

    one = AngioRun.from_array(np.asarray(run.frames[5]), pixel_intensity_relationship=None)
    res = stenosis.measure(one, "ICA", tuple(truth["distal_rc"]), tuple(truth["proximal_rc"]))
    assert not any(SWAPPED in w for w in res.warnings)


def test_a_mask_frame_picked_is_named_as_such(case):
    run, truth = case
    pts = tuple(truth["proximal_rc"]), tuple(truth["distal_rc"])
    with pytest.raises(stenosis.StenosisError, match=r"frame 0 is a mask frame .*frame 5 holds the most iodine") as ei:
        stenosis.measure(run, "ICA", *pts, frame=0)
    assert "place it on the lumen" not in str(ei.value)   # the points are fine: the frame is not
    with pytest.raises(stenosis.StenosisError, match=r"frame 0 is a mask frame") as ei:
        stenosis.measure(run, "ICA", *pts, frame=0, exclude_frames=[5])
    assert "frame 5 holds" not in str(ei.value)            # a dropped frame is not suggested


def test_a_frame_still_filling_is_warned(case):
    run, truth = case
    pts = tuple(truth["proximal_rc"]), tuple(truth["distal_rc"])
    res = stenosis.measure(run, "ICA", *pts, frame=2)
    (w,) = [w for w in res.warnings if "not fully opacified in frame 2" in w]
    assert "frame 5 is the earliest fully opacified" in w
    assert res.frame_index == 2
    full = stenosis.measure(run, "ICA", *pts, frame=5)
    assert not any("not fully opacified" in w for w in full.warnings)
    res = stenosis.measure(run, "ICA", *pts, frame=3, exclude_frames=[5])
    (w,) = [w for w in res.warnings if "not fully opacified in frame 3" in w]
    assert "frame 6 is the earliest fully opacified" in w   # frame 5 is dropped


def test_a_diameter_no_such_artery_has_says_to_check_the_calibration(case):
    """--pixel-mm 1.5 (for 0.15) read a 42 mm ICA with no word."""
    run, truth = case
    pts = tuple(truth["proximal_rc"]), tuple(truth["distal_rc"])
    right = stenosis.measure(run, "ICA", *pts)
    assert 3.5 < right.reference_diameter_mm < 5.0 and not any("check the calibration" in w for w in right.warnings)
    big = stenosis.measure(run, "ICA", *pts, pixel_mm=10 * right.mm_per_px)
    (w,) = [w for w in big.warnings if "check the calibration" in w]
    assert "over what the ICA measures (1.2-10 mm)" in w
    assert big.percent_stenosis == pytest.approx(right.percent_stenosis, abs=1.0)
