"""Run a batch: tasks in, ``OUT/results.jsonl``, ``results.csv``, ``summary.png``, reports and SRs out.

Rows are sorted by path (then segment, frame) whatever the completion order, and
every worker runs torch with one thread, so ``--jobs 1`` and ``--jobs 2`` give
identical numbers. SIGTERM ends a batch like SIGINT: the rows finished so far are
written to ``results.csv`` and :class:`BatchTerminated` is raised (the CLI exits 143).
Rows of a points file's ``lesion`` groups are graded together whenever the outputs are
written (:mod:`.lesions`).
"""
from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..enums import ModelName
from .outputs import (
    AUTO_POINTS_NAME,
    CSV_NAME,
    JSONL_NAME,
    SUMMARY_NAME,
    Journal,
    OutputFolderError,
    prepare_out_dir,
    read_jsonl,
    row_sort_key,
    write_auto_points,
    write_results_csv,
    write_sorted_jsonl,
)
from .lesions import annotate_lesions
from .pool import DEFAULT_MAX_TASKS_PER_CHILD, connect_scheduler, run_dask, run_inline, run_processes
from .summary import needs_confirmation, write_summary_figure
from .tasks import Task, lesion_problems
from .work import WorkOptions, error_row, measure_one

__all__ = ["BatchSummary", "BatchTerminated", "run_batch"]


class BatchTerminated(KeyboardInterrupt):
    """The batch process got SIGTERM; what was done is written (exit status 143)."""

    exit_code = 128 + signal.SIGTERM


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`BatchTerminated` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise BatchTerminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class BatchSummary:
    """What a batch did. ``n_ok + n_error == n_total`` (rows in ``results.csv``)."""

    n_total: int
    n_ok: int
    n_error: int
    n_meets_50: int
    n_skipped: int  # already measured in results.jsonl and skipped by --resume (error rows are retried)
    n_run: int  # measured in this invocation
    n_timeout: int
    elapsed_s: float
    out_dir: str
    peak_rss_mb_per_worker: dict[int, float] = field(default_factory=dict)
    flagged: tuple[str, ...] = ()  # paths of runs with percent stenosis >= 50
    n_confirm: int = 0  # runs whose >= 50% call a reader should confirm (StenosisResult.needs_confirmation)
    n_remeasured: int = 0  # --resume: runs with an ok row measured again, their inputs changed since

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["peak_rss_mb_per_worker"] = {str(k): v for k, v in self.peak_rss_mb_per_worker.items()}
        d["flagged"] = list(self.flagged)
        return d

    def line(self) -> str:
        """One-line closing summary."""
        s = (
            f"{self.n_total} run{'' if self.n_total == 1 else 's'}: {self.n_ok} ok, {self.n_error} error, "
            f"{self.n_meets_50} with stenosis >= 50%"
        )
        if self.n_confirm:
            s += (f"; {self.n_confirm} whose >= 50% call is uncertain (see their warnings): a reader should confirm "
                  f"{'them' if self.n_confirm > 1 else 'it'}")
        done = []
        if self.n_skipped:
            done.append(f"{self.n_skipped} already done, skipped")
        if self.n_remeasured:
            done.append(f"{self.n_remeasured} measured again: {'its' if self.n_remeasured == 1 else 'their'} inputs "
                        "changed since (its row of the points file, the mode or the model)")
        if done:
            s += f" ({'; '.join(done)})"
        return s


