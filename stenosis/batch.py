"""Batch measurement of a folder of runs: unattended, resumable, nothing lost.

A batch is a list of :class:`Task` (one run + one segment + the reader's points,
or ``mode="auto"`` when :func:`stenosis.auto.find_lesion` places the points) and
one per-run function, :func:`measure_one`, that turns a task into a result row
(the ``measure --json`` object plus batch fields). Everything else here is the
machinery around that function:

* **Worker processes.** Each worker is a separate process (``forkserver`` start
  method on Linux, ``spawn`` elsewhere; never ``fork``, which is unsafe once torch
  has started threads). A worker warms up once (imports, model weights, skan's
  numba kernels), then measures tasks one at a time and retires after
  ``max_tasks_per_child`` tasks so memory stays flat over thousands of runs.
  The pool is a small one of our own rather than
  :class:`concurrent.futures.ProcessPoolExecutor`: the executor cannot kill one
  hung task without breaking the whole pool, and does not say when a queued task
  actually started, so a per-run timeout could not be measured honestly. Here the
  parent sends a task only to an idle, warmed-up worker, so the timeout counts
  measurement time only; a worker past its deadline is killed and replaced, and
  its run becomes an error row.
* **Atomic outputs.** ``results.jsonl`` is the journal: the parent (the only
  writer) appends each finished row as one complete line and fsyncs it, so a kill
  loses nothing already written and leaves at most a partial *last* line, which
  readers ignore and the next ``--resume`` truncates. ``results.csv`` and
  ``summary.png`` are rewritten from the journal via a temporary file and
  :func:`os.replace`; workers write ``reports/<run>.png`` the same way.
* **Determinism.** Rows are sorted by path (then segment, frame) whatever the
  completion order, and every worker runs torch with one thread, so ``--jobs 1``
  and ``--jobs 2`` give identical numbers.

Scaling out with Dask
---------------------
``run_batch(..., scheduler="tcp://host:8786")`` (``stenosis batch ... --scheduler``)
sends the same :func:`measure_one` calls to a ``dask.distributed`` cluster instead
of local processes. A core lab scales out like this:

1. Put the incoming runs and the output folder on a filesystem every machine
   mounts **at the same path** (NFS/SMB share); workers read runs and write
   ``reports/`` there, the client alone writes ``results.jsonl``/``results.csv``.
2. Install the same ``stenosis[batch]`` version on every machine.
3. On one machine start ``dask scheduler`` (port 8786; dashboard on 8787).
4. On each machine start ``dask worker tcp://SCHEDULER:8786 --nworkers N
   --nthreads 1 --memory-limit 4GB`` (one thread per worker process: torch and
   the numba kernels are not shared safely between threads; N = cores).
5. Run ``stenosis batch /share/incoming --points points.csv --out /share/out
   --scheduler tcp://SCHEDULER:8786``; ``--resume`` works the same way.

Under Dask a run cannot be killed from outside its worker thread; past the
timeout it becomes an error row and its future is cancelled, but the worker
thread finishes it in the background (restart hung workers with
``dask worker --lifetime``).
"""
from __future__ import annotations

import csv
import functools
import io
import json
import math
import multiprocessing as mp
import os
import re
import sys
import tempfile
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import wait as _mp_wait
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ._version import __version__
from .enums import ModelName, Segment
from .errors import InputError, StenosisError

__all__ = [
    "CSV_COLUMNS",
    "POINT_COLUMNS",
    "PointsFileError",
    "Task",
    "WorkOptions",
    "BatchSummary",
    "read_points",
    "auto_tasks",
    "measure_one",
    "error_row",
    "run_batch",
    "read_jsonl",
    "write_results_csv",
    "write_summary_figure",
]

#: Columns of ``results.csv`` (one row per task), in order.
CSV_COLUMNS: tuple[str, ...] = (
    "path",
    "status",
    "error",
    "segment",
    "frame_index",
    "percent_stenosis",
    "percent_stenosis_sd",
    "meets_50",
    "mld_mm",
    "reference_diameter_mm",
    "reference_choice",
    "lesion_length_mm",
    "calibration_source",
    "mode",
    "confidence",
    "proximal_row",
    "proximal_col",
    "distal_row",
    "distal_col",
    "warnings",
    "run_id",
    "software_version",
    "model_sha256",
)

#: Required columns of a points file; ``frame`` is optional.
POINT_COLUMNS: tuple[str, ...] = (
    "path",
    "segment",
    "proximal_row",
    "proximal_col",
    "distal_row",
    "distal_col",
)

JSONL_NAME = "results.jsonl"
CSV_NAME = "results.csv"
SUMMARY_NAME = "summary.png"
REPORTS_DIR = "reports"
SR_DIR = "sr"

DEFAULT_MAX_TASKS_PER_CHILD = 100


class PointsFileError(InputError):
    """The points CSV is malformed (missing columns, bad values, duplicate rows)."""


