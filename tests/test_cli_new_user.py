"""A new user's second walk-through (session 15): what still went wrong at the command line.

Each test names the defect it guards. Fast: subprocesses only where the defect is in the
process's own exit (a closed pipe), CliRunner elsewhere.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from stenosis.cli.main import cli

REPO = Path(__file__).resolve().parents[1]
M1 = ["--segment", "M1", "--proximal", "181,138", "--distal", "193,308"]


def _closed_before_writing(args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run ``stenosis ARGS`` with a stdout whose reader is already gone (``| head -1`` that has
    read its line): every write the command makes meets EPIPE."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run([sys.executable, "-m", "stenosis", *args], stdout=w, stderr=subprocess.PIPE, text=True,
                              cwd=cwd, timeout=180)
    finally:
        os.close(w)


@pytest.mark.parametrize("args", [
    ["demo", "--list"],
    ["--help"],
    ["batch", "--help"],
    ["info", "sample_dicom"],
    ["measure", "sample_dicom/m1_subtracted_pixelspacing.dcm", *M1, "--json"],
    ["measure", "sample_dicom/m1_subtracted_pixelspacing.dcm", *M1],
], ids=["demo-list", "help", "batch-help", "info", "measure-json", "measure-summary"])
def test_a_closed_stdout_ends_quietly_with_0(args):
    """1. ``stenosis measure ... --json | head -1``: click turned the BrokenPipeError into exit 1
    (silently; ``info`` printed a traceback before session 14). docs/contracts.md: status 0."""
    p = _closed_before_writing(args)
    assert p.returncode == 0 and p.stderr == "", (p.returncode, p.stderr)


def test_a_closed_stdout_keeps_an_errors_status():
    p = _closed_before_writing(["measure", "no-such.dcm", *M1])
    assert p.returncode == 3 and p.stderr.count("\n") == 1 and "no such file" in p.stderr, p.stderr


def test_a_broken_pipe_that_is_not_stdout_is_reported():
    """A BrokenPipeError of something else (a worker's pipe) while stdout is fine is a failure to
    report in one line, not a quiet end (it was exit 1 without a word)."""
    code = (
        "import sys, click\n"
        "import stenosis.cli.main as m\n"
        "from stenosis.cli._common import debug_option, error_boundary\n"
        "@click.command('boom')\n@debug_option\n@error_boundary\n"
        "def boom(debug=False):\n    raise BrokenPipeError(32, 'a worker pipe')\n"
        "get = m.LazyGroup.get_command\n"
        "m.LazyGroup.get_command = lambda self, ctx, name: boom if name == 'boom' else get(self, ctx, name)\n"
        "sys.argv = ['stenosis', 'boom']\nm.main()\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "internal error (BrokenPipeError" in p.stderr and "Traceback" not in p.stderr, p.stderr


# ------------------------------------------------------------------ 2. bad input to batch: exit 3
def _points(tmp_path: Path) -> Path:
    p = tmp_path / "points.csv"
    p.write_text("path,segment,proximal_row,proximal_col,distal_row,distal_col\n"
                 "m1_subtracted_pixelspacing.dcm,M1,181,138,193,308\n")
    return p


def test_a_points_file_that_is_a_folder_is_bad_input(sample_dicom_dir, tmp_path):
    """It exited 2 (click's 'is a directory' usage error) while a missing points file exits 3."""
    (tmp_path / "points.csv").mkdir()
    for flag in (["--points"], ["--auto", "--segments"]):
        r = CliRunner().invoke(cli, ["batch", str(sample_dicom_dir), *flag, str(tmp_path / "points.csv"),
                                     "--out", str(tmp_path / "o")])
        assert r.exit_code == 3 and f"{flag[-1]}: cannot read" in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1


def test_a_batch_dir_that_is_a_file_is_bad_input(sample_dicom_dir, tmp_path):
    run = sample_dicom_dir / "m1_subtracted_pixelspacing.dcm"
    r = CliRunner().invoke(cli, ["batch", str(run), "--points", str(_points(tmp_path)), "--out", str(tmp_path / "o")])
    assert r.exit_code == 3 and "is a file" in r.output and "stenosis measure" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1


# ------------------------------------------------------------------ 3. info on a folder with bad .dcm files
def test_info_lists_each_unreadable_file_as_given(sample_dicom_dir, tmp_path, monkeypatch):
    """Every unreadable file is named as the user named the folder (the empty one was named by its
    absolute path, the others relative), with its reason, and counted."""
    folder = tmp_path / "runs"
    folder.mkdir()
    good = (sample_dicom_dir / "ba_subtracted_geometry.dcm").read_bytes()
    (folder / "good.dcm").write_bytes(good)
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "cut.dcm").write_bytes(good[:400])  # a DICOM preamble, a header cut short
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["info", "runs"])
    assert r.exit_code == 0, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("stenosis: error:")]
    assert len(errors) == 2, r.output
    assert any(line.startswith("stenosis: error: runs/empty.dcm: empty;") for line in errors), errors
    assert any(line.startswith("stenosis: error: runs/cut.dcm: ") for line in errors), errors
    assert "1 run(s) read, 2 unreadable" in r.output


