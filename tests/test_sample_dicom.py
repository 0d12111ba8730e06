"""The bundled sample runs: what they cover, that they read, and that they regenerate bit-for-bit."""
from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from stenosis.phantom import load_truth
from stenosis.phantom.samples import SAMPLES, write_samples


@pytest.fixture(scope="module")
def runs(sample_dicom_dir):
    files = sorted(sample_dicom_dir.glob("*.dcm"))
    assert files, f"no sample runs in {sample_dicom_dir}; run: python -m stenosis.phantom.samples sample_dicom/"
    return files


def test_samples_cover_the_cases(runs):
    truths = [load_truth(p) for p in runs]
    assert {t["segment"] for t in truths} == {"ICA", "M1", "V4", "BA"}
    assert any(t["meets_50"] for t in truths) and not all(t["meets_50"] for t in truths)
    specs = [t["spec"] for t in truths]
    assert {s["subtracted"] for s in specs} == {True, False}
    assert {s["calibration"] for s in specs} >= {"pixel_spacing", "geometry", "magnification", "none"}
    assert {s["compression"] for s in specs} == {"rle", "none"}
    assert sum(p.stat().st_size for p in runs[0].parent.iterdir()) <= 10 * 1024 * 1024


def test_samples_read_with_pydicom(runs):
    for p in runs:
        ds = pydicom.dcmread(p)
        t = load_truth(p)
        frames = ds.pixel_array
        assert frames.shape == (t["spec"]["n_frames"], *t["spec"]["shape"])
        # the vessel is darker at the reference point than the mask frame there
        r, c = np.rint(t["reference_rc"]).astype(int)
        assert float(frames[t["frame_index"], r, c]) < float(frames[0, r, c]) - 20


def test_samples_regenerate_bit_for_bit(runs, tmp_path):
    written = write_samples(tmp_path)
    assert len(written) == 2 * len(SAMPLES) + 1
    for new in written:
        old = runs[0].parent / new.name
        assert old.exists(), f"{old.name} missing; regenerate: python -m stenosis.phantom.samples sample_dicom/"
        assert hashlib.sha256(new.read_bytes()).hexdigest() == hashlib.sha256(old.read_bytes()).hexdigest(), new.name


@pytest.mark.skipif(importlib.util.find_spec("stenosis.io") is None, reason="stenosis.io not written yet")
def test_samples_read_with_read_run(runs):
    import stenosis

    for p in runs:
        t = load_truth(p)
        run = stenosis.read_run(p)
        assert run.frames.shape[0] == t["spec"]["n_frames"]
        if t["spec"]["calibration"] == "none":
            assert run.calibration.mm_per_px is None
        else:
            np.testing.assert_allclose(run.calibration.mm_per_px, t["mm_per_px"], rtol=1e-3)
            assert str(run.calibration.source) == t["spec"]["calibration"]
        assert run.metadata.subtracted == t["spec"]["subtracted"]


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (apt: dicom3tools) not installed")
def test_samples_pass_the_dicom_iod_validator(runs):
    for p in runs:
        out = subprocess.run(["dciodvfy", str(p)], capture_output=True, text=True, timeout=60)
        problems = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith(("Error", "Warning"))]
        assert not problems, (p.name, problems)
