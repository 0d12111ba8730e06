"""Grading several views: each view's lesion read as its projected width (the lesion core's
amplitude ratio k), believed as far as the core's profiles and the normal artery beside it allow.

An elliptical lumen of semi-axes a (across the vessel in view A) and b = 2a, at a 50%
narrowing of its area-equivalent diameter sqrt(ab): view A sees a projected width of a
(64.6%), view B of b (29.3%); a densitometric (area) reading gives 50% in both."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import stenosis
from stenosis.io import AngioRun

SHAPE = (200, 200)
R0 = 3.5  # normal radius, px
MU = 0.09  # attenuation per px of iodinated lumen
BLUR = 0.9  # px


def _view(phi: float, *, ratio: float = 2.0, area_narrowing: float = 0.5, noise: float = 0.004,
          frames: int = 1, background=None, seed: int = 0, row: float = 100.0):
    """One view of a straight vessel (row 100, columns 10-190) with an elliptical lesion centred
    at column 100 (raised cosine, 24 px long), semi-axes a = r sqrt(1/ratio), b = r sqrt(ratio),
    r = R0 (1 - area_narrowing) at its narrowest; ``frames`` > 1: a DSA run (2 mask frames, then
    the contrast frames), each frame its own noise. Returns (run, truth %: the projected width's)."""
    from stenosis.phantom.geometry import Tube, elliptical_view
    from stenosis.phantom.hybrid import insert_vessel

    rng = np.random.default_rng(seed)
    cols = np.arange(10.0, 190.0, 0.25)
    pts = np.stack([np.full_like(cols, row), cols], axis=1)
    s = cols - cols[0]
    bump = np.clip(1 - np.abs(cols - 100.0) / 12.0, 0, 1)
    bump = 0.5 * (1 - np.cos(np.pi * bump))
    r = R0 * (1 - area_narrowing * bump)
    a, b = r / np.sqrt(ratio) ** bump, r * np.sqrt(ratio) ** bump  # round away from the lesion
    w, scale = elliptical_view(a, b, phi)
    bg = (np.full(SHAPE, 0.8 * 4095.0) if background is None else background).astype(float)
    img, _ = insert_vessel(bg, Tube(pts, s, w, np.zeros_like(s), name="main", depth_scale=scale),
                           mu_per_px=MU, blur_sigma_px=BLUR, white=4095.0)
    truth = float((1 - w.min() / R0) * 100)

    def noisy(x):
        return np.clip(x + rng.normal(0.0, noise * 4095.0, x.shape), 0, 4095).astype(np.float32)

    if frames == 1:
        return AngioRun.from_array(noisy(img), pixel_intensity_relationship=None, source=f"view{phi:.2f}"), truth
    stack = np.stack([noisy(bg), noisy(bg)] + [noisy(img) for _ in range(frames)])
    return AngioRun.from_array(stack, pixel_intensity_relationship="LIN", mask_frames=(0, 1),
                               source=f"dsa{phi:.2f}"), truth


def _measure(run, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return stenosis.measure(run, "M1", (100.0, 16.0), (100.0, 184.0), **kw)


@pytest.fixture(scope="module")
def eccentric():
    """Views A (64.6%) and B (29.3%) of the 2:1 ellipse on a flat background, and their results."""
    out = []
    for phi in (0.0, np.pi / 2):
        run, truth = _view(phi)
        out.append((run, truth, _measure(run)))
    return out


def test_the_area_reading_is_blind_to_the_lumen_shape(eccentric):
    """The premise: both views read alike, near the area-equivalent 50%, 35 points apart in
    truth. Measured 47.2 and 45.4% (the lesion's samples read as non-round lumens, session 21;
    46.5 and 47.7% before): these linear-intensity single frames carry no intensity
    relationship, so their contrast is the stored difference (relative to a flat background:
    the same), not log attenuation, about 3 points below the area truth (docs/tuning.md,
    section 8, session 19)."""
    (_, ta, ra), (_, tb, rb) = eccentric
    assert (ta, tb) == pytest.approx((64.6, 29.3), abs=0.1)
    assert ra.percent_stenosis == pytest.approx(47.0, abs=3.0)
    assert rb.percent_stenosis == pytest.approx(47.0, abs=3.0)
    assert abs(ra.percent_stenosis - rb.percent_stenosis) < 2.5


def test_each_view_reads_its_projected_width(eccentric):
    """Measured (seed 0): view A 57.9% (truth 64.6, area 47.3; k 1.57 for a true 2: the run's
    blur reads 0.85 px for 0.9 and a slit's k leans on it; 56.4% and k 1.47 at 0.82 px before
    the blur's minimum was found on a finer grid, session 24), view B 29.7% (truth 29.3, area
    45.4; k 0.60 for 0.5); k above 1 in the view that sees the minor axis, below in the other.
    Before the shape was read on spline profiles (session 23): 56.0% and 32.2%."""
    from stenosis.views import PROJECTED_WIDTH, view_reading

    (_, ta, ra), (_, tb, rb) = eccentric
    va, vb = view_reading(ra), view_reading(rb)
    assert va.reading == vb.reading == PROJECTED_WIDTH
    assert va.k > 1.35 and vb.k < 0.7
    assert va.percent_stenosis == pytest.approx(56.4, abs=2.5)
    assert vb.percent_stenosis == pytest.approx(tb, abs=2.0)
    assert abs(va.percent_stenosis - ta) < abs(ra.percent_stenosis - ta) - 7
    assert abs(vb.percent_stenosis - tb) < abs(rb.percent_stenosis - tb) - 12


def test_measure_views_grades_the_narrow_projection(eccentric):
    views = [{"run": run, "proximal": (100.0, 16.0), "distal": (100.0, 184.0)} for run, _, _ in eccentric]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stenosis.measure_views(views, "M1")
    assert res.graded_index == 0
    assert res.percent_stenosis == pytest.approx(56.4, abs=2.5)  # truth 64.6, area readings 47.2 / 45.4
    assert res.disagreement_points > 20
    d = res.to_dict()
    assert d["reading"] == "projected width" and len(d["readings"]) == 2
    assert d["percent_stenosis"] == pytest.approx(res.percent_stenosis, abs=0.01)
    area = stenosis.measure_views(views, "M1", projected_width=False)
    assert area.percent_stenosis == pytest.approx(max(r.percent_stenosis for _, _, r in eccentric))


def test_the_shape_is_read_at_the_blur_of_its_spline_profiles():
    """k is read on spline profiles at the run's blur less the bilinear interpolation blur that
    blur held, where it was estimated (``profile.blur_interp_var_px2``). A DSA run of the 2:1
    ellipse half-way between pixel rows: the blur was estimated on the trace (points spread over
    sub-pixel positions, 0.03 px^2), the re-centred samples sit half-way (0.25 px^2). Measured:
    65.3% for 64.6 (k 2.09 for 2; 63.7% and k 1.90 before the blur's minimum was found on a
    finer grid, session 24: blur 0.953 -> 0.978 px); taking the variance at the re-centred
    samples read 57.0% (k 1.36); bilinear profiles (before session 23) 56.3% (k 1.31)."""
    from stenosis.views import view_reading

    run, truth = _view(0.0, frames=3, row=100.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stenosis.measure(run, "M1", (100.5, 16.0), (100.5, 184.0))
    v = res.profile.blur_interp_var_px2
    assert 0.0 <= v < 0.1
    reading = view_reading(res)
    assert reading.k == pytest.approx(2.09, abs=0.12)
    assert reading.percent_stenosis == pytest.approx(truth, abs=2.0)


def test_a_round_lumen_keeps_its_area_reading():
    from stenosis.views import view_reading

    run, truth = _view(0.0, ratio=1.0)
    res = _measure(run)
    v = view_reading(res)
    assert abs(np.log(v.k)) < 0.1
    assert v.percent_stenosis == pytest.approx(res.percent_stenosis, abs=2.0)
    assert v.percent_stenosis == pytest.approx(truth, abs=3.0)


def test_prior_sd_zero_is_the_area_reading(eccentric):
    from stenosis.params import MeasureParams
    from stenosis.views import view_reading

    _, _, ra = eccentric[0]
    v = view_reading(ra, MeasureParams(view_eccentricity_prior_sd=0.0))
    assert v.percent_stenosis == pytest.approx(ra.percent_stenosis, abs=1e-9)


def test_structure_along_the_artery_shrinks_k_to_round():
    """Background texture at the vessel's scale moves k along the normal artery too: the factor
    measured there grows and the lesion's k is believed less (closer to 1) than on a flat frame.
    Measured: factor 1.0 flat, 2.34 rough (1.50 / 5.49 before session 26: these single frames carry
    no intensity relationship and their contrast is now read relative to the brightness behind
    it, which divides out the texture's multiplicative part; its additive part remains)."""
    from scipy import ndimage as ndi

    from stenosis.diameter.shape import lesion_amplitude_ratio

    rng = np.random.default_rng(5)
    texture = ndi.gaussian_filter(rng.normal(0.0, 1.0, SHAPE), 3.0)
    bg = 0.8 * 4095.0 * (1.0 + 0.06 * texture / texture.std())
    flat = lesion_amplitude_ratio(_measure(_view(0.0)[0]))
    rough = lesion_amplitude_ratio(_measure(_view(0.0, background=bg)[0]))
    assert flat.structure_factor < 3.0
    assert rough.structure_factor > 2 * flat.structure_factor
    assert rough.log_k_sd > flat.log_k_sd
    assert abs(rough.log_k) < abs(flat.log_k)


def test_every_frame_read_joins_the_lesion_core():
    """A DSA run: the result keeps each frame as read; pooling them narrows k's posterior."""
    from stenosis.diameter.shape import lesion_amplitude_ratio

    run, _ = _view(0.0, frames=5, noise=0.008, seed=2)
    every = _measure(run)
    one = _measure(run, frames="single")
    assert len(every.frames_read) == len(every.frames["used"]) >= 3
    assert len(one.frames_read) == 1
    assert lesion_amplitude_ratio(every).log_k_sd < lesion_amplitude_ratio(one).log_k_sd


def test_a_borderline_reading_asks_a_reader(eccentric):
    from dataclasses import replace

    from stenosis.views import ViewReading, measure_views

    views = [{"run": run, "proximal": (100.0, 16.0), "distal": (100.0, 184.0)} for run, _, _ in eccentric]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = measure_views(views, "M1")
    close = (ViewReading("projected width", 51.0, 2.0, 3.0),) + res.readings[1:]
    assert replace(res, readings=close).needs_confirmation
    far = (ViewReading("projected width", 70.0, 2.0, 3.0),) + res.readings[1:]
    # the graded view's own area result is borderline (46.5 +- 86); its reading, 70 +- 2, is not
    assert res.views[0].needs_confirmation
    assert not replace(res, readings=far).needs_confirmation


def test_the_reading_sd_is_not_the_area_fits_misfit(eccentric):
    """The SD a round lumen's misfit would give (residuals 8.5x the noise on view A: 86.1 and
    28.9 points until session 20) is in neither reading: the area reading reads the non-round
    lumen with its own amplitude (SD 6.2 and 6.4; 5.5 and 5.4 from session 21 until the blur's
    minimum was found on a finer grid, session 24), the projected reading takes no misfit share
    out of an SD that holds none (5.0 and 8.3; 4.6 and 7.0 before; 9.5 for view B since session
    26 kept the artery beyond the points out of these single frames' background), and the
    views' disagreement is significant (27 points, 3.3 SD)."""
    from stenosis.views import measure_views, view_reading

    (_, _, ra), (_, _, rb) = eccentric
    for r in (ra, rb):
        assert r.percent_stenosis_sd < 7.5
        assert view_reading(r).percent_stenosis_sd < 10.5
    views = [{"run": run, "proximal": (100.0, 16.0), "distal": (100.0, 184.0)} for run, _, _ in eccentric]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert measure_views(views, "M1").disagreement_sd > 2


def test_samples_a_frame_did_not_read_stay_out_of_k():
    """A frame's samples the bolus had not reached are not combined into its diameters; they do
    not enter k either (a frame of garbage there, all its samples unread, changes nothing)."""
    from dataclasses import replace

    from stenosis.diameter.shape import lesion_amplitude_ratio

    run, _ = _view(0.0, frames=5, noise=0.008, seed=2)
    res = _measure(run)
    fr = res.frames_read
    junk = replace(fr[1], image=np.random.default_rng(0).normal(0, 500.0, fr[1].image.shape).astype(np.float32),
                   read=np.zeros_like(fr[1].read))
    without = lesion_amplitude_ratio(replace(res, frames_read=fr[:1] + fr[2:]))
    with_junk = lesion_amplitude_ratio(replace(res, frames_read=fr[:1] + (junk,) + fr[2:]))
    assert with_junk.log_k == pytest.approx(without.log_k, abs=1e-12)
    assert with_junk.log_k_sd == pytest.approx(without.log_k_sd, abs=1e-12)


def test_no_normal_artery_to_measure_k_on_keeps_the_area_reading(eccentric):
    from dataclasses import replace

    from stenosis.views import AREA, view_reading

    _, _, ra = eccentric[0]
    arc = ra.profile.arc_px
    whole = replace(ra, lesion_start_px=float(arc[0]) - 50.0, lesion_end_px=float(arc[-1]) + 50.0)
    v = view_reading(whole)
    assert v.reading == AREA and v.percent_stenosis == ra.percent_stenosis
    assert "too short" in v.note


@pytest.mark.parametrize("phi", [0.0, np.pi / 2])
def test_an_eccentric_lesion_is_read_as_its_area_in_one_view(phi):
    """A 25% narrowing (area-equivalent) of a 2:1 elliptical lumen, one DSA view: the run's
    amplitude does not describe the lesion's profiles (POOR_FIT), a lumen of their own
    amplitude does (NON_ROUND), and they are read as the area-equivalent diameter 2 R sqrt(A /
    A_run). Before (session 20) the lesion's samples were left out and the MLD sat on its
    shoulder: 4.3% in view A (SD 8.9), 29.5 +- 85 in view B. Measured: 26.8 +- 0.8, 24.4 +- 0.8."""
    from stenosis.result import QualityFlag

    run, _ = _view(phi, area_narrowing=0.25, frames=3, seed=1)
    r = _measure(run)
    assert r.percent_stenosis == pytest.approx(25.0, abs=2.5)
    assert r.percent_stenosis_sd < 2.0
    nr = (r.profile.flags & int(QualityFlag.NON_ROUND)) != 0
    lesion = np.abs(r.profile.centerline_rc[:, 1] - 100.0) <= 6.0
    assert nr[lesion].mean() > 0.9 and not nr[~lesion & (np.abs(r.profile.centerline_rc[:, 1] - 100.0) > 16)].any()
