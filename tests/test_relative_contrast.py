"""A single native frame of unknown intensity relationship reads its contrast relative to the
brightness behind the vessel (``background_relative_power``).

Beer-Lambert: iodine transmits a share of the intensity that reaches it, so where stored values
are proportional to intensity a vessel's depth follows the anatomy behind it. The frame here is
a normal 6 px vessel (iodine 0.04 / px, blurred 1 px in transmission) across a background that
darkens from 230 to 70 grey levels along it, noise SD 1: its depth falls from about 48 to 15.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage as ndi

import stenosis
from stenosis.io import AngioRun
from stenosis.params import DEFAULT_PARAMS

POINTS = ("M1", (64.0, 30.0), (64.0, 226.0))


def _frame(seed: int = 0) -> np.ndarray:
    h, w, d, row = 128, 256, 6.0, 64.0
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    chord = 2 * np.sqrt(np.clip((d / 2) ** 2 - (yy - row) ** 2, 0, None))
    chord[:, :12] = 0
    chord[:, -12:] = 0
    transmitted = ndi.gaussian_filter(np.exp(-0.04 * chord), 1.0)
    background = 230 - 160 * xx / w
    noise = np.random.default_rng(seed).normal(0, 1.0, (h, w))
    return np.clip(np.round(background * transmitted + noise), 0, 255).astype(np.uint8)


def _halves(res) -> tuple[float, float]:
    d = np.asarray(res.profile.diameter_px)
    n = len(d)
    return float(np.nanmedian(d[n // 8: 3 * n // 8])), float(np.nanmedian(d[5 * n // 8: 7 * n // 8]))


@pytest.fixture(scope="module")
def readings():
    run = AngioRun.from_array(_frame(), pixel_intensity_relationship=None)
    rel = stenosis.measure(run, *POINTS)
    off = stenosis.measure(run, *POINTS, params=replace(DEFAULT_PARAMS, background_relative_power=0.0))
    return rel, off


def test_a_normal_vessel_across_a_brightness_ramp_keeps_its_calibre(readings):
    rel, _ = readings
    bright, dark = _halves(rel)
    assert bright == pytest.approx(dark, abs=0.1)  # 5.682 / 5.687 measured
    assert bright == pytest.approx(6.0, abs=0.45)  # 5.68: the blur acts on transmission (tuning.md section 3)
    assert rel.percent_stenosis < 6.0  # 4.1 measured
    assert not rel.needs_confirmation


def test_read_as_log_scaled_the_darker_half_reads_narrow(readings):
    """What the rule fixes: the same frame with the contrast taken as it is stored."""
    _, off = readings
    bright, dark = _halves(off)
    assert bright - dark > 0.8  # 6.19 / 4.96 measured
    assert off.percent_stenosis > 25.0  # 39.7 measured


def test_a_log_run_is_read_as_stored():
    """A LOG run's contrast is additive: the rule leaves it alone."""
    run = AngioRun.from_array(_frame(), pixel_intensity_relationship="LOG")
    a = stenosis.measure(run, *POINTS)
    b = stenosis.measure(run, *POINTS, params=replace(DEFAULT_PARAMS, background_relative_power=0.0))
    assert a.percent_stenosis == b.percent_stenosis
    assert np.array_equal(np.asarray(a.profile.diameter_px), np.asarray(b.profile.diameter_px), equal_nan=True)