def run_batch(
    tasks: Sequence[Task],
    out_dir: str | os.PathLike,
    *,
    jobs: int = 1,
    timeout: float | None = None,
    resume: bool = False,
    overwrite: bool = False,
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
        From :func:`read_points`, :func:`read_segments` or :func:`auto_tasks`. A task with
        ``problem`` set (a bad row of the points file) is recorded as an error row, not measured.
    out_dir : path
        Gets ``results.jsonl`` (journal), ``results.csv``, ``summary.png``,
        ``reports/<stem>-<hash>.png`` and, with `sr`, ``sr/<stem>-<hash>.dcm`` (one stem per task,
        :func:`output_stem`; the rows name these files in ``report`` and ``sr``).
    jobs : int
        Worker processes; 0 measures in this process (no timeout possible).
    timeout : float, optional
        Seconds of measurement allowed per run; a run past it is killed and
        becomes an error row.
    resume : bool
        Skip tasks whose key already has an ok row in ``results.jsonl``; tasks whose row is an
        error row are measured again (the user may have fixed the file) and their new row
        replaces the old one.
    overwrite : bool
        First move what `out_dir` holds into ``out_dir/previous-<timestamp>/``. With
        neither `resume` nor `overwrite` a non-empty `out_dir` raises
        :class:`OutputFolderError`.
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

    Raises
    ------
    BatchTerminated
        On SIGTERM, after writing the outputs of what was done.
    """
    t_start = time.monotonic()
    out = Path(out_dir)
    client = None
    if scheduler is not None and not hasattr(scheduler, "submit"):
        client = scheduler = connect_scheduler(scheduler)  # a scheduler that does not answer leaves OUT as it was
    try:
        return _run_batch(tasks, out, t_start=t_start, jobs=jobs, timeout=timeout, resume=resume, overwrite=overwrite,
                          model=model, reports=reports, sr=sr, keep_identifiers=keep_identifiers, options=options,
                          scheduler=scheduler, work=work, max_tasks_per_child=max_tasks_per_child, warm=warm,
                          progress=progress, summary_figure=summary_figure)
    finally:
        if client is not None:
            client.close()


def _run_batch(tasks, out: Path, *, t_start, jobs, timeout, resume, overwrite, model, reports, sr, keep_identifiers,
               options, scheduler, work, max_tasks_per_child, warm, progress, summary_figure) -> BatchSummary:
    prepare_out_dir(out, resume=resume, overwrite=overwrite)
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
        from ..sr import require_highdicom  # highdicom: the [sr] extra

        require_highdicom()
    jsonl = out / JSONL_NAME
    # --resume: runs measured are skipped; runs that failed are tried again (the file may be fixed)
    earlier = read_jsonl(jsonl) if resume else []
    done_rows = {r.get("key") or r.get("path"): r for r in earlier if r.get("status") == "ok"}
    keys = {t.key or t.path for t in tasks}
    if earlier and not keys & {r.get("key") or r.get("path") for r in earlier}:
        raise OutputFolderError(f"{out} holds another batch (none of its {len(earlier)} row{'s' if len(earlier) != 1 else ''} is a run of this one): "
                                "--resume it with the DIR and points file it was started with, or give another --out")
    # a run measured with other inputs (the points file edited since, another mode, artery or
    # model) is measured again, its new row replacing the old; a row from before rows recorded
    # their inputs counts as done
    changed = {t.key or t.path for t in tasks if (t.key or t.path) in done_rows
               and done_rows[t.key or t.path].get("inputs", t.inputs(model)) != t.inputs(model)}
    todo = [t for t in tasks if (t.key or t.path) not in done_rows or (t.key or t.path) in changed]
    n_skipped = sum(1 for k in keys if k in done_rows and k not in changed)
    # error rows, not measured: bad rows of the points file (Task.problem), and views of one lesion
    # naming different arteries
    problems = {**lesion_problems(tasks), **{(t.key or t.path): t.problem for t in tasks if t.problem}}
    refused = [t for t in todo if (t.key or t.path) in problems]
    todo = [t for t in todo if (t.key or t.path) not in problems]

    journal = Journal(jsonl)
    rss: dict[int, float] = {}
    n_todo = len(todo) + len(refused)
    prog, advance = _progress(n_todo) if progress and n_todo else (None, lambda counts: None)
    counts = {"ok": 0, "error": 0}

    def on_row(row: dict[str, Any]) -> None:
        journal.append(row)
        counts["ok" if row.get("status") == "ok" else "error"] += 1
        advance(counts)

    n_timeout = 0
    with _sigterm_as_interrupt():
        try:
            for t in refused:
                on_row(error_row(t, problems[t.key or t.path]))
            if not todo:
                pass
            elif scheduler is not None:
                n_timeout = run_dask(todo, work, options, scheduler=scheduler, timeout=timeout, on_row=on_row)
            elif jobs <= 0:
                run_inline(todo, work, options, on_row)
            else:
                n_timeout = run_processes(todo, work, options, jobs=jobs, timeout=timeout,
                                          max_tasks_per_child=max(1, max_tasks_per_child), warm=warm,
                                          on_row=on_row, rss=rss)
        finally:
            if prog is not None:
                prog.stop()
            journal.close()
            rows = annotate_lesions(read_jsonl(jsonl))
            write_sorted_jsonl(rows, jsonl)
            write_results_csv(rows, out / CSV_NAME)
            if summary_figure:
                write_summary_figure(rows, out / SUMMARY_NAME)
            write_auto_points(rows, out / AUTO_POINTS_NAME, keep_existing=resume)

    ok = [r for r in rows if r.get("status") == "ok"]
    flagged = sorted(
        (r for r in ok if r.get("percent_stenosis") is not None and float(r["percent_stenosis"]) >= 50.0),
        key=row_sort_key,
    )
    return BatchSummary(
        n_total=len(rows),
        n_ok=len(ok),
        n_error=len(rows) - len(ok),
        n_meets_50=len(flagged),
        n_skipped=n_skipped,
        n_remeasured=len(changed),
        n_run=counts["ok"] + counts["error"],
        n_timeout=n_timeout,
        elapsed_s=time.monotonic() - t_start,
        out_dir=str(out),
        peak_rss_mb_per_worker=dict(rss),
        flagged=tuple(r["path"] for r in flagged),
        n_confirm=sum(needs_confirmation(r) for r in ok),
    )


def _progress(total: int):
    """A started rich progress bar on stderr and its ``advance(counts)``."""
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
    bar = prog.add_task("batch", total=total, status="")

    def advance(counts: Mapping[str, int]) -> None:
        prog.update(bar, advance=1, status=f"{counts['ok']} ok, {counts['error']} error")

    return prog, advance
