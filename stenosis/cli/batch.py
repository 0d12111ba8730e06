"""`stenosis batch`: measure every run of a folder (thin face over :mod:`stenosis.batch`)."""
from __future__ import annotations

import os
from pathlib import Path

import click

from ._common import EXIT_INPUT, debug_option, error_boundary, fail


@click.command(name="batch")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--points",
    "points",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV with path,segment,proximal_row,proximal_col,distal_row,distal_col[,frame]; path relative to DIR.",
)
@click.option("--auto", "auto", is_flag=True, help="No points: find the main trunk and its most severe narrowing.")
@click.option(
    "--segment",
    type=click.Choice(["ICA", "M1", "V4", "BA"], case_sensitive=False),
    default="M1",
    show_default=True,
    help="WASID segment assumed for --auto runs.",
)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--jobs", type=click.IntRange(0), default=1, show_default=True, help="Worker processes (0: in this process).")
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds allowed per run; a run past it becomes an error row.",
)
@click.option("--resume", is_flag=True, help="Skip runs already in OUT/results.jsonl.")
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
    segment: str,
    out: Path,
    jobs: int,
    timeout: float,
    resume: bool,
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
    (the measure JSON per run), OUT/reports/<run>.png and OUT/summary.png. A bad
    file is an error row; the batch goes on. Exit 0 when the batch ran (even with
    error rows), 3 when DIR cannot be read or holds no runs.
    """
    if (points is None) == (not auto):
        raise click.UsageError("give exactly one of --points CSV or --auto")
    from .. import batch as lib

    if not folder.is_dir() or not os.access(folder, os.R_OK | os.X_OK):
        fail(f"{folder} is not a readable folder; give the folder that holds the runs", EXIT_INPUT)
    if points is not None:
        try:
            tasks = lib.read_points(points, folder)
        except lib.PointsFileError as exc:
            raise click.BadParameter(str(exc), param_hint="--points") from None
    else:
        tasks = lib.auto_tasks(folder, segment=segment.upper())
    if debug:
        os.environ["STENOSIS_BATCH_DEBUG"] = "1"
    summary = lib.run_batch(
        tasks,
        out,
        jobs=jobs,
        timeout=timeout,
        resume=resume,
        model=model,
        reports=not no_reports,
        sr=sr,
        keep_identifiers=keep_identifiers,
        scheduler=scheduler,
        progress=not quiet,
    )
    click.echo(f"stenosis batch: {summary.line()} in {summary.elapsed_s:.0f} s")
    click.echo(f"results: {out / lib.CSV_NAME}")