# --------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class Task:
    """One unit of batch work: one run, one segment.

    Attributes
    ----------
    path : str
        Run path relative to the batch folder (POSIX separators); what outputs show.
    source : str
        Absolute path the worker reads (a file, or a folder of single-frame files).
    segment : str
        ``"ICA"``, ``"M1"``, ``"V4"`` or ``"BA"``.
    proximal, distal : tuple of float or None
        Reader's points (row, col) in pixels; None in auto mode.
    frame : int or None
        0-based frame index; None lets the measurement choose.
    mode : str
        ``"points"`` or ``"auto"``.
    key : str
        Unique id of the task within the batch (the path, plus segment/frame when a
        path occurs more than once); used by ``--resume`` and to name reports.
    files : tuple of str
        When set, the exact files of the run (a single-frame series found by
        :func:`stenosis.io.find_runs`); `source` is then their common folder.
    reference_choice : str or None
        Reader-forced WASID site (``proximal`` or ``distal``); optional column.
    mld : tuple of float or None
        Reader-placed MLD (row, col); optional columns ``mld_row``, ``mld_col``.
    waypoints : tuple of (row, col)
        Inner centerline points; optional column ``waypoints`` as ``row col;row col``.
    """

    path: str
    source: str
    segment: str
    proximal: tuple[float, float] | None = None
    distal: tuple[float, float] | None = None
    frame: int | None = None
    mode: str = "points"
    key: str = ""
    files: tuple[str, ...] = ()  # the files of a single-frame series (from find_runs)
    reference_choice: str | None = None
    mld: tuple[float, float] | None = None
    waypoints: tuple[tuple[float, float], ...] = ()

    def sort_key(self) -> tuple:
        return (self.path, self.segment, -1 if self.frame is None else self.frame, self.key)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["proximal"] = list(self.proximal) if self.proximal is not None else None
        d["distal"] = list(self.distal) if self.distal is not None else None
        d["files"] = list(self.files)
        d["mld"] = list(self.mld) if self.mld is not None else None
        d["waypoints"] = [list(w) for w in self.waypoints]
        return d

    def read(self):
        """Read this task's run (:func:`stenosis.io.read_run`)."""
        from .io import RunSource, read_run

        return read_run(RunSource(tuple(self.files)) if self.files else self.source)


@dataclass(frozen=True)
class WorkOptions:
    """Options every per-run call receives (picklable; the same for all tasks).

    Attributes
    ----------
    out_dir : str
        Output folder; reports go to ``out_dir/reports``, SRs to ``out_dir/sr``.
    model : str
        Vessel-probability model, ``"unet"`` or ``"classical"``.
    reports : bool
        Write ``reports/<run>.png``.
    sr : bool
        Write a DICOM Structured Report ``sr/<run>.dcm`` (needs highdicom).
    keep_identifiers : bool
        The SR copies the patient/study identifiers and UIDs of the source
        (default: a pseudonymous SR, see :mod:`stenosis.sr`).
    """

    out_dir: str
    model: str = "unet"
    reports: bool = True
    sr: bool = False
    keep_identifiers: bool = False
    auto: bool = False  # some tasks are --auto (workers then warm skan's kernels too)


@dataclass(frozen=True)
class BatchSummary:
    """What a batch did. ``n_ok + n_error == n_total`` (rows in ``results.csv``)."""

    n_total: int
    n_ok: int
    n_error: int
    n_meets_50: int
    n_skipped: int  # already in results.jsonl and skipped by --resume
    n_run: int  # measured in this invocation
    n_timeout: int
    elapsed_s: float
    out_dir: str
    peak_rss_mb_per_worker: dict[int, float] = field(default_factory=dict)
    flagged: tuple[str, ...] = ()  # paths of runs with percent stenosis >= 50
    n_confirm: int = 0  # runs whose >= 50% call a reader should confirm (near 50%: see measurement.borderline_warning)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["peak_rss_mb_per_worker"] = {str(k): v for k, v in self.peak_rss_mb_per_worker.items()}
        d["flagged"] = list(self.flagged)
        return d

    def line(self) -> str:
        """One-line closing summary."""
        s = (
            f"{self.n_total} runs: {self.n_ok} ok, {self.n_error} error, "
            f"{self.n_meets_50} with stenosis >= 50%"
        )
        if self.n_confirm:
            s += f" ({self.n_confirm} within the measurement's uncertainty of 50%: a reader should confirm them)"
        if self.n_skipped:
            s += f" ({self.n_skipped} already done, skipped)"
        return s


def _percent_sd(row: Mapping[str, Any]) -> float:
    sd = (row.get("uncertainty") or {}).get("percent_stenosis_sd")
    return float(sd) if sd is not None else float("nan")


def _needs_confirmation(row: Mapping[str, Any]) -> bool:
    """Whether an ok row's >= 50% call is close enough to 50% to ask a reader (the measure rule)."""
    from .measurement import borderline_warning

    pct = row.get("percent_stenosis")
    return pct is not None and borderline_warning(float(pct), _percent_sd(row)) is not None


def _norm_rel(path: str) -> str:
    return Path(path).as_posix().lstrip("./") if not os.path.isabs(path) else Path(path).as_posix()


def _assign_keys(tasks: list[Task]) -> list[Task]:
    """Give each task a unique key: the path, qualified only where a path repeats."""
    count: dict[str, int] = {}
    for t in tasks:
        count[t.path] = count.get(t.path, 0) + 1
    out = []
    for t in tasks:
        key = t.path
        if count[t.path] > 1:
            key = f"{t.path}#{t.segment}" + ("" if t.frame is None else f"#f{t.frame}")
        out.append(replace(t, key=key))
    # two series in one folder share a path: number them in (sorted) order
    seen: dict[str, int] = {}
    for i, t in enumerate(out):
        n = seen[t.key] = seen.get(t.key, 0) + 1
        if n > 1:
            out[i] = replace(t, key=f"{t.key}#{n}")
    return sorted(out, key=Task.sort_key)


