"""`stenosis batch`: measure every run of a folder (thin face over :mod:`stenosis.batch`)."""
from __future__ import annotations

import os
from pathlib import Path

import click

from .. import batch as lib
from ._common import EXIT_INPUT, SEGMENT, debug_option, error_boundary, fail


@click.command(name="batch")
@click.argument("folder", metavar="DIR", type=click.Path(path_type=Path))  # not a folder: exit 3 (below)
@click.option(
    "--points",
    "points",
    # no dir_okay=False: a points file that is not a file is bad input (exit 3, tasks.py says so), not a usage error
    type=click.Path(path_type=Path),
    metavar="CSV",
    help="CSV with path,segment,proximal_row,proximal_col,distal_row,distal_col (pixels, path relative to DIR); "
    "optional columns frame, frames (all|single|N), reference_choice (proximal|distal), mld_row,mld_col, "
    "waypoints ('row col;row col') and lesion (rows of one name: views of one lesion, graded together).",
)
@click.option("--auto", "auto", is_flag=True, help="No points: find the main trunk and its most severe narrowing.")
@click.option(
    "--segment",
    type=SEGMENT,
    default=None,
    help="With --auto: the artery of every run of DIR (or give --segments).",
)
@click.option(
    "--segments",
    type=click.Path(path_type=Path),
    metavar="CSV",
    help="With --auto: CSV with path,segment[,frame] naming each run's artery; path relative to DIR.",
)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--jobs", type=click.IntRange(0), default=1, show_default=True, help="Worker processes (0: in this process, no --timeout).")
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds allowed per run; a run past it becomes an error row (worker processes only: not with --jobs 0).",
)
@click.option("--resume", is_flag=True,
              help="Continue OUT (after Ctrl-C, SIGTERM or a crash): runs with an ok row in OUT/results.jsonl are "
                   "skipped; runs with an error row (e.g. a file fixed since) are measured again.")
