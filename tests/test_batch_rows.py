"""`stenosis batch` from a new user's side: a bad row of the points file is an error row (the other
rows are measured), option mistakes are one-line usage errors (exit 2), and no output holds an
absolute path."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from stenosis.batch import lesion_problems, read_points

HEADER = "path,segment,proximal_row,proximal_col,distal_row,distal_col"
BA = "ba_subtracted_geometry.dcm,BA,120,230,280,123"


def _batch(*args):
    from click.testing import CliRunner

    from stenosis.cli.main import cli

    return CliRunner().invoke(cli, ["batch", *map(str, args)])


def _main(*args):
    """The real entry point (one-line usage errors on stderr), in a subprocess."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "stenosis", "batch", *map(str, args)], capture_output=True, check=False,
                          text=True, timeout=120)


def _points(path: Path, *rows: str) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _run(folder, pts, out, *extra):
    return _batch(folder, "--points", pts, "--out", out, "--jobs", "0", "--no-reports", "-q", *extra)


def test_an_unknown_segment_is_an_error_row_and_the_others_are_measured(sample_dicom_dir, tmp_path):
    # was: "Invalid value for --points: ... segment 'XX' ..." and exit 2, nothing measured
    pts = _points(tmp_path / "p.csv", "m1_subtracted_pixelspacing.dcm,XX,181,138,193,308", BA)
    r = _run(sample_dicom_dir, pts, tmp_path / "o")
    assert r.exit_code == 0, r.output
    rows = {row["path"]: row for row in _rows(tmp_path / "o")}
    bad, good = rows["m1_subtracted_pixelspacing.dcm"], rows["ba_subtracted_geometry.dcm"]
    assert good["status"] == "ok" and good["percent_stenosis"]
    assert bad["status"] == "error" and "line 2" in bad["error"] and "'XX'" in bad["error"]
    assert all(s in bad["error"] for s in ("ICA", "M1", "V4", "BA")) and "\n" not in bad["error"]


def test_a_duplicate_row_is_an_error_row_and_resume_keeps_it(sample_dicom_dir, tmp_path):
    # was: "duplicates line 2 ..." and exit 2, nothing measured
    pts = _points(tmp_path / "p.csv", BA, "./" + BA.lower().replace(",ba,", ",BA,"))
    out = tmp_path / "o"
    r = _run(sample_dicom_dir, pts, out)
    assert r.exit_code == 0, r.output
    rows = _rows(out)
    assert sorted(row["status"] for row in rows) == ["error", "ok"]
    (dup,) = [row for row in rows if row["status"] == "error"]
    assert dup["path"] == "ba_subtracted_geometry.dcm" and "line 3: duplicate of line 2" in dup["error"]
    before = (out / "results.jsonl").read_text()
    # --resume with the same file: keys are stable, the measured row is not measured again, the
    # error row is tried again (the file may have been fixed) and reads the same; rows unchanged
    r = _run(sample_dicom_dir, pts, out, "--resume")
    assert r.exit_code == 0 and "1 already done" in r.output, r.output
    assert (out / "results.jsonl").read_text() == before


def test_resume_measures_again_the_runs_whose_inputs_changed(sample_dicom_dir, tmp_path):
    """A new user's probe (session 36): --resume with an edited points file, or in another mode,
    kept the rows measured with the old inputs ("already done, skipped"); an ICA run was graded as
    M1. A row records its inputs; a run whose inputs changed is measured again."""
    m1 = "m1_subtracted_pixelspacing.dcm,M1,181,138,193,308"
    out = tmp_path / "o"
    r = _run(sample_dicom_dir, _points(tmp_path / "p.csv", BA, m1), out)
    assert r.exit_code == 0, r.output
    first = {row["path"]: row for row in _rows(out)}
    (row,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if "ba_subtracted" in x]
    assert row["inputs"] == {"segment": "BA", "mode": "points", "proximal": [120.0, 230.0], "distal": [280.0, 123.0],
                             "frame": None, "reference_choice": None, "mld": None, "waypoints": [], "frames": "all",
                             "lesion": None, "model": "unet"}
    # the M1 row edited: a reader-forced reference site; the BA row the same
    edited = _points(tmp_path / "p2.csv", BA, m1.replace(",M1,181,", ",M1,181,") + ",distal")
    edited.write_text(edited.read_text().replace(HEADER, HEADER + ",reference_choice").replace(BA + "\n", BA + ",\n"))
    r = _run(sample_dicom_dir, edited, out, "--resume")
    assert r.exit_code == 0, r.output
    assert "1 already done, skipped; 1 measured again: its inputs changed" in r.output, r.output
    again = {row["path"]: row for row in _rows(out)}
    assert again["ba_subtracted_geometry.dcm"] == first["ba_subtracted_geometry.dcm"]
    assert again["m1_subtracted_pixelspacing.dcm"]["reference_choice"] == "distal"
    assert first["m1_subtracted_pixelspacing.dcm"]["reference_choice"] != "distal"
    assert len(again) == 2
    # the same file again: nothing changed, nothing measured
    r = _run(sample_dicom_dir, edited, out, "--resume")
    assert r.exit_code == 0 and "2 already done, skipped)" in r.output, r.output


