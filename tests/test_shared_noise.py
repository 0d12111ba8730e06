"""The mask's noise, shared by every frame of a run, estimated off the vessels from the frames
(``shared_noise_sigma_px``, ``stenosis.opacification.shared_noise``)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from stenosis.opacification import shared_noise
from stenosis.params import DEFAULT_PARAMS

from _phantoms import measure_truth as _measure


def _frames(n_live=6, n_mask=2, sd=1.0, seed=0, shape=(120, 120)):
    """Subtracted frames: anatomy cancels, the mask's averaged noise is in all of them alike, each
    live frame has its own; a vessel of iodine along row 60."""
    rng = np.random.default_rng(seed)
    mask_noise = rng.normal(0, sd / np.sqrt(n_mask), shape)
    rows = np.arange(shape[0])[:, None]
    iodine = 20.0 * np.exp(-0.5 * ((rows - 60) / 3.0) ** 2) * np.ones(shape)
    live = rng.normal(0, sd, (n_live,) + shape)
    return iodine[None] + live - mask_noise[None], mask_noise, np.abs(rows - 60) * np.ones(shape) > 12


def test_the_weight_is_the_masks_share_of_the_frames_mean():
    S, mask_noise, free = _frames()
    fine, w = shared_noise(S, free, sigma_px=4.0, outlier_sds=4.0)
    # least squares: var(mask) / (var(mask) + var(live) / n) = 0.5 / (0.5 + 1 / 6) = 0.75
    assert w == pytest.approx(0.75, abs=0.03)
    assert np.all(fine[~free] == 0)
    # off the vessel the frames' shared noise drops: the mean's error was the mask's noise
    # (variance 0.5) plus 1/6; after, about (1 - w)^2 0.5 + ... well under half of it
    before = (S.mean(axis=0)[free] ** 2).mean()
    after = ((S - fine[None]).mean(axis=0)[free] ** 2).mean()
    assert before == pytest.approx(0.5 + 1 / 6, rel=0.05)
    assert after < 0.3 * before
    # under the vessel nothing is touched
    assert np.array_equal((S - fine[None])[:, ~free], S[:, ~free])


def test_no_shared_noise_no_weight():
    rng = np.random.default_rng(3)
    S = rng.normal(0, 1.0, (6, 100, 100))  # the frames' noise only: nothing they share
    _, w = shared_noise(S, np.ones((100, 100), bool), sigma_px=4.0, outlier_sds=4.0)
    assert w < 0.1


def test_a_vein_in_one_frame_is_left_alone():
    S, _, free = _frames()
    S = S.copy()
    S[-1, 20:26, :] += 30.0  # a vein filling in the last frame only, where the map says nothing
    fine, w = shared_noise(S, free, sigma_px=4.0, outlier_sds=4.0)
    assert np.all(fine[20:26, :] == 0)
    assert w == pytest.approx(0.75, abs=0.05)


def test_too_few_frames():
    S, _, free = _frames(n_live=2)
    fine, w = shared_noise(S, free, sigma_px=4.0, outlier_sds=4.0)
    assert w == 0.0 and not fine.any()


def test_recorded_and_off(low_dose_run):
    """The 8-frame low-dose M1 phantom (truth 60%, 2 masks): the weight and the share the mask
    predicts under the lumen are recorded; off, they are 0."""
    run, truth = low_dose_run
    on = _measure(run, truth)
    off = _measure(run, truth, params=replace(DEFAULT_PARAMS, shared_noise_sigma_px=0.0))
    beside = _measure(run, truth, params=replace(DEFAULT_PARAMS, mask_noise_scales_px=()))
    single = _measure(run, truth, frames="single")
    for r in (off, single):
        assert r.frames["shared_noise_weight"] == 0.0 and r.frames["mask_noise_explained"] == 0.0
    assert beside.frames["mask_noise_explained"] == 0.0
    # measured: w 0.72, explained 0.71 (5 frames combined); 61.0 +- 1.6 on, 60.1 +- 1.9 off the
    # vessels only, 59.75 +- 2.1 off, 60.6 +- 2.5 single
    assert 0.5 < on.frames["shared_noise_weight"] < 0.9
    assert 0.6 < on.frames["mask_noise_explained"] < 0.8
    assert on.percent_stenosis != beside.percent_stenosis != off.percent_stenosis
    assert abs(on.percent_stenosis - truth["percent_stenosis"]) < 1.5
    assert abs(beside.percent_stenosis - truth["percent_stenosis"]) < 1.0
    assert on.percent_stenosis_sd < beside.percent_stenosis_sd < off.percent_stenosis_sd


def test_the_mask_predicts_its_noise_under_the_lumen():
    """``mask_noise``: frames = mask (smooth anatomy + white noise) less live frames (the same
    anatomy, iodine along row 60, own noise). Off the vessels the predictor is fitted; under the
    lumen it takes out most of the mask's noise and puts in little of the anatomy."""
    from scipy import ndimage as ndi

    from stenosis.opacification import mask_noise

    rng = np.random.default_rng(3)
    shape, n = (120, 120), 5
    anatomy = 200.0 * ndi.gaussian_filter(rng.normal(0, 1, shape), 6.0)  # SD 10, smooth at the pixel scale
    noise = rng.normal(0, 1.0, shape)
    mask = anatomy + noise
    rows = np.arange(shape[0])[:, None]
    iodine = 20.0 * np.exp(-0.5 * ((rows - 60) / 3.0) ** 2) * np.ones(shape)
    S = np.stack([mask - (anatomy - iodine + rng.normal(0, 1.0, shape)) for _ in range(n)])
    free = np.abs(rows - 60) * np.ones(shape) > 12
    pred, explained = mask_noise(S, np.stack([mask] * n), free, sigma_px=4.0)
    assert not pred[:, free].any()
    fine = noise - ndi.gaussian_filter(noise, 4.0, truncate=3.0, mode="nearest")
    lumen = ~free
    left = float(np.var((fine - pred[0])[lumen]) / np.var(fine[lumen]))
    # measured: 0.03 of the mask's fine noise variance left under the lumen (anatomy 10x the
    # noise); the frames' mean fine structure off the vessels is the mask's noise (variance 1)
    # and the mean of 5 live frames' (1 / 5): explained 0.80 of 1 / 1.2
    assert left < 0.06
    assert 0.74 < explained < 0.86
    # a mask without noise: nothing of the anatomy is taken for noise
    S0 = np.stack([anatomy - (anatomy - iodine + rng.normal(0, 1.0, shape)) for _ in range(n)])
    pred0, explained0 = mask_noise(S0, np.stack([anatomy] * n), free, sigma_px=4.0)
    assert explained0 < 0.001 and float(np.abs(pred0).max()) < 0.05  # measured 8e-5 and 0.012


