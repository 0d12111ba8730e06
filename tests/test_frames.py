"""Measuring on every frame of the arterial phase: frames used, per-frame readings, combination."""
from __future__ import annotations


import numpy as np
import pytest

import stenosis
from stenosis.errors import MeasurementError
from stenosis.reader import ReaderInputs

from _phantoms import measure_truth as _measure


def _plateau(truth):
    """Frames in which the graded segment is fully opacified: 8 frames, 2 mask, 2 of rising
    inflow (1/3, 2/3 of the bolus), the plateau from when the front has filled the segment
    (truth frame_index: 5 here, the distal point's contrast arrives 0.15 s after the inflow)."""
    return list(range(truth["frame_index"], 8))


def test_all_plateau_frames_are_combined(low_dose_run):
    run, truth = low_dose_run
    single = _measure(run, truth, frames="single")
    combined = _measure(run, truth)
    assert len(_plateau(truth)) >= 3
    assert single.frames["used"] == [single.frame_index]
    assert sorted(combined.frames["used"]) == _plateau(truth)
    assert combined.frames["used"][0] == combined.frame_index
    assert len(combined.frames["per_frame"]) == len(_plateau(truth))
    # the frames' quantum noise averages down: the modelled SD shrinks, the reading stays right
    assert combined.percent_stenosis_sd < 0.85 * single.percent_stenosis_sd
    assert abs(combined.percent_stenosis - truth["percent_stenosis"]) < 2.5
    # the per-frame readings at the same sites scatter by about their own noise
    fsd = combined.frames["frame_to_frame_sd"]
    per = np.array([f["percent_stenosis_sd"] for f in combined.frames["per_frame"]])
    assert 0.2 * np.median(per) < fsd < 3.0 * np.median(per)
    assert not any("frames disagree" in w for w in combined.warnings)


def test_frame_limit(low_dose_run):
    run, truth = low_dose_run
    two = _measure(run, truth, frames=2)
    assert len(two.frames["used"]) == 2
    assert two.frames["frame_to_frame_sd"] is None  # below 3 frames no spread is reported
    assert two.parameters["reader"]["frames"] == 2


@pytest.mark.parametrize("bad", ["some", 0, -2, "1.5x"])
def test_frames_option_is_checked(bad):
    with pytest.raises(MeasurementError, match="frames must be"):
        ReaderInputs.create("M1", (1, 2), (3, 4), frames=bad)


def test_one_frame_run_uses_its_frame(sample_dicom_dir):
    import json

    path = sample_dicom_dir / "m1_subtracted_pixelspacing.dcm"
    truth = json.loads(path.with_suffix(".truth.json").read_text())
    res = _measure(stenosis.read_run(path), truth, frames="all")
    assert res.frames["used"][0] == res.frame_index


def test_a_reader_frame_that_is_still_filling_is_measured_alone(low_dose_run):
    # frame 2 holds a third of the bolus: the plateau frames are not its companions
    run, truth = low_dose_run
    res = _measure(run, truth, frame=2)
    assert res.frames["used"] == [2]
    plateau = _measure(run, truth, frame=6)
    assert sorted(plateau.frames["used"]) == _plateau(truth) and plateau.frames["used"][0] == 6


def test_fewer_frames_than_asked_says_so(low_dose_run):
    run, truth = low_dose_run
    res = _measure(run, truth, frames=9)
    n = len(_plateau(truth))
    assert len(res.frames["used"]) == n
    assert any(f"{n} of the 9 frames asked for" in w for w in res.warnings)


@pytest.mark.parametrize("kw", [dict(frame=2.5), dict(frame=True), dict(frame=float("inf")), dict(mld="12"),
                                dict(proximal=(True, 5.0)), dict(frames="1_0")])
def test_reader_inputs_refuse_what_they_cannot_mean(kw):
    args = dict(proximal=(1.0, 2.0), distal=(3.0, 4.0))
    args.update(kw)
    with pytest.raises(MeasurementError):
        ReaderInputs.create("M1", args.pop("proximal"), args.pop("distal"), **args)


def test_waypoints_may_be_an_array():
    assert ReaderInputs.create("M1", (1, 2), (3, 4), waypoints=np.array([[5.0, 6.0]])).waypoints == ((5.0, 6.0),)
    assert ReaderInputs.create("M1", (1, 2), (3, 4), waypoints=np.zeros((0, 2))).waypoints == ()