def read_points(csv_path: str | os.PathLike, root: str | os.PathLike) -> list[Task]:
    """Read a points file into tasks.

    Parameters
    ----------
    csv_path : path
        CSV with columns ``path,segment,proximal_row,proximal_col,distal_row,distal_col``
        and optional ``frame`` (0-based); extra columns are ignored. ``path`` is
        relative to `root`. Points are pixel (row, col), fractional allowed.
    root : path
        The batch folder.

    Returns
    -------
    list of Task
        Sorted by path.

    Raises
    ------
    PointsFileError
        One line naming the file, the line number and what to fix.
    """
    csv_path = Path(csv_path)
    root = Path(root)
    name = csv_path.name
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise PointsFileError(f"points file {name} is not UTF-8 text; save it as a UTF-8 CSV") from None
    except OSError as exc:
        raise PointsFileError(f"cannot read points file {name} ({exc.strerror}); check the path") from None
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text.strip() else ",", delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        header = next(reader)
    except StopIteration:
        raise PointsFileError(
            f"points file {name} is empty; it needs a header row: {','.join(POINT_COLUMNS)}[,frame]"
        ) from None
    cols = [c.strip().lower() for c in header]
    missing = [c for c in POINT_COLUMNS if c not in cols]
    if missing:
        raise PointsFileError(
            f"points file {name} lacks column(s) {','.join(missing)}; "
            f"expected header: {','.join(POINT_COLUMNS)}[,frame]"
        )
    dup_cols = sorted({c for c in cols if c and cols.count(c) > 1})
    if dup_cols:
        raise PointsFileError(f"points file {name} has duplicate column(s) {','.join(dup_cols)}; keep one of each")
    idx = {c: cols.index(c) for c in cols if c}
    segments = {s.value for s in Segment}
    tasks: list[Task] = []
    seen: dict[tuple, int] = {}
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        where = f"points file {name} line {lineno}"

        def cell(col: str) -> str:
            i = idx[col]
            return row[i].strip() if i < len(row) else ""

        path = cell("path")
        if not path:
            raise PointsFileError(f"{where}: empty path; give the run path relative to the batch folder")
        seg = cell("segment").upper()
        if seg not in segments:
            raise PointsFileError(
                f"{where}: segment {cell('segment')!r} is not one of {','.join(sorted(segments))}"
            )
        coords = []
        for col in POINT_COLUMNS[2:]:
            raw = cell(col)
            try:
                v = float(raw)
            except ValueError:
                raise PointsFileError(f"{where}: {col} {raw!r} is not a number (pixels, e.g. 120.5)") from None
            if not math.isfinite(v):
                raise PointsFileError(f"{where}: {col} {raw!r} is not a finite number")
            coords.append(v)
        frame: int | None = None
        if "frame" in idx and cell("frame") != "":
            raw = cell("frame")
            try:
                fv = float(raw)
                if not fv.is_integer() or fv < 0:
                    raise ValueError
                frame = int(fv)
            except ValueError:
                raise PointsFileError(
                    f"{where}: frame {raw!r} is not a frame number (0-based integer, or leave it empty)"
                ) from None
        overrides = _override_cells(cell, idx, where)
        rel = _norm_rel(path)
        ident = (rel, seg, frame)
        if ident in seen:
            raise PointsFileError(
                f"{where}: duplicates line {seen[ident]} (same path, segment and frame); remove one"
            )
        seen[ident] = lineno
        src = root / path if not os.path.isabs(path) else Path(path)
        tasks.append(
            Task(
                path=rel,
                source=str(src.absolute()),
                segment=seg,
                proximal=(coords[0], coords[1]),
                distal=(coords[2], coords[3]),
                frame=frame,
                mode="points",
                **overrides,
            )
        )
    if not tasks:
        raise PointsFileError(f"points file {name} has a header but no rows; add one row per run")
    return _assign_keys(tasks)


def _override_cells(cell, idx: dict, where: str) -> dict[str, Any]:
    """Reader overrides of one points-file row (empty cells: the tool chooses)."""
    out: dict[str, Any] = {}
    if "reference_choice" in idx and cell("reference_choice"):
        rc = cell("reference_choice").lower()
        if rc not in ("proximal", "distal"):
            raise PointsFileError(
                f"{where}: reference_choice {rc!r} is not proximal or distal (or leave it empty; the feeding "
                "artery needs its own points: measure that run with stenosis measure --feeding-proximal/--feeding-distal)"
            )
        out["reference_choice"] = rc
    have = [c for c in ("mld_row", "mld_col") if c in idx and cell(c)]
    if len(have) == 1:
        raise PointsFileError(f"{where}: give both mld_row and mld_col, or neither")
    if have:
        try:
            v = (float(cell("mld_row")), float(cell("mld_col")))
        except ValueError:
            raise PointsFileError(f"{where}: mld_row/mld_col must be numbers (pixels)") from None
        if not all(math.isfinite(x) for x in v):
            raise PointsFileError(f"{where}: mld_row/mld_col must be finite numbers")
        out["mld"] = v
    if "waypoints" in idx and cell("waypoints"):
        pts = []
        for part in cell("waypoints").split(";"):
            if not part.strip():
                continue
            try:
                r, c = (float(t) for t in part.replace(",", " ").split())
            except ValueError:
                raise PointsFileError(
                    f"{where}: waypoints {cell('waypoints')!r} must be 'row col;row col' (pixels, proximal to distal)"
                ) from None
            if not (math.isfinite(r) and math.isfinite(c)):
                raise PointsFileError(f"{where}: waypoints must be finite numbers")
            pts.append((r, c))
        out["waypoints"] = tuple(pts)
    return out


#: File name endings taken for runs even without the DICOM preamble, so that a
#: broken ``.dcm`` in an --auto folder is an error row rather than silently ignored.
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")


