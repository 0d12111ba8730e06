"""Centerline tracing on synthetic probability maps with a crossing vessel and a side branch."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from stenosis.centerline import smooth_resample, snap_to_vessel, trace_centerline
from stenosis.errors import MeasurementError


def ridge(shape, pts, width):
    """Probability ~1 on the polyline ``pts`` (dense (K, 2) points), falling off over ``width`` px."""
    mask = np.zeros(shape, bool)
    ij = np.round(pts).astype(int)
    ok = (ij[:, 0] >= 0) & (ij[:, 0] < shape[0]) & (ij[:, 1] >= 0) & (ij[:, 1] < shape[1])
    mask[ij[ok, 0], ij[ok, 1]] = True
    d = ndi.distance_transform_edt(~mask)
    return np.exp(-0.5 * (d / width) ** 2)


@pytest.fixture(scope="module")
def scene():
    shape = (160, 200)
    t = np.linspace(0, 1, 4000)
    main = np.stack([80 + 30 * np.sin(2 * np.pi * t * 0.8), 20 + 160 * t], axis=1)  # curved artery
    cross = np.stack([np.linspace(0, 159, 2000), np.full(2000, 100.0)], axis=1)  # crossing vessel
    # side branch leaving the main vessel at col 60 towards the upper right corner
    k = np.argmin(np.abs(main[:, 1] - 60))
    branch = main[k] + np.linspace(0, 1, 2000)[:, None] * (np.array([5.0, 190.0]) - main[k])
    p = np.maximum.reduce([ridge(shape, main, 2.5), 0.9 * ridge(shape, cross, 2.0), 0.8 * ridge(shape, branch, 1.5)])
    return p, main


def dist_to(curve, pts):
    """Distance of each point to a densely sampled curve (linear interpolation between its points)."""
    c = curve
    if len(c) < 1000:  # densify a resampled centerline
        t = np.linspace(0, len(c) - 1, 20 * len(c))
        c = np.stack([np.interp(t, np.arange(len(c)), c[:, k]) for k in range(2)], axis=1)
    return np.min(np.linalg.norm(pts[:, None, :] - c[None, ::2, :], axis=2), axis=1)


def test_trace_follows_the_artery_through_a_crossing_and_past_a_branch(scene):
    p, main = scene
    a, b = main[100], main[-100]
    rc, arc = trace_centerline(p, a + [2.0, -1.0], b + [-1.5, 1.0], step_px=0.5, snap_radius_px=6)
    d = dist_to(main, rc)
    assert d.max() < 1.6  # never leaves the artery (into the branch or the crossing)
    assert np.median(d) < 0.5  # and on its ridge (the synthetic ridge is pixel-quantised)
    assert np.allclose(np.diff(arc), 0.5)
    # arc length close to the true length between the snapped ends
    seg = main[100:-100]
    true_len = np.sum(np.linalg.norm(np.diff(seg, axis=0), axis=1))
    assert arc[-1] == pytest.approx(true_len, rel=0.03)


def test_trace_is_symmetric(scene):
    p, main = scene
    a, b = main[300], main[-300]
    rc1, _ = trace_centerline(p, a, b, step_px=0.5, snap_radius_px=6)
    rc2, _ = trace_centerline(p, b, a, step_px=0.5, snap_radius_px=6)
    d = dist_to(rc1, rc2)
    # forward and backward minimum-cost pixel paths break ties differently (about half a pixel)
    assert d.max() < 1.0 and np.median(d) < 0.6


def test_snap_refuses_points_far_from_vessels(scene):
    p, _ = scene
    with pytest.raises(MeasurementError, match="not on a vessel"):
        snap_to_vessel(p, (10.0, 10.0), radius_px=6)


def test_snap_moves_to_the_nearest_ridge(scene):
    p, main = scene
    target = main[1500]
    r, c = snap_to_vessel(p, target + [3.0, 0.0], radius_px=8)
    assert np.hypot(r - target[0], c - target[1]) <= 1.5


def test_smooth_resample_of_a_staircase_is_a_line():
    k = np.arange(60)
    stair = np.stack([k // 2, k - k // 2], axis=1).astype(float)  # pixel path of a 45-degree line
    rc, arc = smooth_resample(stair, step_px=0.25)
    # residual from the fitted straight line well below a pixel
    A = np.c_[rc[:, 1], np.ones(len(rc))]
    coef, *_ = np.linalg.lstsq(A, rc[:, 0], rcond=None)
    assert np.abs(A @ coef - rc[:, 0]).max() < 0.35
    assert np.allclose(np.diff(arc), 0.25)
