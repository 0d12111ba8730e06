"""``stenosis measure PATH --segment S --proximal ROW,COL --distal ROW,COL``.

Parses the arguments and calls :func:`stenosis.measure`; no measurement
logic here. ``--json`` prints exactly one JSON object on stdout; the default is a
short readable summary; ``--out DIR`` writes ``result.json`` and ``report.png``.

Several views of one lesion: ``stenosis measure PATH1 PATH2 --segment S --proximal P1
--distal D1 --proximal P2 --distal D2`` (the k-th ``--proximal``/``--distal``, and
``--frame``/``--pixel-mm`` when given, belong to the k-th PATH) calls
:func:`stenosis.measure_views`: every view is reported, the most severe is graded.
Exit status: 0 measured, 2 usage error, 3 input the tool cannot measure.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import PIXEL_MM, RC, SEGMENT, FiniteFloatRange, debug_option, error_boundary, replaced_note


def _create_out_dir(out_dir: Path | None) -> None:
    """``--out``, created after the arguments are checked and before measuring: a result is never lost
    to an unwritable folder, and a usage error leaves no folder behind."""
    if out_dir is not None:
        from ..batch.outputs import create_out_dir

        create_out_dir(out_dir)


def _measured(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` (:func:`stenosis.measure` or :func:`stenosis.measure_views`); a point off
    the vessel is often one given X,Y: the error reminds that points are ROW,COL."""
    from ..errors import MeasurementError

    try:
        return fn(*args, **kwargs)
    except MeasurementError as exc:
        msg = str(exc)
        if "not on a vessel" in msg and "row first" not in msg:
            raise MeasurementError(f"{msg} (points are ROW,COL in pixels, row first)") from exc
        raise


def _site(res) -> str:
    """The reference site as the reader reads it: its description, with the WASID choice named
    once ("proximal M1 (1st choice)", not "proximal (proximal M1 (1st choice))")."""
    desc, choice = res.reference_window.description, str(res.reference_choice)
    return desc if choice.lower() in desc.lower() else f"{choice} ({desc})"


def summary_lines(res) -> list[str]:
    """Readable summary of a StenosisResult (one fact per line)."""
    d = res.to_dict()
    mm = res.mm_per_px is not None

    def dia(mm_val, px_val):
        return f"{mm_val:.2f} mm ({px_val:.1f} px)" if mm else f"{px_val:.2f} px (uncalibrated)"

    lines = [
        f"file               {d['file']}",
        f"segment            {d['segment']}   frame {d['frame_index']}",
        # the result's own value, rounded as its warnings round it (the JSON's 2 decimals could
        # round the other way: 40.45 -> 40.5 here against 40.4 in "percent stenosis 40.4%: ...")
        f"percent stenosis   {res.percent_stenosis:.1f}% +- {res.percent_stenosis_sd:.1f} (1 SD)"
        f"   >= 50%: {res.call_text}",
        f"MLD                {dia(res.mld_mm, res.mld_px)} at (row, col) {d['mld_rc'][0]:.1f}, {d['mld_rc'][1]:.1f}",
        f"reference          {dia(res.reference_diameter_mm, res.reference_diameter_px)}, {_site(res)}"
        f" at {d['reference_rc'][0]:.1f}, {d['reference_rc'][1]:.1f}",
    ]
    if d["interpolated_percent_stenosis"] is not None:
        lines.append(f"interpolated ref.  {d['interpolated_percent_stenosis']:.1f}% (against a reference interpolated "
                     "between the normal segments before and after the lesion; DICOM PS3.17 Annex T)")
    lines.append(
        f"lesion length      {res.lesion_length_mm:.1f} mm" if mm else f"lesion length      {res.lesion_length_px:.1f} px"
    )
    fr = d.get("frames") or {}
    if len(fr.get("used") or []) > 1:
        sd = fr.get("frame_to_frame_sd")
        lines.append(f"frames             {len(fr['used'])} combined ({', '.join(str(t) for t in fr['used'])})"
                     + (f", per-frame SD {sd:.1f} points" if sd is not None else ""))
    if fr.get("excluded"):
        lines.append(f"frames dropped     {', '.join(str(t) for t in fr['excluded'])} (by the reader)")
    if fr.get("mask"):
        lines.append(f"mask               frame{'s' if len(fr['mask']) > 1 else ''} {', '.join(str(t) for t in fr['mask'])}"
                     " (subtracted from the frames measured)")
    cal = d["calibration"]
    cal_txt = (f"{res.mm_per_px:.4g} mm/px ({cal['source']})" if mm
               else "none: no mm values (percent stenosis needs none); give --pixel-mm or --catheter-french")
    lines.append(f"calibration        {cal_txt}")
    for w in d["warnings"]:
        lines.append(f"warning            {w}")
    return lines