def _analysed(shift=(0.0, 0.0), seed=1):
    """A synthetic analysed frame: a horizontal vessel along row 40 of a 100 x 120 crop at (10, 20)
    of a 160 x 160 frame, traced on a guess frame and followed onto this one by ``shift``."""
    from stenosis.frames import AnalysedFrame
    from stenosis.trace import Trace

    d = np.asarray(shift, float)
    rows = np.arange(160)[:, None]
    image = (20.0 * np.exp(-0.5 * ((rows - (50 + d[0])) / 2.0) ** 2) * np.ones((160, 160))).astype(np.float32)
    image += np.random.default_rng(seed).normal(0, 0.5, image.shape).astype(np.float32)
    box = (slice(10, 110), slice(20, 140))
    cols = np.arange(30.0, 130.0)
    guess_rc = np.stack([np.full(cols.size, 50.0), cols], axis=1)
    prob = np.zeros((100, 120))
    prob[37:44, :] = 1.0  # the guess frame's map: the vessel at row 40 of the crop (50 of the frame)
    trace = Trace(guess_rc, cols - cols[0], prob, (10.0, 20.0), box).shifted(d)
    return AnalysedFrame(0, image, trace)


@pytest.mark.parametrize("shift", [(0.0, 0.0), (6.0, -3.0), (-5.0, 4.0)])
def test_the_iodine_free_pixels_follow_the_analysed_frame(shift):
    """The trace and its map follow the analysed frame (``Trace.shifted``); the crop does not.
    Review finding: placed at the trace's origin, the lumen sat up to 8 px off its pixels."""
    from stenosis.frames import iodine_free

    a = _analysed(shift)
    free = iodine_free(a, 3.0)
    r = 40 + int(shift[0])  # the vessel's row in the crop
    assert free.shape == (100, 120)
    assert not free[r - 4:r + 5, 5:-5].any()  # the lumen (radius about 2.5 px) and 3 px beyond
    assert free[r + 12:, 5:-5].all() or r + 12 >= 100
    assert free[:max(r - 12, 0), 5:-5].all()


