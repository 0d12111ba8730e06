"""Automatic lesion finding on phantom runs with known lesion position.

Target (issue 5): the MLD within 3 mm of the true lesion in >= 90% of stenotic
phantoms. Here a handful of small phantoms (classical vesselness, to stay fast);
``benchmarks/batch.py`` measures the rate over more runs.
"""
from __future__ import annotations

import numpy as np
import pytest

from stenosis.auto import find_lesion, focal_narrowing, main_trunk
from stenosis.errors import MeasurementError

MM_PER_PX = 0.2


@pytest.fixture(scope="module")
def phantom_runs(tmp_path_factory):
    spec_mod = pytest.importorskip("stenosis.phantom.spec")
    from stenosis.io import read_run
    from stenosis.phantom.dicom import load_truth, write_phantom
    from stenosis.phantom.engine import render_phantom

    out = tmp_path_factory.mktemp("auto_phantoms")
    runs = []
    for i, (pct, taper) in enumerate([(50, 0.0), (60, 0.3), (70, 0.0), (80, 0.3), (55, 0.2), (75, 0.0)]):
        spec = spec_mod.PhantomSpec(
            seed=100 + i, shape=(256, 256), mm_per_px=(MM_PER_PX, MM_PER_PX), n_frames=6,
            stenosis_percent=float(pct), taper=taper, name=f"a{i}",
        )
        dcm, _ = write_phantom(render_phantom(spec), out / f"a{i}.dcm")
        run = read_run(dcm)
        runs.append((run, load_truth(dcm), spec, find_lesion(run, model="classical")))
    return runs


@pytest.mark.slow
def test_auto_places_the_mld_within_3mm(phantom_runs):
    dists = []
    for run, truth, _, lesion in phantom_runs:
        dists.append(np.hypot(*(np.subtract(lesion.narrowest, truth["mld_rc"]))) * MM_PER_PX)
        assert 0.0 <= lesion.confidence <= 1.0
    hits = np.array(dists) <= 3.0
    print("MLD distance mm:", np.round(dists, 2))
    assert hits.sum() >= 5, dists  # >= 90% target: at most one miss in six


@pytest.mark.slow
def test_auto_points_bracket_the_lesion_on_the_trunk(phantom_runs):
    for run, truth, spec, lesion in phantom_runs:
        trunk = lesion.trunk_rc
        idx = [int(np.argmin(np.hypot(*(trunk - np.asarray(p)).T))) for p in (lesion.proximal, lesion.narrowest, lesion.distal)]
        assert idx[0] < idx[1] < idx[2]
        # both points at least ~2 reference diameters from the lesion (room for a WASID reference)
        ref_px = truth["reference_diameter_mm"] / MM_PER_PX
        for p in (lesion.proximal, lesion.distal):
            assert np.hypot(*np.subtract(p, lesion.narrowest)) >= 2 * ref_px
        assert lesion.orientation in ("bolus", "branches", "calibre", "undetermined")


def test_trunk_prefers_the_thick_vessel_over_a_long_thin_branch():
    mask = np.zeros((120, 200), bool)
    mask[55:66, 10:190] = True  # trunk, 11 px wide, 180 long
    rr, cc = np.mgrid[0:120, 0:200]
    mask |= (np.abs(rr - (cc - 20) * 0.5) <= 1) & (cc > 20) & (cc < 199) & (rr < 55)  # thin, long
    trunk, diam, dominance = main_trunk(mask)
    assert np.all(np.abs(trunk[:, 0] - 60) <= 1)  # runs along the thick vessel
    assert np.ptp(trunk[:, 1]) > 150
    assert 0.5 < dominance <= 1.0
    assert np.median(diam) == pytest.approx(11, abs=1.5)


def test_focal_narrowing_finds_the_dip_and_ignores_a_taper():
    arc = np.arange(200, dtype=float)
    d = np.linspace(12, 8, 200)  # smooth taper: no focal lesion
    d_lesion = d * (1 - 0.5 * np.exp(-(((arc - 120) / 6) ** 2)))
    k, sev, runner, ref = focal_narrowing(d_lesion, arc)
    assert abs(k - 120) <= 2 and sev == pytest.approx(0.45, abs=0.1)
    _, sev_taper, _, _ = focal_narrowing(d, arc)
    assert sev_taper < 0.1


def test_no_vessel_is_a_measurement_error():
    frame = np.full((64, 64), 1000.0) + np.random.default_rng(0).normal(0, 1, (64, 64))
    with pytest.raises(MeasurementError, match="give points"):
        find_lesion(frame, model="classical")


# ---- direction (issue 17): bolus arrival settles it; one frame says it cannot ----------------
def _tube_run(*, reverse: bool = False, n_frames: int = 8, front: bool = True, percent: float = 50.0):
    """A gently curved 12 px vessel with a focal narrowing at col 130 (subtracted run).

    With ``front`` the contrast travels along it: reaching col c at frame 1 + c/70 (from the
    right end when ``reverse``), so the upstream end is the one the contrast reaches first;
    without, it rises everywhere at once (full from frame 2).
    """
    from stenosis.io import AngioRun

    h, w = 160, 260
    rr, cc = np.mgrid[0:h, 0:w].astype(float)
    r = 6.0 * (1 - percent / 100 * np.exp(-(((cc - 130) / 10) ** 2)))
    d = np.abs(rr - 80 - 10 * np.sin(cc / 60))
    path = 2 * np.sqrt(np.clip(r**2 - d**2, 0, None)) * ((cc > 5) & (cc < w - 5))
    pos = (w - cc) if reverse else cc
    rng = np.random.default_rng(1)
    frames = []
    for t in range(n_frames):
        conc = np.clip(t - 1.0 - pos / 70.0, 0, 1) if front else np.full_like(pos, min(1.0, t / 2.0) if n_frames > 1 else 1.0)
        frames.append(1000 - 30 * path * conc + rng.normal(0, 1.0, (h, w)))
    return AngioRun.from_array(np.asarray(frames, np.float32), subtracted=True, pixel_intensity_relationship="LOG")