def auto_tasks(root: str | os.PathLike, *, segment: str = "M1") -> list[Task]:
    """One ``mode="auto"`` task per run found (recursively) under `root`.

    Runs are those of :func:`stenosis.io.find_runs` (DICOM by preamble, single-frame
    series grouped); files named ``*.dcm``/``*.dicom`` that are not DICOM are added
    too, so that they come out as error rows.

    Raises
    ------
    InputError
        `root` is not a readable folder or holds no DICOM runs.
    """
    from .io import find_runs

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a readable folder; give the folder that holds the runs")
    seg = str(Segment(str(segment).upper()))
    base = root.absolute()

    def rel(p: Path) -> str:
        try:
            return p.relative_to(base).as_posix() or "."
        except ValueError:
            return p.as_posix()

    tasks = []
    seen: set[str] = set()
    for src in find_runs(root):
        files = tuple(str(Path(f).absolute()) for f in src.paths)
        seen.update(files)
        path = Path(src.path).absolute()
        tasks.append(
            Task(path=rel(path), source=str(path), segment=seg, mode="auto", files=files if len(files) > 1 else ())
        )
    if not tasks:
        raise InputError(
            f"no DICOM runs found under {root}; check the folder (runs are recognised by the DICOM preamble)"
        )
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name.lower().endswith(DICOM_SUFFIXES) and str(p) not in seen:
                tasks.append(Task(path=rel(p), source=str(p), segment=seg, mode="auto"))
    return _assign_keys(tasks)


# ------------------------------------------------------------------ per-run work
def _software() -> dict[str, Any]:
    try:
        from .segmentation import model_sha256

        sha = model_sha256()
    except Exception:
        sha = None
    return {"version": __version__, "model_sha256": sha}


def _exc_message(exc: BaseException) -> str:
    if isinstance(exc, StenosisError):
        msg = str(exc)
    elif isinstance(exc, MemoryError):
        msg = "out of memory while measuring this run; it is larger than a worker can hold"
    else:
        msg = f"internal error ({type(exc).__name__}: {exc}); report it with this run"
    return " ".join(msg.split())


def _relative_text(text: str, task: Task) -> str:
    """Replace the task's absolute paths in a message by its batch-relative path
    (outputs carry no absolute paths: folder names can hold patient names)."""
    text = " ".join(str(text).split())
    for p in sorted({task.source, *task.files}, key=len, reverse=True):
        if p:
            text = text.replace(p, task.path)
    return text