@click.command("measure", epilog=(
    "Several views of one lesion (biplane A/B, working projections): give one PATH per view and "
    "--proximal/--distal once per PATH, in the same order (--frame and --pixel-mm: once per PATH or not "
    "at all); e.g. stenosis measure A.dcm B.dcm --segment M1 --proximal 181,138 --distal 193,308 "
    "--proximal 114,220 --distal 267,204. Every view is measured and reported; the most severe (largest "
    "percent stenosis) is graded (WASID), with the disagreement between the views. --segment, --model, "
    "--frames and --reference-choice apply to every view; the point overrides (--reference, --mld, "
    "--waypoint, --feeding-*, --catheter-*) are for one view only."))
@click.argument("paths", metavar="PATH [PATH ...]", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--segment", required=True, type=SEGMENT, help="Artery graded (sets the WASID reference rule).")
@click.option("--proximal", "proximals", required=True, multiple=True, type=RC,
              help="Point proximal to the lesion, ROW,COL in pixels (0-based); once per PATH, in order.")
@click.option("--distal", "distals", required=True, multiple=True, type=RC,
              help="Point distal to the lesion, ROW,COL in pixels (0-based); once per PATH, in order.")
@click.option("--frame", "frame_list", type=click.IntRange(min=0), multiple=True,
              help="Frame to analyse (0-based); default: first fully opacified frame. Several views: once per PATH.")
@click.option("--frames", "frames", default="all", show_default=True, metavar="all|single|N",
              help="Frames measured: every frame of the arterial phase (at least half the bolus along the segment; combined), the analysed one only, or at most N.")
@click.option("--drop-frame", "drop_frames", type=click.IntRange(min=0), multiple=True, metavar="N",
              help="Leave frame N out of the multi-frame combination (repeat; e.g. motion or venous overlap). One view only.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write result.json and report.png to this folder (several views: report-view<k>.png per view).")
@click.option("--pixel-mm", "pixel_mm_list", type=PIXEL_MM, multiple=True,
              help=f"Pixel size in mm at the isocentre, {PIXEL_MM.range_text} (overrides the file calibration). "
                   "Several views: once per PATH.")
@click.option("--catheter-french", type=FiniteFloatRange(min=0, min_open=True), default=None, metavar="F",
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
def command(paths: tuple[Path, ...], segment: str, proximals, distals, frame_list, frames: str, drop_frames, as_json: bool,
            out_dir: Path | None, pixel_mm_list, catheter_french: float | None, catheter_points: str | None, model: str,
            reference, reference_choice, mld, waypoints, feeding_proximal, feeding_distal, debug: bool = False) -> None:
    """Measure WASID percent stenosis of one segment of the run in PATH (or of one lesion in several views:
    one PATH per view)."""
    from ..errors import InputError

    n = len(paths)
    for k, p in enumerate(paths):  # first: a value given to a flag that takes none (--json r.json) reads as another PATH
        if not p.exists():
            raise InputError(f"{f'view {k + 1} ({p.name}): ' if n > 1 else ''}{p}: no such file or folder; check the path"
                             + (" (--json takes no value: it prints the result as JSON; --out DIR writes "
                                "DIR/result.json)" if as_json and k > 0 else ""))
    for flag, given, may_omit in (("--proximal", proximals, False), ("--distal", distals, False),
                                  ("--frame", frame_list, True), ("--pixel-mm", pixel_mm_list, True)):
        if len(given) != n and not (may_omit and not given):
            raise click.UsageError(
                f"{n} PATH{'s' if n > 1 else ''} but {len(given)} {flag}: give {flag} once per PATH, in the same order"
                + (" (or not at all)" if may_omit else ""))
    if n > 1:
        one_view = [flag for flag, v in (("--reference", reference), ("--mld", mld), ("--waypoint", waypoints),
                                         ("--feeding-proximal", feeding_proximal), ("--feeding-distal", feeding_distal),
                                         ("--catheter-french", catheter_french), ("--catheter-points", catheter_points),
                                         ("--drop-frame", drop_frames))
                    if v not in (None, ())]
        if one_view:
            raise click.UsageError(f"{', '.join(one_view)} appl{'ies' if len(one_view) == 1 else 'y'} to one run only: measure that view alone "
                                   "(one PATH) to use them, or use stenosis.measure_views from Python")
        _create_out_dir(out_dir)
        return _measure_views(paths, segment, proximals, distals, frame_list, pixel_mm_list, frames, model,
                              reference_choice, as_json, out_dir)
    path, proximal, distal = paths[0], proximals[0], distals[0]
    frame = frame_list[0] if frame_list else None
    pixel_mm = pixel_mm_list[0] if pixel_mm_list else None
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
    from ..measurement import measure

    inputs = ReaderInputs.create(
        segment, proximal, distal, frame, model=model.lower(), reference=reference,
        reference_choice=reference_choice, mld=mld, waypoints=list(waypoints), feeding_proximal=feeding_proximal,
        feeding_distal=feeding_distal, pixel_mm=pixel_mm, frames=frames, exclude_frames=drop_frames,
    )
    _create_out_dir(out_dir)
    res = _measured(measure, _catheter_calibrated(path, catheter_french, catheter_points, pixel_mm), inputs=inputs)
    d = res.to_dict()
    if out_dir is not None:
        from ..report import save_report

        replaced = replaced_note(out_dir, ["result.json", "report.png"])
        (out_dir / "result.json").write_text(json.dumps(d, indent=1) + "\n")
        save_report(res, None, out_dir / "report.png")
    if as_json:
        click.echo(json.dumps(d, separators=(",", ":")))
    else:
        for line in summary_lines(res):
            click.echo(line)
        if out_dir is not None:
            click.echo(f"wrote              {out_dir / 'result.json'}, {out_dir / 'report.png'}{replaced}")


def _measure_views(paths, segment: str, proximals, distals, frame_list, pixel_mm_list, frames: str, model: str,
                   reference_choice, as_json: bool, out_dir: Path | None) -> None:
    """Several views of one lesion: :func:`stenosis.measure_views`, every view reported, the most severe graded."""
    from ..errors import MeasurementError
    from ..reader import frames_mode
    from ..views import measure_views

    try:
        frames = frames_mode(frames)
    except MeasurementError as exc:
        raise click.UsageError(f"--frames: {exc}") from None
    views = []
    for k, path in enumerate(paths):
        view = {"run": path, "proximal": proximals[k], "distal": distals[k], "frames": frames,
                "reference_choice": reference_choice}
        if frame_list:
            view["frame"] = frame_list[k]
        if pixel_mm_list:
            view["pixel_mm"] = pixel_mm_list[k]
        views.append(view)
    res = _measured(measure_views, views, segment, model=model.lower())
    d = res.to_dict()
    reports = [f"report-view{k + 1}.png" for k in range(len(res.views))]
    if out_dir is not None:
        from ..report import save_report

        replaced = replaced_note(out_dir, ["result.json", *reports])
        (out_dir / "result.json").write_text(json.dumps(d, indent=1) + "\n")
        for view, name in zip(res.views, reports):
            save_report(view, None, out_dir / name)
    if as_json:
        click.echo(json.dumps(d, separators=(",", ":")))
        return
    for line in views_summary_lines(res):
        click.echo(line)
    if out_dir is not None:
        click.echo(f"wrote              {out_dir / 'result.json'}, " + ", ".join(str(out_dir / r) for r in reports)
                   + replaced)


def views_summary_lines(res) -> list[str]:
    """Readable summary of a ViewsResult: one line per view, the graded view with the rule, the disagreement."""
    d = res.to_dict()

    def dia(v, mm_key: str, px_val: float) -> str:
        return f"{v[mm_key]:.2f} mm" if v[mm_key] is not None else f"{px_val:.2f} px"

    lines = [f"lesion             {len(res.views)} views of {d['segment']}"]
    for k, (res_k, v, r) in enumerate(zip(res.views, d["views"], d["readings"])):
        shape = ""
        if r["reading"] != "area" and r["percent_stenosis"] is not None:
            sd = f" +- {r['percent_stenosis_sd']:.1f}" if r["percent_stenosis_sd"] is not None else ""
            shape = f"   projected width {r['percent_stenosis']:.1f}%{sd} (amplitude ratio {r['amplitude_ratio']:.2f})"
        lines.append(f"view {k + 1:<14}{v['file']}: {res_k.percent_stenosis:.1f}% +- {res_k.percent_stenosis_sd:.1f}"
                     f"{shape}   MLD {dia(v, 'mld_mm', res_k.mld_px)}"
                     f"   reference {dia(v, 'reference_diameter_mm', res_k.reference_diameter_px)} ({v['reference_choice']})"
                     f"   frame {v['frame_index']}" + ("   (uncalibrated: px)" if v["mld_mm"] is None else ""))
    lines.append(f"graded             view {res.graded_index + 1} of {len(res.views)} ({d['views'][res.graded_index]['file']}; "
                 f"graded_view {res.graded_index} in the JSON, 0-based): "
                 f"{res.percent_stenosis:.1f}% ({d['reading']})   >= 50%: {res.call_text}")
    lines.append(f"rule               {res.rule}")
    sd = d["disagreement_sd"]
    lines.append(f"disagreement       {d['disagreement_points']:.1f} points between the views"
                 + (f" ({sd:.1f} x their combined SD)" if sd is not None else ""))
    if res.confirmation_reason is not None:
        lines.append(f"reader must confirm {res.confirmation_reason}")
    for k, v in enumerate(d["views"]):
        lines += [f"warning (view {k + 1})   {w}" for w in v["warnings"]]
    return lines


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
    from ..errors import InputError
    from ..io import read_run

    run = read_run(path)
    h, w = run.frames.shape[-2:]
    for r, c in ((r1, c1), (r2, c2)):
        if not (0 <= r < h and 0 <= c < w):
            # a point outside the image is bad input for this run (as --proximal's is), not a usage error
            raise InputError(f"--catheter-points: ({r:g}, {c:g}) is outside the {h}x{w} image (rows 0-{h - 1}, "
                             f"cols 0-{w - 1}); place both points on the catheter's edges")
    return run.with_calibration(catheter_calibration((r1, c1), (r2, c2), french))
