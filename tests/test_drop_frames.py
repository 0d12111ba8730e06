"""A reader drops a frame from the multi-frame combination (issue 18: the frames used are
shown and editable)."""
from __future__ import annotations


import numpy as np
import pytest

from stenosis.errors import MeasurementError
from stenosis.reader import ReaderInputs

from _phantoms import measure_truth as _measure


def test_a_dropped_frame_is_left_out_and_recorded(low_dose_run):
    run, truth = low_dose_run
    full = _measure(run, truth)
    used = full.frames["used"]
    assert len(used) >= 3
    drop = used[-1]
    res = _measure(run, truth, exclude_frames=[drop])
    assert res.frames["used"] == [t for t in used if t != drop]
    assert res.frames["excluded"] == [drop]
    assert res.parameters["reader"]["exclude_frames"] == [drop]
    assert full.frames["excluded"] == []
    # the other frames still read the lesion (the dropped frame was a good one here), and the
    # combination changed: one frame fewer in the per-frame readings
    assert abs(res.percent_stenosis - truth["percent_stenosis"]) < 3.0
    assert len(res.frames["per_frame"]) == len(full.frames["per_frame"]) - 1
    assert drop not in [f["frame"] for f in res.frames["per_frame"]]


def test_dropping_the_automatic_frame_analyses_another(low_dose_run):
    """With the frame left to the tool, a dropped frame is never chosen: the earliest fully
    opacified frame of the others is analysed (before, the tool chose the dropped frame and then
    refused it, asking for a frame)."""
    run, truth = low_dose_run
    full = _measure(run, truth)
    res = _measure(run, truth, exclude_frames=[full.frame_index])
    assert res.frame_index != full.frame_index and res.frame_index in full.frames["used"]
    assert full.frame_index not in res.frames["used"] and res.frames["excluded"] == [full.frame_index]
    assert abs(res.percent_stenosis - truth["percent_stenosis"]) < 3.0
    # frame 5, the truth's first fully opacified frame, holds the whole segment (until session 35
    # it was said to hold 93% of it at 90% of its peak: one frame's noise at single samples)
    assert full.frame_index == 6 and res.frame_index == 5
    assert not any("holds the whole segment" in w for w in res.warnings + full.warnings)
    # with every full frame dropped, the frame chosen among the others (4, the bolus still rising)
    # is said not to hold the whole segment (a review found it silent)
    rising = _measure(run, truth, exclude_frames=[5, 6, 7])
    said = [w for w in rising.warnings if "none holds the whole segment" in w]
    assert rising.frame_index == 4
    assert len(said) == 1 and "(5, 6, 7 dropped)" in said[0] and "frame 4, the one chosen, holds 0%" in said[0]
    # analysing another frame lets the reader drop it
    other = full.frames["used"][1]
    res = _measure(run, truth, frame=other, exclude_frames=[full.frame_index])
    assert full.frame_index not in res.frames["used"] and res.frame_index == other


def test_the_analysed_frame_given_and_dropped_is_refused():
    with pytest.raises(MeasurementError, match="both the analysed frame and a dropped one"):
        ReaderInputs.create("M1", (10, 10), (20, 20), frame=3, exclude_frames=[3])


def test_a_dropped_frame_outside_the_run_is_refused(low_dose_run):
    run, truth = low_dose_run
    with pytest.raises(MeasurementError, match="outside the run"):
        _measure(run, truth, exclude_frames=[99])


def test_cli_drop_frame(low_dose_run, tmp_path):
    """``stenosis measure --drop-frame N`` leaves N out, says so, and records it in the JSON."""
    import json

    from click.testing import CliRunner

    from stenosis.cli.main import cli

    run, truth = low_dose_run
    full = _measure(run, truth)
    drop = full.frames["used"][-1]
    path = run.source
    pts = ["--proximal", ",".join(str(v) for v in truth["proximal_rc"]),
           "--distal", ",".join(str(v) for v in truth["distal_rc"])]
    out = CliRunner().invoke(cli, ["measure", str(path), "--segment", truth["segment"], *pts,
                                   "--drop-frame", str(drop), "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert d["frames"]["excluded"] == [drop] and drop not in d["frames"]["used"]
    text = CliRunner().invoke(cli, ["measure", str(path), "--segment", truth["segment"], *pts, "--drop-frame", str(drop)])
    assert "frames dropped     " + str(drop) in text.output
    # the frame the tool would analyse, dropped: another is analysed
    other = CliRunner().invoke(cli, ["measure", str(path), "--segment", truth["segment"], *pts,
                                     "--drop-frame", str(full.frame_index), "--json"])
    assert other.exit_code == 0, other.output
    assert json.loads(other.output)["frame_index"] != full.frame_index
    # the reader's own frame, dropped too: refused (exit 3)
    bad = CliRunner().invoke(cli, ["measure", str(path), "--segment", truth["segment"], *pts,
                                   "--frame", str(full.frame_index), "--drop-frame", str(full.frame_index)])
    assert bad.exit_code == 3 and "both the analysed frame and a dropped one" in bad.output


def test_a_frame_that_was_not_combined_is_not_reported_dropped(low_dose_run):
    """Dropping a tagged mask frame (never combined) changes nothing and says it stays the mask;
    with frames="single" nothing is combined at all."""
    run, truth = low_dose_run
    full = _measure(run, truth)
    res = _measure(run, truth, exclude_frames=[0])
    assert res.frames["excluded"] == [] and res.frames["used"] == full.frames["used"]
    assert res.percent_stenosis == full.percent_stenosis
    assert any("dropped frame 0 is the run's tagged mask" in w and "kept as the mask" in w for w in res.warnings)
    single = _measure(run, truth, frames="single", exclude_frames=[full.frames["used"][-1]])
    assert single.frames["excluded"] == []


@pytest.mark.parametrize("value, expected", [(2, (2,)), (2.0, (2,)), ("3", (3,)), ([4, 2, 4], (2, 4)),
                                             (np.int64(5), (5,)), (np.array([1, 3]), (1, 3)), ((), ())])
def test_dropped_frames_accept_whole_numbers(value, expected):
    assert ReaderInputs.create("M1", (10, 10), (20, 20), exclude_frames=value).exclude_frames == expected


@pytest.mark.parametrize("bad", [[1.5], ["x"], [True], b"3", [float("inf")], [None]])
def test_dropped_frames_refuse_anything_else(bad):
    with pytest.raises(MeasurementError, match="whole frame number"):
        ReaderInputs.create("M1", (10, 10), (20, 20), exclude_frames=bad)


def test_cli_drop_frame_outside_the_run(low_dose_run):
    from click.testing import CliRunner

    from stenosis.cli.main import cli

    run, truth = low_dose_run
    pts = ["--proximal", ",".join(str(v) for v in truth["proximal_rc"]),
           "--distal", ",".join(str(v) for v in truth["distal_rc"])]
    out = CliRunner().invoke(cli, ["measure", str(run.source), "--segment", truth["segment"], *pts, "--drop-frame", "99"])
    assert out.exit_code == 3 and "outside the run" in out.output
    assert len([ln for ln in out.output.splitlines() if ln.strip()]) == 1
