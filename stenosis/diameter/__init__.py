"""Sub-pixel lumen diameters from perpendicular profiles: model-based fit of a blurred cylinder.

A projected circular lumen of radius R (pixels) with iodine signal A per pixel of
path length gives, across the vessel at offset x from its centre c,

    s(x) = b0 + b1 x + A * [2 sqrt(R^2 - (x - c)^2)]_+  (*)  G_sigma(x)

where G_sigma is the imaging blur (focal spot, detector, pixel integration and
interpolation lumped into one Gaussian) and b0 + b1 x the local background. The
blur sigma and the amplitude A are estimated once per run from the usable
samples (``stage.estimate_lumen_model``: a joint fit where the edge shape
determines sigma and the plateau A);
each profile is then fitted with A and sigma fixed, so that the integrated
(densitometric) signal still determines R when 2R is below the blur width, where
edge detectors overestimate (Hoffmann, Wahle, Pellot-Barakat, Sklansky, Sonka,
"Improved quantitative coronary angiography...", Med Phys 2002;29:1509,
doi:10.1118/1.1488603; Fleagle et al., Med Phys 1989, doi:10.1118/1.596337).

Scatter lowers the iodine signal by 1 / (1 + scatter-to-primary ratio), and that ratio
follows the anatomy behind the vessel, so one A per run measures a lumen over a
darker background too narrow. The final fit lets A follow the vessel: where the
lumen is resolved its own shape fixes R, a free fit gives the local A, and each
sample takes the median of those within a few radii (shrunk towards the run's A by
its significance; an unresolved stenosis takes its resolved neighbours').

The fit is vectorised over all profiles: b0, b1 (and A when free) are linear and
eliminated by projection; (R, c) are found by a coarse grid search on a lookup
table of blurred-chord profiles, a fine local grid, and a quadratic refinement.
Derivative (maximum-gradient) edges are computed as a cross-check.

Modules: ``model`` (the tabulated blurred chord), ``profiles`` (sampling across the
centerline), ``fit`` (the vectorised fit, blur, amplitude, derivative edges), ``flags``
(quality flags), ``stage`` (the measurement's one pass, :func:`diameter_stage`).
"""
from __future__ import annotations

from .fit import ProfileFit, derivative_edges, estimate_blur, fit_profiles, local_amplitude
from .flags import residual_flags, side_vessel_flags
from .model import ChordTable, chord_table
from .profiles import normals_from_centerline, profile_offsets, sample_profiles
from .stage import (combine_frames, diameter_stage, measure_diameters, refit_beside_vessels, same_samples_in_frame,
                    sample_along)

__all__ = [
    "ChordTable", "chord_table", "sample_profiles", "profile_offsets", "normals_from_centerline", "ProfileFit",
    "fit_profiles", "estimate_blur", "derivative_edges", "local_amplitude", "residual_flags", "side_vessel_flags",
    "sample_along", "measure_diameters", "refit_beside_vessels", "diameter_stage", "same_samples_in_frame", "combine_frames",
]
