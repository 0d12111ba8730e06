"""Batch runner: points file, worker pool, timeout, resume, atomic journal, Dask, CLI.

The runner machinery is tested with a tiny injected work function (``fake_work``,
a pure function of the file's bytes, so its "measurement" is known exactly);
the real measurement is tested on phantom runs at the end of this file.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stenosis.batch import (
    CSV_COLUMNS,
    OutputFolderError,
    PointsFileError,
    Task,
    WorkOptions,
    auto_tasks,
    error_row,
    output_stem,
    read_jsonl,
    read_points,
    read_segments,
    run_batch,
)
from stenosis.errors import InputError

HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------ fake work
def fake_work(task: Task, options: WorkOptions) -> dict:
    """Stand-in for measure_one: 'percent stenosis' = byte sum of the file mod 100.

    Files starting with HANG write the worker's pid to ``<file>.pid`` and sleep forever, CRASH kills the worker, BAD raise a
    declared error (an error row), SLOW take 0.3 s.
    """
    try:
        data = Path(task.source).read_bytes()
        if data.startswith(b"HANG"):
            Path(task.source + ".pid").write_text(str(os.getpid()))
            time.sleep(3600)
        if data.startswith(b"CRASH"):
            os._exit(7)
        if data.startswith(b"SLOW"):
            time.sleep(0.3)
        if data.startswith(b"BAD"):
            raise InputError(f"{task.path} is not a DICOM file; give an XA/DSA DICOM run")
    except (OSError, InputError) as exc:
        return error_row(task, str(exc) if isinstance(exc, InputError) else f"cannot read {task.path}")
    pct = float(sum(data) % 100)
    return {
        "key": task.key,
        "path": task.path,
        "status": "ok",
        "error": None,
        "segment": task.segment,
        "mode": task.mode,
        "frame_index": 0 if task.frame is None else task.frame,
        "percent_stenosis": pct,
        "meets_50": pct >= 50,
        "mld_mm": 1.0,
        "reference_diameter_mm": 2.0,
        "reference_choice": "proximal",
        "lesion_length_mm": 3.0,
        "calibration": {"mm_per_px": [0.2, 0.2], "source": "pixel_spacing"},
        "proximal_rc": list(task.proximal) if task.proximal else [1.0, 2.0],
        "distal_rc": list(task.distal) if task.distal else [3.0, 4.0],
        "warnings": [],
        "run_id": f"id-{sum(data) % 9973}",
        "software": {"version": "test", "model_sha256": None},
        "worker_pid": os.getpid(),
    }


def _write_points(path: Path, rows: list[list], header=None) -> Path:
    header = header or ["path", "segment", "proximal_row", "proximal_col", "distal_row", "distal_col", "frame"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _folder(tmp_path: Path, contents: dict[str, bytes]) -> Path:
    root = tmp_path / "runs"
    for name, data in contents.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _tasks(root: Path, names: list[str]) -> list[Task]:
    pts = _write_points(root.parent / "points.csv", [[n, "M1", 10, 20, 30, 40, ""] for n in names])
    return read_points(pts, root)


def _csv_rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------- points parsing
def test_read_points_parses_and_sorts(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    pts = _write_points(
        tmp_path / "p.csv",
        [
            ["b/run2.dcm", "m1", "10.5", "20", "30", "40", ""],
            ["a/run1.dcm", "BA", "1", "2", "3", "4", "3"],
            ["a/run1.dcm", "V4", "1", "2", "3", "4", ""],
        ],
    )
    tasks = read_points(pts, root)
    assert [t.path for t in tasks] == ["a/run1.dcm", "a/run1.dcm", "b/run2.dcm"]
    assert tasks[0].segment == "BA" and tasks[0].frame == 3
    assert tasks[2].segment == "M1" and tasks[2].proximal == (10.5, 20.0) and tasks[2].distal == (30.0, 40.0)
    assert tasks[2].frame is None and tasks[2].mode == "points"
    assert Path(tasks[2].source) == (root / "b/run2.dcm").absolute()
    # keys unique; a repeated path is qualified by segment/frame, a single one is not
    assert len({t.key for t in tasks}) == 3
    assert tasks[2].key == "b/run2.dcm"


def test_read_points_semicolon_and_bom(tmp_path):
    p = tmp_path / "p.csv"
    p.write_bytes("\ufeffpath;segment;proximal_row;proximal_col;distal_row;distal_col\nx.dcm;ICA;1;2;3;4\n".encode())
    (t,) = read_points(p, tmp_path)
    assert t.segment == "ICA" and t.distal == (3.0, 4.0)


@pytest.mark.parametrize(
    "header,row,needle",
    [
        (["path", "segment", "proximal_row", "proximal_col", "distal_row"], ["x", "M1", 1, 2, 3], "lacks column(s) distal_col"),
        (None, ["x", "M2", 1, 2, 3, 4, ""], "segment 'M2' is not one of"),
        (None, ["x", "M1", "abc", 2, 3, 4, ""], "proximal_row 'abc' is not a number"),
        (None, ["x", "M1", "nan", 2, 3, 4, ""], "not a finite number"),
        (None, ["x", "M1", 1, 2, 3, 4, "1.5"], "frame '1.5' is not a frame number"),
        (None, ["x", "M1", 1, 2, 3, 4, "-1"], "frame '-1'"),
        (None, ["", "M1", 1, 2, 3, 4, ""], "empty path"),
    ],
)
def test_read_points_errors_are_one_line(tmp_path, header, row, needle):
    p = _write_points(tmp_path / "p.csv", [row], header=header)
    with pytest.raises(PointsFileError) as ei:
        read_points(p, tmp_path, strict=True)
    msg = str(ei.value)
    assert needle in msg and "\n" not in msg
    if header is None:
        assert "line 2" in msg
        # not strict (the CLI): the bad row is a task with the same one-line problem (an error row)
        (t,) = read_points(p, tmp_path)
        assert t.problem == msg
    else:  # a problem of the whole file raises either way
        with pytest.raises(PointsFileError):
            read_points(p, tmp_path)


def test_read_points_duplicates_empty_missing(tmp_path):
    p = _write_points(tmp_path / "p.csv", [["x", "M1", 1, 2, 3, 4, ""], ["./x", "M1", 5, 6, 7, 8, ""]])
    with pytest.raises(PointsFileError, match="line 3: duplicate of line 2"):
        read_points(p, tmp_path, strict=True)
    first, dup = sorted(read_points(p, tmp_path), key=lambda t: t.proximal or ())
    assert first.problem is None and "line 3: duplicate of line 2" in dup.problem
    p = _write_points(tmp_path / "e.csv", [])
    with pytest.raises(PointsFileError, match="no rows"):
        read_points(p, tmp_path)
    (tmp_path / "z.csv").write_text("")
    with pytest.raises(PointsFileError, match="is empty"):
        read_points(tmp_path / "z.csv", tmp_path)
    with pytest.raises(PointsFileError, match="cannot read points file"):
        read_points(tmp_path / "absent.csv", tmp_path)


# --------------------------------------------------------------- the runner
GOOD = {f"site{i % 2}/run{i:02d}.dcm": bytes([i, 7, 3 * i % 256]) * (i + 1) for i in range(6)}


def test_bad_files_are_error_rows_and_batch_goes_on(tmp_path):
    files = dict(GOOD)
    files["site0/broken.dcm"] = b"BAD not dicom"
    root = _folder(tmp_path, files)
    names = sorted(files) + ["site1/missing.dcm"]
    tasks = _tasks(root, names)
    out = tmp_path / "out"
    s = run_batch(tasks, out, jobs=1, work=fake_work, warm=False, progress=False)
    assert (s.n_total, s.n_ok, s.n_error) == (8, 6, 2)
    rows = _csv_rows(out)
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [r["path"] for r in rows] == sorted(names)
    by = {r["path"]: r for r in rows}
    assert by["site0/broken.dcm"]["status"] == "error"
    assert "not a DICOM file" in by["site0/broken.dcm"]["error"]
    assert by["site1/missing.dcm"]["status"] == "error"
    for name, data in GOOD.items():
        assert by[name]["status"] == "ok"
        assert float(by[name]["percent_stenosis"]) == sum(data) % 100
    n50 = sum(1 for d in GOOD.values() if sum(d) % 100 >= 50)
    assert s.n_meets_50 == n50
    # runs within 5 points of 50% (the fake rows carry no uncertainty) are to be confirmed
    assert s.n_confirm == sum(1 for d in GOOD.values() if abs(sum(d) % 100 - 50) < 5)
    assert (out / "summary.png").stat().st_size > 1000
    assert len(read_jsonl(out / "results.jsonl")) == 8


@pytest.mark.slow
def test_jobs_1_and_2_give_identical_rows(tmp_path):
    # slow enough (0.3 s each) that both workers are up before the work runs out
    root = _folder(tmp_path, {k: b"SLOW" + v for k, v in GOOD.items()})
    tasks = _tasks(root, sorted(GOOD))
    run_batch(tasks, tmp_path / "o1", jobs=1, work=fake_work, warm=False, progress=False)
    s2 = run_batch(tasks, tmp_path / "o2", jobs=2, work=fake_work, warm=False, progress=False)
    assert (tmp_path / "o1/results.csv").read_bytes() == (tmp_path / "o2/results.csv").read_bytes()
    pids = {r["worker_pid"] for r in read_jsonl(tmp_path / "o2/results.jsonl")}
    assert len(pids) == 2  # really two processes
    assert len(s2.peak_rss_mb_per_worker) >= 2


def test_max_tasks_per_child_recycles_workers(tmp_path):
    root = _folder(tmp_path, GOOD)
    tasks = _tasks(root, sorted(GOOD))
    run_batch(tasks, tmp_path / "o", jobs=1, work=fake_work, warm=False, progress=False, max_tasks_per_child=2)
    rows = read_jsonl(tmp_path / "o/results.jsonl")
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    assert len({r["worker_pid"] for r in rows}) == 3


@pytest.mark.slow
def test_timeout_and_crash_become_error_rows(tmp_path):
    files = dict(GOOD)
    files["hang.dcm"] = b"HANG"
    files["crash.dcm"] = b"CRASH"
    root = _folder(tmp_path, files)
    tasks = _tasks(root, sorted(files))
    t0 = time.monotonic()
    s = run_batch(tasks, tmp_path / "o", jobs=2, timeout=1.5, work=fake_work, warm=False, progress=False)
    assert time.monotonic() - t0 < 30
    by = {r["path"]: r for r in _csv_rows(tmp_path / "o")}
    assert by["hang.dcm"]["status"] == "error" and "timed out after 1.5 s" in by["hang.dcm"]["error"]
    assert by["crash.dcm"]["status"] == "error" and "worker process died" in by["crash.dcm"]["error"]
    assert all(by[n]["status"] == "ok" for n in GOOD)
    assert s.n_timeout == 1 and s.n_error == 2 and s.n_ok == len(GOOD)


def test_resume_skips_done_runs(tmp_path):
    root = _folder(tmp_path, GOOD)
    names = sorted(GOOD)
    out = tmp_path / "o"
    run_batch(_tasks(root, names[:3]), out, jobs=0, work=fake_work, progress=False)
    first = {r["key"]: r for r in read_jsonl(out / "results.jsonl")}
    # mark the finished rows so a re-measurement would be visible
    lines = [json.dumps({**r, "run_id": "FROM-FIRST-PASS"}) for r in first.values()]
    (out / "results.jsonl").write_text("\n".join(lines) + "\n")
    s = run_batch(_tasks(root, names), out, jobs=0, resume=True, work=fake_work, progress=False)
    assert (s.n_skipped, s.n_run, s.n_total) == (3, 3, 6)
    rows = {r["path"]: r for r in _csv_rows(out)}
    assert [rows[n]["run_id"] == "FROM-FIRST-PASS" for n in names] == [True] * 3 + [False] * 3
    # --overwrite starts afresh, the earlier outputs moved aside
    s = run_batch(_tasks(root, names), out, jobs=0, overwrite=True, work=fake_work, progress=False)
    assert s.n_skipped == 0 and s.n_run == 6
    (aside,) = out.glob("previous-*")
    assert (aside / "results.csv").is_file() and (aside / "results.jsonl").is_file()


def test_resume_tries_the_runs_that_failed_again(tmp_path):
    """A user who fixed a file expects --resume to measure it: error rows are tried again, the
    runs measured are skipped (a new user's find: --resume skipped the error rows too)."""
    files = dict(GOOD)
    files["site0/broken.dcm"] = b"BAD not dicom"
    root = _folder(tmp_path, files)
    names = sorted(files)
    out = tmp_path / "o"
    s = run_batch(_tasks(root, names), out, jobs=0, work=fake_work, progress=False)
    assert (s.n_ok, s.n_error) == (6, 1)
    (root / "site0/broken.dcm").write_bytes(b"now fixed")
    s = run_batch(_tasks(root, names), out, jobs=0, resume=True, work=fake_work, progress=False)
    assert (s.n_skipped, s.n_run, s.n_ok, s.n_error) == (6, 1, 7, 0)
    assert {r["path"]: r["status"] for r in _csv_rows(out)}["site0/broken.dcm"] == "ok"


def test_resume_ignores_and_repairs_a_torn_last_line(tmp_path):
    root = _folder(tmp_path, GOOD)
    names = sorted(GOOD)
    out = tmp_path / "o"
    run_batch(_tasks(root, names[:2]), out, jobs=0, work=fake_work, progress=False)
    with open(out / "results.jsonl", "ab") as f:
        f.write(b'{"key": "' + names[2].encode() + b'", "status": "o')  # killed mid-write
    assert len(read_jsonl(out / "results.jsonl")) == 2
    s = run_batch(_tasks(root, names), out, jobs=0, resume=True, work=fake_work, progress=False)
    assert (s.n_skipped, s.n_run, s.n_ok) == (2, 4, 6)
    for line in (out / "results.jsonl").read_bytes().splitlines():
        json.loads(line)


_KILL_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from test_batch import fake_work
from stenosis.batch import read_points, run_batch
tasks = read_points({pts!r}, {root!r})
run_batch(tasks, {out!r}, jobs=1, work=fake_work, warm=False, progress=False)
"""


@pytest.mark.slow
def test_kill_mid_batch_leaves_whole_lines_and_resume_completes(tmp_path):
    files = {f"r{i:02d}.dcm": b"SLOW" + bytes([i]) * 5 for i in range(12)}
    root = _folder(tmp_path, files)
    pts = _write_points(tmp_path / "p.csv", [[n, "M1", 1, 2, 3, 4, ""] for n in sorted(files)])
    out = tmp_path / "o"
    script = _KILL_SCRIPT.format(tests=str(HERE), pts=str(pts), root=str(root), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    journal = out / "results.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the parent and its workers, as a kill -9 would
    proc.wait()
    data = journal.read_bytes()
    assert data.endswith(b"\n")
    done = [json.loads(x) for x in data.splitlines()]
    assert 3 <= len(done) < 12 and all(r["status"] == "ok" for r in done)
    s = run_batch(read_points(pts, root), out, jobs=0, resume=True, work=fake_work, progress=False)
    assert s.n_skipped == len(done) and s.n_total == 12 and s.n_ok == 12
    assert sorted(r["path"] for r in read_jsonl(journal)) == sorted(files)


def test_dask_local_cluster_gives_the_same_rows(tmp_path):
    distributed = pytest.importorskip("distributed")
    root = _folder(tmp_path, GOOD)
    tasks = _tasks(root, sorted(GOOD))
    run_batch(tasks, tmp_path / "local", jobs=0, work=fake_work, progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        s = run_batch(
            tasks, tmp_path / "dask", scheduler=cluster.scheduler_address, work=fake_work, progress=False
        )
    assert s.n_ok == len(GOOD)
    assert (tmp_path / "local/results.csv").read_bytes() == (tmp_path / "dask/results.csv").read_bytes()


# ------------------------------------------------------------------ DICOM SR
def test_sr_round_trips_values_and_references_the_source(wg04_dir, tmp_path):
    hd = pytest.importorskip("highdicom")
    import pydicom

    from stenosis.sr import write_sr

    src = wg04_dir / "XA1_UNC"
    row = {"percent_stenosis": 61.25, "mld_mm": 0.93, "reference_diameter_mm": 2.4,
           "mld_rc": [500.0, 400.0], "segment": "BA", "frame_index": 0}
    write_sr(row, [str(src)], tmp_path / "r.dcm", keep_identifiers=True)
    sr = hd.sr.srread(tmp_path / "r.dcm")
    (group,) = sr.content.get_planar_roi_measurement_groups()
    got = {(m.name.value, m.unit.value, m.derivation.value if m.derivation else None): m.value
           for m in group.get_measurements()}
    assert got[("408715008", "%", None)] == pytest.approx(61.25)
    assert got[("397413000", "mm", "255605001")] == pytest.approx(0.93)
    assert group.roi.value.tolist() == [[400.5, 500.5]]  # (col, row) + half-pixel origin
    assert group.finding_sites[0].value.CodeValue == "59011009"  # basilar artery
    source_uid = pydicom.dcmread(src, stop_before_pixels=True).SOPInstanceUID
    ds = pydicom.dcmread(tmp_path / "r.dcm")
    refs = [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
            for s in ds.CurrentRequestedProcedureEvidenceSequence for i in s.ReferencedSeriesSequence]
    assert refs == [source_uid]
    # uncalibrated: only percent stenosis
    write_sr({**row, "mld_mm": None, "reference_diameter_mm": None}, [str(src)], tmp_path / "u.dcm")
    (group,) = hd.sr.srread(tmp_path / "u.dcm").content.get_planar_roi_measurement_groups()
    assert [m.unit.value for m in group.get_measurements()] == ["%"]


# ------------------------------------------------------------------ CLI
def _cli(args):
    from click.testing import CliRunner

    from stenosis.cli.main import cli

    return CliRunner().invoke(cli, ["batch", *map(str, args)])


def test_a_points_file_naming_no_run_in_the_folder_exits_3_and_writes_nothing(sample_dicom_dir, tmp_path):
    """A points file given with the wrong DIR: every row names a run that is not there. That is the
    folder's fault, not each row's: one line naming DIR, exit 3 (not exit 0 with only error rows)."""
    pts = _write_points(tmp_path / "p.csv", [["ica_native_geometry.dcm", "ICA", 1, 2, 3, 4, ""],
                                             ["m1_native_uncalibrated.dcm", "M1", 1, 2, 3, 4, ""]])
    (tmp_path / "empty").mkdir()
    r = _cli([tmp_path / "empty", "--points", pts, "--out", tmp_path / "o"])
    assert r.exit_code == 3, r.output
    assert "none of the 2 runs" in r.output and str(tmp_path / "empty") in r.output
    assert not (tmp_path / "o").exists()
    from stenosis.batch import require_some_run

    with pytest.raises(InputError, match="none of the 1 run the points file"):
        require_some_run(read_points(_write_points(tmp_path / "q.csv", [["nope.dcm", "ICA", 1, 2, 3, 4, ""]]),
                                     sample_dicom_dir), sample_dicom_dir)
    # one run missing among others, or the only existing run on a bad row: DIR is right, the rows
    # keep their own errors
    for rows in ([["nope.dcm", "ICA", 1, 2, 3, 4, ""], ["ica_native_geometry.dcm", "ICA", 1, 2, 3, 4, ""]],
                 [["nope.dcm", "ICA", 1, 2, 3, 4, ""], ["ica_native_geometry.dcm", "M7", 1, 2, 3, 4, ""]]):
        tasks = read_points(_write_points(tmp_path / "r.csv", rows), sample_dicom_dir)
        require_some_run(tasks, sample_dicom_dir)  # does not raise
    r = _cli([sample_dicom_dir, "--points", tmp_path / "r.csv", "--out", tmp_path / "o2", "-q", "--jobs", "0"])
    assert r.exit_code == 0, r.output
    errors = sorted(x["error"] for x in read_jsonl(tmp_path / "o2/results.jsonl"))
    assert len(errors) == 2 and "M7" in errors[0] + errors[1] and "nope.dcm" in errors[0] + errors[1]


def test_auto_points_file_skips_rows_without_points_and_keeps_a_readers_edits_on_resume(tmp_path):
    from stenosis.batch.outputs import write_auto_points

    def row(path, seg, p, d, frame=3, status="ok", mode="auto"):
        return {"path": path, "segment": seg, "proximal_rc": p, "distal_rc": d, "frame_index": frame, "status": status,
                "mode": mode}

    rows = [row("a.dcm", "M1", [1, 2], [3, 4]), row("b.dcm", "ICA", [5, 6], None),  # no distal point
            row("c.dcm", "BA", [1, 2], [3, 4], status="error"), row("d.dcm", "V4", [1, 2], [3, 4], mode="points"),
            row("e.dcm", "M1", [1.234, 2], [float("nan"), 4])]
    out = tmp_path / "points-auto.csv"
    assert write_auto_points(rows, out) == 1
    assert out.read_text() == ("path,segment,frame,proximal_row,proximal_col,distal_row,distal_col\n"
                               "a.dcm,M1,3,1.00,2.00,3.00,4.00\n")
    # a reader moves a.dcm's proximal point; a resumed batch measures f.dcm too
    out.write_text(out.read_text().replace("1.00,2.00", "9.50,2.00"))
    n = write_auto_points([*rows, row("f.dcm", "ICA", [7, 8], [9, 10], frame=None)], out, keep_existing=True)
    assert n == 2
    assert out.read_text().splitlines()[1:] == ["a.dcm,M1,3,9.50,2.00,3.00,4.00", "f.dcm,ICA,,7.00,8.00,9.00,10.00"]
    assert write_auto_points([], tmp_path / "none.csv") == 0 and not (tmp_path / "none.csv").exists()


def test_a_scheduler_that_does_not_answer_leaves_no_outputs(sample_dicom_dir, tmp_path, monkeypatch):
    """An unreachable --scheduler is refused before OUT is written: the corrected command then runs
    into the same OUT without --overwrite."""
    pytest.importorskip("distributed")
    import stenosis.batch.pool as pool

    monkeypatch.setattr(pool, "SCHEDULER_CONNECT_S", 1)
    pts = _write_points(tmp_path / "p.csv", [["ica_native_geometry.dcm", "ICA", 1, 2, 3, 4, ""]])
    r = _cli([sample_dicom_dir, "--points", pts, "--out", tmp_path / "o", "--scheduler", "tcp://127.0.0.1:1", "-q"])
    assert r.exit_code == 3 and "cannot reach the Dask scheduler" in r.output, r.output
    assert not (tmp_path / "o").exists()


def test_cli_usage_errors_exit_2(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    pts = _write_points(tmp_path / "p.csv", [["x.dcm", "M1", 1, 2, 3, 4, ""]])
    for args in (
        [root, "--out", tmp_path / "o"],  # neither
        [root, "--points", pts, "--auto", "--out", tmp_path / "o"],  # both
        [root, "--points", pts],  # no --out
    ):
        r = _cli(args)
        assert r.exit_code == 2, r.output
    bad = _write_points(tmp_path / "bad.csv", [["x.dcm", "M1", 1, 2, 3]], header=["path", "segment", "proximal_row", "proximal_col", "distal_row"])
    r = _cli([root, "--points", bad, "--out", tmp_path / "o"])
    assert r.exit_code == 3 and "lacks column(s) distal_col" in r.output   # input, as a bad run is
    r = _cli([root, "--points", tmp_path / "missing.csv", "--out", tmp_path / "o"])
    assert r.exit_code == 3 and "--points" in r.output and "\n" not in r.output.strip()
    assert "Traceback" not in r.output


def test_cli_unreadable_or_empty_folder_exits_3(tmp_path):
    pts = _write_points(tmp_path / "p.csv", [["x.dcm", "M1", 1, 2, 3, 4, ""]])
    r = _cli([tmp_path / "absent", "--points", pts, "--out", tmp_path / "o"])
    assert r.exit_code == 3 and "not a readable folder" in r.output
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no runs here")
    r = _cli([tmp_path / "empty", "--auto", "--segment", "M1", "--out", tmp_path / "o"])
    assert r.exit_code == 3 and "no DICOM runs found" in r.output
    assert len(r.output.strip().splitlines()) == 1


# ------------------------------------------------- real measurement on phantoms
@pytest.fixture(scope="module")
def phantom_folder(tmp_path_factory):
    pytest.importorskip("stenosis.phantom.engine")
    from stenosis.phantom.dicom import load_truth, write_phantom
    from stenosis.phantom.engine import render_phantom
    from stenosis.phantom.spec import PhantomSpec

    base = tmp_path_factory.mktemp("batch_phantoms")
    root = base / "runs"
    rows, truths = [], {}
    for i, pct in enumerate((45.0, 70.0)):
        spec = PhantomSpec(seed=300 + i, shape=(192, 192), n_frames=6, stenosis_percent=pct, name=f"p{i}")
        rel = f"site{i}/p{i}.dcm"
        dcm, _ = write_phantom(render_phantom(spec), root / rel)
        t = load_truth(dcm)
        truths[rel] = t
        rows.append([rel, "M1", *t["proximal_rc"], *t["distal_rc"], ""])
    (root / "site0" / "truncated.dcm").write_bytes((root / "site0/p0.dcm").read_bytes()[:3000])
    (root / "site1" / "notes.dcm").write_text("not an image")
    rows += [["site0/truncated.dcm", "M1", 10, 10, 50, 50, ""], ["site1/notes.dcm", "M1", 10, 10, 50, 50, ""]]
    pts = _write_points(base / "points.csv", rows)
    return root, pts, truths


@pytest.mark.slow
def test_real_batch_points_jobs_1_vs_2_and_bad_files(phantom_folder, tmp_path):
    root, pts, truths = phantom_folder
    tasks = read_points(pts, root)
    run_batch(tasks, tmp_path / "o1", jobs=1, model="classical", progress=False, sr=True)
    r = _cli([root, "--points", pts, "--out", tmp_path / "o2", "--jobs", "2", "--model", "classical", "-q", "--sr"])
    assert r.exit_code == 0, r.output
    assert "4 runs: 2 ok, 2 error" in r.output
    assert (tmp_path / "o1/results.csv").read_bytes() == (tmp_path / "o2/results.csv").read_bytes()
    rows = {x["path"]: x for x in _csv_rows(tmp_path / "o2")}
    for rel, t in truths.items():
        assert rows[rel]["status"] == "ok", rows[rel]["error"]
        # the measurement's own accuracy is tested with measure; here: the row carries it
        assert abs(float(rows[rel]["percent_stenosis"]) - t["percent_stenosis"]) < 15
        assert rows[rel]["meets_50"] == str(t["percent_stenosis"] >= 50) or abs(t["percent_stenosis"] - 50) < 10
        assert rows[rel]["calibration_source"] and rows[rel]["run_id"]
        assert (tmp_path / "o2/reports").is_dir()
    for bad in ("site0/truncated.dcm", "site1/notes.dcm"):
        assert rows[bad]["status"] == "error" and rows[bad]["error"]
    # --sr: one SR per ok run, holding the row's percent stenosis
    hd = pytest.importorskip("highdicom")
    named = {x["path"]: x["sr"] for x in _csv_rows(tmp_path / "o1") if x["sr"]}
    assert sorted(named) == sorted(truths) and all(v.startswith("sr/site") for v in named.values())
    assert sorted(p.name for p in (tmp_path / "o1/sr").glob("*.dcm")) == sorted(Path(v).name for v in named.values())
    (group,) = hd.sr.srread(tmp_path / "o1" / named["site1/p1.dcm"]).content.get_planar_roi_measurement_groups()
    pct = [m.value for m in group.get_measurements() if m.unit.value == "%"]
    assert pct == [pytest.approx(float(rows["site1/p1.dcm"]["percent_stenosis"]))]
    text = (tmp_path / "o2/results.csv").read_text() + (tmp_path / "o2/results.jsonl").read_text()
    assert str(root) not in text  # no absolute paths in outputs


def test_read_points_reader_override_columns(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    header = ["path", "segment", "proximal_row", "proximal_col", "distal_row", "distal_col",
              "reference_choice", "mld_row", "mld_col", "waypoints"]
    pts = _write_points(tmp_path / "p.csv", [
        ["a.dcm", "M1", 1, 2, 3, 4, "Distal", "10.5", "20", "5 6;7.5,8"],
        ["b.dcm", "M1", 1, 2, 3, 4, "", "", "", ""],
    ], header=header)
    a, b = read_points(pts, root)
    assert a.reference_choice == "distal" and a.mld == (10.5, 20.0) and a.waypoints == ((5.0, 6.0), (7.5, 8.0))
    assert b.reference_choice is None and b.mld is None and b.waypoints == ()
    for row, needle in [(["a.dcm", "M1", 1, 2, 3, 4, "feeding", "", "", ""], "feeding artery needs its own points"),
                        (["a.dcm", "M1", 1, 2, 3, 4, "", "3", "", ""], "both mld_row and mld_col"),
                        (["a.dcm", "M1", 1, 2, 3, 4, "", "", "", "5;6"], "row col;row col")]:
        bad = _write_points(tmp_path / "bad.csv", [row], header=header)
        with pytest.raises(PointsFileError, match=needle) as ei:
            read_points(bad, root, strict=True)
        assert "\n" not in str(ei.value) and "line 2" in str(ei.value)


def test_read_points_frames_column(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    header = ["path", "segment", "proximal_row", "proximal_col", "distal_row", "distal_col", "frames"]
    pts = _write_points(tmp_path / "p.csv", [["a.dcm", "M1", 1, 2, 3, 4, "single"], ["b.dcm", "M1", 1, 2, 3, 4, "3"],
                                             ["c.dcm", "M1", 1, 2, 3, 4, ""]], header=header)
    a, b, c = read_points(pts, root)
    assert (a.frames, b.frames, c.frames) == ("single", 3, "all")
    bad = _write_points(tmp_path / "bad.csv", [["a.dcm", "M1", 1, 2, 3, 4, "many"]], header=header)
    with pytest.raises(PointsFileError, match="frames must be") as ei:
        read_points(bad, root, strict=True)
    assert "\n" not in str(ei.value) and "line 2" in str(ei.value)


@pytest.mark.slow
def test_real_batch_applies_reader_overrides(phantom_folder, tmp_path):
    """A points row with reference_choice=distal and a placed MLD: the batch row is the one
    ``measure`` gives with the same overrides, and records them."""
    import stenosis

    root, _, truths = phantom_folder
    rel, t = sorted(truths.items())[0]
    auto = stenosis.measure(root / rel, "M1", tuple(t["proximal_rc"]), tuple(t["distal_rc"]), model="classical")
    there = tuple(float(v) for v in auto.profile.centerline_rc[len(auto.profile.centerline_rc) // 8])
    header = ["path", "segment", "proximal_row", "proximal_col", "distal_row", "distal_col",
              "reference_choice", "mld_row", "mld_col", "waypoints"]
    pts = _write_points(tmp_path / "p.csv", [[rel, "M1", *t["proximal_rc"], *t["distal_rc"], "distal", *there, ""]],
                        header=header)
    run_batch(read_points(pts, root), tmp_path / "o", jobs=1, model="classical", progress=False)
    (row,) = read_jsonl(tmp_path / "o/results.jsonl")
    want = stenosis.measure(root / rel, "M1", tuple(t["proximal_rc"]), tuple(t["distal_rc"]), model="classical",
                            reference_choice="distal", mld=there)
    assert row["status"] == "ok", row["error"]
    assert row["reference_choice"] == "distal"
    assert row["percent_stenosis"] == pytest.approx(want.percent_stenosis, abs=0.01)
    assert abs(row["percent_stenosis"]) < 10  # the MLD placed on normal artery: no stenosis there
    assert row["parameters"]["reader"] == {"reference_choice": "distal", "mld_rc": [round(v, 2) for v in there]}


@pytest.mark.slow
def test_real_batch_auto_finds_the_lesions(phantom_folder, tmp_path):
    root, _, truths = phantom_folder
    r = _cli([root, "--auto", "--segment", "M1", "--out", tmp_path / "o", "--jobs", "1", "--model", "classical", "-q"])
    assert r.exit_code == 0, r.output
    rows = {x["path"]: x for x in read_jsonl(tmp_path / "o/results.jsonl")}
    assert rows["site0/truncated.dcm"]["status"] == "error"
    assert rows["site1/notes.dcm"]["status"] == "error"  # named .dcm, not DICOM: reported, not skipped
    for rel, t in truths.items():
        row = rows[rel]
        assert row["status"] == "ok" and row["mode"] == "auto", row.get("error")
        assert 0 <= row["confidence"] <= 1
        mm = 0.2  # phantom mm/px
        assert np.hypot(*np.subtract(row["mld_rc"], t["mld_rc"])) * mm <= 3.0
        assert "frame" not in row["parameters"]["reader"]  # the frame --auto chose is not a reader's
    # the points used are written as a points file; fed back, the same numbers and no reader overrides
    # (results.csv's measured mld_row / reference_choice columns would read back as overrides)
    back = tmp_path / "o" / "points-auto.csv"
    with open(back, newline="") as f:
        assert next(csv.reader(f)) == ["path", "segment", "frame", "proximal_row", "proximal_col", "distal_row",
                                       "distal_col"]
    assert len(read_points(back, root)) == len(truths)
    r = _cli([root, "--points", back, "--out", tmp_path / "b", "--jobs", "1", "--model", "classical", "-q"])
    assert r.exit_code == 0, r.output
    again = {x["path"]: x for x in read_jsonl(tmp_path / "b/results.jsonl")}
    for rel in truths:
        assert again[rel]["percent_stenosis"] == pytest.approx(rows[rel]["percent_stenosis"], abs=1e-6)
        assert set(again[rel]["parameters"]["reader"]) == {"frame"}  # the reader confirmed the frame, nothing else


# ------------------------------------------- outputs that cannot collide or go stale
FIVE_NAMES = ["a b.dcm", "a_b.dcm", "a \u00fc b.dcm", "sub/x.dcm", "sub__x.dcm"]


def test_output_stems_differ_for_names_that_read_alike():
    stems = [output_stem(k) for k in [*FIVE_NAMES, "A_B.dcm", "a.dcm#M1", "a.dcm#V4"]]
    assert len(set(stems)) == len(stems)
    assert len({s.lower() for s in stems}) == len(stems)  # case-insensitive filesystems too
    assert all(s.isascii() and "/" not in s for s in stems)
    # a path measured twice (two segments): the file's stem, then the segment, as for one row
    assert output_stem("sub/a.dcm#V4").startswith("sub__a--V4-") and output_stem("a.dcm").startswith("a-")
    assert output_stem("scan#1.dcm").startswith("scan--1-") and output_stem("scan#1.dcm#M1").startswith("scan--1--M1-")


@pytest.mark.slow
def test_five_names_that_read_alike_give_five_reports_and_srs(phantom_folder, tmp_path):
    """Each run gets its own report and SR, the CSV names them, the SR names its source (by its
    run id: a file name may hold a patient's name)."""
    root, _, truths = phantom_folder
    rel, t = sorted(truths.items())[0]
    runs = _folder(tmp_path, {n: (root / rel).read_bytes() for n in FIVE_NAMES})
    pts = _write_points(tmp_path / "p.csv", [[n, "M1", *t["proximal_rc"], *t["distal_rc"], ""] for n in FIVE_NAMES])
    sr = pytest.importorskip("highdicom") is not None
    s = run_batch(read_points(pts, runs), tmp_path / "o", jobs=0, model="classical", progress=False, sr=sr)
    assert s.n_ok == 5
    rows = {r["path"]: r for r in _csv_rows(tmp_path / "o")}
    assert len({r["report"] for r in rows.values()}) == 5 and len({r["sr"] for r in rows.values()}) == 5
    assert len(list((tmp_path / "o/reports").glob("*.png"))) == 5
    assert len(list((tmp_path / "o/sr").glob("*.dcm"))) == 5
    journal = {r["path"]: r for r in read_jsonl(tmp_path / "o/results.jsonl")}
    import pydicom

    for name, row in rows.items():
        assert (tmp_path / "o" / row["report"]).is_file() and journal[name]["sr"] == row["sr"]
        ds = pydicom.dcmread(tmp_path / "o" / row["sr"])
        assert f"run {journal[name]['run_id']}" in str(ds.ContentSequence[-1].ContentSequence[0].ContentSequence[0].TextValue)


def test_rerun_into_a_non_empty_out_is_refused_or_moved_aside(tmp_path):
    root = _folder(tmp_path, GOOD)
    tasks = _tasks(root, sorted(GOOD))
    out = tmp_path / "o"
    run_batch(tasks, out, jobs=0, work=fake_work, progress=False)
    before = (out / "results.csv").read_bytes()
    with pytest.raises(OutputFolderError, match="use --resume"):
        run_batch(tasks[:2], out, jobs=0, work=fake_work, progress=False)
    assert (out / "results.csv").read_bytes() == before
    pts = root.parent / "points.csv"
    r = _cli([root, "--points", pts, "--out", out])
    assert r.exit_code == 2 and "--resume" in r.output and "--overwrite" in r.output
    assert "Traceback" not in r.output
    s = run_batch(tasks[:2], out, jobs=0, overwrite=True, work=fake_work, progress=False)
    assert s.n_total == 2 and len(_csv_rows(out)) == 2
    (aside,) = out.glob("previous-*")
    assert (aside / "results.csv").read_bytes() == before


def _wait_for(cond, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def test_workers_exit_at_once_when_the_batch_process_dies(tmp_path):
    root = _folder(tmp_path, {"hang.dcm": b"HANG"})
    pts = _write_points(tmp_path / "p.csv", [["hang.dcm", "M1", 1, 2, 3, 4, ""]])
    script = _KILL_SCRIPT.format(tests=str(HERE), pts=str(pts), root=str(root), out=str(tmp_path / "o"))
    proc = subprocess.Popen([sys.executable, "-c", script])
    pid_file = root / "hang.dcm.pid"
    try:
        assert _wait_for(pid_file.exists, 60)
        worker = int(pid_file.read_text())
        os.kill(proc.pid, signal.SIGKILL)  # the batch process only, not its workers
        proc.wait()
        assert _wait_for(lambda: not _pid_alive(worker), 3.0), "worker outlived the batch process"
    finally:
        proc.kill()
        if pid_file.exists() and _pid_alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


@pytest.mark.slow
def test_sigterm_writes_the_csv_of_what_is_done_and_exits_143(phantom_folder, tmp_path):
    root, _, truths = phantom_folder
    rel, t = sorted(truths.items())[0]
    names = [f"r{i:02d}.dcm" for i in range(12)]
    runs = _folder(tmp_path, {n: (root / rel).read_bytes() for n in names})
    pts = _write_points(tmp_path / "p.csv", [[n, "M1", *t["proximal_rc"], *t["distal_rc"], ""] for n in names])
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "stenosis", "batch", str(runs), "--points", str(pts), "--out",
                             str(out), "--model", "classical", "--no-reports", "-q"],
                            stderr=subprocess.PIPE, text=True)
    journal = out / "results.jsonl"
    assert _wait_for(lambda: journal.exists() and journal.read_bytes().count(b"\n") >= 1, 120)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert len(err.strip().splitlines()) == 1 and "results.csv" in err
    rows = _csv_rows(out)
    assert 1 <= len(rows) < 12 and all(r["status"] == "ok" for r in rows)


def test_outputs_follow_the_umask(tmp_path):
    root = _folder(tmp_path, GOOD)
    tasks = _tasks(root, sorted(GOOD))
    for umask, mode in ((0o022, 0o644), (0o002, 0o664)):
        old = os.umask(umask)
        try:
            out = tmp_path / f"o{umask:o}"
            run_batch(tasks, out, jobs=0, work=fake_work, progress=False)
        finally:
            os.umask(old)
        for name in ("results.csv", "results.jsonl", "summary.png"):
            assert (out / name).stat().st_mode & 0o777 == mode, (name, oct(umask))


# ------------------------------------------------------------- --auto needs the artery
def test_auto_needs_the_artery_per_run(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    for args in ([root, "--auto", "--out", tmp_path / "o"],
                 [root, "--auto", "--segment", "M1", "--segments", tmp_path / "s.csv", "--out", tmp_path / "o"],
                 [root, "--points", tmp_path / "p.csv", "--segment", "M1", "--out", tmp_path / "o"]):
        r = _cli(args)
        assert r.exit_code == 2, r.output
        assert "Traceback" not in r.output
    r = _cli([root, "--auto", "--out", tmp_path / "o"])
    assert "--segment" in r.output and "--segments" in r.output
    with pytest.raises(TypeError):
        auto_tasks(root)  # no silent default artery
    seg = _write_points(tmp_path / "s.csv", [["a.dcm", "ba", ""], ["b/c.dcm", "ICA", "2"]],
                        header=["path", "segment", "frame"])
    a, c = read_segments(seg, root)
    assert (a.path, a.segment, a.mode, a.proximal, a.frame) == ("a.dcm", "BA", "auto", None, None)
    assert (c.segment, c.frame) == ("ICA", 2)
    bad = _write_points(tmp_path / "bad.csv", [["a.dcm", "M2"]], header=["path", "segment"])
    with pytest.raises(PointsFileError, match="segments file bad.csv line 2: segment 'M2'"):
        read_segments(bad, root, strict=True)
    (t,) = read_segments(bad, root)
    assert t.mode == "auto" and "segment 'M2'" in t.problem


@pytest.mark.slow
def test_auto_report_says_the_points_were_placed_automatically(phantom_folder):
    import stenosis
    from stenosis.report import report_figure

    root, _, truths = phantom_folder
    rel, t = sorted(truths.items())[0]
    res = stenosis.measure(root / rel, "M1", tuple(t["proximal_rc"]), tuple(t["distal_rc"]), model="classical")
    texts = [x.get_text() for x in report_figure(res, auto_confidence=0.42).texts]
    assert any("placed automatically (confidence 0.42)" in x and "confirm" in x for x in texts)
    assert not any("automatically" in x for x in (y.get_text() for y in report_figure(res).texts))


def test_the_waypoints_a_row_writes_are_read_back_by_the_points_file(tmp_path):
    """results.csv wrote waypoints as ``179;201 190;230`` (row;col, space between points) and the
    points file, fed that cell back, refused it (it reads ``row col;row col``)."""
    from stenosis.result import row_from_dict

    root = tmp_path / "runs"
    root.mkdir()
    way = [[179.0, 201.0], [190.5, 230.0]]
    cell = row_from_dict({"file": "a.dcm", "parameters": {"reader": {"waypoints_rc": way}}})["waypoints"]
    assert cell == "179 201;190.5 230"
    header = ["path", "segment", "proximal_row", "proximal_col", "distal_row", "distal_col", "waypoints"]
    (task,) = read_points(_write_points(tmp_path / "p.csv", [["a.dcm", "M1", 1, 2, 3, 4, cell]], header=header), root)
    assert [list(w) for w in task.waypoints] == way


def test_the_summary_lists_the_runs_a_reader_must_confirm():
    """summary.png's text names the runs >= 50%, then those whose call a reader must confirm (each
    with its percent and SD), then the errors."""
    from stenosis.batch.summary import summary_lines

    rows = [
        {"status": "ok", "path": "a.dcm", "segment": "M1", "percent_stenosis": 62.0, "needs_confirmation": False,
         "uncertainty": {"percent_stenosis_sd": 2.0}},
        {"status": "ok", "path": "b.dcm", "segment": "ICA", "percent_stenosis": 47.0, "needs_confirmation": True,
         "uncertainty": {"percent_stenosis_sd": 3.4}},
        {"status": "ok", "path": "c.dcm", "segment": "BA", "percent_stenosis": 20.0, "needs_confirmation": False},
        {"status": "error", "path": "d.dcm", "error": "not DICOM; give the DICOM export"},
    ]
    lines = summary_lines(rows)
    assert lines[:2] == ["flagged (>= 50%): 1", "  a.dcm [M1] 62% +- 2"]
    assert lines[2:4] == ["a reader must confirm the >= 50% call: 1", "  b.dcm [ICA] 47% +- 3"]
    assert lines[4] == "errors: 1" and "d.dcm: not DICOM" in lines[5]
