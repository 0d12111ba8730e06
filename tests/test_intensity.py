"""The pixel intensity relationship of an untagged native run is read from its noise."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

import stenosis
from stenosis.io.intensity import infer_intensity_relationship
from stenosis.phantom import PhantomSpec, load_truth, make_phantom

SPEC = dict(seed=21, segment="M1", normal_diameter_mm=2.8, stenosis_percent=55, stenosis_length_mm=5,
            shape=(256, 256), mm_per_px=(0.15, 0.15), n_frames=6, photons=20000.0)


def _untagged(tmp_path, **kw):
    dcm, _ = make_phantom(PhantomSpec(**SPEC, **kw), tmp_path / "run.dcm")
    ds = pydicom.dcmread(dcm)
    del ds.PixelIntensityRelationship
    out = tmp_path / "untagged.dcm"
    ds.save_as(out)
    return dcm, out


@pytest.mark.parametrize("relationship,photometric", [("LIN", "MONOCHROME2"), ("LOG", "MONOCHROME2"),
                                                      ("LIN", "MONOCHROME1")])
def test_untagged_run_is_read_as_its_noise_says(tmp_path, relationship, photometric):
    tagged, untagged = _untagged(tmp_path, intensity_relationship=relationship, photometric=photometric)
    run = stenosis.read_run(untagged)
    assert run.metadata.pixel_intensity_relationship == relationship
    assert run.metadata.intensity_relationship_inferred
    assert not stenosis.read_run(tagged).metadata.intensity_relationship_inferred
    assert any(f"PixelIntensityRelationship missing: read as {relationship}" in w for w in run.warnings)
    rel, slope = infer_intensity_relationship(run.frames, run.metadata.mask_frames)
    # quantum noise: variance ~ I for LIN values (slope +1), ~ 1/I for log values (steeply negative)
    assert (0.8 < slope < 1.3) if relationship == "LIN" else (slope < -2.0)
    # measured exactly as the tagged run
    t = load_truth(tagged)
    a = stenosis.measure(stenosis.read_run(tagged), "M1", tuple(t["proximal_rc"]), tuple(t["distal_rc"]))
    b = stenosis.measure(run, "M1", tuple(t["proximal_rc"]), tuple(t["distal_rc"]))
    assert b.percent_stenosis == a.percent_stenosis
    assert abs(b.percent_stenosis - t["percent_stenosis"]) < 3.0


def test_constant_noise_or_one_frame_cannot_tell():
    rng = np.random.default_rng(0)
    ramp = np.linspace(500.0, 3000.0, 256)[None, :] * np.ones((256, 1))
    frames = np.stack([ramp + rng.normal(0.0, 5.0, ramp.shape) for _ in range(3)]).astype(np.uint16)
    rel, slope = infer_intensity_relationship(frames)
    assert rel is None and abs(slope) < 0.5  # electronic-like noise: the same at every level
    assert infer_intensity_relationship(frames[:1]) == (None, pytest.approx(float("nan"), nan_ok=True))
    flat = np.full((2, 64, 64), 1000, np.uint16)
    assert infer_intensity_relationship(flat)[0] is None


def test_anatomy_moved_between_the_frames_decides_nothing():
    # log-domain anatomy whose texture grows with brightness, shifted 3 px between the frames:
    # the difference holds anatomy, not noise; its steep positive slope must not read as LIN
    rng = np.random.default_rng(1)
    from scipy import ndimage as ndi

    bright = np.linspace(0.0, 1.0, 300)[None, :] * np.ones((300, 1))
    tex = ndi.gaussian_filter(rng.normal(0.0, 1.0, (300, 310)), 2.0)
    a = 3000.0 + 300.0 * bright + 60.0 * bright * tex[:, :300]
    b = 3000.0 + 300.0 * bright + 60.0 * bright * tex[:, 3:303]
    frames = np.stack([a + rng.normal(0, 2, a.shape), b + rng.normal(0, 2, a.shape)]).astype(np.uint16)
    rel, slope = infer_intensity_relationship(frames)
    assert rel is None and slope > 2.0


def test_info_says_the_relationship_was_read_from_the_noise(tmp_path):
    from click.testing import CliRunner

    from stenosis.cli.main import cli

    tagged, untagged = _untagged(tmp_path, intensity_relationship="LIN")
    out = CliRunner().invoke(cli, ["info", str(untagged)]).output
    assert "LIN (no PixelIntensityRelationship tag: read from the frames' noise)" in " ".join(out.split())
    out = CliRunner().invoke(cli, ["info", str(tagged)]).output
    assert "LIN" in out and "read from the frames' noise" not in " ".join(out.split())
