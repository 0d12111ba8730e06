"""The mask registration and the edge of the exposed field (session 34, a probe of real-like DSA
runs): a collimator's edge is fixed to the detector while the patient moves. Registered over the
whole frame with that edge in it, the mask stayed put (estimated shift 0 for a true 2.5, -3 px) and
the anatomy left in the subtracted frame read a 60% lesion as 64-69% and a normal artery as 8-16%.
The field outside the exposure is left out of the registration (and its edge apodised); and the
analysed frame's mask is registered again around the segment, as its companion frames are: a head
turning by half a degree moves one side of the frame more than the other."""
from __future__ import annotations

import json

import numpy as np
import pytest

import stenosis
from stenosis.opacification import _MaskRegistration, unexposed
from stenosis.phantom import PhantomSpec, make_phantom
from _phantoms import with_pixels


def _anatomy(rng, shape):
    from scipy import ndimage as ndi

    a = ndi.gaussian_filter(rng.normal(0, 1, shape), 3.0)
    return 2000.0 + 400.0 * a / a.std()


def test_the_registration_ignores_the_fixed_edge_of_the_field():
    rng = np.random.default_rng(3)
    h = w = 200
    base = _anatomy(rng, (h + 20, w + 20))
    mask = base[10:10 + h, 10:10 + w]
    live = np.empty_like(mask)
    from scipy.ndimage import shift as nd_shift

    live[:] = nd_shift(base, (2.5, -3.0), order=3)[10:10 + h, 10:10 + w]
    rr, cc = np.mgrid[:h, :w]
    outside = np.hypot(rr - h / 2, cc - w / 2) > 0.45 * h  # the round field, fixed to the detector
    frames = np.stack([mask, live]).astype(np.float32)
    frames[:, outside] = 0.0
    blank = unexposed(frames.astype(np.uint16))
    assert blank is not None and np.array_equal(blank, outside)
    fixed = _MaskRegistration(frames[0], 16.0, exclude=blank).shift_to(frames[1])
    assert fixed == pytest.approx((2.5, -3.0), abs=0.05)
    # with the edge in, it held the estimate near no shift (the defect)
    held = _MaskRegistration(frames[0], 16.0).shift_to(frames[1])
    assert np.hypot(held[0] - 2.5, held[1] + 3.0) > 1.0


def _moved_behind_a_field(tmp_path, *, seed: int, percent: float, value: str = "black"):
    """Our phantom moved by (2.5, -3) px between mask and contrast frames, and the same run with
    the field outside a round one held at the run's 0 ("black") or top value in every frame:
    (plain path, field path, truth, outside mask)."""
    dcm, _ = make_phantom(PhantomSpec(segment="M1", stenosis_percent=percent, seed=seed, motion_px=(2.5, -3.0)),
                          tmp_path / "run.dcm")
    truth = json.loads(dcm.with_suffix(".truth.json").read_text())
    outside = {}

    def field(a, ds):
        h, w = a.shape[-2:]
        rr, cc = np.mgrid[:h, :w]
        out = outside["mask"] = np.hypot(rr - h / 2, cc - w / 2) > 0.5 * min(h, w)
        a[:, out] = 0 if value == "black" else (1 << int(ds.BitsStored)) - 1
        return a

    with_pixels(dcm, tmp_path / "field.dcm", field)
    out = outside["mask"]
    return dcm, tmp_path / "field.dcm", truth, out


@pytest.mark.parametrize("seed,percent", [(5, 0.0), (6, 0.0), (6, 60.0)])
def test_a_moving_patient_behind_a_fixed_field_edge_reads_as_without_it(tmp_path, seed, percent):
    """Our phantom moved by (2.5, -3) px between mask and contrast frames, black outside a round
    field in every frame: the analysed frame reads as without the field (before: 3.97 for 2.31,
    3.32 for 2.67 and 65.31 for 61.23; after: within 0.05)."""
    dcm, fdcm, truth, _ = _moved_behind_a_field(tmp_path, seed=seed, percent=percent)
    pts = tuple(truth["proximal_rc"]), tuple(truth["distal_rc"])
    plain = stenosis.measure(dcm, "M1", *pts, frames="single")
    field = stenosis.measure(fdcm, "M1", *pts, frames="single")
    assert plain.frame_index == field.frame_index
    assert field.percent_stenosis == pytest.approx(plain.percent_stenosis, abs=0.5)
    assert field.percent_stenosis_sd == pytest.approx(plain.percent_stenosis_sd, rel=0.2)


