"""`stenosis info` through click's CliRunner on tiny files in a temp dir."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from stenosis.cli.main import cli
from test_io import ramp, write_xa


@pytest.fixture()
def runner():
    return CliRunner()


def test_info_file_shows_table(tmp_path, runner):
    p = write_xa(tmp_path / "run.dcm", ramp(t=3), bits_stored=10, FrameTime=33.3,
                 ImagerPixelSpacing=[0.3, 0.3], EstimatedRadiographicMagnificationFactor=1.5)
    res = runner.invoke(cli, ["info", str(p)])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "frames" in out and " 3" in out
    assert "16 x 20" in out
    assert "Explicit VR Little Endian" in out
    assert "0.2000 mm/px" in out and "magnification" in out
    assert "native" in out and "33.3 ms" in out
    assert "Secret" not in out and "ID-12345" not in out


def test_info_folder_lists_runs_and_reports_bad_file(tmp_path, runner):
    write_xa(tmp_path / "a.dcm", ramp(t=2), PixelSpacing=[0.25, 0.25])
    write_xa(tmp_path / "b.dcm", ramp(t=4), ImageType=["DERIVED", "PRIMARY", "SUBTRACTED"])
    bad = write_xa(tmp_path / "c.dcm", ramp(t=2))
    bad.write_bytes(bad.read_bytes()[:-50])
    res = runner.invoke(cli, ["info", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "2 run(s) read, 1 unreadable" in res.stdout
    assert "subtracted" in res.stdout and "pixel_spacing" in res.stdout
    err_lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(err_lines) == 1 and "c.dcm" in err_lines[0] and "truncated" in err_lines[0]


def test_info_folder_all_bad_exits_3(tmp_path, runner):
    p = write_xa(tmp_path / "ct.dcm", ramp(t=1), modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2")
    res = runner.invoke(cli, ["info", str(tmp_path)])
    assert res.exit_code == 3
    assert "modality CT" in res.stderr and "Traceback" not in res.output


@pytest.mark.parametrize("content", [b"", b"hello world" * 50])
def test_info_unreadable_file_exits_3_with_one_line(tmp_path, runner, content):
    p = tmp_path / "x.dcm"
    p.write_bytes(content)
    res = runner.invoke(cli, ["info", str(p)])
    assert res.exit_code == 3
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("stenosis: error:")
    assert "Traceback" not in res.output


def test_info_missing_path_exits_3(tmp_path, runner):
    res = runner.invoke(cli, ["info", str(tmp_path / "nope")])
    assert res.exit_code == 3 and "no such file" in res.stderr


def test_info_empty_folder_exits_3(tmp_path, runner):
    res = runner.invoke(cli, ["info", str(tmp_path)])
    assert res.exit_code == 3 and "no DICOM" in res.stderr


def test_info_wg04(wg04_dir, runner):
    res = runner.invoke(cli, ["info", str(wg04_dir / "XA1_JPLY")])
    assert res.exit_code == 0, res.output
    assert "1024 x 1024" in res.stdout and "not calibrated" in res.stdout
    # the lossy JPEG decodes the blanked corners to 1 where the frame's lowest value is 0 (ringing
    # at the field's edge): found since session 35 as the border's commonest value (not before)
    assert "exposed field" in res.stdout and "13% of the frame outside it" in res.stdout
    # uncompressed, its round field's black corners, 14% of the frame, are outside the exposed field
    res = runner.invoke(cli, ["info", str(wg04_dir / "XA1_UNC")])
    assert res.exit_code == 0 and "exposed field" in res.stdout and "14% of the frame outside it" in res.stdout


def test_info_says_nothing_of_a_field_a_run_does_not_have(sample_dicom_dir, runner):
    res = runner.invoke(cli, ["info", str(sample_dicom_dir / "ba_subtracted_geometry.dcm")])
    assert res.exit_code == 0, res.output
    assert "exposed field" not in res.stdout


@pytest.mark.parametrize("spacing", [["1000", "1000"], ["1e-30", "1e-30"], ["1e30", "1e30"]])
def test_info_implausible_pixel_spacing_is_shown_ignored(tmp_path, runner, spacing):
    """#19 item 1: a file's pixel size outside the plausible range is reported ignored, never used."""
    p = write_xa(tmp_path / "run.dcm", ramp(t=2), PixelSpacing=spacing)
    res = runner.invoke(cli, ["info", str(p)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.stdout.split())
    assert "not calibrated" in out and "ignored, uncalibrated" in out and "0.02-2" in out
    assert "1000.0000 mm/px" not in out


def test_info_sod_beyond_sid_says_it_once(tmp_path, runner):
    """#19 item 5: SOD > SID is one warning, not three."""
    p = write_xa(tmp_path / "run.dcm", ramp(t=2), ImagerPixelSpacing=[0.3, 0.3], DistanceSourceToPatient=1200,
                 DistanceSourceToDetector=1000)
    res = runner.invoke(cli, ["info", str(p)])
    out = " ".join(res.stdout.split())
    assert res.exit_code == 0 and out.count("uncalibrated") == 1, out
    assert "larger than DistanceSourceToDetector" in out and "without SID/SOD" not in out
