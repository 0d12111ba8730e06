"""An artery that moves between frames (a coronary with the heart; issue 18's real multi-frame
run): with no frame given, the reader's points lie on it only in the frame they were placed on.
A synthetic subtracted run: a straight, oblique artery (radius 5 px, a 50% narrowing) that moves
15 px across itself per frame; its iodine is densest in a later frame than the one the points were
placed on."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage as ndi

import stenosis
from stenosis.calibration import manual_calibration
from stenosis.errors import MeasurementError
from stenosis.io import AngioRun, RunMetadata

SHIFTS = [0.0, 0.0, 0.0, 15.0, 30.0, 45.0]  # the artery's sideways shift in each frame, px
DOSE = [0.0, 0.7, 1.0, 1.0, 1.0, 1.08]  # frame 0 holds no iodine; frame 5 the most
A, B = np.array([40.0, 40.0]), np.array([130.0, 220.0])  # the artery's ends in frames 0-2
ALONG = (B - A) / np.linalg.norm(B - A)
ACROSS = np.array([-ALONG[1], ALONG[0]])


def _chord(shape, shift, ss=2):
    """Projected path length (px) through a straight artery from A to B moved ``shift`` px across
    itself: radius 5 px, a 50% narrowing midway (Gaussian, SD 8 px), supersampled ``ss`` x."""
    h, w = shape
    rr, cc = np.mgrid[0:h * ss, 0:w * ss] / ss + (0.5 / ss - 0.5)
    rel = np.stack([rr, cc], -1) - (A + shift * ACROSS)
    t = rel @ ALONG
    d = rel @ ACROSS
    half = np.linalg.norm(B - A) / 2
    radius = 5.0 * (1 - 0.5 * np.exp(-0.5 * ((t - half) / 8.0) ** 2))
    chord = 2 * np.sqrt(np.clip(radius ** 2 - d ** 2, 0, None))
    return chord.reshape(h, ss, w, ss).mean(axis=(1, 3))


@pytest.fixture(scope="module")
def moving_run():
    h, w = 200, 260
    rng = np.random.default_rng(3)
    frames = []
    for shift, dose in zip(SHIFTS, DOSE):
        chord = ndi.gaussian_filter(_chord((h, w), shift), 1.0)
        frames.append(2000 - 60 * dose * chord + rng.normal(0, 4, (h, w)))
    frames = np.clip(np.stack(frames), 0, 4095).astype(np.uint16)
    meta = RunMetadata(run_id="0" * 16, modality="XA", sop_class_uid="1.2.840.10008.5.1.4.1.1.12.1",
                       transfer_syntax_uid="1.2.840.10008.1.2.1", transfer_syntax_name="Explicit VR Little Endian",
                       rows=h, cols=w, n_frames=len(SHIFTS), bits_stored=12, photometric="MONOCHROME2", subtracted=True)
    return AngioRun(frames=frames, calibration=manual_calibration(0.2), metadata=meta, source="<synthetic>")


def _m(run, shift, **kw):
    """The segment measured from points 10 px inside the artery's ends, moved ``shift`` px across it."""
    p, d = A + 10 * ALONG + shift * ACROSS, B - 10 * ALONG + shift * ACROSS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return stenosis.measure(run, "M1", tuple(p), tuple(d), model="classical", **kw)


def test_points_on_the_artery_of_their_own_frame_are_measured_there(moving_run):
    # placed on frames 0-2's artery: frame 5 holds the most iodine around them, where the
    # artery lies 45 px away; the segment is measured on frame 2, and the result says why
    res = _m(moving_run, 0.0)
    assert res.frame_index == 2
    assert res.percent_stenosis == pytest.approx(50.0, abs=3.0)
    said = [w for w in res.warnings if "the artery moves between frames" in w]
    assert len(said) == 1 and "not on the artery in frame 5" in said[0] and "are in frame 2" in said[0]
    # the same as the reader giving the frame, which says nothing about moving
    given = _m(moving_run, 0.0, frame=2)
    assert given.frame_index == 2 and given.percent_stenosis == pytest.approx(res.percent_stenosis, abs=0.01)
    assert not any("moves between frames" in w for w in given.warnings)
    # the frames that hold the artery elsewhere are not combined
    assert not set(res.frames["used"]) & {3, 4, 5}


def test_points_on_the_densest_frame_s_artery_need_no_note(moving_run):
    res = _m(moving_run, 45.0)
    assert res.frame_index == 5 and res.percent_stenosis == pytest.approx(50.0, abs=3.0)
    assert not any("moves between frames" in w for w in res.warnings)


def test_points_on_no_frame_s_artery_are_still_refused(moving_run):
    with pytest.raises(MeasurementError, match="not on (a|an opacified) vessel"):
        _m(moving_run, -40.0)


@pytest.fixture(scope="module")
def shadow_run():
    """A native run (frame 0 the untagged mask) whose still artery is full from frame 2; a soft
    shadow (a heart's, 150 grey levels) falls over its distal half in frames 4-5 (the heart's
    density changing as it beats: no shift of the mask explains it)."""
    h, w = 200, 260
    rng = np.random.default_rng(4)
    chord = ndi.gaussian_filter(_chord((h, w), 0.0), 1.0)
    rr, cc = np.mgrid[0:h, 0:w]
    frames = []
    for t, dose in enumerate([0.0, 0.5, 1.0, 1.0, 1.0, 1.0]):
        shadow = (150 if t >= 4 else 0) / (1 + np.exp(-((rr + cc) - 250) / 8.0))  # edge across the middle
        frames.append(2000 - 60 * dose * chord - shadow + rng.normal(0, 4, (h, w)))
    frames = np.clip(np.stack(frames), 0, 4095).astype(np.uint16)
    meta = RunMetadata(run_id="1" * 16, modality="XA", sop_class_uid="1.2.840.10008.5.1.4.1.1.12.1",
                       transfer_syntax_uid="1.2.840.10008.1.2.1", transfer_syntax_name="Explicit VR Little Endian",
                       rows=h, cols=w, n_frames=6, bits_stored=12, photometric="MONOCHROME2", subtracted=False)
    return AngioRun(frames=frames, calibration=manual_calibration(0.2), metadata=meta, source="<synthetic>")


def test_a_moving_shadow_is_not_read_as_a_bolus_still_filling(shadow_run):
    """The fill of the reader's frame is judged on the vessel's own iodine (less its sides): the
    shadow raises frames 4-5's opacity over the distal half, which read as frame 2 holding only
    part of the segment (session 36)."""
    from stenosis.frames import segment_opacity
    from stenosis.opacification import opacify

    res = _m(shadow_run, 0.0, frame=2)
    assert res.frame_index == 2 and res.percent_stenosis == pytest.approx(50.0, abs=3.0)
    assert not any("not fully opacified" in w for w in res.warnings)
    # what the opacity itself says: the distal half under 90% of frame 5's there
    stack = opacify(shadow_run, register=False)
    rc = res.profile.centerline_rc
    raw = segment_opacity(stack, rc, smooth_px=20.0)
    own = segment_opacity(stack, rc, smooth_px=20.0, sides_px=15.0)
    assert (raw[2] < 0.9 * raw.max(axis=0)).mean() > 0.3
    assert (own[2] < 0.9 * own.max(axis=0)).mean() < 0.05
