"""`stenosis measure --catheter-french F --catheter-points R1,C1,R2,C2` (issue 17): the catheter
gives the pixel size, the result says its calibration came from the catheter."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from stenosis.cli.main import cli as main

ARGS = ["measure", "m1_native_uncalibrated.dcm", "--segment", "M1", "--proximal", "114,220", "--distal", "267,204",
        "--frames", "single", "--json"]


def _run(sample_dicom_dir, *extra):
    args = list(ARGS)
    args[1] = str(sample_dicom_dir / args[1])
    return CliRunner().invoke(main, args + list(extra))


def test_catheter_calibration_gives_mm(sample_dicom_dir):
    r = _run(sample_dicom_dir, "--catheter-french", "6", "--catheter-points", "100,10,100,23")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["calibration"]["source"] == "catheter"
    assert d["calibration"]["mm_per_px"][0] == pytest.approx(2.0 / 13.0, rel=1e-3)  # 6 F = 2 mm over 13 px
    assert d["mld_mm"] is not None and d["reference_diameter_mm"] == pytest.approx(2.4, abs=0.3)


@pytest.mark.parametrize("extra, message", [
    (["--catheter-french", "6"], "needs both"),
    (["--catheter-points", "1,2,3,4"], "needs both"),
    (["--catheter-french", "6", "--catheter-points", "1,2,3"], "four numbers"),
    (["--catheter-french", "6", "--catheter-points", "100,10,100,23", "--pixel-mm", "0.2"], "not both"),
])
def test_catheter_usage_errors(sample_dicom_dir, extra, message):
    r = _run(sample_dicom_dir, *extra)
    assert r.exit_code == 2 and message in r.output


def test_catheter_point_outside_the_image_is_bad_input_exit_3(sample_dicom_dir):
    # as a --proximal point outside the image: bad input for this run (3), not a usage error (2)
    r = _run(sample_dicom_dir, "--catheter-french", "6", "--catheter-points", "100,10,900,23")
    assert r.exit_code == 3 and "outside the 384x384 image" in r.output


def test_help_lists_the_catheter_options():
    out = CliRunner().invoke(main, ["measure", "--help"]).output
    assert "--catheter-french" in out and "--catheter-points" in out