@click.option("--overwrite", is_flag=True, help="Move what OUT holds into OUT/previous-<timestamp>/ first.")
@click.option(
    "--model", type=click.Choice(["unet", "classical"]), default="unet", show_default=True, help="Vessel model."
)
@click.option("--sr", is_flag=True, help="Also write a DICOM Structured Report per run (needs highdicom).")
@click.option(
    "--keep-identifiers",
    is_flag=True,
    help="With --sr: copy the patient/study identifiers and UIDs of the source into the SR (default: none).",
)
@click.option("--no-reports", is_flag=True, help="Skip the per-run PNG reports (faster).")
@click.option("--scheduler", metavar="ADDRESS", default=None, help="Dask scheduler (tcp://host:8786) to run on.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@debug_option
@error_boundary
def command(
    folder: Path,
    points: Path | None,
    auto: bool,
    segment: str | None,
    segments: Path | None,
    out: Path,
    jobs: int,
    timeout: float,
    resume: bool,
    overwrite: bool,
    model: str,
    sr: bool,
    keep_identifiers: bool,
    no_reports: bool,
    scheduler: str | None,
    quiet: bool,
    debug: bool,
) -> None:
    """Measure every run of DIR, with a points file or --auto.

    Writes OUT/results.csv (one row per run, status ok/error), OUT/results.jsonl
    (the measure JSON per run), OUT/reports/<stem>-<hash>.png and OUT/summary.png (--auto also
    OUT/points-auto.csv: the points it placed, a points file to confirm and feed back); the rows
    name each run's files. A bad file, or a bad row of the points file (unknown segment, a value
    that is not a number, a repeated row), is an error row; the batch goes on. Exit 0 when
    the batch ran (even with error rows), 2 on a usage error (OUT not empty without
    --resume/--overwrite, --resume on the OUT of another batch, --auto without the artery), 3 when DIR cannot be read or
    holds no runs, the points file is missing or malformed or names no run under DIR, or
    --scheduler does not answer (nothing written then), 130 on Ctrl-C and 143 on
    SIGTERM (after writing what was done: continue with --resume, which skips the runs measured
    and measures again the runs that failed).
    """
    _check_usage(points, auto, segment, segments, resume, overwrite)
    if keep_identifiers and not sr:
        raise click.UsageError("--keep-identifiers only changes the DICOM SR (--sr); add --sr, or drop "
                               "--keep-identifiers (results.csv/results.jsonl never hold identifiers)")
    _check_scheduler(scheduler)
    if not folder.is_dir() or not os.access(folder, os.R_OK | os.X_OK):
        what = ("is a file; give the folder that holds the runs (one run: stenosis measure)" if folder.is_file()
                else "is not a readable folder; give the folder that holds the runs")
        fail(f"{folder} {what}", EXIT_INPUT)
    try:
        if points is not None or segments is not None:
            read, what = (lib.read_points, "points file") if points is not None else (lib.read_segments, "segments file")
            tasks = read(points if points is not None else segments, folder)
            lib.require_some_run(tasks, folder, what)
        else:
            tasks = lib.auto_tasks(folder, segment=segment)
            _note_skipped(folder, tasks, out)
    except lib.PointsFileError as exc:  # a points file missing or malformed is input, as DIR is: exit 3
        fail(f"{'--points' if points is not None else '--segments'}: {exc}", EXIT_INPUT)
    if sr and not keep_identifiers:
        from ..io.run import public_key_in_use

        if public_key_in_use():
            click.echo("note: no site secret is set (STENOSIS_SITE_SECRET): the SRs' pseudonymous UIDs and PatientID use "
                       "the public default key, which anyone holding a source UID can recompute; set a site secret to "
                       "make them unlinkable (docs/privacy.md)", err=True)
    if jobs == 0 and scheduler is None and \
            click.get_current_context().get_parameter_source("timeout") != click.core.ParameterSource.DEFAULT:
        click.echo("note: --jobs 0 measures in this process, where a run cannot be stopped: --timeout is not applied "
                   "(give --jobs 1 or more to time each run)", err=True)
    if debug:
        os.environ["STENOSIS_BATCH_DEBUG"] = "1"
    try:
        summary = lib.run_batch(
            tasks,
            out,
            jobs=jobs,
            timeout=timeout,
            resume=resume,
            overwrite=overwrite,
            model=model,
            reports=not no_reports,
            sr=sr,
            keep_identifiers=keep_identifiers,
            scheduler=scheduler,
            progress=not quiet,
        )
    except lib.OutputFolderError as exc:
        raise click.UsageError(str(exc)) from None
    except lib.BatchTerminated:
        fail(f"terminated; the runs done so far are in {out / lib.CSV_NAME}: continue with the same command and "
             "--resume", lib.BatchTerminated.exit_code)
    except KeyboardInterrupt:
        if not (out / lib.JSONL_NAME).exists():  # e.g. while connecting to --scheduler: nothing written
            fail("interrupted before any run was measured; nothing was written", 130)
        fail(f"interrupted; the runs done so far are in {out / lib.CSV_NAME}: continue with the same command and "
             "--resume", 130)
    click.echo(f"stenosis batch ({summary.elapsed_s:.0f} s): {summary.line()}")
    click.echo(f"results: {out / lib.CSV_NAME}")


_SCHEDULER_RE = r"^(?:(?:tcp|tls|ucx|ws|wss)://)?[A-Za-z0-9._\-\[\]:]*[A-Za-z0-9.\-\]]:(?P<port>\d{1,5})$|^inproc://\S+$"


def _check_scheduler(scheduler: str | None) -> None:
    """A Dask scheduler address is [protocol://]host:port (tcp, tls, ucx, ws, wss; port 1-65535) or
    inproc://...; anything else is a usage error here, not an internal error inside dask."""
    import re

    if scheduler is None:
        return
    m = re.match(_SCHEDULER_RE, scheduler.strip())
    if m is None or (m.group("port") is not None and not 0 < int(m.group("port")) < 65536):
        raise click.UsageError(f"--scheduler: {scheduler!r} is not a Dask scheduler address; give "
                               "[tcp://]HOST:PORT (port 1-65535), e.g. tcp://10.0.0.5:8786")


def _note_skipped(folder: Path, tasks, out: Path) -> None:
    """A note on stderr naming the files under DIR that --auto skipped (not DICOM: a picture
    export, a text file), the output folder left out."""
    from ..io.series import files_not_read, skipped_note

    outside = out.absolute()
    files = [p for p in files_not_read(folder, (f for t in tasks for f in (t.files or (t.source,))))
             if not p.is_relative_to(outside)]
    note = skipped_note(folder, files)
    if note:
        click.echo(f"note: {note}", err=True)


def _check_usage(points, auto, segment, segments, resume, overwrite) -> None:
    """One-line usage errors for option combinations (exit 2)."""
    if (points is None) == (not auto):
        raise click.UsageError("give exactly one of --points CSV or --auto")
    if points is not None and (segment or segments):
        raise click.UsageError("--segment/--segments are for --auto; the points file gives each run's segment")
    if auto and segment is not None and segments is not None:
        raise click.UsageError("--auto takes the artery once: give --segment (all runs) or --segments CSV (per run), "
                               "not both")
    if auto and segment is None and segments is None:
        raise click.UsageError(
            "--auto needs the artery: give --segment {ICA,M1,V4,BA} for all runs or --segments CSV (path,segment)"
        )
    if resume and overwrite:
        raise click.UsageError("give --resume (continue OUT) or --overwrite (start afresh), not both")
