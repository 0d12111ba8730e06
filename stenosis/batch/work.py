"""The per-run work of a batch: one task in, one result row out (never raises for a bad run)."""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .._version import __version__
from ..auto import find_lesion
from ..errors import MeasurementError, StenosisError
from ..measurement import measure
from ..result import frame_chosen_by_tool
from ..reader import ReaderInputs, onto_pixel_centres
from ..report import save_report
from ..segmentation import model_sha256
from .outputs import REPORTS_DIR, SR_DIR, atomic_save, jsonable, output_stem
from .tasks import Task

__all__ = ["WorkOptions", "measure_one", "error_row"]


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
        Write ``reports/<stem>-<hash>.png`` (:func:`~stenosis.batch.outputs.output_stem`).
    sr : bool
        Write a DICOM Structured Report ``sr/<stem>-<hash>.dcm`` (needs highdicom).
    keep_identifiers : bool
        The SR copies the patient/study identifiers and UIDs of the source
        (default: a pseudonymous SR, see :mod:`stenosis.sr`).
    auto : bool
        Some tasks are ``--auto`` (workers then warm torch and skan's kernels too).
    """

    out_dir: str
    model: str = "unet"
    reports: bool = True
    sr: bool = False
    keep_identifiers: bool = False
    auto: bool = False


def _software() -> dict[str, Any]:
    try:
        sha = model_sha256()
    except Exception:
        sha = None
    return {"version": __version__, "model_sha256": sha}


def exc_message(exc: BaseException) -> str:
    """One line for a failed run: the declared error's message, else what happened."""
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
    return _with_lesion(task, {
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
    })


def _with_lesion(task: Task, row: dict[str, Any], result=None) -> dict[str, Any]:
    """The row with its lesion's name (points file column ``lesion``) when the task has one, and
    the view's reading for grading the lesion (:func:`stenosis.views.view_reading`, as
    ``stenosis.measure_views`` grades it) when ``result`` is given."""
    lesion = getattr(task, "lesion", None)
    if lesion:
        row["lesion"] = lesion
        if result is not None:
            from ..views import view_reading

            row["view_reading"] = view_reading(result).to_dict()
    return row


def measure_one(task: Task, options: WorkOptions) -> dict[str, Any]:
    """Measure one task; never raises for a bad run (returns an error row instead).

    Reads the run, places the points (auto mode: :func:`stenosis.auto.find_lesion`),
    measures with WASID (:func:`stenosis.measure`), writes the report PNG (and SR)
    atomically, and returns the ``measure --json`` object extended with ``key, path,
    status, error, mode, confidence, proximal_rc, distal_rc, run_id, report, sr, inputs`` (and ``lesion``
    when the task is one view of a named lesion)
    (``report``/``sr``: the files written, relative to the output folder). ``file`` is
    the path relative to the batch folder (no absolute paths, no patient identifiers).
    """
    software = _software()
    if task.problem:  # a bad row of the points file: nothing to measure
        return error_row(task, task.problem, software=software)
    auto_info: dict[str, Any] = {}  # kept on an error row too: where --auto put the points
    try:
        run = task.read()
        proximal, distal, frame = task.proximal, task.distal, task.frame
        confidence: float | None = None
        if task.mode == "auto":
            lesion = find_lesion(run, model=options.model, frame=frame)
            proximal, distal, frame = lesion.proximal, lesion.distal, lesion.frame_index
            confidence = round(float(lesion.confidence), 3)
            auto_info = {"auto": lesion.to_dict()}
        inputs = ReaderInputs.create(task.segment, proximal, distal, frame, model=options.model,
                                     reference_choice=task.reference_choice, mld=task.mld, waypoints=list(task.waypoints),
                                     frames=getattr(task, "frames", "all"))
        try:
            result = measure(run, inputs=inputs)
        except MeasurementError as exc:
            if task.mode != "auto":
                raise
            # the reader gave no points: say that --auto placed them, not "place it on the lumen"
            why = str(exc).split(";")[0]
            raise MeasurementError(f"--auto found a narrowing but could not measure it ({why}); give points for "
                                   "this run in a points file") from None
        row = jsonable(result.to_dict())
        row.update(
            {
                "key": task.key or task.path,
                "path": task.path,
                "file": task.path,
                "status": "ok",
                "error": None,
                "mode": task.mode,
                "confidence": confidence,
                # the points measured: a click on an edge pixel's outer half is on its centre line
                "proximal_rc": list(onto_pixel_centres(proximal, run.frames.shape[1:])),
                "distal_rc": list(onto_pixel_centres(distal, run.frames.shape[1:])),
                "run_id": getattr(getattr(run, "metadata", None), "run_id", None),
                "report": None,
                "sr": None,
                "inputs": task.inputs(options.model),
            }
        )
        row["warnings"] = [_relative_text(w, task) for w in row.get("warnings") or []]
        if task.mode == "auto" and task.frame is None:
            row = frame_chosen_by_tool(row)  # the frame --auto chose is not a reader's choice
        row.update(jsonable(auto_info))
        _with_lesion(task, row, result)
        if task.mode == "auto":
            warns = list(row.get("warnings") or [])
            warns.append(f"auto: points placed automatically (confidence {confidence:.2f}); confirm them")
            if lesion.orientation == "undetermined":
                warns.append("auto: flow direction not evident; check which point is proximal")
            row["warnings"] = warns
        row.setdefault("software", software)
        stem = output_stem(task.key or task.path)
        out = Path(options.out_dir)
        if options.reports:
            rel = f"{REPORTS_DIR}/{stem}.png"
            try:
                atomic_save(out / rel, lambda tmp: save_report(result, run, tmp, auto_confidence=confidence), ".png")
                row["report"] = rel
            except Exception as exc:  # the measurement stands; say the figure is missing
                row["warnings"] = [*row.get("warnings", []), f"report not written ({exc_message(exc)})"]
        if options.sr:
            from ..sr import write_sr  # highdicom: the [sr] extra

            rel = f"{SR_DIR}/{stem}.dcm"
            atomic_save(out / rel, lambda tmp: write_sr(row, list(task.files) or [task.source], tmp,
                                                        keep_identifiers=options.keep_identifiers), ".dcm")
            row["sr"] = rel
        return row
    except Exception as exc:  # a bad run is an error row; the batch goes on
        if os.environ.get("STENOSIS_BATCH_DEBUG"):
            traceback.print_exc()
        row = error_row(task, exc_message(exc), software=software)
        row.update(jsonable(auto_info))
        return row
