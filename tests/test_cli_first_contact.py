"""What a new user met first (a README walk-through, session 13), each fixed in session 14: a
closed pipe, a missing points file, empty *.dcm files, doubled or unexplained text."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

from click.testing import CliRunner

from stenosis.cli.main import cli

BA = ["--segment", "BA", "--proximal", "120,230", "--distal", "280,123"]


def _closed_early(args: list[str]) -> subprocess.CompletedProcess:
    """Run ``stenosis ARGS | head -c 1``: the reader of stdout goes away after one byte."""
    p = subprocess.Popen([sys.executable, "-m", "stenosis", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(1)
    p.stdout.close()
    err = p.stderr.read().decode()
    return subprocess.CompletedProcess(args, p.wait(timeout=120), "", err)


def test_a_closed_pipe_ends_quietly(sample_dicom_dir, tmp_path):
    """``stenosis info DIR | head`` printed a BrokenPipeError traceback (exit 1); rich exited 1."""
    folder = tmp_path / "many"
    folder.mkdir()
    for k in range(3):
        shutil.copy(sample_dicom_dir / "ba_subtracted_geometry.dcm", folder / f"run{k}.dcm")
    r = _closed_early(["info", str(folder)])
    assert r.returncode == 0 and "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_empty_and_text_dcm_files_are_named_by_info(sample_dicom_dir, tmp_path):
    shutil.copy(sample_dicom_dir / "ba_subtracted_geometry.dcm", tmp_path / "good.dcm")
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "notes.dcm").write_text("a note, not an image")
    (tmp_path / "readme.txt").write_text("not named like DICOM: not an error, a note that it was skipped")
    r = CliRunner().invoke(cli, ["info", str(tmp_path)])
    assert r.exit_code == 0, r.output                       # one run was read
    assert "empty.dcm: empty" in r.output and "notes.dcm: not a DICOM file" in r.output
    assert "1 run(s) read, 2 unreadable" in r.output
    assert [ln for ln in r.output.splitlines() if "readme.txt" in ln] == [
        "stenosis: note: skipped 1 file that is not DICOM (readme.txt)"]  # session 32: named, not an error
    (tmp_path / "good.dcm").unlink()
    r = CliRunner().invoke(cli, ["info", str(tmp_path)])
    assert r.exit_code == 3 and "0 run(s) read, 2 unreadable" in r.output


def test_the_summary_names_the_site_once_and_says_what_uncalibrated_means(sample_dicom_dir):
    truth = json.loads((sample_dicom_dir / "m1_native_uncalibrated.truth.json").read_text())
    pts = ["--proximal", "%g,%g" % tuple(truth["proximal_rc"]), "--distal", "%g,%g" % tuple(truth["distal_rc"])]
    r = CliRunner().invoke(cli, ["measure", str(sample_dicom_dir / "m1_native_uncalibrated.dcm"), "--segment", "M1", *pts])
    assert r.exit_code == 0, r.output
    ref = next(line for line in r.output.splitlines() if line.startswith("reference"))
    assert "proximal (proximal" not in ref and "proximal M1 (1st choice)" in ref, ref
    cal = next(line for line in r.output.splitlines() if line.startswith("calibration"))
    assert "none (none)" not in cal and "--pixel-mm" in cal, cal


def test_a_point_given_col_first_is_hinted(tmp_path):
    """Points are ROW,COL: on a 16 x 20 frame (18, 5) is outside and (5, 18) inside."""
    from test_io import ramp, write_xa

    p = write_xa(tmp_path / "run.dcm", ramp(t=3), bits_stored=10)
    r = CliRunner().invoke(cli, ["measure", str(p), "--segment", "M1", "--proximal", "2,2", "--distal", "18,5"])
    assert r.exit_code == 3 and "row first: did you mean 5,18?" in r.output, r.output
    r = CliRunner().invoke(cli, ["measure", str(p), "--segment", "M1", "--proximal", "2,2", "--distal", "30,30"])
    assert r.exit_code == 3 and "(row first)" in r.output and "did you mean" not in r.output, r.output


def test_measure_out_says_when_it_replaces_a_result(sample_dicom_dir, tmp_path):
    args = ["measure", str(sample_dicom_dir / "ba_subtracted_geometry.dcm"), *BA, "--out", str(tmp_path / "r")]
    first = CliRunner().invoke(cli, args)
    second = CliRunner().invoke(cli, args)
    assert first.exit_code == second.exit_code == 0
    assert "replacing" not in first.output and "(replacing the earlier result.json, report.png)" in second.output


def test_an_unwritable_out_folder_is_refused_before_measuring(sample_dicom_dir, tmp_path):
    """``--out`` under a file: exit 3 with one line before the measurement (it used to measure, then
    fail as an internal error, the result lost)."""
    (tmp_path / "afile").write_text("")
    run = str(sample_dicom_dir / "ba_subtracted_geometry.dcm")
    for args in (["measure", run, *BA, "--out", str(tmp_path / "afile" / "sub")],
                 ["measure", run, run, "--segment", "BA", "--proximal", "120,230", "--distal", "280,123",
                  "--proximal", "120,230", "--distal", "280,123", "--out", str(tmp_path / "afile" / "sub")]):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 3, r.output
        assert "cannot create output folder" in r.output and "choose a writable folder" in r.output
        assert "percent stenosis" not in r.output and "internal error" not in r.output
    # a usage error leaves no folder behind: the folder is made after the arguments are checked
    r = CliRunner().invoke(cli, ["measure", run, "--segment", "BA", "--proximal", "1,1", "--proximal", "2,2",
                                 "--distal", "3,3", "--out", str(tmp_path / "never")])
    assert r.exit_code == 2 and not (tmp_path / "never").exists()


def test_a_path_given_to_json_is_named_as_a_missing_path(sample_dicom_dir, tmp_path):
    """``--json`` takes no value: ``--json r.json`` makes r.json a second PATH. Said as a missing
    path (exit 3) with the hint, not as a mismatch of PATHs and points (exit 2)."""
    run = str(sample_dicom_dir / "ba_subtracted_geometry.dcm")
    r = CliRunner().invoke(cli, ["measure", run, *BA, "--json", str(tmp_path / "nodir" / "r.json")])
    assert r.exit_code == 3, r.output
    assert "view 2 (r.json): " in r.output and "r.json: no such file or folder" in r.output
    assert "--json takes no value" in r.output
    r = CliRunner().invoke(cli, ["measure", str(tmp_path / "missing.dcm"), *BA])  # no --json: no hint
    assert r.exit_code == 3 and "no such file or folder" in r.output and "--json" not in r.output


def test_segment_names_are_upper_case_in_help_and_errors_any_case_in():
    """As in the README, the batch and docs/contracts.md (click's case-insensitive Choice printed them
    in lower case); a typo is a usage error (exit 2) naming the four."""
    for cmd in ("measure", "batch"):
        assert "--segment [ICA|M1|V4|BA]" in CliRunner().invoke(cli, [cmd, "--help"]).output
    r = CliRunner().invoke(cli, ["measure", "x.dcm", "--segment", "MI", "--proximal", "1,1", "--distal", "2,2"])
    assert r.exit_code == 2 and "'MI' is not one of ICA, M1, V4, BA" in r.output
    from stenosis.cli._common import SEGMENT

    assert SEGMENT.convert(" ba ", None, None) == "BA"


def test_the_readers_bad_inputs_are_also_value_errors(sample_dicom_dir):
    """An API caller's bad argument (unknown segment, a point that is not (row, col)) is a
    ValueError, as in Python, and still a MeasurementError (the CLI's exit 3, a batch error row)."""
    import pytest

    import stenosis

    run = stenosis.read_run(sample_dicom_dir / "ica_native_geometry.dcm")
    for kw in ({"segment": "M2", "proximal": (1, 2), "distal": (3, 4)},
               {"segment": "ICA", "proximal": (1,), "distal": (3, 4)}):
        with pytest.raises(ValueError) as err:
            stenosis.measure(run, **kw)
        assert isinstance(err.value, stenosis.MeasurementError) and type(err.value) is stenosis.ReaderInputError
