"""``stenosis measure PATH --segment S --proximal ROW,COL --distal ROW,COL``.

Parses the arguments and calls :func:`stenosis.measure`; no measurement
logic here. ``--json`` prints exactly one JSON object on stdout; the default is a
short readable summary; ``--out DIR`` writes ``result.json`` and ``report.png``.
Exit status: 0 measured, 2 usage error, 3 input the tool cannot measure.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import PIXEL_MM, RC, debug_option, error_boundary

SEGMENTS = ["ICA", "M1", "V4", "BA"]


def summary_lines(res) -> list[str]:
    """Readable summary of a StenosisResult (one fact per line)."""
    d = res.to_dict()
    mm = res.mm_per_px is not None

    def dia(mm_val, px_val):
        return f"{mm_val:.2f} mm ({px_val:.1f} px)" if mm else f"{px_val:.2f} px (uncalibrated)"

    lines = [
        f"file               {d['file']}",
        f"segment            {d['segment']}   frame {d['frame_index']}",
        f"percent stenosis   {d['percent_stenosis']:.1f}% +- {res.percent_stenosis_sd:.1f} (1 SD)"
        f"   >= 50%: {'YES' if d['meets_50'] else 'no'}",
        f"MLD                {dia(res.mld_mm, res.mld_px)} at (row, col) {d['mld_rc'][0]:.1f}, {d['mld_rc'][1]:.1f}",
        f"reference          {dia(res.reference_diameter_mm, res.reference_diameter_px)}, {d['reference_choice']}"
        f" ({res.reference_window.description}) at {d['reference_rc'][0]:.1f}, {d['reference_rc'][1]:.1f}",
    ]
    if d["interpolated_percent_stenosis"] is not None:
        lines.append(f"interpolated ref.  {d['interpolated_percent_stenosis']:.1f}% (DICOM PS3.17 Annex T)")
    lines.append(
        f"lesion length      {res.lesion_length_mm:.1f} mm" if mm else f"lesion length      {res.lesion_length_px:.1f} px"
    )
    fr = d.get("frames") or {}
    if len(fr.get("used") or []) > 1:
        sd = fr.get("frame_to_frame_sd")
        lines.append(f"frames             {len(fr['used'])} combined ({', '.join(str(t) for t in fr['used'])})"
                     + (f", per-frame SD {sd:.1f} points" if sd is not None else ""))
    cal = d["calibration"]
    cal_txt = f"{res.mm_per_px:.4g} mm/px ({cal['source']})" if mm else f"none ({cal['source']})"
    lines.append(f"calibration        {cal_txt}")
    for w in d["warnings"]:
        lines.append(f"warning            {w}")
    return lines


@click.command("measure")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--segment", required=True, type=click.Choice(SEGMENTS, case_sensitive=False), help="Artery graded (sets the WASID reference rule).")
@click.option("--proximal", required=True, type=RC, help="Point proximal to the lesion, ROW,COL in pixels (0-based).")
@click.option("--distal", required=True, type=RC, help="Point distal to the lesion, ROW,COL in pixels (0-based).")
@click.option("--frame", type=click.IntRange(min=0), default=None, help="Frame to analyse (0-based); default: first fully opacified frame.")
@click.option("--frames", "frames", default="all", show_default=True, metavar="all|single|N",
              help="Frames measured: every fully opacified frame of the arterial phase (combined), the analysed one only, or at most N.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None, help="Write result.json and report.png to this folder.")
@click.option("--pixel-mm", type=PIXEL_MM, default=None,
              help=f"Pixel size in mm at the isocentre, {PIXEL_MM.range_text} (overrides the file calibration).")
@click.option("--catheter-french", type=click.FloatRange(min=0, min_open=True), default=None, metavar="F",
              help="Catheter calibration: the catheter's outer size in French (1 F = 1/3 mm); with --catheter-points.")
@click.option("--catheter-points", default=None, metavar="R1,C1,R2,C2",
              help="Catheter calibration: two points (row, col) on opposite edges of the catheter, across it.")
@click.option("--model", type=click.Choice(["unet", "classical"], case_sensitive=False), default="unet", show_default=True, help="Vessel-probability model for the centerline.")
@click.option("--reference", type=RC, default=None, help="Force the reference location, ROW,COL.")
@click.option("--reference-choice", type=click.Choice(["proximal", "distal", "feeding"], case_sensitive=False), default=None,
              help="Force the WASID reference site instead of the rule's order.")
@click.option("--mld", "mld", type=RC, default=None, help="Place the MLD: the minimum is searched near ROW,COL only.")
@click.option("--waypoint", "waypoints", type=RC, multiple=True,
              help="Inner centerline point ROW,COL the trace must pass (repeat, proximal to distal).")
@click.option("--feeding-proximal", type=RC, default=None, help="Feeding artery (WASID 3rd choice) proximal point, ROW,COL.")
@click.option("--feeding-distal", type=RC, default=None, help="Feeding artery distal point, ROW,COL.")
@debug_option
@error_boundary
def command(path: Path, segment: str, proximal, distal, frame, frames: str, as_json: bool, out_dir: Path | None,
            pixel_mm: float | None, catheter_french: float | None, catheter_points: str | None, model: str, reference,
            reference_choice, mld, waypoints, feeding_proximal, feeding_distal, debug: bool = False) -> None:
    """Measure WASID percent stenosis of one segment of the run in PATH."""
    from ..errors import InputError

    if (feeding_proximal is None) != (feeding_distal is None):
        raise click.UsageError("give both --feeding-proximal and --feeding-distal, or neither")
    if reference is not None and reference_choice is not None:
        raise click.UsageError("give either --reference ROW,COL or --reference-choice, not both")
    from ..errors import MeasurementError
    from ..reader import ReaderInputs, frames_mode

    try:
        frames = frames_mode(frames)
    except MeasurementError as exc:
        raise click.UsageError(f"--frames: {exc}") from None
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path")
    from ..measurement import measure

    inputs = ReaderInputs.create(
        segment.upper(), proximal, distal, frame, model=model.lower(), reference=reference,
        reference_choice=reference_choice, mld=mld, waypoints=list(waypoints), feeding_proximal=feeding_proximal,
        feeding_distal=feeding_distal, pixel_mm=pixel_mm, frames=frames,
    )
    res = measure(_catheter_calibrated(path, catheter_french, catheter_points, pixel_mm), inputs=inputs)
    d = res.to_dict()
    if out_dir is not None:
        from ..report import save_report

        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "result.json").write_text(json.dumps(d, indent=1) + "\n")
        save_report(res, None, out_dir / "report.png")
    if as_json:
        click.echo(json.dumps(d, separators=(",", ":")))
    else:
        for line in summary_lines(res):
            click.echo(line)
        if out_dir is not None:
            click.echo(f"wrote              {out_dir / 'result.json'}, {out_dir / 'report.png'}")


def _catheter_calibrated(path: Path, french: float | None, points: str | None, pixel_mm: float | None):
    """``path``, or its run calibrated on the catheter (``--catheter-french`` and
    ``--catheter-points``: :func:`stenosis.calibration.catheter_calibration`, source
    ``catheter``, recorded in the result's calibration)."""
    if french is None and points is None:
        return path
    if french is None or points is None:
        raise click.UsageError("catheter calibration needs both --catheter-french F and --catheter-points R1,C1,R2,C2")
    if pixel_mm is not None:
        raise click.UsageError("give either --pixel-mm or a catheter calibration, not both")
    try:
        r1, c1, r2, c2 = (float(v) for v in points.split(","))
    except ValueError:
        raise click.UsageError(f"--catheter-points: expected R1,C1,R2,C2 (four numbers), got {points!r}") from None
    from ..calibration import catheter_calibration
    from ..io import read_run

    run = read_run(path)
    h, w = run.frames.shape[-2:]
    for r, c in ((r1, c1), (r2, c2)):
        if not (0 <= r < h and 0 <= c < w):
            raise click.UsageError(f"--catheter-points: ({r:g}, {c:g}) is outside the {h}x{w} image")
    return run.with_calibration(catheter_calibration((r1, c1), (r2, c2), french))
