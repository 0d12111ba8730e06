"""First-contact defects found in session 33, each with the behaviour a reader expects."""
from __future__ import annotations

import pytest

import stenosis
from stenosis.errors import ReaderInputError
from stenosis.io import AngioRun
from stenosis.reader import ReaderInputs

from hostile import tube_frames


def test_a_click_on_an_edge_pixels_outer_half_is_inside():
    """A pixel spans its centre +-0.5: napari reports a click on the outer half of the last
    column as 63.3, which was refused as 'outside the image (cols 0..63)'. It is now moved onto
    the pixel's centre line (at most half a pixel); beyond the pixel it is still refused."""
    inputs = ReaderInputs.create("M1", (23.5, -0.45), (23.5, 63.4), mld=(-0.2, 30.0))
    inside = inputs.within(3, (48, 64))
    assert inside.proximal == (23.5, 0.0) and inside.distal == (23.5, 63.0) and inside.mld == (0.0, 30.0)
    with pytest.raises(ReaderInputError, match=r"outside the image \(rows 0\.\.47, cols 0\.\.63\)"):
        ReaderInputs.create("M1", (23.5, -0.6), (23.5, 40.0)).within(3, (48, 64))
    with pytest.raises(ReaderInputError, match="outside the image"):
        ReaderInputs.create("M1", (23.5, 4.0), (47.51, 40.0)).within(3, (48, 64))
    run = AngioRun.from_array(tube_frames(48, 64, 3, seed=1), mask_frames=(0,))
    edge = stenosis.measure(run, "M1", (23.5, -0.4), (23.5, 63.45), model="classical")
    inner = stenosis.measure(run, "M1", (23.5, 0.0), (23.5, 63.0), model="classical")
    assert edge.percent_stenosis == inner.percent_stenosis
    assert tuple(edge.to_dict()["proximal_rc"]) == (23.5, 0.0)


def test_the_two_sd_interval_stays_within_0_and_100_percent():
    """A real coronary frame (CIMAT image 8, a reader's points around a narrowing) read 44.5 +- 36.5
    and printed its interval as '-28.5 to 117.5%', numbers no narrowing can have. The interval is
    now kept within 0-100% everywhere it is shown (warning, JSON, napari), from one function."""
    from stenosis.result import two_sd_interval
    from stenosis.wasid import borderline_warning

    assert two_sd_interval(44.5, 36.5) == (0.0, 100.0)
    assert two_sd_interval(40.0, 5.0) == (30.0, 50.0)
    assert two_sd_interval(97.0, 2.0) == (93.0, 100.0)
    assert two_sd_interval(30.0, float("nan")) == (30.0, 30.0)
    assert "(0.0 to 100.0%)" in borderline_warning(44.5, 36.5)
    assert "(31.0 to 51.0%)" in borderline_warning(41.0, 5.0)