@pytest.mark.parametrize("percent", [0.0, 60.0])
def test_a_turned_head_reads_alike_on_the_analysed_frame_and_over_all_frames(tmp_path, percent):
    """The contrast frames turned by 1 degree about the frame's centre against the masks (our
    phantom, its anatomy twice as strong): no one translation registers the whole frame. The
    analysed frame's mask is registered again around the segment (``frames.registered_on_segment``),
    as its companion frames are, and reads as they do (before: 3.83 single against 2.15 over all
    frames, 62.18 against 60.37; after: 2.11 / 1.72, 60.16 / 59.94)."""
    from scipy import ndimage as ndi

    dcm, _ = make_phantom(PhantomSpec(segment="M1", stenosis_percent=percent, seed=6, background_strength=2.0),
                          tmp_path / "run.dcm")
    truth = json.loads(dcm.with_suffix(".truth.json").read_text())
    shape = []

    def turned(a, ds):
        shape.extend(a.shape[-2:])
        a = a.astype(np.float64)
        for k in range(2, a.shape[0]):  # the contrast frames (the first two are the masks)
            a[k] = ndi.rotate(a[k], 1.0, reshape=False, order=3, mode="nearest")
        return np.clip(np.round(a), 0, 4095)

    with_pixels(dcm, tmp_path / "turned.dcm", turned)
    h, w = shape
    c, th = np.array([(h - 1) / 2, (w - 1) / 2]), np.radians(1.0)
    turn = np.array([[np.cos(th), np.sin(th)], [-np.sin(th), np.cos(th)]])
    pts = [tuple(c + turn @ (np.array(truth[k]) - c)) for k in ("proximal_rc", "distal_rc")]
    single = stenosis.measure(tmp_path / "turned.dcm", "M1", *pts, frames="single")
    every = stenosis.measure(tmp_path / "turned.dcm", "M1", *pts, frames="all")
    assert single.percent_stenosis == pytest.approx(every.percent_stenosis, abs=0.75)
    assert single.percent_stenosis == pytest.approx(percent, abs=2.5)


def test_a_real_like_dsa_run_with_motion_reads_its_lesion(wg04_dir, tmp_path):
    """``benchmarks/dsa_motion.py``'s motion run (the real cerebral frame XA1 as every frame's
    anatomy, a 60% artery inserted, the patient moving up to 3 px and turning by up to 0.7 degree
    behind XA1's round field, fixed to the detector): the analysed frame read 65.2% before session
    34 (the whole-frame registration held at no shift by the field's edge); now within 1.5 points,
    and so are all frames; and no false "no frame holds the whole segment" (session 35)."""
    import importlib.util
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "dsa_motion.py"
    spec = importlib.util.spec_from_file_location("_dsa_motion", bench)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.XA1 = wg04_dir / "XA1_UNC"
    path, truth = mod.build("motion", mod.CONFIGS["motion"], tmp_path, mod.design())
    v = truth["vessels"][0]
    assert v["nominal"] == 60.0
    for mode in ("single", "all"):
        res = stenosis.measure(path, "M1", tuple(v["proximal"]), tuple(v["distal"]), frames=mode)
        assert res.percent_stenosis == pytest.approx(v["percent"], abs=1.5), mode
        # frames 5-9 hold the whole segment: until session 35 the tool said none did (the frames
        # were judged unregistered, along a trace made on one frame: 72% for frame 5)
        assert not any("holds the whole segment" in w for w in res.warnings), mode


@pytest.mark.parametrize("value", ["black", "white"])
def test_no_ring_along_the_field_edge_once_the_mask_moves(tmp_path, value):
    """Registered behind a fixed field, the mask moves by the patient's shift and carried the
    field's stored value into the field, and the anatomy into the slivers the opening leaves
    where a round field meets the frame's edge: a ring along the edge (black: down to -3273, white:
    up to +1136, against a vessel's +181; the review of session 34). The mask's whole region at
    the field's value takes its nearest exposed pixel's value and the subtracted frames are 0 there."""
    from scipy import ndimage as ndi

    from stenosis.opacification import opacify

    _, fdcm, _, out = _moved_behind_a_field(tmp_path, seed=5, percent=60.0, value=value)
    image = opacify(stenosis.read_run(fdcm), frames=[5], register=True)[0]
    ring = ~out & (ndi.distance_transform_edt(~out) <= 4)
    vessel = np.percentile(image[~out], 99.9)
    assert np.all(image[out] == 0.0)
    lo, hi = np.percentile(image[ring], [1, 99])
    assert hi < vessel and lo > -0.25 * vessel


def test_a_lossy_jpeg_field_is_found_as_the_uncompressed_one(wg04_dir):
    """XA1 in four encodings: the lossy JPEG decodes the blanked corners to 1 where the frame's
    lowest value is 0 (ringing along the field's edge), and its field was not found before session
    35; now the border's commonest value, near the lowest, is the blanking's. JPEG-LS near-lossless
    keeps part of it (its blanking is not flat)."""
    from stenosis.io import read_run

    ref = unexposed(read_run(wg04_dir / "XA1_UNC").frames)
    lossy = unexposed(read_run(wg04_dir / "XA1_JPLY").frames)
    assert ref is not None and lossy is not None
    iou = (ref & lossy).sum() / (ref | lossy).sum()
    assert iou > 0.93 and abs(lossy.mean() - ref.mean()) < 0.01  # 13.2% against 13.8%
    near = unexposed(read_run(wg04_dir / "XA1_JLSN").frames)
    assert near is not None and (near & ~ref).sum() < 0.01 * near.sum() and near.mean() > 0.06  # was 3.4%
