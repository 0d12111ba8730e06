"""benchmarks/hybrid_frames.py: hybrid DSA runs (real anatomy as mask and background, a known
vessel in the contrast frames, fresh noise per frame), one frame against all."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from _benchmarks import BENCH, load_benchmark

pytestmark = pytest.mark.slow  # real data and the U-Net


@pytest.fixture(scope="module")
def runs(cimat_dir):
    sys.path.insert(0, str(BENCH))
    mod = load_benchmark("hybrid_frames")
    return mod, mod.make_runs(cimat_dir.parent, (2, 11, 33), per_image=2, seed=16)


def test_runs_are_untagged_dsa_runs_of_the_hybrid_case(runs):
    mod, made = runs
    assert len(made) == 6
    for name, split, dose, run, case in made:
        assert run.frames.shape == (mod.N_MASK + mod.N_LIVE, 300, 300)
        assert run.metadata.mask_frames == (0, 1)
        # the added noise grows with the intensity: read from the masks as LIN, or undecided
        # (70 LIN and 10 undecided over the 80 cases of the full benchmark; never LOG)
        assert run.metadata.pixel_intensity_relationship in ("LIN", None)
        frames = np.asarray(run.frames, float)
        # the contrast frames hold the vessel (darker along it), the masks do not
        r, c = np.round(case.truth["mld_rc"]).astype(int) if case.truth["percent"] == 0 else \
            np.round(case.tube.lumen_mm[len(case.tube.lumen_mm) // 4]).astype(int)
        assert frames[2:, r, c].mean() < frames[:2, r, c].mean()
        # fresh noise in every frame
        assert not np.array_equal(frames[2], frames[3])
    assert sorted({d for _, _, d, _, _ in made}) == sorted(mod.DOSES)
    assert sum(r.metadata.pixel_intensity_relationship == "LIN" for _, _, _, r, _ in made) >= 4


def test_combined_frames_read_the_cases(runs):
    """When written: the 6 small cases read MAE 5.8 with all frames (single frame 6.7), 5 of 6
    within 2 SD. A regression in the frames' combination on real anatomy shows here."""
    mod, made = runs
    err, sd, single = [], [], []
    for name, split, dose, run, case in made:
        p, s, said, _ = mod.measure(run, case)
        assert not said  # the masks hold no iodine: the mask check leaves these runs alone
        err.append(p - case.truth["percent"])
        sd.append(s)
        single.append(mod.measure(run, case, frames="single")[0] - case.truth["percent"])
    err, sd, single = np.abs(err), np.asarray(sd), np.abs(single)
    assert np.all(np.isfinite(err)) and np.all(np.isfinite(single))
    assert err.mean() <= 8.0
    assert err.mean() <= single.mean() + 0.5  # combining the frames does not read worse than one
    assert np.sum(err <= 2 * sd) >= 4


def test_noise_in_one_kind_of_frame(cimat_dir):
    """``--noise masks``: every contrast frame holds (nearly) the same image, so the only noise
    left is the masks', which all subtracted frames share; ``--noise contrast``: the reverse."""
    sys.path.insert(0, str(BENCH))
    mod = load_benchmark("hybrid_frames")
    for noise, shared in (("masks", True), ("contrast", False)):
        (name, split, dose, run, case), = mod.make_runs(cimat_dir.parent, (2,), per_image=1, seed=16, noise=noise)
        f = np.asarray(run.frames, float)
        assert run.metadata.pixel_intensity_relationship == "LIN"
        live_sd = np.std(f[3] - f[2]) / np.sqrt(2)
        mask_sd = np.std(f[1] - f[0]) / np.sqrt(2)
        big, small = (mask_sd, live_sd) if shared else (live_sd, mask_sd)
        # the added noise is dose grey levels at the mean (less where darker); the other 1/16 of it
        assert 0.5 * dose < big < 1.3 * dose
        assert small < big / 8


def test_late_runs_are_measured_on_a_native_frame(runs):
    """``--late``: the runs without their masks (an export that starts after the bolus arrived).
    Frame 0 holds as much iodine as the others: these were refused ("no contrast there"); now
    each is measured on a native frame and says why (when written: 6 of 6, MAE 14.1: a single
    native frame of real anatomy, as benchmarks/hybrid.py reads them)."""
    from stenosis.io import AngioRun

    mod, made = runs
    err = []
    for name, split, dose, run, case in made:
        late = AngioRun.from_array(np.asarray(run.frames[mod.N_MASK:]),
                                   pixel_intensity_relationship=run.metadata.pixel_intensity_relationship, source=name)
        p, s, said, _ = mod.measure(late, case)
        assert said and np.isfinite(p), name
        err.append(abs(p - case.truth["percent"]))
    assert np.mean(err) <= 16.0