def test_without_shared_noise_changes_only_free_pixels():
    from stenosis.frames import FollowedFrame, iodine_free, without_shared_noise

    a = _analysed()
    rng = np.random.default_rng(2)
    mask = rng.normal(0, 1.0, a.image.shape).astype(np.float32)
    base = a.image - mask
    frames = [FollowedFrame(t, base + rng.normal(0, 1.0, base.shape).astype(np.float32), (0.0, 0.0)) for t in (1, 2, 3, 4)]
    a = type(a)(0, base, a.trace)
    image, out, w, _ = without_shared_noise(a, frames)
    assert 0.5 < w < 0.95
    free = np.zeros(base.shape, bool)
    free[a.trace.box] = iodine_free(a, 3.0)
    changed = image != base
    assert changed[free].mean() > 0.99 and not changed[~free].any()
    for f, g in zip(frames, out):
        assert np.array_equal(g.image != f.image, changed)
    # only the first two companions estimate it (a reader's frame limit): fewer frames, a lower weight
    _, _, w2, _ = without_shared_noise(a, frames, estimate_from=2)
    assert 0.0 < w2 < w


def test_an_offset_frame_keeps_the_estimate():
    """A frame brighter everywhere (the bolus' blush, a change of exposure) is neither a vein
    nor the frames' own noise."""
    S, _, free = _frames()
    S = S.copy()
    S[2] += 5.0
    _, w = shared_noise(S, free, sigma_px=4.0, outlier_sds=4.0)
    assert w == pytest.approx(0.75, abs=0.03)


def test_a_subtracted_run_keeps_its_mask_noise_in_place():
    """A run stored subtracted: the vendor subtracted the mask where it was, so its noise does not
    follow the segment's motion; a native run's mask is registered onto each live frame here, and
    its noise moves with the segment. Aligned where it is, the analysed frame loses most of it."""
    from stenosis.frames import FollowedFrame, iodine_free, without_shared_noise

    a = _analysed()
    clean = a.image
    rng = np.random.default_rng(4)
    mask = rng.normal(0, 1.0, clean.shape).astype(np.float32)
    a = type(a)(0, clean - mask, a.trace)
    moved = [FollowedFrame(t, np.roll(clean, 3, axis=0) - mask + rng.normal(0, 1.0, clean.shape).astype(np.float32),
                           (3.0, 0.0)) for t in (1, 2, 3, 4)]  # the vessel moved 3 px; the mask's noise did not
    free = np.zeros(clean.shape, bool)
    free[a.trace.box] = iodine_free(a, 3.0)
    left = {}
    for fixed in (True, False):
        image, _, _, _ = without_shared_noise(a, moved, fixed_mask=fixed)
        left[fixed] = float(np.mean((image - clean)[free] ** 2))  # the mask's noise left: 1.0 before (0.29 / 1.37 measured)
    assert left[True] < 0.45 and left[False] > 0.8


def test_the_share_of_noise_the_frames_share(low_dose_run):
    """sqrt((1/M + 1/n) / (1/M + 1)): M mask frames, n frames combined; 1 where the mask is not
    known (a run stored subtracted) or nothing is combined. The floor it sets on the combined SD
    is checked where it binds, on a hybrid DSA run (tests/test_hybrid_frames_benchmark.py)."""
    from stenosis.io import AngioRun
    from stenosis.measurement import shared_noise_share

    run, _ = low_dose_run
    assert tuple(run.metadata.mask_frames) == (0, 1) and not run.metadata.subtracted
    assert shared_noise_share(run, 5) == pytest.approx(np.sqrt((0.5 + 0.2) / 1.5))  # 0.683
    assert shared_noise_share(run, 1) == 1.0
    one_mask = AngioRun.from_array(np.asarray(run.frames), mask_frames=(0,))
    assert shared_noise_share(one_mask, 4) == pytest.approx(np.sqrt((1 + 0.25) / 2))
    assert shared_noise_share(AngioRun.from_array(np.asarray(run.frames), subtracted=True), 5) == 1.0


