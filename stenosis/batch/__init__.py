"""Batch measurement of a folder of runs: unattended, resumable, nothing lost.

A batch is a list of :class:`Task` (one run + one segment + the reader's points, or
``mode="auto"`` when :func:`stenosis.auto.find_lesion` places the points) and one
per-run function, :func:`measure_one`, that turns a task into a result row (the
``measure --json`` object plus batch fields). The modules, by role:

* :mod:`.tasks` -- points files, segments files, ``--auto`` folders -> tasks;
* :mod:`.work` -- :func:`measure_one` and :func:`error_row`;
* :mod:`.pool` -- worker processes (warm-up, timeout, recycling) and Dask;
* :mod:`.outputs` -- the output folder, per-task file names, atomic writes, the
  journal ``results.jsonl`` and ``results.csv`` (:data:`stenosis.result.ROW_COLUMNS`);
* :mod:`.lesions` -- rows of one ``lesion`` (views of one lesion) graded together;
* :mod:`.summary` -- ``summary.png``;
* :mod:`.runner` -- :func:`run_batch`, which strings them together.

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

from .outputs import (
    CSV_COLUMNS,
    CSV_NAME,
    JSONL_NAME,
    REPORTS_DIR,
    SR_DIR,
    SUMMARY_NAME,
    OutputFolderError,
    csv_record,
    output_stem,
    prepare_out_dir,
    read_jsonl,
    write_results_csv,
    write_sorted_jsonl,
)
from .lesions import annotate_lesions
from .pool import DEFAULT_MAX_TASKS_PER_CHILD, release_memory, warm_up
from .runner import BatchSummary, BatchTerminated, run_batch
from .summary import write_summary_figure
from .tasks import (
    DICOM_SUFFIXES,
    POINT_COLUMNS,
    SEGMENT_COLUMNS,
    PointsFileError,
    Task,
    auto_tasks,
    lesion_problems,
    read_points,
    read_segments,
    require_some_run,
)
from .work import WorkOptions, error_row, measure_one

__all__ = [
    "CSV_COLUMNS",
    "POINT_COLUMNS",
    "SEGMENT_COLUMNS",
    "PointsFileError",
    "OutputFolderError",
    "Task",
    "WorkOptions",
    "BatchSummary",
    "BatchTerminated",
    "read_points",
    "read_segments",
    "require_some_run",
    "auto_tasks",
    "lesion_problems",
    "annotate_lesions",
    "measure_one",
    "error_row",
    "run_batch",
    "read_jsonl",
    "write_results_csv",
    "write_summary_figure",
    "output_stem",
]