# ------------------------------------------------------------------ 4. interrupted batch, --resume
@pytest.mark.parametrize("exc, code", [("BatchTerminated", 143), ("KeyboardInterrupt", 130)])
def test_an_interrupted_batch_says_what_is_kept_and_how_to_go_on(sample_dicom_dir, tmp_path, monkeypatch, exc, code):
    import stenosis.batch as lib

    def interrupted(*args, **kwargs):  # after the batch wrote its first row
        (tmp_path / "o").mkdir(exist_ok=True)
        (tmp_path / "o" / lib.JSONL_NAME).write_text("{}\n")
        raise lib.BatchTerminated() if exc == "BatchTerminated" else KeyboardInterrupt()

    monkeypatch.setattr(lib, "run_batch", interrupted)
    r = CliRunner().invoke(cli, ["batch", str(sample_dicom_dir), "--points", str(_points(tmp_path)),
                                 "--out", str(tmp_path / "o")])
    assert r.exit_code == code, r.output
    line = r.output.strip()
    assert "\n" not in line and "results.csv" in line and "--resume" in line, line


def test_ctrl_c_before_anything_was_written_does_not_point_at_results(sample_dicom_dir, tmp_path, monkeypatch):
    """Ctrl-C while the batch is still starting (connecting to --scheduler): no OUT to resume."""
    import stenosis.batch as lib

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt()

    monkeypatch.setattr(lib, "run_batch", interrupted)
    r = CliRunner().invoke(cli, ["batch", str(sample_dicom_dir), "--points", str(_points(tmp_path)),
                                 "--out", str(tmp_path / "o")])
    assert r.exit_code == 130
    line = r.output.strip()
    assert "\n" not in line and "nothing was written" in line and "--resume" not in line, line


def test_resume_help_says_error_rows_are_measured_again():
    r = CliRunner().invoke(cli, ["batch", "--help"])
    text = " ".join(r.output.split())
    assert "ok row in OUT/results.jsonl are skipped" in text and "error row" in text and "measured again" in text


# ------------------------------------------------------------------ 5. texts of the summary and errors
def test_one_run_to_confirm_is_it_not_them():
    from stenosis.batch import BatchSummary

    base = dict(n_total=3, n_ok=3, n_error=0, n_meets_50=1, n_skipped=0, n_run=3, n_timeout=0, elapsed_s=1.0,
                out_dir="o")
    assert BatchSummary(**base, n_confirm=1).line().endswith("; 1 whose >= 50% call is uncertain (see their "
                                                             "warnings): a reader should confirm it")
    assert BatchSummary(**base, n_confirm=2).line().endswith("confirm them")
    assert BatchSummary(**{**base, "n_total": 1, "n_ok": 1}, n_confirm=0).line().startswith("1 run: 1 ok")  # not "1 runs"


def test_a_point_off_the_vessel_reminds_row_col(sample_dicom_dir):
    """(181, 138) given as X,Y is (138, 181): inside the image but off the artery. The error said
    only 'not on a vessel'; it now reminds that points are ROW,COL."""
    run = str(sample_dicom_dir / "m1_subtracted_pixelspacing.dcm")
    r = CliRunner().invoke(cli, ["measure", run, "--segment", "M1", "--proximal", "138,181", "--distal", "308,193"])
    assert r.exit_code == 3 and "not on a vessel" in r.output and "ROW,COL" in r.output and "row first" in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output


def test_a_folder_of_runs_given_to_measure_points_to_batch(sample_dicom_dir):
    r = CliRunner().invoke(cli, ["measure", str(sample_dicom_dir), *M1])
    assert r.exit_code == 3 and "'stenosis batch'" in r.output and "read_runs()" not in r.output, r.output


