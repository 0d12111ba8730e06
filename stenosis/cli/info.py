"""``stenosis info PATH``: describe the runs of a file or folder.

One table per run (frames, size, encoding, calibration and its source,
native/subtracted, frame time, warnings). In a folder, a run that cannot be
read gets one line and the others are still shown; the exit status is 3 when
PATH itself is unreadable or when no run of the folder could be read.
"""
from __future__ import annotations

from pathlib import Path

import click

from ._common import EXIT_INPUT, debug_option, error_boundary


def _fmt_mm(cal) -> str:
    if cal.mm_per_px is None:
        return "not calibrated (mm not reported)"
    r, c = cal.mm_per_px
    text = f"{r:.4f}" if abs(r - c) < 1e-9 else f"{r:.4f} x {c:.4f}"
    return f"{text} mm/px"


def _run_table(run):
    from rich.markup import escape
    from rich.table import Table

    md = run.metadata
    cal = run.calibration
    table = Table(title=escape(run.source), title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("run id", md.run_id)
    table.add_row("modality", escape(f"{md.modality} ({md.manufacturer})" if md.manufacturer else md.modality))
    table.add_row("frames", str(md.n_frames))
    table.add_row("size (rows x cols)", f"{md.rows} x {md.cols}, {md.bits_stored} bits stored, {run.frames.dtype}")
    table.add_row("transfer syntax", f"{md.transfer_syntax_name} ({md.transfer_syntax_uid})")
    table.add_row("calibration", f"{_fmt_mm(cal)}, source {cal.source.value}")
    if cal.detail:
        table.add_row("", escape(cal.detail))
    kind = "subtracted (DSA)" if md.subtracted else "native"
    if not md.subtracted and md.mask_frames:
        kind += f", mask frames {', '.join(str(i) for i in md.mask_frames)}"
    if md.pixel_intensity_relationship:
        kind += f", {md.pixel_intensity_relationship}"
        if md.intensity_relationship_inferred:
            kind += " (no PixelIntensityRelationship tag: read from the frames' noise)"
    elif not md.subtracted:
        kind += (", intensity relationship unknown (a single frame's contrast read relative to the brightness behind"
                 " the vessel)" if run.frames.shape[0] == 1 else ", intensity relationship unknown (taken as LOG)")
    table.add_row("images", kind)
    from ..opacification import unexposed

    blank = unexposed(run.frames)
    if blank is not None:
        table.add_row("exposed field", f"{100.0 * blank.mean():.0f}% of the frame outside it (a collimator or the field's "
                                       "edge, one stored value in every frame): left out of the background"
                                       + (" and the mask registration" if md.mask_frames and not md.subtracted else ""))
    table.add_row("frame time", f"{md.frame_time_ms:.1f} ms ({1000.0 / md.frame_time_ms:.1f} frames/s)" if md.frame_time_ms else "unknown")
    if md.primary_angle_deg is not None or md.secondary_angle_deg is not None:
        def deg(v):
            return "?" if v is None else f"{v:+.1f}"

        table.add_row("beam angles", f"primary {deg(md.primary_angle_deg)} deg, secondary {deg(md.secondary_angle_deg)} deg")
    for k, w in enumerate(run.warnings):
        table.add_row("warnings" if k == 0 else "", f"[yellow]{escape(w)}[/yellow]")
    return table


@click.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@debug_option
@error_boundary
def command(path: Path, debug: bool = False) -> None:
    """Describe the DICOM XA run(s) in PATH (a file or a folder).

    In a folder, each file that cannot be read (including an empty or non-DICOM *.dcm) gets one
    line on stderr saying why, and the last line counts the runs read and unreadable. Exit 0 when
    at least one run was read, 3 when none (or PATH is missing or unreadable).
    """
    from rich.console import Console

    from ..errors import InputError, StenosisError

    class _Console(Console):
        # rich's own write (whose closed-pipe handler exits 1) is bypassed: a closed stdout raises
        # BrokenPipeError here, which the CLI ends quietly
        def print(self, *objects, **kw) -> None:  # a table's rows without the padding to its width
            with self.capture() as cap:
                super().print(*objects, **kw)
            self.file.write("".join(line.rstrip() + "\n" for line in cap.get().splitlines()))
            self.file.flush()
    from ..io import find_runs, read_run

    console = _Console(highlight=False, soft_wrap=False)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path")
    if path.is_file():
        console.print(_run_table(read_run(path)))
        return

    from ..io.header import NOT_DICOM, folder_image_hint
    from ..io.series import named_dicom_not_runs

    sources = find_runs(path)
    named = named_dicom_not_runs(path, sources)
    if not sources and not named:
        raise InputError(f"{path}: no DICOM file found in this folder; pass a DICOM XA file or a folder of them"
                         + folder_image_hint(path))
    n_ok = 0
    bad: list[str] = []
    base = path.absolute()
    for p in named:  # named like DICOM, without its preamble: say why it is not read
        what = "empty" if p.stat().st_size == 0 else NOT_DICOM
        shown = path / p.relative_to(base) if p.is_relative_to(base) else p  # as the other runs are named
        line = f"{shown}: {what}; replace it with the DICOM export, or remove it"
        bad.append(line)
        click.echo(f"stenosis: error: {line}", err=True)
    for src in sources:
        try:
            run = read_run(src)
        except StenosisError as exc:  # one bad run of the folder: its line, and the others are still shown
            line = " ".join(str(exc).split())
            bad.append(line)
            click.echo(f"stenosis: error: {line}", err=True)
            continue
        n_ok += 1
        console.print(_run_table(run))
        console.print()
    summary = f"{n_ok} run(s) read, {len(bad)} unreadable" + (" (listed on stderr)" if bad else "")
    console.print(summary)
    from ..io.series import files_not_read, skipped_note

    note = skipped_note(path, files_not_read(path, [*(f for src in sources for f in src.paths), *named]))
    if note:
        click.echo(f"stenosis: note: {note}", err=True)
    if n_ok == 0:
        raise SystemExit(EXIT_INPUT)