def test_untagged_masks_are_found_before_the_bolus(cimat_dir):
    """``--untagged-masks``: no MaskSubtractionSequence, so frame 0 alone was the mask; the two
    frames before the bolus are now found on real anatomy and averaged as the mask."""
    import stenosis

    mod = load_benchmark("hybrid_frames")
    made = mod.make_runs(cimat_dir.parent, (2, 11, 33), per_image=2, seed=16, tag_masks=False)
    for name, split, dose, run, case in made:
        assert run.metadata.mask_frames == ()
        res = stenosis.measure(run, "M1", case.proximal_rc, case.distal_rc)
        assert res.frames["mask"] == [0, 1], (name, res.frames["mask"])


def test_combined_sd_keeps_the_masks_share_on_a_normal_artery(cimat_dir, monkeypatch):
    """Case 26-1 at the lowest dose (a normal artery on real anatomy, 2 masks, 5 contrast frames)
    read 15.7 +- 4.7 with all frames, against 13.5 +- 17.5 from one: the combined SD had fallen to
    0.27 of one frame's, below the sqrt((1/2 + 1/5) / (1/2 + 1)) = 0.68 the shared mask noise
    allows, and the 0% truth lay 3.3 SD away. Measured after the floor: 15.7 +- 11.8. Since the
    mask's noise is predicted under the lumen (session 20) the analysed frame's own SD is that of
    a frame with less of the mask's noise, and the case reads 19.0 +- 9.7 (the frame measured
    alone, uncorrected: +- 17.4); the floor is checked with the prediction off. Since session 24's
    blur search (18.5 +- 9.5) and tight-lesion bottom it reads 19.2 +- 9.3: 2.05 SD, just outside
    (recorded, not hidden: docs/tuning.md section 6); since the frames' motion is refined
    (session 25) 19.6 +- 9.3, 2.10 SD: a normal artery's narrowest point, biased low by its noise,
    which no SD models (docs/tuning.md section 2). Since the analysed frame's mask is registered
    again around the segment (session 34) 20.5 +- 10.3, 2.00 SD. Pinned as measured, not widened
    again."""
    from dataclasses import replace

    import stenosis
    from stenosis.measurement import shared_noise_share
    from stenosis.params import DEFAULT_PARAMS

    sys.path.insert(0, str(BENCH))
    mod = load_benchmark("hybrid_frames")
    monkeypatch.setattr(mod, "DOSES", (8.0,))
    (case_run,) = [(run, case) for name, _, _, run, case in
                   mod.make_runs(cimat_dir.parent, (26,), per_image=2, seed=16) if name == "26-1"]
    run, case = case_run
    assert case.truth["percent"] == 0.0
    off = replace(DEFAULT_PARAMS, mask_noise_scales_px=())
    every = stenosis.measure(run, "M1", case.proximal_rc, case.distal_rc, params=off)
    alone = stenosis.measure(run, "M1", case.proximal_rc, case.distal_rc, frame=every.frame_index, frames="single",
                             params=off)
    n = len(every.frames["used"])
    assert n == 5 and shared_noise_share(run, n) == pytest.approx(0.683, abs=1e-3)
    assert every.percent_stenosis == pytest.approx(15.7, abs=1.0)
    assert every.percent_stenosis_sd >= 0.95 * 0.683 * alone.percent_stenosis_sd
    # the floor raises the MLD and reference SDs with the percent SD, which still follows from them
    ref, mld = every.reference_diameter_px, every.mld_px
    follows = 100.0 * np.hypot(every.mld_sd_px / ref, mld * every.reference_sd_px / ref**2)
    assert every.percent_stenosis_sd == pytest.approx(follows, rel=1e-6)
    assert abs(every.percent_stenosis - case.truth["percent"]) <= 2 * every.percent_stenosis_sd
    # the default (the mask's noise predicted under the lumen): measured 19.6 +- 9.3, 2.10 SD
    # (outside 2 SD, see the docstring); since session 34 20.5 +- 10.3: the reading and its SD pinned
    default = stenosis.measure(run, "M1", case.proximal_rc, case.distal_rc)
    assert default.frames["mask_noise_explained"] > 0
    assert default.percent_stenosis == pytest.approx(20.5, abs=1.0)
    assert default.percent_stenosis_sd == pytest.approx(10.3, abs=0.5)
