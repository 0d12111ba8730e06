"""Model-based diameters on analytic tubes (projected path length of a cylinder, blurred)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from _phantoms import straight, tube_image
from stenosis.diameter import (chord_table, derivative_edges, diameter_stage, estimate_blur, fit_profiles,
                               measure_diameters, profile_offsets)


def test_chord_table_is_area_preserving():
    # the blurred chord integrates to pi R^2 whatever the blur
    tab = chord_table(1.3, 8.0, 30.0)
    u = np.arange(-30, 30.001, 0.05)
    for r in (0.4, 1.0, 3.0, 7.0):
        area = np.trapezoid(tab(np.full_like(u, r), u), u)
        assert area == pytest.approx(np.pi * r**2, rel=0.01)


@pytest.mark.parametrize("radius", [1.0, 2.5, 6.0])
def test_fixed_amplitude_fit_recovers_radius_of_a_uniform_tube(radius):
    img = tube_image((60, 80), lambda c: np.full_like(c, radius), row0=30.3, sigma=1.2)
    cols = np.arange(20.0, 60.0, 0.5)
    prof = measure_diameters(img, straight(cols), cols - 20, radius_hint_px=radius, blur_sigma_px=np.hypot(1.2, 0.29), amplitude=0.05)
    assert np.median(prof.diameter_px) == pytest.approx(2 * radius, abs=0.06)
    # the lumen centre is found sub-pixel (centerline at row 30, lumen at 30.3; normal = -row)
    assert np.median(prof.centre_offset_px) == pytest.approx(-0.3, abs=0.05)


def test_blur_and_amplitude_estimated_from_wide_profiles():
    img = tube_image((60, 80), lambda c: np.full_like(c, 6.0), row0=30.0, sigma=1.5, noise=0.003)
    x = profile_offsets(18.0, 1.0)
    cols = np.arange(20.0, 60.0, 1.0)
    pts = straight(cols)
    coords = pts[:, None, :] + np.array([-1.0, 0.0])[None, None, :] * x[None, :, None]
    Y = ndi.map_coordinates(img, coords.reshape(-1, 2).T, order=1).reshape(len(cols), -1)
    sigma, amp = estimate_blur(Y, x, r_max_px=12.0)
    # pixel aperture adds 1/12 px^2 to the Gaussian variance (the coarse grid's parabola alone: 1.508)
    assert sigma == pytest.approx(np.hypot(1.5, 0.29), rel=0.005)
    assert amp == pytest.approx(0.05, rel=0.05)


def test_narrow_lumen_below_blur_width_model_beats_edges():
    # 2R = 1.6 px with sigma 2 px: max-gradient edges overestimate, the fixed-amplitude fit does not
    r = 0.8
    img = tube_image((60, 80), lambda c: np.full_like(c, r), row0=30.0, sigma=2.0, noise=0.0005)
    cols = np.arange(20.0, 60.0, 1.0)
    prof = measure_diameters(img, straight(cols), cols - 20, radius_hint_px=3.0, blur_sigma_px=np.hypot(2.0, 0.29), amplitude=0.05)
    model_err = abs(np.median(prof.diameter_px) - 2 * r)
    edge_err = abs(np.median(prof.edge_diameter_px) - 2 * r)
    assert model_err < 0.15
    assert edge_err > 3 * model_err


def test_full_pass_on_a_stenosed_tube():
    # reference 2R = 12 px, stenosis to 2R = 4 px; blur and amplitude estimated by the pass
    rf = lambda c: 6.0 - 4.0 * np.exp(-0.5 * ((c - 70) / 10.0) ** 2)  # noqa: E731
    img = tube_image((60, 140), rf, row0=30.0, sigma=1.2, noise=0.002)
    cols = np.arange(10.0, 130.0, 0.5)
    prof = measure_diameters(img, straight(cols), cols - 10, radius_hint_px=6.0)
    assert prof.blur_sigma_px == pytest.approx(np.hypot(1.2, 0.29), rel=0.2)
    i = int(np.argmin(np.abs(cols - 70)))
    # along-vessel blur raises the raw minimum slightly (corrected in wasid.find_mld)
    assert prof.diameter_px[i] == pytest.approx(4.0, abs=0.3)
    assert np.median(prof.diameter_px[:30]) == pytest.approx(12.0, abs=0.15)
    # edges are placed symmetrically about the lumen centre
    width = np.linalg.norm(prof.right_rc - prof.left_rc, axis=1)
    assert np.allclose(width, prof.diameter_px, atol=1e-6)


def test_derivative_edges_of_a_step_pair():
    x = profile_offsets(10.0, 0.5)
    y = ((x > -3) & (x < 3)).astype(float)[None, :]
    left, right = derivative_edges(y, x, np.array([0.0]))
    assert left[0] == pytest.approx(-3.0, abs=0.3)
    assert right[0] == pytest.approx(3.0, abs=0.3)


def test_fit_profiles_free_amplitude():
    tab = chord_table(1.0, 10.0, 20.0)
    x = profile_offsets(16.0, 1.0)
    y = 0.2 + 0.01 * x + 0.07 * tab(np.full_like(x, 4.0), x - 0.4)
    f = fit_profiles(y[None, :], x, tab, amplitude=None, r_max_px=9.0)
    assert f.radius_px[0] == pytest.approx(4.0, abs=0.03)
    assert f.centre_px[0] == pytest.approx(0.4, abs=0.03)
    assert f.amplitude[0] == pytest.approx(0.07, rel=0.02)


def test_blocked_products_equal_plain_products():
    from stenosis.diameter.fit import _matmul_rows

    rng = np.random.default_rng(0)
    for n, k, m in ((410, 95, 3000), (272, 37, 663), (5, 3, 4)):
        a, b = rng.random((n, k)), rng.random((m, k)).T
        np.testing.assert_allclose(_matmul_rows(a, b), a @ b, rtol=1e-12, atol=1e-12)


def test_chord_caches_stay_bounded_in_entries_and_bytes():
    # a batch worker sees a new blur estimate in nearly every run; with wide vessels
    # each table is MBs, so the caches must be bounded in bytes, not only in entries
    from stenosis.diameter import model as diameter

    tables, spectra = diameter._TABLE_CACHE, diameter._SPECTRUM_CACHE
    tables.clear()
    spectra.clear()
    sigmas = np.linspace(0.6, 3.0, 40)
    for i, s in enumerate(sigmas):
        chord_table(float(s), 20.0 + (i % 3), 40.0)  # ~2 MB tables, ~26 MB spectra
        assert len(tables) <= tables.max_entries and tables.nbytes <= tables.max_bytes
        assert len(spectra) <= spectra.max_entries and spectra.nbytes <= spectra.max_bytes
    held = sum(v.table.nbytes for v in tables._data.values())
    assert held == tables.nbytes and 0 < held <= 48 * 2**20
    assert len(tables) < len(sigmas)  # the byte budget, not the entry count, evicted
    # eviction changes speed only: a recomputed table equals the one computed first
    first = diameter._chord_table_uncached(float(sigmas[0]), 20.0, 40.0)
    again = chord_table(float(sigmas[0]), 20.0, 40.0)
    np.testing.assert_array_equal(first.table, again.table)
    # and a recent key is a hit (the same read-only object)
    last = (float(sigmas[-1]), 20.0 + (len(sigmas) - 1) % 3, 40.0)
    assert chord_table(*last) is chord_table(*last)
    assert not again.table.flags.writeable


def test_amplitude_that_follows_the_vessel():
    # a 16 px lumen whose iodine signal drops by 20% along the vessel (scatter over a
    # darker background), with a 40% stenosis in the dim part: one amplitude per run reads
    # the dim part too narrow (area / A); the local amplitude recovers the true diameters
    rf = lambda c: 8.0 - 3.2 * np.exp(-0.5 * ((c - 150) / 8.0) ** 2)  # noqa: E731
    img = tube_image((60, 200), rf, row0=30.0, sigma=1.2, noise=0.002)
    gain = np.clip(1.0 - 0.2 * (np.arange(200) - 70) / 40.0, 0.8, 1.0)  # 1 -> 0.8 over cols 70..110
    img = img * gain[None, :].astype(np.float32)
    cols = np.arange(10.0, 190.0, 0.5)
    sig = float(np.hypot(1.2, 0.29))
    one = measure_diameters(img, straight(cols), cols - 10, radius_hint_px=8.0, blur_sigma_px=sig, amplitude=0.05)
    # the measurement's diameter stage (its own blur and amplitude; no other vessel in the map)
    loc = diameter_stage(img, straight(cols), cols - 10, np.zeros_like(img), origin_rc=(0.0, 0.0), radius_hint_px=8.0,
                         step_px=0.5, mm_per_px=None, crossings=False)
    dim = (cols >= 115) & (cols <= 130)  # normal lumen in the dim part
    i = int(np.argmin(np.abs(cols - 150)))  # the stenosis (2R = 9.6 px) in the dim part
    lc = loc.centerline_rc[:, 1]  # the stage resamples the centred trace
    ldim, lbright, li = (lc >= 115) & (lc <= 130), lc <= 60, int(np.argmin(np.abs(lc - 150)))
    assert np.median(one.diameter_px[dim]) < 16.0 - 1.0  # the failure being fixed
    assert np.median(loc.diameter_px[ldim]) == pytest.approx(16.0, abs=0.25)
    assert loc.diameter_px[li] == pytest.approx(9.6, abs=0.35)
    assert abs(one.diameter_px[i] - 9.6) > 3 * abs(loc.diameter_px[li] - 9.6)
    assert np.median(loc.diameter_px[lbright]) == pytest.approx(16.0, abs=0.25)
    assert loc.local_amplitude is not None and one.local_amplitude is None
    assert np.median(loc.local_amplitude[ldim]) == pytest.approx(0.04, rel=0.05)


def test_a_frames_unfilled_samples_are_not_read_as_non_round_lumens():
    """A companion frame where the bolus has not filled a stretch (half the iodine): a round
    lumen of lower amplitude is what the free-amplitude fit describes, but those samples are
    the frame's missing iodine, not a lumen's shape: POOR_FIT only, not searched for its MLD.
    Without ``unfilled`` the same samples would read as non-round lumens 4.6-6 px wide."""
    from stenosis.diameter.stage import same_samples_in_frame
    from stenosis.result import QualityFlag

    cols = np.arange(10.0, 190.0, 0.5)
    full = tube_image((60, 200), lambda c: np.full_like(c, 4.0), row0=30.0, sigma=1.0, noise=0.001)
    analysed = measure_diameters(full, straight(cols), cols - 10, radius_hint_px=4.0, blur_sigma_px=1.04,
                                 amplitude=0.05)
    gain = np.where((np.arange(200) >= 80) & (np.arange(200) <= 120), 0.5, 1.0)
    part = (full * gain[None, :]).astype(np.float32)
    stretch = (cols >= 88) & (cols <= 112)
    kw = dict(origin_rc=(0.0, 0.0), radius_hint_px=4.0, amplitude_scale=1.0)
    read = same_samples_in_frame(part, analysed, (0.0, 0.0), np.zeros_like(part), **kw)
    assert ((read.flags[stretch] & int(QualityFlag.NON_ROUND)) != 0).mean() > 0.9  # what unfilled prevents
    frame = same_samples_in_frame(part, analysed, (0.0, 0.0), np.zeros_like(part), unfilled=stretch, **kw)
    assert np.all(frame.flags[stretch] & int(QualityFlag.POOR_FIT))
    assert not np.any(frame.flags[stretch] & int(QualityFlag.NON_ROUND))
    assert not QualityFlag.mld_usable(frame.flags)[stretch].any()


def test_combined_frames_read_on_non_round_lumens_stay_non_round():
    """Where most frames read a sample only as a non-round lumen, the combined sample is one
    (searched for the MLD, never a reference), even if the analysed frame fitted it as round;
    where most read it as round, it is usable."""
    from stenosis.diameter.stage import combine_frames
    from stenosis.result import DiameterProfile, QualityFlag

    n = 20
    rc = np.stack([np.full(n, 30.0), np.arange(n, dtype=float)], axis=1)
    nrm = np.tile([-1.0, 0.0], (n, 1))

    def prof(d, flag):
        d = np.full(n, float(d))
        return DiameterProfile(arc_px=np.arange(n, dtype=float), centerline_rc=rc, normal_rc=nrm, diameter_px=d,
                               left_rc=rc, right_rc=rc, flags=np.full(n, int(flag), np.int64), edge_diameter_px=d,
                               centre_offset_px=np.zeros(n), blur_sigma_px=1.0, amplitude=1.0)

    nr = int(QualityFlag.POOR_FIT | QualityFlag.NON_ROUND)
    mostly_nr = combine_frames([prof(8.0, 0), prof(7.9, nr), prof(7.95, nr)], [1.0, 1.0, 1.0])
    assert np.all(mostly_nr.flags == nr) and not mostly_nr.valid.any() and QualityFlag.mld_usable(mostly_nr.flags).all()
    assert mostly_nr.diameter_px[0] == pytest.approx(7.95, abs=0.05)
    mostly_round = combine_frames([prof(8.0, nr), prof(7.9, 0), prof(7.95, 0)], [1.0, 1.0, 1.0])
    assert mostly_round.valid.all()


def test_samples_no_frame_can_use_are_combined_over_the_frames_flagged_alike():
    """Where most frames flag a sample (a branch's origin beside a severe lesion flags it in every
    frame), the frames flagged as the analysed one is are combined there, its flags kept; before
    session 35 the analysed frame's diameter stood alone (a phantom run's frame 5 read its 71.7%
    lesion 82.7% over all frames, where the frames' own readings were 70-79%)."""
    from stenosis.diameter.stage import combine_frames
    from stenosis.result import DiameterProfile, QualityFlag

    n = 20
    rc = np.stack([np.full(n, 30.0), np.arange(n, dtype=float)], axis=1)
    nrm = np.tile([-1.0, 0.0], (n, 1))
    branch, unfilled = int(QualityFlag.BRANCH), int(QualityFlag.POOR_FIT)

    def prof(d, flag):
        d = np.full(n, float(d))
        return DiameterProfile(arc_px=np.arange(n, dtype=float), centerline_rc=rc, normal_rc=nrm, diameter_px=d,
                               left_rc=rc, right_rc=rc, flags=np.full(n, int(flag), np.int64), edge_diameter_px=d,
                               centre_offset_px=np.zeros(n), blur_sigma_px=1.0, amplitude=1.0)

    # each frame's weight is 1 / its noise variance at its median diameter ((area / 2D)^2): sum D^3 / sum D^2
    combined = combine_frames([prof(1.7, branch), prof(2.2, branch), prof(2.0, branch)], [0.4, 0.4, 0.4])
    assert combined.diameter_px[0] == pytest.approx(23.561 / 11.73, abs=0.005)  # 2.009; the analysed frame's 1.7 before
    assert np.all(combined.flags == branch)
    # a frame flagged otherwise there (a companion's sample the bolus has not reached) is left out
    mixed = combine_frames([prof(1.7, branch), prof(9.0, unfilled), prof(2.0, branch)], [0.4, 0.4, 0.4])
    assert mixed.diameter_px[0] == pytest.approx(12.913 / 6.89, abs=0.005) and np.all(mixed.flags == branch)
    # an edge mismatch alone does not set a frame apart (as QualityFlag.mld_usable)
    edged = branch | int(QualityFlag.EDGE_MISMATCH)
    combined = combine_frames([prof(1.7, branch), prof(2.2, edged), prof(2.0, edged)], [0.4, 0.4, 0.4])
    assert combined.diameter_px[0] == pytest.approx(23.561 / 11.73, abs=0.005)
