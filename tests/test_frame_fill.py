"""Which frames hold the whole segment (session 35, the probe runs of ``benchmarks/dsa_motion.py``):
a patient moving by 2-3 px made the tool say "no frame of the run holds the whole segment" on runs
whose frames 5-9 were all full (8 of 36 measurements). The frames are now judged on the segment's
region with the mask registered there, the path followed by the anatomy's motion, each frame's
opacity averaged over a few lumen radii, and only a stretch from an end of the segment (a bolus
front) counts as unfilled."""
from __future__ import annotations

import numpy as np
import pytest

import stenosis
from stenosis.frames import _front, held_share
from stenosis.opacification import opacify_tracked
from stenosis.params import DEFAULT_PARAMS
from stenosis.phantom import PhantomSpec, make_phantom


def _opacity(profiles):
    """(T, N) opacity from per-frame factors along 100 samples."""
    return np.array([np.asarray(p, float) for p in profiles])


def test_a_front_is_counted_from_an_end_up_to_a_filled_window():
    below = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0], bool)
    assert _front(below, 1) == 3            # any sample that reaches the fraction ends it
    assert _front(below, 3) == 5            # a noise sample inside the front does not
    assert _front(below, 5) == 5
    assert _front(np.ones(6, bool), 3) == 6
    assert _front(np.zeros(6, bool), 3) == 0


def test_a_later_vein_does_not_make_the_first_full_frame_unfilled():
    ones = np.ones(100)
    vein = ones.copy()
    vein[40:60] = 1.8                                    # a vein crossing the middle, frames 3-4
    filling = np.where(np.arange(100) < 70, 1.0, 0.3)    # the bolus front at 70% of the segment
    op = _opacity([0 * ones, filling, ones, vein, vein])
    held = held_share(op, fraction=0.9, window=5)
    assert held[2] == 1.0 and held[3] == 1.0             # the first full frame holds it, as the vein's
    assert held[1] == pytest.approx(0.7)                 # the front from the distal end
    # the old judgement (every sample below 90% of its peak counted) found no full frame but the vein's
    old = (op / op.max(axis=0) >= 0.9).mean(axis=1)
    assert old[2] == pytest.approx(0.8) and np.flatnonzero(old >= 0.95)[0] == 3


def test_a_washout_from_the_proximal_end_is_unfilled():
    ones = np.ones(100)
    leaving = np.where(np.arange(100) < 20, 0.5, 1.0)
    held = held_share(_opacity([ones * 0, leaving, ones]), fraction=0.9, window=5)
    assert held[1] == pytest.approx(0.8) and held[2] == 1.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    folder = tmp_path_factory.mktemp("fill")
    for name, kw in {"flat": dict(seed=3, background=False, photons=3000, poisson=True),
                     "moved": dict(seed=5, motion_px=(3.0, -2.0))}.items():
        dcm, _ = make_phantom(PhantomSpec(name=name, **kw), folder / f"{name}.dcm")
        out[name] = stenosis.read_run(dcm)
    return out


def test_the_anatomy_motion_is_followed_only_where_it_explains_the_difference(runs):
    """The mask's shift onto each frame is the anatomy's motion where it removes most of the
    difference (a phantom's anatomy moved by (3, -2) px: 79-84% removed); on frames with no anatomy
    the registration's shift is noise (up to the search's 16 px) and removes 4-15% (an interpolated
    mask is smoother), under ``motion_explained``."""
    _, moved = opacify_tracked(runs["moved"])
    contrast = moved[2:]
    assert np.all(contrast[:, 2] > 0.7)
    assert np.allclose(contrast[:, :2], [3.0, -2.0], atol=0.15)
    _, flat = opacify_tracked(runs["flat"])
    assert np.all(flat[2:, 2] < 0.25) and np.all(flat[2:, 2] < DEFAULT_PARAMS.motion_explained)
    assert np.all(flat[:2] == 0.0)                      # the mask frames: not registered
