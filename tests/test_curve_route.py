"""A straight vessel crossing a tightly curved artery twice: the plain minimum-cost path ran along
the crossing vessel (the chord is shorter than the curve) and missed the lesion on the curve
(``benchmarks/independent.py --radius 10 --crossing``: MAE 26.9 points, 61% within 2 SD; a 50%
lesion read 2.1 +- 0.6, an 85% one 3.4). The route is now checked with a curvature penalty where the
path turns sharply (``trace._keeps_to_curves``)."""
from __future__ import annotations

import numpy as np
import pytest

import stenosis
from stenosis.calibration import Calibration
from stenosis.enums import CalibrationSource
from stenosis.io import AngioRun


def test_a_lesion_on_the_curve_is_measured_not_the_chord():
    """The independent renderer's curved artery (radius 10 mm, 2 mm, 50% at the top of the curve)
    crossed at 90 degrees by a 1.2 mm vessel, a mask frame, noise 6 (the benchmark's run)."""
    from test_independent_renderer import render

    px, d0, pct, blur_mm = 0.15, 2.0, 50, 0.15
    rng = np.random.default_rng(int(pct + d0 * 10 + px * 1000 + blur_mm * 100))
    crossing = (float(rng.choice([35.0, 60.0, 90.0])), d0 * float(rng.choice([0.6, 1.0])), float(rng.choice([-1.0, 1.0])))
    assert crossing[0] == 90.0
    frames, a, b, _ = render(rng, px=px, d0=d0, pct=pct, width_mm=1.5, blur="gauss", blur_mm=blur_mm, noise=6.0,
                             ecc=0.0, shape="gauss", radius_mm=10.0, crossing=crossing)
    run = AngioRun.from_array(frames, calibration=Calibration((px, px), CalibrationSource.PIXEL_SPACING, "test"),
                              pixel_intensity_relationship="LOG", mask_frames=(0,))
    r = stenosis.measure(run, "BA", a, b, frame=2)
    assert r.percent_stenosis == pytest.approx(50.0, abs=3.0)  # 50.2 +- 0.8 (2.1 along the chord)
    assert r.reference_diameter_mm == pytest.approx(d0, abs=0.15)
    assert any("the trace keeps to the artery's curve" in w for w in r.warnings)