def error_row(task: Task, message: str, *, software: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The row recorded for a task that could not be measured."""
    message = _relative_text(message, task)
    sw = dict(software) if software is not None else {"version": __version__, "model_sha256": None}
    return {
        "key": task.key or task.path,
        "path": task.path,
        "status": "error",
        "error": " ".join(str(message).split()),
        "segment": task.segment,
        "mode": task.mode,
        "frame_index": task.frame,
        "proximal_rc": list(task.proximal) if task.proximal is not None else None,
        "distal_rc": list(task.distal) if task.distal is not None else None,
        "software": sw,
    }


def output_stem(key: str) -> str:
    """File stem for a task's report/SR: the key with separators made safe."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", key.replace("/", "__").replace("#", "--")).strip("._")
    return stem or "run"


def _atomic_save(path: Path, writer: Callable[[str], None], suffix: str) -> None:
    """Call ``writer(tmp_path)`` then move the finished file into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.stem + ".", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` durably (fsync) and move it into place in one step."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    _atomic_save(path, write, ".tmp")


def _jsonable(obj: Any) -> Any:
    """Plain JSON types (numpy scalars/arrays, enums, tuples, paths)."""
    import enum

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (str, bool)) or obj is None:
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):
        return _jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return _jsonable(obj.item())
    return str(obj)


def measure_one(task: Task, options: WorkOptions) -> dict[str, Any]:
    """Measure one task; never raises for a bad run (returns an error row instead).

    Reads the run, places the points (auto mode: :func:`stenosis.auto.find_lesion`),
    measures with WASID (:func:`stenosis.measure.measure`), writes the report PNG
    (and SR) atomically, and returns the ``measure --json`` object extended with
    ``key, path, status, error, mode, confidence, proximal_rc, distal_rc, run_id``.
    ``file`` is the path relative to the batch folder (no absolute paths, no patient
    identifiers in outputs).
    """
    software = _software()
    try:
        from .measurement import measure

        run = task.read()
        proximal, distal, frame = task.proximal, task.distal, task.frame
        confidence: float | None = None
        auto_info: dict[str, Any] = {}
        if task.mode == "auto":
            from .auto import find_lesion

            lesion = find_lesion(run, model=options.model, frame=frame)
            proximal, distal, frame = lesion.proximal, lesion.distal, lesion.frame_index
            confidence = float(lesion.confidence)
            auto_info = {"auto": lesion.to_dict()}
        result = measure(run, task.segment, proximal, distal, frame, model=options.model,
                         reference_choice=task.reference_choice, mld=task.mld, waypoints=list(task.waypoints))
        row = _jsonable(result.to_dict())
        row.update(
            {
                "key": task.key or task.path,
                "path": task.path,
                "file": task.path,
                "status": "ok",
                "error": None,
                "mode": task.mode,
                "confidence": confidence,
                "proximal_rc": [float(proximal[0]), float(proximal[1])],
                "distal_rc": [float(distal[0]), float(distal[1])],
                "run_id": getattr(getattr(run, "metadata", None), "run_id", None),
            }
        )
        row["warnings"] = [_relative_text(w, task) for w in row.get("warnings") or []]
        row.update(_jsonable(auto_info))
        if task.mode == "auto":
            row["mode"] = "auto"
            warns = list(row.get("warnings") or [])
            warns.append(f"auto: points placed automatically (confidence {confidence:.2f}); confirm them")
            if lesion.orientation == "undetermined":
                warns.append("auto: flow direction not evident; check which point is proximal")
            row["warnings"] = warns
        row.setdefault("software", software)
        stem = output_stem(task.key or task.path)
        if options.reports:
            try:
                from .report import save_report

                _atomic_save(
                    Path(options.out_dir) / REPORTS_DIR / f"{stem}.png",
                    lambda tmp: save_report(result, run, tmp),
                    ".png",
                )
            except Exception as exc:  # the measurement stands; say the figure is missing
                row["warnings"] = [*row.get("warnings", []), f"report not written ({_exc_message(exc)})"]
        if options.sr:
            from .sr import write_sr

            _atomic_save(
                Path(options.out_dir) / SR_DIR / f"{stem}.dcm",
                lambda tmp: write_sr(row, list(task.files) or [task.source], tmp,
                                     keep_identifiers=getattr(options, "keep_identifiers", False)),
                ".dcm",
            )
        return row
    except Exception as exc:  # a bad run is an error row; the batch goes on
        if os.environ.get("STENOSIS_BATCH_DEBUG"):
            traceback.print_exc()
        return error_row(task, _exc_message(exc), software=software)


# ----------------------------------------------------------------- journal / CSV
def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a results journal; a trailing partial line (a kill mid-write) is ignored.

    Later rows for the same key replace earlier ones.
    """
    p = Path(path)
    if not p.exists():
        return []
    data = p.read_bytes()
    end = data.rfind(b"\n")
    rows: dict[str, dict[str, Any]] = {}
    for raw in data[: end + 1].splitlines():
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError:
            continue  # only a torn line can fail; complete lines are written whole
        rows[row.get("key") or row.get("path")] = row
    return list(rows.values())


class _Journal:
    """Append-only JSON-lines file: one complete, fsynced line per finished row."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # drop a torn trailing line left by a kill, so appends start on a line boundary
        if path.exists():
            with open(path, "rb+") as f:
                data = f.read()
                end = data.rfind(b"\n") + 1
                if end != len(data):
                    f.truncate(end)
                    f.flush()
                    os.fsync(f.fileno())
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, row: Mapping[str, Any]) -> None:
        line = (json.dumps(_jsonable(row), sort_keys=True, allow_nan=False) + "\n").encode()
        view = memoryview(line)
        while view:  # one write() in practice; loop only for a short write
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def _row_sort_key(row: Mapping[str, Any]) -> tuple:
    frame = row.get("frame_index")
    return (str(row.get("path")), str(row.get("segment")), -1 if frame is None else frame, str(row.get("key")))


def csv_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten one journal row into the ``results.csv`` columns."""
    cal = row.get("calibration") or {}
    sw = row.get("software") or {}
    prox = row.get("proximal_rc") or [None, None]
    dist = row.get("distal_rc") or [None, None]
    warnings = row.get("warnings") or []
    rec = {
        "path": row.get("path"),
        "status": row.get("status"),
        "error": row.get("error") or "",
        "segment": row.get("segment"),
        "frame_index": row.get("frame_index"),
        "percent_stenosis": row.get("percent_stenosis"),
        "percent_stenosis_sd": (row.get("uncertainty") or {}).get("percent_stenosis_sd"),
        "meets_50": row.get("meets_50"),
        "mld_mm": row.get("mld_mm"),
        "reference_diameter_mm": row.get("reference_diameter_mm"),
        "reference_choice": row.get("reference_choice"),
        "lesion_length_mm": row.get("lesion_length_mm"),
        "calibration_source": cal.get("source") if isinstance(cal, dict) else None,
        "mode": row.get("mode"),
        "confidence": row.get("confidence"),
        "proximal_row": prox[0],
        "proximal_col": prox[1],
        "distal_row": dist[0],
        "distal_col": dist[1],
        "warnings": "; ".join(str(w) for w in warnings) if isinstance(warnings, list) else str(warnings),
        "run_id": row.get("run_id"),
        "software_version": sw.get("version"),
        "model_sha256": sw.get("model_sha256"),
    }
    return {k: ("" if v is None else v) for k, v in rec.items()}


def write_results_csv(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Write ``results.csv`` atomically, rows sorted by path."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    w.writeheader()
    for row in sorted(rows, key=_row_sort_key):
        w.writerow(csv_record(row))
    _atomic_write_bytes(Path(path), buf.getvalue().encode())


def write_sorted_jsonl(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Rewrite the journal sorted by path (atomic), so finished batches compare equal."""
    data = "".join(
        json.dumps(_jsonable(r), sort_keys=True, allow_nan=False) + "\n" for r in sorted(rows, key=_row_sort_key)
    )
    _atomic_write_bytes(Path(path), data.encode())


def write_summary_figure(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Batch summary figure: percent stenosis of every measured run against the 50% line.

    Left: one dot per ok run (jittered strip, per segment) with the 50% threshold
    and a histogram; right: the flagged runs (>= 50%) and error rows, by path.
    """
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    ok = [r for r in rows if r.get("status") == "ok" and r.get("percent_stenosis") is not None]
    err = sorted((r for r in rows if r.get("status") != "ok"), key=_row_sort_key)
    flagged = sorted((r for r in ok if float(r["percent_stenosis"]) >= 50.0), key=_row_sort_key)
    fig, (ax_strip, ax_hist, ax_txt) = plt.subplots(
        1, 3, figsize=(13, 4.8), gridspec_kw={"width_ratios": [2, 2, 2.4]}
    )
    segs = sorted({str(r.get("segment")) for r in ok}) or ["-"]
    rng = np.random.default_rng(0)  # fixed jitter: the figure is reproducible
    for i, seg in enumerate(segs):
        vals = np.array([float(r["percent_stenosis"]) for r in ok if str(r.get("segment")) == seg])
        if vals.size:
            x = i + rng.uniform(-0.18, 0.18, vals.size)
            colors = np.where(vals >= 50.0, "tab:red", "tab:blue")
            sds = np.array([_percent_sd(r) for r in ok if str(r.get("segment")) == seg])
            has = np.isfinite(sds)
            if has.any():  # +-2 SD of each measurement
                ax_strip.errorbar(x[has], vals[has], yerr=2 * sds[has], fmt="none", ecolor="0.6", elinewidth=0.7, zorder=1)
            ax_strip.scatter(x, vals, c=colors, s=18, alpha=0.8, edgecolors="none", zorder=2)
    ax_strip.axhline(50.0, color="tab:red", ls="--", lw=1)
    ax_strip.set_xticks(range(len(segs)), segs)
    ax_strip.set_xlim(-0.6, len(segs) - 0.4)
    ax_strip.set_ylim(0, 100)
    ax_strip.set_ylabel("percent stenosis (WASID)")
    n_confirm = sum(_needs_confirmation(r) for r in ok)
    ax_strip.set_title(f"{len(ok)} measured, {len(flagged)} >= 50%, {n_confirm} to confirm (bars: +-2 SD)", fontsize=10)
    vals_all = np.array([float(r["percent_stenosis"]) for r in ok])
    ax_hist.hist(vals_all, bins=np.arange(0, 105, 5), color="tab:blue", alpha=0.8)
    ax_hist.axvline(50.0, color="tab:red", ls="--", lw=1)
    ax_hist.set_xlabel("percent stenosis")
    ax_hist.set_ylabel("runs")
    ax_hist.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax_hist.set_title("distribution")
    ax_txt.axis("off")
    lines = [f"flagged (>= 50%): {len(flagged)}"]
    lines += [f"  {r['path']} [{r.get('segment')}] {float(r['percent_stenosis']):.0f}%" for r in flagged[:18]]
    if len(flagged) > 18:
        lines.append(f"  ... and {len(flagged) - 18} more (see results.csv)")
    lines.append(f"errors: {len(err)}")
    lines += [f"  {r['path']}" for r in err[:10]]
    if len(err) > 10:
        lines.append(f"  ... and {len(err) - 10} more")
    ax_txt.text(0, 1, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=8)
    fig.tight_layout()
    try:
        _atomic_save(Path(path), lambda tmp: fig.savefig(tmp, dpi=100, format="png"), ".png")
    finally:
        plt.close(fig)


# ----------------------------------------------------------------- worker pool
def _peak_rss_mb() -> float:
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20
    except Exception:
        return float("nan")


def warm_up(model: str = "unet", *, auto: bool = True) -> None:
    """Load what every run needs once per worker: model weights, and for --auto torch (one
    thread) and skan's numba kernels. Best effort: a failure here shows up in the runs' rows."""
    if auto:
        try:
            import torch

            torch.set_num_threads(1)  # determinism across --jobs and no oversubscription
        except Exception:
            pass
    try:
        import numpy as np

        from .segmentation import vessel_probability

        import warnings

        frame = np.full((64, 64), 1000, np.uint16)
        frame[30:34, 4:60] = 400
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "weights not shipped": the runs' rows say it
            vessel_probability(frame, model=model)
    except Exception:
        pass
    if auto:
        try:
            from .auto import warm_up as auto_warm

            auto_warm()
        except Exception:
            pass


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim`` (None elsewhere: musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        fn = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def release_memory() -> None:
    """Give back what one run left behind, so a worker's memory does not creep.

    Two things, both measured (``benchmarks/batch.py --memory``): each run's PNG
    report leaves a matplotlib Figure (thousands of objects in reference cycles,
    plus its Agg buffer) that only a full collection frees, which a worker with
    torch and scipy loaded runs rarely, so RSS saw-toothed by tens of MB; and
    glibc keeps freed heap pages of the large per-run arrays mapped. A collection
    after :func:`gc.freeze` (done once after warm-up) scans only objects made
    since, and ``malloc_trim(0)`` returns the free pages to the OS.
    """
    import gc

    gc.collect()
    fn = _malloc_trim()
    if fn is not None:
        try:
            fn(0)
        except Exception:
            pass


def _worker_main(conn, work, options, max_tasks, warm) -> None:
    import warnings

    # Python warnings would scribble over the parent's progress bar; what matters
    # for a run is in its row (result warnings, error message)
    warnings.simplefilter("ignore")
    if warm:
        if isinstance(options, WorkOptions):
            warm_up(options.model, auto=options.auto)
        else:
            warm_up()
    import gc

    # what warm-up loaded (modules, weights) lives as long as the worker: move it out
    # of the collector's generations, so the per-run full collection stays cheap
    gc.collect()
    gc.freeze()
    try:
        conn.send(("ready", os.getpid(), _peak_rss_mb()))
        done = 0
        while True:
            msg = conn.recv()
            if msg is None:
                break
            idx, task = msg
            try:
                row = work(task, options)
            except BaseException as exc:  # work functions should not raise; keep the batch alive
                row = error_row(task, _exc_message(exc))
            release_memory()
            done += 1
            retire = done >= max_tasks
            conn.send(("done", idx, row, _peak_rss_mb(), retire))
            if retire:
                break
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        conn.close()


def _mp_context(*, heavy: bool = True, torch_too: bool = False):
    methods = mp.get_all_start_methods()
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        # heavy imports happen once in the fork server (if it is not running yet), so
        # every new or replaced worker starts with the pipeline imported; torch only for
        # --auto (whole-frame U-Net maps): the measurement's crops run on numpy
        mods = ["stenosis.batch"]
        if heavy:
            mods += ["numpy", "scipy.ndimage", "stenosis.measurement", "stenosis.auto"]
            if torch_too:
                mods.append("torch")
        ctx.set_forkserver_preload(mods)
        return ctx
    return mp.get_context("spawn")


class _Worker:
    def __init__(self, ctx, work, options, max_tasks, warm):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=_worker_main, args=(child, work, options, max_tasks, warm), daemon=True
        )
        self.proc.start()
        child.close()
        self.ready = False
        self.retiring = False
        self.task: tuple[int, Task, float] | None = None  # (index, task, start time)

    def kill(self) -> None:
        try:
            self.proc.kill()
        except Exception:
            pass
        self.proc.join(5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except Exception:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.kill()
        else:
            self.conn.close()


def _run_processes(
    tasks: Sequence[Task],
    work: Callable,
    options: Any,
    *,
    jobs: int,
    timeout: float | None,
    max_tasks_per_child: int,
    warm: bool,
    on_row: Callable[[dict[str, Any]], None],
    rss: dict[int, float],
) -> int:
    """Run tasks on `jobs` worker processes; call ``on_row`` in the parent per finished row.

    Returns the number of timed-out tasks.
    """
    ctx = _mp_context(heavy=work is measure_one, torch_too=bool(getattr(options, "auto", False)))
    pending = deque(enumerate(tasks))
    workers: list[_Worker] = []
    n_timeout = 0
    start_failures = 0

    def spawn() -> None:
        workers.append(_Worker(ctx, work, options, max_tasks_per_child, warm))

    try:
        while pending or any(w.task for w in workers):
            busy = sum(1 for w in workers if w.task)
            want = min(jobs, busy + len(pending))
            while len(workers) < want:
                spawn()
            for w in workers:
                if w.ready and not w.retiring and w.task is None and pending:
                    idx, task = pending.popleft()
                    w.task = (idx, task, time.monotonic())
                    try:
                        w.conn.send((idx, task))
                    except (BrokenPipeError, OSError):
                        pass  # its death is noticed below through the sentinel
            deadlines = [w.task[2] + timeout for w in workers if w.task and timeout]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            objs = [w.conn for w in workers] + [w.proc.sentinel for w in workers]
            ready = set(_mp_wait(objs, timeout=wait_s if wait_s is None else min(wait_s, 5.0)))
            for w in list(workers):
                dead = False
                if w.conn in ready:
                    try:
                        while w.conn.poll():
                            msg = w.conn.recv()
                            if msg[0] == "ready":
                                w.ready = True
                                start_failures = 0
                                rss[msg[1]] = max(rss.get(msg[1], 0.0), msg[2])
                            elif msg[0] == "done":
                                _, idx, row, peak, retire = msg
                                rss[w.proc.pid] = max(rss.get(w.proc.pid, 0.0), peak)
                                w.task = None
                                w.retiring = retire
                                on_row(row)
                    except (EOFError, OSError):
                        dead = True
                if dead or w.proc.sentinel in ready and not w.proc.is_alive():
                    w.proc.join(1)
                    if w.task is not None:
                        _, task, _ = w.task
                        code = w.proc.exitcode
                        on_row(error_row(task, f"worker process died while measuring this run (exit code {code}); "
                                               "the file may be too large or corrupt"))
                    elif not w.ready and not w.retiring:
                        start_failures += 1
                        if start_failures >= 3:
                            raise RuntimeError(
                                f"batch worker processes fail to start (exit code {w.proc.exitcode})"
                            )
                    w.kill()
                    workers.remove(w)
                    continue
                if w.retiring and w.task is None:
                    w.stop()
                    workers.remove(w)
                    continue
                if timeout and w.task and time.monotonic() - w.task[2] > timeout:
                    _, task, _ = w.task
                    w.kill()
                    workers.remove(w)
                    n_timeout += 1
                    on_row(error_row(task, f"timed out after {timeout:g} s; the run was skipped "
                                           "(raise --timeout if such runs are expected to be slow)"))
    finally:
        for w in workers:
            if w.task is None and w.ready:
                w.stop()
            else:
                w.kill()
    return n_timeout


def _run_inline(tasks, work, options, on_row) -> None:
    for task in tasks:
        try:
            row = work(task, options)
        except Exception as exc:
            row = error_row(task, _exc_message(exc))
        on_row(row)


def _run_dask(tasks, work, options, *, scheduler, timeout, on_row) -> int:
    """Same per-run work on a dask.distributed cluster; returns the number of timeouts."""
    try:
        from distributed import Client, wait
    except ImportError:
        from .errors import MissingExtraError

        raise MissingExtraError("dask.distributed", "batch") from None
    own_client = not hasattr(scheduler, "submit")
    try:
        client = Client(scheduler, timeout=30) if own_client else scheduler
    except OSError as exc:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler} ({exc}); start it or fix the address") from None
    n_timeout = 0
    try:
        slots = max(1, sum(client.nthreads().values()))
        pending = deque(tasks)
        inflight: dict[Any, tuple[Task, float]] = {}
        while pending or inflight:
            while pending and len(inflight) < slots:
                task = pending.popleft()
                fut = client.submit(work, task, options, pure=False, key=f"stenosis-{output_stem(task.key)}-{time.monotonic_ns()}")
                inflight[fut] = (task, time.monotonic())
            deadlines = [t0 + timeout for _, t0 in inflight.values()] if timeout else []
            wait_s = max(0.05, min(deadlines) - time.monotonic()) if deadlines else 5.0
            try:
                wait(list(inflight), timeout=wait_s, return_when="FIRST_COMPLETED")
            except Exception:  # distributed raises TimeoutError subclasses across versions
                pass
            for fut in list(inflight):
                task, t0 = inflight[fut]
                if fut.done():
                    del inflight[fut]
                    try:
                        row = fut.result()
                    except Exception as exc:
                        row = error_row(task, _exc_message(exc))
                    on_row(row)
                elif timeout and time.monotonic() - t0 > timeout:
                    del inflight[fut]
                    fut.cancel()
                    n_timeout += 1
                    on_row(error_row(task, f"timed out after {timeout:g} s; the run was skipped "
                                           "(raise --timeout if such runs are expected to be slow)"))
    finally:
        if own_client:
            client.close()
    return n_timeout


# ------------------------------------------------------------------ the batch
def run_batch(
    tasks: Sequence[Task],
    out_dir: str | os.PathLike,
    *,
    jobs: int = 1,
    timeout: float | None = None,
    resume: bool = False,
    model: str = "unet",
    reports: bool = True,
    sr: bool = False,
    keep_identifiers: bool = False,
    scheduler: Any = None,
    work: Callable[[Task, Any], dict[str, Any]] | None = None,
    options: Any = None,
    max_tasks_per_child: int = DEFAULT_MAX_TASKS_PER_CHILD,
    warm: bool = True,
    progress: bool = True,
    summary_figure: bool = True,
) -> BatchSummary:
    """Measure every task and write the batch outputs to `out_dir`.

    Parameters
    ----------
    tasks : sequence of Task
        From :func:`read_points` or :func:`auto_tasks`.
    out_dir : path
        Gets ``results.jsonl`` (journal), ``results.csv``, ``summary.png``,
        ``reports/<run>.png`` and, with `sr`, ``sr/<run>.dcm``.
    jobs : int
        Worker processes; 0 measures in this process (no timeout possible).
    timeout : float, optional
        Seconds of measurement allowed per run; a run past it is killed and
        becomes an error row.
    resume : bool
        Skip tasks whose key already has a row in ``results.jsonl`` (ok or error);
        without it an existing journal is replaced.
    model : {"unet", "classical"}
    keep_identifiers : bool
        With `sr`: the SR keeps the source's patient/study identifiers (default: none).
    scheduler : str or distributed.Client, optional
        Dask scheduler address (``tcp://host:8786``) or a client: run there.
    work : callable, optional
        ``work(task, options) -> row``; default :func:`measure_one`. Must be
        importable by name (it is sent to worker processes).
    max_tasks_per_child : int
        A worker process is replaced after this many runs (flat memory).
    progress : bool
        Rich progress bar with ETA on stderr.

    Returns
    -------
    BatchSummary
    """
    t_start = time.monotonic()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {out} ({exc.strerror}); choose a writable folder") from None
    model = str(ModelName(str(model)))
    work = work or measure_one
    if options is None:
        options = WorkOptions(
            out_dir=str(out.absolute()),
            model=model,
            reports=reports,
            sr=sr,
            keep_identifiers=keep_identifiers,
            auto=any(t.mode == "auto" for t in tasks),
        )
    if sr and work is measure_one:
        from .sr import require_highdicom

        require_highdicom()
    jsonl = out / JSONL_NAME
    if not resume and jsonl.exists():
        jsonl.unlink()
    done_rows = {r.get("key") or r.get("path"): r for r in read_jsonl(jsonl)} if resume else {}
    keys = {t.key or t.path for t in tasks}
    todo = [t for t in tasks if (t.key or t.path) not in done_rows]
    n_skipped = sum(1 for k in keys if k in done_rows)

    journal = _Journal(jsonl)
    rss: dict[int, float] = {}
    prog = None
    if progress and todo:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        prog = Progress(
            TextColumn("[bold]measuring"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        prog.start()
        bar = prog.add_task("batch", total=len(todo), status="")
    counts = {"ok": 0, "error": 0}

    def on_row(row: dict[str, Any]) -> None:
        journal.append(row)
        counts["ok" if row.get("status") == "ok" else "error"] += 1
        if prog is not None:
            prog.update(bar, advance=1, status=f"{counts['ok']} ok, {counts['error']} error")

    n_timeout = 0
    try:
        if not todo:
            pass
        elif scheduler is not None:
            n_timeout = _run_dask(todo, work, options, scheduler=scheduler, timeout=timeout, on_row=on_row)
        elif jobs <= 0:
            _run_inline(todo, work, options, on_row)
        else:
            n_timeout = _run_processes(
                todo,
                work,
                options,
                jobs=jobs,
                timeout=timeout,
                max_tasks_per_child=max(1, max_tasks_per_child),
                warm=warm,
                on_row=on_row,
                rss=rss,
            )
    finally:
        if prog is not None:
            prog.stop()
        journal.close()
        rows = read_jsonl(jsonl)
        write_sorted_jsonl(rows, jsonl)
        write_results_csv(rows, out / CSV_NAME)
        if summary_figure:
            write_summary_figure(rows, out / SUMMARY_NAME)

    ok = [r for r in rows if r.get("status") == "ok"]
    flagged = sorted(
        (r for r in ok if r.get("percent_stenosis") is not None and float(r["percent_stenosis"]) >= 50.0),
        key=_row_sort_key,
    )
    return BatchSummary(
        n_total=len(rows),
        n_ok=len(ok),
        n_error=len(rows) - len(ok),
        n_meets_50=len(flagged),
        n_skipped=n_skipped,
        n_run=counts["ok"] + counts["error"],
        n_timeout=n_timeout,
        elapsed_s=time.monotonic() - t_start,
        out_dir=str(out),
        peak_rss_mb_per_worker=dict(rss),
        flagged=tuple(r["path"] for r in flagged),
        n_confirm=sum(_needs_confirmation(r) for r in ok),
    )
