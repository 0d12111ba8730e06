"""A result says each thing once."""
from __future__ import annotations

import json

import stenosis
from stenosis.calibration import UNCALIBRATED_MARK


def test_an_uncalibrated_file_says_mm_are_not_reported_once(sample_dicom_dir):
    src = sample_dicom_dir / "m1_native_uncalibrated.dcm"
    t = json.loads(src.with_suffix(".truth.json").read_text())
    r = stenosis.measure(src, "M1", tuple(t["proximal_rc"]), tuple(t["distal_rc"]))
    assert sum(UNCALIBRATED_MARK in w for w in r.warnings) == 1
    assert r.mld_mm is None


def test_an_array_run_without_calibration_still_says_it(sample_dicom_dir):
    # no file, so no "no calibration in the file": the measurement's own warning stays
    from stenosis.io import AngioRun

    src = sample_dicom_dir / "m1_native_uncalibrated.dcm"
    t = json.loads(src.with_suffix(".truth.json").read_text())
    run = stenosis.read_run(src)
    bare = AngioRun.from_array(run.frames, pixel_intensity_relationship=run.metadata.pixel_intensity_relationship)
    r = stenosis.measure(bare, "M1", tuple(t["proximal_rc"]), tuple(t["distal_rc"]))
    assert sum(UNCALIBRATED_MARK in w for w in r.warnings) == 1
