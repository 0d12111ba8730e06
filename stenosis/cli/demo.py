"""``stenosis demo [--out DIR]``: measure a bundled phantom run and write its report.

The sample runs (``stenosis._samples``, the repository's ``sample_dicom/``) carry
truth sidecars; the demo takes the reader points from the sidecar, measures the
run exactly as ``stenosis measure`` would and prints measured against true values.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..data import sample_dir
from ._common import debug_option, error_boundary, replaced_note

DEFAULT_SAMPLE = "v4_native_magnification"


def sample_names() -> list[str]:
    return sorted(p.stem for p in sample_dir().glob("*.dcm"))


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("stenosis-demo"),
              show_default=True, help="Folder for result.json and report.png.")
@click.option("--sample", default=DEFAULT_SAMPLE, show_default=True, help="Which bundled run (see --list).")
@click.option("--list", "list_samples", is_flag=True, help="List the bundled runs and exit.")
@click.option("--model", type=click.Choice(["unet", "classical"], case_sensitive=False), default="unet", show_default=True,
              help="Vessel-probability model for the centerline (the shipped U-Net, or the classical vesselness).")
@debug_option
@error_boundary
def command(out_dir: Path, sample: str, list_samples: bool, model: str, debug: bool = False) -> None:
    """Measure a bundled sample run and write its report (measured vs true)."""
    from ..errors import InputError

    names = sample_names()
    if list_samples:
        for n in names:
            click.echo(n)
        return
    if not names:
        raise InputError(f"no sample runs found in {sample_dir()}; reinstall stenosis")
    if sample not in names:
        raise click.BadParameter(f"unknown sample {sample!r}; choose one of: {', '.join(names)}", param_hint="--sample")
    dcm = sample_dir() / f"{sample}.dcm"
    truth_file = dcm.with_suffix(".truth.json")
    truth = json.loads(truth_file.read_text())

    from ..measurement import measure
    from ..report import save_report
    from .measure import summary_lines

    res = measure(dcm, truth["segment"], tuple(truth["proximal_rc"]), tuple(truth["distal_rc"]), model=model.lower())
    out_dir.mkdir(parents=True, exist_ok=True)
    replaced = replaced_note(out_dir, ["result.json", "report.png"])
    (out_dir / "result.json").write_text(json.dumps(res.to_dict(), indent=1) + "\n")
    save_report(res, None, out_dir / "report.png")
    click.echo(f"sample             {dcm}")
    click.echo(f"points             (the truth's) proximal {truth['proximal_rc']}, distal {truth['distal_rc']}")
    for line in summary_lines(res):
        click.echo(line)
    click.echo("")
    click.echo(f"{'':18s} {'measured':>10s} {'true':>10s}")

    def row(name, got, true, fmt):
        g = "n/a" if got is None else format(got, fmt)
        t = "n/a" if true is None else format(true, fmt)
        click.echo(f"{name:18s} {g:>10s} {t:>10s}")

    row("percent stenosis", res.percent_stenosis, truth["percent_stenosis"], ".1f")
    row("MLD (mm)", res.mld_mm, truth["mld_mm"], ".2f")
    row("reference (mm)", res.reference_diameter_mm, truth["reference_diameter_mm"], ".2f")
    row("lesion (mm)", res.lesion_length_mm, truth["lesion_length_mm"], ".1f")
    click.echo(f"{'>= 50%':18s} {res.call_text:>10s} {('YES' if truth['meets_50'] else 'no'):>10s}")
    click.echo(f"{'reference choice':18s} {res.reference_choice:>10s} {truth['reference_choice']:>10s}")
    click.echo(f"wrote {out_dir / 'result.json'} and {out_dir / 'report.png'}{replaced}")
