"""The lesion's shape (a view's projected width) is read on profiles interpolated with a cubic
spline (``sample_profiles(order=3)``, :data:`stenosis.diameter.shape.SHAPE_INTERPOLATION_ORDER`).

Bilinear interpolation (the diameters') blurs a profile by t (1 - t) px^2 at a sub-pixel position
t (none on a pixel centre, 1/4 half-way): a kernel no single Gaussian of the lumen model
describes. The projected width of a lumen under about 3 blur sigmas is read from the profile's
shape, so that varying blur moved it; the spline profiles' blur is the run's less the bilinear
blur at the run's own sample points (:func:`bilinear_blur_var_px2`; docs/tuning.md section 8,
session 23).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from stenosis.diameter.profiles import _interpolate, bilinear_blur_var_px2, sample_profiles


def _line_image(shape=(96, 96), angle_deg=27.0, sigma=0.8, offset=0.3):
    """Point samples of a continuous Gaussian ridge (sigma px) across a straight line through
    the image centre at ``angle_deg`` (a band-limited image with an exact value everywhere)."""
    t = np.radians(angle_deg)
    rr, cc = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    centre = np.array(shape, float) / 2 + offset
    nrm = np.array([np.cos(t), -np.sin(t)])  # unit normal (row, col) of a line along (sin t, cos t)
    d = (rr - centre[0]) * nrm[0] + (cc - centre[1]) * nrm[1]
    return np.exp(-0.5 * (d / sigma) ** 2), centre, nrm


def test_spline_profile_is_the_image_bilinear_is_blurred():
    img, centre, nrm = _line_image()
    x = np.arange(-4.0, 4.01, 0.25)
    pts = centre[None, :] + np.array([[0.37, 0.81]])  # on the line's normal through a sub-pixel point
    shift = float(np.dot(pts[0] - centre, nrm))
    truth = np.exp(-0.5 * ((x + shift) / 0.8) ** 2)
    spline, _ = sample_profiles(img, pts, nrm[None, :], x, band_px=0.0, order=3)
    linear, _ = sample_profiles(img, pts, nrm[None, :], x, band_px=0.0)  # the default: bilinear
    err_spline = np.abs(spline[0] - truth).max()
    err_linear = np.abs(linear[0] - truth).max()
    # measured: spline 0.025, bilinear 0.135 of a unit peak (peaks 0.975 and 0.911 for 0.999)
    assert err_spline < 0.035
    assert err_linear > 4 * err_spline
    # bilinear's blur: its peak is low
    assert linear[0].max() < spline[0].max() - 0.04


def test_spline_on_the_samples_pixels_equals_the_whole_frames():
    rng = np.random.default_rng(3)
    img = ndi.gaussian_filter(rng.normal(size=(300, 280)), 1.2).astype(np.float32)
    coords = np.stack([rng.uniform(100, 140, 500), rng.uniform(60, 90, 500)])
    whole = ndi.map_coordinates(img, coords, order=3, mode="nearest", prefilter=True)
    crop = _interpolate(img, coords, 3)
    assert np.abs(crop - whole).max() < 1e-5 * np.abs(whole).max()
    # near the frame's edge the crop is the frame's edge: the same boundary
    edge = np.stack([rng.uniform(-0.4, 5, 200), rng.uniform(270, 279.4, 200)])
    assert np.allclose(_interpolate(img, edge, 3), ndi.map_coordinates(img, edge, order=3, mode="nearest"), atol=1e-5)


def test_non_finite_pixels_fall_back_to_bilinear():
    rng = np.random.default_rng(1)
    img = rng.normal(size=(40, 40)).astype(np.float32)
    coords = np.array([[20.3, 21.7], [19.5, 22.25]])
    far = img.copy()
    far[2, 2] = np.nan  # outside the samples' crop: the spline as usual
    assert np.allclose(_interpolate(far, coords, 3), ndi.map_coordinates(img, coords, order=3, mode="nearest"),
                       atol=1e-5)
    near = img.copy()
    near[14, 15] = np.nan  # inside it: a spline would spread it over every coefficient
    out = _interpolate(near, coords, 3)
    assert np.all(np.isfinite(out))
    assert np.allclose(out, ndi.map_coordinates(img, coords, order=1, mode="nearest"), atol=1e-6)


def test_coordinates_beyond_the_frame_and_other_orders():
    rng = np.random.default_rng(2)
    img = ndi.gaussian_filter(rng.normal(size=(60, 50)), 1.5)
    beyond = np.array([[75.0, 80.2, -30.0], [10.5, 60.0, 25.3]])  # all far past an edge
    assert np.allclose(_interpolate(img, beyond, 3), ndi.map_coordinates(img, beyond, order=3, mode="nearest"),
                       atol=1e-6)
    with_nan = np.array([[20.5, np.nan], [10.25, 3.0]])
    out = _interpolate(img, with_nan, 3)
    assert np.isfinite(out[0]) and out[0] == pytest.approx(
        ndi.map_coordinates(img, with_nan[:, :1], order=3, mode="nearest")[0], abs=1e-6)
    pts = np.array([[20.4], [10.6]])
    assert _interpolate(img, pts, 0)[0] == pytest.approx(img[20, 11])  # order 0 stays nearest
    ints = np.zeros((5, 5), np.int16)
    ints[2, 3] = 1
    assert _interpolate(ints, np.array([[2.0], [2.5]]), 1)[0] == pytest.approx(0.5)  # not rounded


@pytest.mark.parametrize("order", [1, 3])
def test_constant_image_reads_constant(order):
    img = np.full((50, 60), 7.0, np.float32)
    pts = np.array([[25.2, 30.7], [10.5, 12.5]])
    nrm = np.array([[0.6, 0.8], [1.0, 0.0]])
    prof, inside = sample_profiles(img, pts, nrm, np.arange(-5.0, 5.1, 1.0), order=order)
    assert np.allclose(prof, 7.0) and inside.all()


def test_bilinear_blur_is_none_on_pixel_centres_a_quarter_half_way():
    x = np.arange(-8.0, 8.1, 1.0)
    along_rows = np.tile([[1.0, 0.0]], (20, 1))
    on_centres = np.array([[100.0, 50.0 + k] for k in range(20)])
    assert bilinear_blur_var_px2(on_centres, along_rows, x) == pytest.approx(0.0, abs=1e-12)
    half_way = on_centres + [0.5, 0.0]
    assert bilinear_blur_var_px2(half_way, along_rows, x) == pytest.approx(0.25, abs=1e-12)
    rng = np.random.default_rng(0)
    a = rng.uniform(0, np.pi, 400)
    anywhere = bilinear_blur_var_px2(rng.uniform(0, 100, (400, 2)), np.stack([np.cos(a), np.sin(a)], 1), x)
    assert anywhere == pytest.approx(1.0 / 6.0, abs=0.01)


def test_the_bilinear_blur_is_what_a_gaussian_fit_reads_as_extra_blur():
    """A Gaussian ridge of sigma 0.8 read half-way between pixel rows: bilinear profiles fit a
    Gaussian of variance sigma^2 + 1/4 (0.89 px), spline ones sigma (0.8): what
    :func:`stenosis.diameter.shape.spline_blur_px` takes out of the run's blur."""
    from scipy.optimize import curve_fit

    img, centre, nrm = _line_image(angle_deg=0.0, offset=0.0)  # the ridge along row 48
    x = np.arange(-5.0, 5.01, 1.0)
    pts = np.array([[48.5, 40.0 + k] for k in range(10)])  # half-way between rows 48 and 49
    n = np.tile([[1.0, 0.0]], (10, 1))

    def width(order):
        prof, _ = sample_profiles(img, pts, n, x, band_px=0.0, order=order)
        g = lambda u, a, c, s: a * np.exp(-0.5 * ((u - c) / s) ** 2)  # noqa: E731
        return abs(curve_fit(g, x, prof.mean(axis=0), p0=(1.0, -0.5, 1.0))[0][2])

    assert width(1) ** 2 == pytest.approx(0.8**2 + 0.25, abs=0.04)
    assert width(3) == pytest.approx(0.8, abs=0.03)