def _captured_mask_fits(monkeypatch, run, truth, **kw):
    """Measure ``run``; what each call of ``mask_noise`` was given, and the frame and pixels
    each mask was rebuilt on (the live frames read by ``native_values``)."""
    import stenosis.frames as frames_mod
    from stenosis.opacification import mask_noise, native_values

    calls, regions = [], []

    def spy(frames, masks, free, **k):
        calls.append((np.array(frames), np.array(masks), np.array(free), k))
        return mask_noise(frames, masks, free, **k)

    def live(r, t, region=None):
        regions.append((t, region))
        return native_values(r, t, region)

    monkeypatch.setattr(frames_mod, "mask_noise", spy)
    monkeypatch.setattr(frames_mod, "native_values", live)
    return _measure(run, truth, **kw), calls, regions


def test_the_mask_is_recovered_exactly_on_a_lin_run(monkeypatch, tmp_path):
    """Each frame plus its live frame (in a LIN run's log domain) is the mask as subtracted: on
    a run without motion, the mean of the log mask frames, to a constant, in every frame."""
    import stenosis
    from stenosis.opacification import mask_frames_of, native_values

    from _phantoms import phantom

    dcm, truth = phantom("low_dose_m1_8frames", tmp_path, intensity_relationship="LIN")
    run = stenosis.read_run(dcm)
    assert run.metadata.pixel_intensity_relationship == "LIN"
    result, calls, regions = _captured_mask_fits(monkeypatch, run, truth)
    assert len(calls) == 1 and result.frames["mask_noise_explained"] > 0
    _, masks, _, _ = calls[0]
    assert len(regions) == len(masks) == len(result.frames["used"])
    logmask = np.mean([native_values(run, m) for m in mask_frames_of(run)], axis=0)
    for m, (t, region) in zip(masks, regions):
        assert t not in mask_frames_of(run)
        d = m - logmask[region]
        assert float(np.ptp(d)) < 1e-3, t  # the same mask, to float32 rounding


def test_the_mask_fit_keeps_to_the_frame_limit(monkeypatch, low_dose_run):
    """``frames=3``: the prediction is fitted on the 3 frames measured (made for all followed)."""
    run, truth = low_dose_run
    result, calls, _ = _captured_mask_fits(monkeypatch, run, truth, frames=3)
    assert len(result.frames["used"]) == 3
    (frames, masks, free, k), = calls
    assert k["fit_count"] == 3 and frames.shape[0] == 5  # measured: 5 frames followed, 3 combined


def test_a_raised_sd_keeps_the_percent_sd_following_from_its_parts():
    """``_sd_at_least``: the MLD and reference SDs rise with the percent SD by one factor; a
    reference measured off the segment (no window) keeps its own SD and the MLD's takes the rise."""
    from dataclasses import dataclass

    from stenosis.measurement import _sd_at_least

    @dataclass(frozen=True)
    class M:
        mld_px: float = 3.0
        reference_px: float = 6.0
        mld_sd_px: float = 0.2
        reference_sd_px: float = 0.3
        percent_stenosis_sd: float = 0.0
        reference_window: tuple | None = (10, 40)

    def pct_sd(m):
        return 100.0 * np.hypot(m.mld_sd_px / m.reference_px, m.mld_px * m.reference_sd_px / m.reference_px**2)

    for window in ((10, 40), None):
        m = M(reference_window=window)
        m = M(reference_window=window, percent_stenosis_sd=pct_sd(m))
        assert _sd_at_least(m, 0.5 * m.percent_stenosis_sd) is m  # below: unchanged
        up = _sd_at_least(m, 2.0 * m.percent_stenosis_sd)
        assert up.percent_stenosis_sd == pytest.approx(2.0 * m.percent_stenosis_sd)
        assert pct_sd(up) == pytest.approx(up.percent_stenosis_sd, rel=1e-9)
        if window is None:
            assert up.reference_sd_px == m.reference_sd_px and up.mld_sd_px > 2.0 * m.mld_sd_px
        else:
            assert up.reference_sd_px == pytest.approx(0.6) and up.mld_sd_px == pytest.approx(0.4)
