"""Physical phantom engine: the project's own ground truth.

Curved tubes with a circular lumen seen in projection (an artery with a concentric or
eccentric stenosis, side branches, a vessel crossing from another plane, an optional
feeding artery), rendered with the X-ray image chain (iodine path length integrated
over the pixel aperture, Beer-Lambert attenuation with an anatomical background and a
bolus whose front travels along the vessels from the inflow (``bolus_velocity_mm_s``,
default 300 mm/s: upstream fills first), intensity-domain blur with a scatter tail,
quantum noise, log, 12-bit encoding), written as DICOM XA multi-frame with a truth sidecar.

Use::

    from stenosis.phantom import PhantomSpec, make_phantom, load_truth
    dcm, truth_json = make_phantom(PhantomSpec(segment="M1", stenosis_percent=60, seed=1), "out/m1.dcm")
    truth = load_truth(dcm)

    ph = render_phantom(spec)      # in memory: ph.stored (T, H, W) uint16, ph.truth, ph.path_length_mm
    image, mask = training_pair(np.random.default_rng(0), size=256)   # U-Net training pair

Truth sidecar ``<name>.truth.json`` (next to ``<name>.dcm``); positions are (row, col)
in pixels of frame ``frame_index`` (patient motion included), lengths in mm at the
isocentre:

- ``segment``: "ICA", "M1", "V4" or "BA".
- ``percent_stenosis``: (1 - mld_mm / reference_diameter_mm) * 100 (WASID).
- ``meets_50``: percent_stenosis >= 50.
- ``mld_mm``, ``mld_rc``: minimal lumen diameter (= min of ``diameter_mm``) and its
  lumen centre.
- ``reference_diameter_mm``, ``reference_rc``, ``reference_choice``: the WASID normal
  diameter. "proximal": the diameter at the middle of the normal proximal segment
  between ``proximal_rc`` and the lesion start; "distal" (runs with
  ``proximal_diseased``): the middle of the normal distal segment; "feeding" (runs
  with ``artery_diseased``): the distal part of the normal feeding artery, between
  ``feeding_proximal_rc`` and ``feeding_distal_rc`` (null in other runs).
- ``lesion_length_mm``: length of the contiguous arc around the MLD where the diameter
  is below 0.9 x reference, within the reader's points (0 if the MLD is not); the rule
  is repeated in ``lesion_rule`` (the same rule as ``stenosis.wasid``).
- ``proximal_rc``, ``distal_rc``: reader-like points on the centreline; the proximal
  one 4-5 reference diameters before the lesion start (>= 3 always), the distal one
  2-6 reference diameters after the lesion end.
- ``frame_index``: 0-based index of the first frame in which the graded segment (the
  proximal point, or the feeding artery's first point, to the distal point) is fully
  opacified: the inflow's plateau has reached its latest point.
- ``arrival_s``: arrival time (s) of the contrast front at each ``arc_mm`` sample, 0 where
  the main artery enters the field (its inflow), ``arc / bolus_velocity_mm_s`` beyond.
- ``mm_per_px``: [row, col] at the isocentre (what every calibration encoding encodes).
- ``arc_mm``, ``diameter_mm``, ``centerline_rc``: the main artery sampled every 0.1 mm
  of arc (absolute arc grid) over its part inside the field: true lumen diameter and
  lumen centre (eccentric lesions shift the centre).
- ``spec``: the :class:`PhantomSpec` as a dict (regenerates the run).
- extra: ``mld_arc_mm``, ``reference_arc_mm``, ``proximal_arc_mm``, ``distal_arc_mm``,
  ``motion_px``, ``normal_diameter_mm``, ``stenoses`` (position_mm, percent,
  length_mm, eccentricity, side), ``branch_arc_mm`` (origins of side branches),
  ``crossing_arc_mm`` (where the crossing vessel overlaps, or null), ``encoding`` (bits_stored, subtracted, offset,
  scale_per_ln: stored = offset + scale_per_ln * ln(I/I0) native, or * (ln I - mean
  ln I_mask) subtracted; mask_frames 0-based; concentration per frame at the inflow, a
  point with arrival a seeing it at frame t - a / frame_time (linear between frames);
  bolus_velocity_mm_s; frame_time_ms).
"""
from __future__ import annotations

from pathlib import Path

from .dicom import load_truth, to_dataset, truth_path_for, write_phantom
from .engine import Phantom, bolus_arrival_s, concentration_curve, inflow_concentration, render_phantom
from .geometry import NORMAL_DIAMETER_MM, Stenosis, Tube, make_tube, random_curve, spline_through
from .render import chord_pixel_mean, lumen_mask, path_length_mm
from .scene import Scene, build_scene
from .spec import CALIBRATION_ENCODINGS, PhantomSpec, random_spec
from .training import training_pair


def make_phantom(spec: PhantomSpec, path: str | Path) -> tuple[Path, Path]:
    """Render ``spec`` and write ``path`` (.dcm) and its ``.truth.json`` sidecar."""
    return write_phantom(render_phantom(spec), path)


__all__ = [
    "CALIBRATION_ENCODINGS",
    "NORMAL_DIAMETER_MM",
    "Phantom",
    "PhantomSpec",
    "Scene",
    "Stenosis",
    "Tube",
    "bolus_arrival_s",
    "build_scene",
    "chord_pixel_mean",
    "concentration_curve",
    "inflow_concentration",
    "load_truth",
    "lumen_mask",
    "make_phantom",
    "make_tube",
    "path_length_mm",
    "random_curve",
    "random_spec",
    "render_phantom",
    "spline_through",
    "to_dataset",
    "training_pair",
    "truth_path_for",
    "write_phantom",
]