@pytest.mark.parametrize("reverse", [False, True])
def test_bolus_arrival_along_the_trunk_decides_proximal(reverse):
    lesion = find_lesion(_tube_run(reverse=reverse), model="classical")
    assert lesion.orientation == "bolus"
    # upstream = where the contrast arrives first: the left end, or the right one when reversed
    assert (lesion.proximal[1] > lesion.distal[1]) == reverse
    assert lesion.proximal[1] < lesion.narrowest[1] < lesion.distal[1] or reverse
    assert not lesion.warnings


def test_bolus_trend_is_zero_without_a_front():
    from stenosis.auto import bolus_trend

    cols = np.arange(30, 230)
    trunk = np.stack([np.round(80 + 10 * np.sin(cols / 60)).astype(int), cols], axis=1)
    span, _ = bolus_trend(-np.asarray(_tube_run(front=False).frames, float), trunk)
    assert abs(span) < 0.5
    span, t_stat = bolus_trend(-np.asarray(_tube_run(front=True).frames, float), trunk)
    assert span == pytest.approx(200 / 70, abs=0.5) and t_stat > 3


def test_one_frame_says_the_direction_is_a_guess_and_caps_confidence():
    from stenosis.auto import SINGLE_FRAME_CONFIDENCE

    lesion = find_lesion(_tube_run(n_frames=1, front=False, percent=75.0), model="classical")
    assert lesion.orientation != "bolus"
    assert any("one frame" in w and "proximal" in w for w in lesion.warnings)
    assert lesion.confidence <= SINGLE_FRAME_CONFIDENCE
    assert lesion.to_dict()["warnings"] == list(lesion.warnings)


def test_native_cine_frames_without_a_mask_still_show_the_vessel():
    """Several opacified native frames, no mask declared: subtracting frame 0 cancels the
    vessels; the lesion must still be found (the frame itself is read)."""
    from stenosis.io import AngioRun

    one = np.asarray(_tube_run(n_frames=1, front=False, percent=60.0).frames[0])
    noise = np.random.default_rng(2).normal(0, 1.0, (6,) + one.shape)
    native = AngioRun.from_array((one[None] + noise).astype(np.float32), subtracted=False,
                                 pixel_intensity_relationship="LOG")
    lesion = find_lesion(native, model="classical")
    assert abs(lesion.narrowest[1] - 130) <= 6


@pytest.mark.slow
def test_sample_runs_direction_right_by_the_bolus(sample_dicom_dir):
    """Bundled samples (the contrast front travels along the vessels, stenosis.phantom's
    bolus_velocity_mm_s): on every multi-frame run the trunk is the graded artery, the
    lesion is found and the proximal end is the one the contrast reaches first (issue 17)."""
    import json

    from stenosis.io import read_run

    runs = sorted(sample_dicom_dir.glob("*.dcm"))
    assert len(runs) == 5
    for dcm in runs:
        truth = json.loads(dcm.with_suffix(".truth.json").read_text())
        run = read_run(dcm)
        assert run.frames.shape[0] >= 3, dcm.name
        lesion = find_lesion(run)
        cl = np.asarray(truth["centerline_rc"])
        on_artery = np.min(np.hypot(lesion.trunk_rc[:, None, 0] - cl[None, :, 0],
                                    lesion.trunk_rc[:, None, 1] - cl[None, :, 1]), axis=1)
        assert np.mean(on_artery <= 4) >= 0.9, dcm.name  # the trunk runs along the graded artery
        px = truth["mm_per_px"][0]
        assert np.hypot(*np.subtract(lesion.narrowest, truth["mld_rc"])) * px <= 3.0, dcm.name
        ip, idist = (int(np.argmin(np.hypot(*(cl - np.asarray(p)).T))) for p in (lesion.proximal, lesion.distal))
        assert ip < idist, (dcm.name, lesion.orientation)  # truth centreline runs proximal -> distal
        assert lesion.orientation == "bolus", dcm.name
        assert not any("check which point is proximal" in w for w in lesion.warnings), dcm.name


def test_one_frame_of_a_sample_cannot_tell_the_direction(sample_dicom_dir):
    """The analysed frame of a bundled run alone: no bolus, the direction is a flagged guess."""
    import json

    from stenosis.auto import SINGLE_FRAME_CONFIDENCE
    from stenosis.io import AngioRun, read_run

    dcm = sample_dicom_dir / "m1_subtracted_pixelspacing.dcm"
    truth = json.loads(dcm.with_suffix(".truth.json").read_text())
    frame = np.asarray(read_run(dcm).frames[truth["frame_index"]], np.float32)
    one = AngioRun.from_array(frame[None], subtracted=True, pixel_intensity_relationship="LOG")
    lesion = find_lesion(one, model="classical")
    assert lesion.orientation != "bolus"
    assert any("one frame" in w and "check which point is proximal" in w for w in lesion.warnings)
    assert lesion.confidence <= SINGLE_FRAME_CONFIDENCE