def test_bad_values_and_an_empty_path_are_error_rows(sample_dicom_dir, tmp_path):
    pts = _points(tmp_path / "p.csv", BA, "v4_native_magnification.dcm,V4,abc,2,3,4", ",M1,1,2,3,4")
    r = _run(sample_dicom_dir, pts, tmp_path / "o")
    assert r.exit_code == 0, r.output
    rows = {row["path"]: row for row in _rows(tmp_path / "o")}
    assert rows["ba_subtracted_geometry.dcm"]["status"] == "ok"
    assert "proximal_row 'abc' is not a number" in rows["v4_native_magnification.dcm"]["error"]
    assert "line 4: empty path" in rows[""]["error"]


def test_a_bad_view_leaves_its_lesion_ungraded_not_its_sibling_refused(tmp_path):
    pts = tmp_path / "p.csv"
    pts.write_text(HEADER + ",lesion\na.dcm,M1,1,2,3,4,L\nb.dcm,XX,1,2,3,4,L\n")
    a, b = read_points(pts, tmp_path)
    assert a.problem is None and b.problem and b.lesion == "L"
    assert lesion_problems([a, b]) == {}  # b is an error row already; a is not "views of different arteries"


def test_a_file_problem_stops_the_batch_as_bad_input(sample_dicom_dir, tmp_path):
    """A points file lacking columns is input the tool cannot use, as a missing folder: exit 3
    (was 2, while a missing run exited 3)."""
    pts = tmp_path / "p.csv"
    pts.write_text("path,segment\nx.dcm,M1\n")
    r = _run(sample_dicom_dir, pts, tmp_path / "o")
    assert r.exit_code == 3 and "lacks column(s)" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("address", ["garbage", "tcp://host:99999", "host:0"])
def test_a_bad_scheduler_is_a_usage_error_before_anything_is_read(sample_dicom_dir, tmp_path, address):
    # was: "internal error (ValueError: missing port number ...)", exit 1 (and a 30 s wait for port 99999)
    pts = _points(tmp_path / "p.csv", BA, BA)  # even with a duplicate row: the option is checked first
    r = _main(sample_dicom_dir, "--points", pts, "--out", tmp_path / "o", "--scheduler", address)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--scheduler" in lines[0] and "HOST:PORT" in lines[0]
    assert not (tmp_path / "o").exists()


def test_keep_identifiers_without_sr_is_a_usage_error(sample_dicom_dir, tmp_path):
    # was: accepted silently (it only changes the SR; docs/contracts.md: [--sr [--keep-identifiers]])
    pts = _points(tmp_path / "p.csv", BA)
    r = _main(sample_dicom_dir, "--points", pts, "--out", tmp_path / "o", "--keep-identifiers")
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--keep-identifiers" in lines[0] and "--sr" in lines[0]
    assert not (tmp_path / "o").exists()


def test_recorded_paths_are_never_absolute_nor_another_files(sample_dicom_dir, tmp_path):
    # was: an absolute path written as-is; "../bad/ident.dcm" recorded as "bad/ident.dcm"
    runs = tmp_path / "runs"
    (runs / "sub").mkdir(parents=True)
    shutil.copy(sample_dicom_dir / "ba_subtracted_geometry.dcm", runs / "sub" / "inside.dcm")
    (tmp_path / "PATIENT_NAME").mkdir()
    outside = tmp_path / "PATIENT_NAME" / "ident.dcm"
    shutil.copy(sample_dicom_dir / "ba_subtracted_geometry.dcm", outside)
    row = ",BA,120,230,280,123"
    pts = _points(tmp_path / "p.csv", str(runs / "sub" / "inside.dcm") + row, str(outside) + row,
                  "../PATIENT_NAME/ident.dcm,M1,120,230,280,123", "../bad/ident.dcm" + row,
                  str(outside) + ",XX,1,2,3,4")
    out = tmp_path / "o"
    r = _run(runs, pts, out)
    assert r.exit_code == 0, r.output
    text = (out / "results.csv").read_text() + (out / "results.jsonl").read_text()
    assert str(tmp_path) not in text and "PATIENT_NAME" not in text and "bad/ident.dcm" not in text
    paths = sorted(row["path"] for row in _rows(out))
    assert paths == ["ident.dcm"] * 4 + ["sub/inside.dcm"]
    for line in (out / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert not Path(row["path"]).is_absolute() and not str(row.get("file") or "").startswith("/")
