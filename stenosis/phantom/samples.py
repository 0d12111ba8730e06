"""The bundled sample runs (``sample_dicom/``), regenerated bit-for-bit by::

    python -m stenosis.phantom.samples sample_dicom/

Writes each ``<name>.dcm`` with its ``<name>.truth.json`` and the folder's README.md.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from .dicom import write_phantom
from .engine import render_phantom
from .spec import PhantomSpec

_COMMON = dict(shape=(384, 384), n_frames=7, n_mask_frames=2, arrival_frames=2, frame_time_ms=250.0)

SAMPLES: tuple[PhantomSpec, ...] = (
    PhantomSpec(
        name="ica_native_geometry", seed=101, segment="ICA", normal_diameter_mm=4.2, stenosis_percent=58.0,
        stenosis_length_mm=7.0, mm_per_px=(0.2, 0.2), subtracted=False, calibration="geometry",
        compression="rle", sid_mm=1000.0, sod_mm=800.0, motion_px=(0.3, -0.2), primary_angle_deg=-30.0,
        secondary_angle_deg=5.0, **_COMMON,
    ),
    PhantomSpec(
        name="m1_subtracted_pixelspacing", seed=202, segment="M1", normal_diameter_mm=2.6, stenosis_percent=35.0,
        stenosis_length_mm=5.0, eccentricity=1.0, feeding=True, mm_per_px=(0.15, 0.15), subtracted=True,
        calibration="pixel_spacing", compression="rle", primary_angle_deg=0.0, secondary_angle_deg=0.0,
        **_COMMON,
    ),
    PhantomSpec(
        name="v4_native_magnification", seed=303, segment="V4", normal_diameter_mm=3.0, stenosis_percent=72.0,
        stenosis_length_mm=6.0, taper=0.05, mm_per_px=(0.16, 0.16), subtracted=False, calibration="magnification",
        compression="none", sid_mm=1100.0, sod_mm=825.0, primary_angle_deg=20.0, secondary_angle_deg=-10.0,
        **_COMMON,
    ),
    PhantomSpec(
        name="ba_subtracted_geometry", seed=404, segment="BA", normal_diameter_mm=3.0, stenosis_percent=48.0,
        stenosis_length_mm=8.0, eccentricity=0.5, proximal_diseased=True, mm_per_px=(0.18, 0.18), subtracted=True,
        calibration="geometry", compression="rle", sid_mm=1200.0, sod_mm=900.0, primary_angle_deg=0.0,
        secondary_angle_deg=15.0, **_COMMON,
    ),
    PhantomSpec(
        name="m1_native_uncalibrated", seed=505, segment="M1", normal_diameter_mm=2.4, stenosis_percent=80.0,
        stenosis_length_mm=4.0, mm_per_px=(0.15, 0.15), subtracted=False, calibration="none", compression="rle",
        motion_px=(-0.5, 0.4), primary_angle_deg=90.0, secondary_angle_deg=0.0, **_COMMON,
    ),
)


def _readme(rows: list[tuple[PhantomSpec, dict, str]]) -> str:
    lines = [
        "# Sample phantom runs",
        "",
        "Synthetic XA multi-frame runs written by `stenosis.phantom` (no patient data: the",
        "patient is `PHANTOM^STENOSIS`). Each `<name>.dcm` has its ground truth in",
        "`<name>.truth.json` (keys documented in `stenosis/phantom/__init__.py`). Positions",
        "are (row, col) in pixels, 0-based, in the fully opacified frame `frame` (0-based).",
        "",
        "Regenerate bit-for-bit (the test `tests/test_sample_dicom.py` checks the sha256):",
        "```",
        "python -m stenosis.phantom.samples sample_dicom/",
        "```",
        "",
        "| file | artery | true % stenosis | >= 50% | MLD mm | reference mm (choice) | mm/px | calibration | run | encoding | frame | proximal (row, col) | distal (row, col) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for spec, t, _ in rows:
        lines.append(
            f"| {spec.name}.dcm | {spec.segment} | {t['percent_stenosis']:.1f} | {'yes' if t['meets_50'] else 'no'} "
            f"| {t['mld_mm']:.3f} | {t['reference_diameter_mm']:.3f} ({t['reference_choice']}) "
            f"| {spec.mm_per_px[0]:g} | {spec.calibration} | {'subtracted' if spec.subtracted else 'native'} "
            f"| {'RLE Lossless' if spec.compression == 'rle' else 'Explicit VR Little Endian'} | {t['frame_index']} "
            f"| {t['proximal_rc'][0]:.1f}, {t['proximal_rc'][1]:.1f} | {t['distal_rc'][0]:.1f}, {t['distal_rc'][1]:.1f} |"
        )
    lines += [
        "",
        "Notes: `m1_native_uncalibrated` has no calibration tags (mm values are not",
        "reportable; percent stenosis still is). `ba_subtracted_geometry` has a diseased",
        "proximal segment, so its WASID reference is the distal artery. `m1_subtracted_pixelspacing`",
        "has an eccentric lesion and a wider feeding artery before the M1. Native runs carry",
        "a MaskSubtractionSequence (AVG_SUB, mask frames 1-2 in DICOM's 1-based numbering).",
        f"The contrast front travels along the vessels at {rows[0][0].bolus_velocity_mm_s:g} mm/s from the artery's",
        f"proximal end ({1000 / rows[0][0].frame_time_ms:g} frames/s): the inflow is full from frame "
        f"{rows[0][0].n_mask_frames + rows[0][0].arrival_frames},",
        "the graded segment from `frame`; `arrival_s` in the truth gives the front's arrival along the artery.",
        "",
        "sha256:",
        "```",
    ]
    lines += [f"{digest}  {spec.name}.dcm" for spec, _, digest in rows]
    lines += ["```", ""]
    return "\n".join(lines)


def write_samples(out_dir: str | Path) -> list[Path]:
    """Write every sample run, its truth and the README into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    written = []
    for spec in SAMPLES:
        ph = render_phantom(spec)
        dcm, truth = write_phantom(ph, out / f"{spec.name}.dcm")
        rows.append((spec, ph.truth, hashlib.sha256(dcm.read_bytes()).hexdigest()))
        written += [dcm, truth]
    readme = out / "README.md"
    readme.write_text(_readme(rows))
    return written + [readme]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", default="sample_dicom")
    args = ap.parse_args(argv)
    for p in write_samples(args.out_dir):
        print(f"{p}  {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