@pytest.fixture(scope="module")
def m1_result(sample_dicom_dir):
    import stenosis

    return stenosis.measure(sample_dicom_dir / "m1_subtracted_pixelspacing.dcm", segment="M1",
                            proximal=(181, 138), distal=(193, 308), frames="single")


# ------------------------------------------------------------------ 8. one percent, one rounding
@pytest.mark.parametrize("pct", [40.449999, 40.45, 49.95, 50.049999])
def test_the_headline_and_the_borderline_warning_print_the_same_percent(m1_result, pct):
    """The headline rounded the JSON's 2-decimal value (40.45 -> 40.5) while the warning rounded
    the result's own (40.449999 -> 40.4)."""
    from stenosis.cli.measure import summary_lines
    from stenosis.wasid import borderline_warning

    warning = borderline_warning(pct, 5.0)
    res = dataclasses.replace(m1_result, percent_stenosis=pct, percent_stenosis_sd=5.0, warnings=(warning,))
    lines = summary_lines(res)
    head = next(line for line in lines if line.startswith("percent stenosis"))
    warn = next(line for line in lines if line.startswith("warning") and "percent stenosis" in line)
    shown = re.search(r"percent stenosis\s+(\S+)%", head).group(1)
    assert re.search(r"percent stenosis (\S+)%:", warn).group(1) == shown, (head, warn)


# ------------------------------------------------------------------ 6. help texts and messages
def test_batch_help_names_the_files_it_writes_and_the_points_columns():
    text = " ".join(CliRunner().invoke(cli, ["batch", "--help"]).output.split())
    assert "reports/<stem>-<hash>.png" in text and "reports/<stem>.png" not in text
    for col in ("frame,", "frames", "reference_choice", "mld_row,mld_col", "waypoints ('row col;row col')", "lesion"):
        assert col in text, col


def test_demo_model_has_help():
    text = " ".join(CliRunner().invoke(cli, ["demo", "--help"]).output.split())
    m = re.search(r"--model \[unet\|classical\] ([^\[]*)\[default: unet\]", text)
    assert m and len(m.group(1).split()) >= 3, text  # a help sentence before the default


def test_no_runs_names_the_dcm_files_that_are_not_dicom(tmp_path):
    """'no DICOM runs found ... recognised by the DICOM preamble' while the folder held *.dcm files
    (empty or text): the message now says what those files are."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "a.dcm").write_bytes(b"")
    (tmp_path / "runs" / "b.dcm").write_text("not an image")
    r = CliRunner().invoke(cli, ["batch", str(tmp_path / "runs"), "--auto", "--segment", "M1", "--out", str(tmp_path / "o")])
    assert r.exit_code == 3 and "no DICOM runs found" in r.output and "a.dcm, b.dcm" in r.output, r.output
    assert "replace them" in r.output and len(r.output.strip().splitlines()) == 1


def test_demo_out_says_when_it_replaces(tmp_path, monkeypatch):
    """``measure --out`` said so; ``demo --out`` replaced result.json and report.png silently."""
    import stenosis.measurement
    import stenosis.report

    real = stenosis.measurement.measure
    monkeypatch.setattr(stenosis.measurement, "measure", lambda *a, **k: real(*a, **{**k, "frames": "single"}))
    monkeypatch.setattr(stenosis.report, "save_report", lambda res, img, path, **k: Path(path).write_bytes(b"png"))
    args = ["demo", "--out", str(tmp_path / "d")]
    first, second = CliRunner().invoke(cli, args), CliRunner().invoke(cli, args)
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    assert "replacing" not in first.output and "(replacing the earlier result.json, report.png)" in second.output


# ------------------------------------------------------------------ 7. README outputs ignored by git
def test_what_the_readme_examples_write_is_ignored_by_git():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    text = (REPO / "README.md").read_text()
    written = set(re.findall(r"--out\s+([\w./-]+)", text)) | set(re.findall(r"cat > ([\w./-]+)", text))
    written = {w for w in written if w not in ("DIR", "OUT")}
    written.add("stenosis-demo/")  # `stenosis demo`'s default --out
    assert {"result/", "results/", "results-auto/", "points.csv", "segments.csv"} <= written, written
    for name in sorted(written):
        probe = name.rstrip("/") + ("/x.png" if name.endswith("/") else "")
        p = subprocess.run(["git", "check-ignore", "-q", "--no-index", probe], cwd=REPO)
        assert p.returncode == 0, f"{name} (written by a README example) is not in .gitignore"
