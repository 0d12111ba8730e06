"""Measurement robustness: perturbed phantom runs give sensible numbers or a clear refusal.

Every case renders a physical phantom (``stenosis.phantom``: one M1 artery,
60% concentric stenosis, 160x160 px at 0.2 mm/px; ``hostile.PHANTOM_BASE``)
with one perturbation, measures it at the phantom's reader points and compares
with the phantom truth. Tolerances are stated per case; the noiseless baseline
measures within ~2 points of truth, and the perturbations may cost a few more:

| case | perturbation | tolerance on percent stenosis |
| --- | --- | --- |
| baseline | default quantum noise (20,000 photons/px) | 5 points, MLD 0.15 mm |
| noise | 5,000 photons/px (4x the noise variance) | 8 points (or MeasurementError) |
| motion | patient shift (3, -2) px between mask and contrast frames | 5 points |
| crossing | a vessel from another plane crossing between the points | 8 points (or a warning) |
| off-vessel points | both points moved 3 px off the centreline | 2 points from the on-vessel result |
| short segment | points 2 px apart | MeasurementError |
| calibration | the same pixels at 0.1 and 0.3 mm/px | 0.5 points (percent is calibration-free) |
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import hostile

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("stenosis.measurement") is None, reason="stenosis.measure not written yet"),
    pytest.mark.skipif(importlib.util.find_spec("stenosis.phantom") is None, reason="stenosis.phantom not written yet"),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("robust")


def _measure(path, truth, **kw):
    kw.setdefault("proximal", truth["proximal_rc"])
    kw.setdefault("distal", truth["distal_rc"])
    return hostile.measure_function()(path, segment=truth["segment"], **kw)


def _report(name, res, truth) -> str:
    return (f"{name}: measured {res.percent_stenosis:.1f}% (MLD {res.mld_mm} mm at {res.mld_rc}), truth "
            f"{truth['percent_stenosis']:.1f}% (MLD {truth['mld_mm']:.3f} mm at {truth['mld_rc']}); "
            f"warnings {list(res.warnings)}")


def test_baseline_accuracy(folder):
    path, truth = hostile.phantom_run(folder, "base")
    res = _measure(path, truth)
    msg = _report("baseline", res, truth)
    assert abs(res.percent_stenosis - truth["percent_stenosis"]) <= 5.0, msg
    assert abs(res.mld_mm - truth["mld_mm"]) <= 0.15, msg
    assert np.hypot(*np.subtract(res.mld_rc, truth["mld_rc"])) <= 5.0, msg
    assert res.meets_50 == truth["meets_50"], msg


@pytest.mark.parametrize("seed", [1, 2])
def test_noise(folder, seed):
    import stenosis

    path, truth = hostile.phantom_run(folder, f"noise{seed}", seed=seed, photons=5000.0)
    try:
        res = _measure(path, truth)
    except stenosis.MeasurementError:
        return  # a clear refusal is acceptable for a noisy run
    assert abs(res.percent_stenosis - truth["percent_stenosis"]) <= 8.0, _report("noise", res, truth)


def test_motion(folder):
    path, truth = hostile.phantom_run(folder, "motion", motion_px=(3.0, -2.0))
    res = _measure(path, truth)
    assert abs(res.percent_stenosis - truth["percent_stenosis"]) <= 5.0, _report("motion", res, truth)


def test_vessel_crossing_near_the_lesion(folder):
    path, truth = hostile.phantom_run(folder, "crossing", crossing=True, crossing_in_segment=True)
    assert truth.get("crossing_arc_mm") is not None, "the phantom must put the crossing in the segment"
    res = _measure(path, truth)
    ok = abs(res.percent_stenosis - truth["percent_stenosis"]) <= 8.0
    flagged = any("cross" in w.lower() or "overlap" in w.lower() for w in res.warnings)
    assert ok or flagged, _report("crossing", res, truth)


def test_points_slightly_off_the_vessel(folder):
    path, truth = hostile.phantom_run(folder, "base")
    on = _measure(path, truth)
    cl = np.asarray(truth["centerline_rc"], dtype=float)
    moved = []
    for p in (truth["proximal_rc"], truth["distal_rc"]):
        i = int(np.argmin(np.hypot(*(cl - np.asarray(p)).T)))
        tangent = cl[min(i + 5, len(cl) - 1)] - cl[max(i - 5, 0)]
        normal = np.array([-tangent[1], tangent[0]]) / np.hypot(*tangent)
        moved.append(tuple(np.asarray(p) + 3.0 * normal))
    off = _measure(path, truth, proximal=moved[0], distal=moved[1])
    assert abs(off.percent_stenosis - on.percent_stenosis) <= 2.0, (
        f"3 px off the centreline: {off.percent_stenosis:.1f}% vs {on.percent_stenosis:.1f}% on it")
    assert abs(off.mld_mm - on.mld_mm) <= 0.05


def test_very_short_segment_refused(folder):
    import stenosis

    path, truth = hostile.phantom_run(folder, "base")
    mid = np.asarray(truth["mld_rc"], dtype=float)
    with pytest.raises(stenosis.MeasurementError) as err:
        _measure(path, truth, proximal=tuple(mid - [0, 1]), distal=tuple(mid + [0, 1]))
    assert "\n" not in str(err.value)


def test_percent_is_calibration_free(folder):
    path, truth = hostile.phantom_run(folder, "base")
    a = _measure(path, truth, pixel_mm=0.1)
    b = _measure(path, truth, pixel_mm=0.3)
    assert abs(a.percent_stenosis - b.percent_stenosis) <= 0.5, (a.percent_stenosis, b.percent_stenosis)
    assert b.mld_mm == pytest.approx(3.0 * a.mld_mm, rel=0.03), (a.mld_mm, b.mld_mm)
