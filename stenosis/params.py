"""Every tuned value of the measurement, named, with its meaning and unit.

:class:`MeasureParams` is a frozen dataclass; :data:`DEFAULT_PARAMS` is what
``stenosis.measure`` uses unless it is given another. Each result records the
parameter set's hash and the values that differ from the defaults
(``result.parameters["params"]``), so a result can be reproduced and a core lab can
see what produced it. Why each value is what it is (the cases and the before/after
figures that chose it) is in ``docs/tuning.md``; the code says only what a value means.

Units: ``_mm`` at the isocentre, ``_px`` pixels of the analysed frame, ``_sigmas`` in
noise standard deviations; fractions are of the quantity named.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MeasureParams", "DEFAULT_PARAMS"]


def _p(default: Any, unit: str, doc: str) -> Any:
    return field(default=default, metadata={"unit": unit, "doc": doc})


@dataclass(frozen=True)
class MeasureParams:
    """Tuned constants of the measurement (see the module notes and ``docs/tuning.md``)."""

    # ---- centerline and vessel map ------------------------------------------------
    step_mm: float = _p(0.1, "mm", "centerline sample step (calibrated runs)")
    step_px_uncalibrated: float = _p(0.5, "px", "centerline sample step (uncalibrated runs)")
    step_min_px: float = _p(0.25, "px", "smallest centerline step: work is bounded by the image, not by the calibration")
    snap_mm: float = _p(2.0, "mm", "how far a reader's point may be from the vessel")
    snap_min_px: float = _p(5.0, "px", "smallest snap radius")
    snap_px_uncalibrated: float = _p(8.0, "px", "snap radius (uncalibrated runs)")
    crop_margin_mm: float = _p(6.0, "mm", "margin of the vessel-map crop around the reader's points")
    crop_margin_min_px: float = _p(24.0, "px", "smallest crop margin")
    crop_margin_px_uncalibrated: float = _p(30.0, "px", "crop margin (uncalibrated runs)")
    crop_span_fraction: float = _p(0.25, "fraction", "crop margin as a share of the points' span (curving arteries)")
    crop_widen_factor: float = _p(3.0, "x", "crop margin growth when the path runs along the crop border")
    route_turn_deg: float = _p(15.0, "degrees", "a path turning by this much within a vessel width has its route checked with a curvature penalty")
    crop_curve_fraction: float = _p(0.75, "fraction", "crop margin, as a share of the points' span, for the route of a path that turns sharply")
    prob_mm: float = _p(0.2, "mm", "pixel size at which the vessel map is computed when pixels are finer")
    model_max_width_px: float = _p(20.0, "px", "widest vessel the U-Net sees whole (sets the map's scale)")
    widest_normal_ica_mm: float = _p(5.0, "mm", "widest normal ICA lumen expected (sets the map's scale)")
    widest_normal_mm: float = _p(3.5, "mm", "widest normal M1/V4/BA lumen expected (sets the map's scale)")
    plausible_factor: float = _p(2.0, "ratio", "a reference diameter over this many times the widest normal lumen of the segment, or under the widest over twice this, is implausible in mm: the result says to check the calibration")
    trace_opacity_quantile: float = _p(0.995, "quantile", "iodine level mapped to 1 in the trace's cost (keeps wide lumens centred)")
    contrast_sigmas: float = _p(2.5, "noise SD", "iodine needed at the path's ends over the frame's median")
    max_frame_shift_px: float = _p(8.0, "px", "motion between the traced and the chosen frame beyond which the path is traced again; another frame moved further is not combined")
    follow_min_eigen: float = _p(0.01, "x largest", "the segment's motion between frames is refined along the directions the frames determine: structure-tensor eigenvalue at least this x the largest (along a straight, uniform vessel none is taken)")
    select_fraction: float = _p(0.9, "fraction", "a centerline sample is opacified at this share of its peak over frames")
    select_coverage: float = _p(0.95, "fraction", "a frame is fully opacified when this share of samples is")
    fill_smooth_radii: float = _p(4.0, "x radius", "each frame's opacity along the segment is averaged over this many lumen radii before a frame is judged fully opacified")
    motion_explained: float = _p(0.3, "fraction", "the mask's registered shift onto a frame is the anatomy's motion (followed when frames are judged full) when it removes at least this share of their difference")
    background_mask_px: float = _p(2.0, "px", "single native frame: the background is interpolated under the traced lumen (its local half-maximum radius) widened by this")
    background_sigma_px: float = _p(4.0, "px", "single native frame: scale of the background interpolated from the pixels around the traced lumen")
    background_map_reach_radii: float = _p(2.0, "x local radius", "single native frame: where the vessel map's mid-line across the trace (its run above vessel_threshold, followed this many local radii each side) is more than background_mask_px off the trace, the lumen kept out of the background is also taken around that mid-line (a trace pulled off the lumen's centre would leave the far edge in the background; 0: off)")
    background_beyond_sigmas: float = _p(3.0, "x background_sigma_px", "single native frame: the traced lumen kept out of the background interpolation is continued this many interpolation scales past each end of the trace (the artery goes on beyond the reader's points; 3: the interpolating Gaussian's reach)")
    background_relative_power: float = _p(1.0, "power", "single native frame of unknown intensity relationship: its contrast against the background model is divided by (background / the background's median under the lumen) to this power (1: stored values proportional to intensity, where Beer-Lambert makes a vessel's depth follow the brightness behind it; 0: read as log-scaled)")
    background_moved_gap_sigmas: float = _p(2.0, "x background_sigma_px", "single native frame: the traced lumen's hole is also moved beside the vessel, to each side, by its own width plus this many interpolation scales; the background interpolated over the moved hole, less the pixels there (known), is the interpolation's own error, which is added under the lumen and the segment measured again: the differences join the SDs (0: off)")
    background_check_sigma_px: float = _p(8.0, "px", "single native frame: the background is also interpolated at this scale and the segment measured on it; the difference joins the SDs (0: off)")
    combine_fraction: float = _p(0.5, "fraction", "another frame is combined when its iodine along the segment is at least this share of the peak (median over samples); its samples are read where their iodine is within a factor 1/this of the frames' median there")
    mask_iodine_fraction: float = _p(0.5, "fraction", "a native run's mask holding more than this share of the iodine the analysed frame gains over the frame holding the least along the segment is replaced by that frame; an untagged run whose every frame holds more than this share of the analysed frame's native reading, following its narrowing, is measured on the analysed frame alone; also the least share of the segment's median iodine each quarter of a natively traced path must hold, and the cap of a quiet frame's iodine")
    mask_quiet_fraction: float = _p(0.1, "fraction", "an untagged native run's frames from frame 0 (a tagged run's after its tagged masks) until the bolus arrives (iodine along each quarter of the segment under this share of the analysed frame's, or under contrast_sigmas of its noise, whichever is larger) are averaged as its mask; frames differing along the segment by less than this share show no bolus (a native frame measured alone then asks a reader to confirm)")
    bolus_span_frames: float = _p(0.5, "frames", "auto mode: the contrast arrival fitted along the trunk must change by more than this from end to end (its slope at least bolus_t_stat standard errors) to orient it by the bolus front")
    swap_span_frames: float = _p(0.25, "frames", "the contrast arrival fitted along the traced segment reaching the distal point more than this before the proximal one (its slope at least bolus_t_stat standard errors) warns that the points may be swapped")
    bolus_t_stat: float = _p(3.0, "standard errors", "the bolus front's fitted slope must be at least this many standard errors (bolus_span_frames, swap_span_frames)")
    frame_outlier_sds: float = _p(4.0, "noise SD", "a frame's diameter further than this from the frames' median at a sample (3+ frames) is not combined there")
    shared_noise_sigma_px: float = _p(4.0, "px", "several frames: the mask's noise they share is estimated off the vessels from their mean less its background interpolated at this scale, and removed from every frame (0: off)")
    mask_noise_scales_px: tuple = _p((1.0, 2.0), "px", "several frames of a native run: under the lumen the mask's noise is predicted from the mask's fine structure seen by the pixel and Gaussian neighbourhoods of these scales, weights fitted off the vessels ((): off)")
    shared_noise_margin_px: float = _p(3.0, "px", "several frames: pixels within the traced lumen's local radius plus this, or this near the vessel map, hold iodine (the mask's noise is not estimated there)")
    recenter_max_px: float = _p(3.0, "px", "smallest cap of the move onto the fitted lumen centres")
    recenter_max_radius: float = _p(0.5, "x radius", "cap of the move onto the fitted lumen centres, in lumen radii")
    clipping_min_mm: float = _p(0.3, "mm", "clipped pixel values along this much of the lumen give a warning")
    clipping_min_px_uncalibrated: float = _p(2.0, "px", "the same, uncalibrated runs")
    on_segment_radii: float = _p(1.5, "x radius", "a reader's point this close to the trace is on the segment")

    # ---- diameter profiles and the lumen model ------------------------------------
    profile_band_px: float = _p(1.0, "px", "half-length of the band of profiles averaged along the vessel")
    profile_step_px: float = _p(1.0, "px", "sample step along each profile")
    profile_half_radii: float = _p(1.6, "x radius", "profile half-length: this x the radius hint ...")
    profile_half_extra_px: float = _p(7.0, "px", "... plus this")
    profile_half_min_px: float = _p(10.0, "px", "shortest profile half-length")
    fit_r_max_radii: float = _p(1.6, "x radius", "largest radius searched: this x the radius hint ...")
    fit_r_max_extra_px: float = _p(2.0, "px", "... plus this")
    fit_c_max_radii: float = _p(0.5, "x radius", "largest centre offset searched, in radius hints ...")
    fit_c_max_range_px: tuple[float, float] = _p((3.0, 12.0), "px", "... within this range")
    blur_sigma_grid_px: tuple[float, float, int] = _p((0.4, 4.0, 7), "px", "blur sigmas tried (geometric: first, last, count)")
    blur_refine: int = _p(10, "x", "the blur grid's best sigma is searched again between its neighbours on a grid this many times finer (1: not)")
    blur_nominal_px: float = _p(1.0, "px", "blur of the first fit that finds the samples with a lumen")
    blur_wide_quantile: float = _p(0.0, "quantile", "samples at least this wide (smoothed radius) estimate blur and amplitude (0: every usable sample)")
    blur_amplitude_mads: float = _p(3.0, "MAD", "samples with an amplitude this far from the median are left out of the estimate")
    blur_max_profiles: int = _p(40, "profiles", "at most this many profiles in the blur estimate")
    log_model_passes: int = _p(2, "passes", "LIN runs: blur and amplitude estimated again this many times with the transmission blurred at the amplitude found (0: the linear model)")
    reestimate_change: float = _p(0.01, "fraction", "blur/amplitude re-estimated without flagged samples replace the first when they differ by more")
    local_amplitude_half_radii: float = _p(4.0, "x radius", "local amplitude: half-window along the vessel (0: one per run)")
    local_amplitude_min: int = _p(10, "samples", "local amplitude from at least this many resolved samples")
    local_amplitude_range: tuple[float, float] = _p((0.5, 1.3), "x run amplitude", "free-fit amplitudes outside this range are not used")
    resolved_sigmas: float = _p(4.0, "x blur sigma", "a lumen is resolved (its shape fixes R) when 2R is at least this ...")
    resolved_min_px: float = _p(10.0, "px", "... and at least this wide")
    derivative_smooth_px: float = _p(0.75, "px", "smoothing of the derivative (check) edges")

    # ---- quality flags ------------------------------------------------------------
    branch_peak_fraction: float = _p(0.15, "x peak", "residual beyond the edge above this share of the widest lumen's peak: BRANCH")
    branch_noise_sigmas: float = _p(4.0, "noise SD", "... and above this many residual SDs")
    overlap_free_amplitude: float = _p(1.3, "x amplitude", "free amplitude above this x the run's over a resolved lumen: OVERLAP")
    overlap_resolved_sigmas: float = _p(2.5, "x blur sigma", "a lumen is resolved for the OVERLAP test when 2R exceeds this")
    overlap_inner_fraction: float = _p(0.2, "x peak", "mean residual over the lumen above this share of the peak: OVERLAP")
    poor_fit_rms: float = _p(3.0, "x median", "fit RMS above this x the run's median (and this many noise SDs): POOR_FIT")
    vessel_threshold: float = _p(0.5, "probability", "the vessel map holds a vessel above this")
    side_reach_px: float = _p(4.0, "px", "how far beyond the lumen the map is probed for a side vessel")
    side_dilate_samples: int = _p(2, "samples", "a side-vessel flag spreads this far along the vessel")
    crossing_ratio: float = _p(1.2, "x one vessel", "map arc on a circle around a sample above this x one vessel's: a crossing (OVERLAP)")
    refit_min_room_px: float = _p(2.5, "px", "a profile cut short of a vessel beside it is refitted when this much background remains")

    # ---- WASID ---------------------------------------------------------------------
    window_diameters: float = _p(1.5, "x reference", "reference window length")
    parallel_slope: float = _p(0.10, "fraction", "parallel margins: diameter change over the window at most this")
    parallel_sd: float = _p(0.05, "fraction", "parallel margins: SD about the linear trend at most this")
    tortuous_deg: float = _p(30.0, "degrees", "non-tortuous: centerline turn over the window at most this")
    normal_max_flagged: float = _p(0.10, "fraction", "a normal window has at most this share of flagged samples")
    mld_competing_reach_sd: float = _p(2.0, "SD", "a stretch competes for the MLD when its trend is within the segment's expected extreme + this (along-vessel SDs) of it")
    reference_trend_mads: float = _p(2.5, "robust SD", "a site's diameter trend (line) is refitted without samples this far off it")
    flagged_mld_fraction: float = _p(0.75, "x MLD", "a flagged narrowing below this x the unflagged MLD is the MLD (with a warning)")
    lesion_fraction: float = _p(0.9, "x reference", "the lesion is where the diameter is below this")
    diseased_fraction: float = _p(0.9, "x best window", "a reference site narrowing below this is diseased")
    proximal_head_fraction: float = _p(0.93, "x best window", "proximal end of the proximal site narrower than this: diseased")
    proximal_vs_distal: float = _p(0.97, "x distal", "best proximal window narrower than this x the distal one: diseased")
    lesion_gap_diameters: float = _p(0.5, "x reference", "gap between the lesion and a reference window")
    end_exclude_diameters: float = _p(0.25, "x reference", "arc left out of the MLD search at each (snapped) end")
    mld_search_diameters: float = _p(0.5, "x reference", "a reader-placed MLD is searched within this of the point")
    max_blur_correction: float = _p(0.4, "fraction", "largest share of the MLD's area the along-vessel blur correction removes")
    mld_fit_depth: float = _p(0.25, "x depth", "the lesion bottom fitted over the arc within this share of its depth")
    mld_fit_misfit: float = _p(1.0, "x noise", "the lesion bottom's window shrinks until a parabola describes its areas: residual RMS within this multiple of the per-sample area noise (0: never shrinks)")
    mld_bottom_order: int = _p(4, "order", "the lesion bottom's area is fitted with a polynomial of this order (4: an even quartic, its along-vessel blur removed exactly; 2: a parabola, first order)")
    smooth_at_noise_ref_px: float = _p(0.65, "px", "along-vessel smoothing at the reference noise level ...")
    smooth_noise_ref: float = _p(0.158, "relative", "... the reference noise level (area noise / diameter) ...")
    smooth_noise_power: float = _p(1.45, "", "... and its power law")
    smooth_range_px: tuple[float, float] = _p((0.25, 1.5), "px", "along-vessel smoothing range")
    band_var_px2: float = _p(0.5, "px^2", "variance of the band of averaged profiles (along-vessel blur)")

    # ---- uncertainty and the >= 50% call -------------------------------------------
    noise_sd_scale: float = _p(0.7, "x", "noise-propagation SD scale (calibrated on phantoms)")
    mld_floor_px: float = _p(0.03, "px", "model SD floor of the MLD")
    reference_floor: float = _p(0.005, "x reference", "model SD floor of the reference")
    noise_lag_px: float = _p(3.0, "px", "profiles this far apart along the vessel have independent noise (misfit test)")
    misfit_warn_ratio: float = _p(1.5, "x noise", "residuals this far above the profiles' noise at the MLD or reference: a warning")
    structure_warn_fraction: float = _p(0.03, "x reference", "normal-artery diameter variation beyond noise above this share of the reference: a warning")
    frames_disagree_ratio: float = _p(2.0, "x modelled SD", "per-frame percent stenosis spread above this x the modelled SD: frames disagree")
    borderline_points: float = _p(5.0, "points", "a percent stenosis this close to 50 asks a reader to confirm the call")
    start_check_px: float = _p(10.0, "px", "the trace's proximal end is cut by this to test whether the percent stenosis depends on where the trace starts")

    # ---- several views of one lesion (stenosis.measure_views) ------------------------
    view_core_diameters: float = _p(0.25, "x reference", "a view's lesion core, read for its projected width: profiles within this many reference diameters of the MLD (at least 1.5 px)")
    view_eccentricity_prior_sd: float = _p(0.5, "log k", "grading views: prior SD of the lesion core's amplitude ratio k around a round lumen (0: the area reading)")

    # ---------------------------------------------------------------------------------
    def widest_normal_for(self, segment: Any) -> float:
        """Widest normal lumen (mm) expected on ``segment`` (a Segment or its name)."""
        return self.widest_normal_ica_mm if str(getattr(segment, "value", segment)) == "ICA" else self.widest_normal_mm

    def as_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def sha256(self) -> str:
        """Hash of the full parameter set (sorted JSON)."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()

    def non_default(self) -> dict[str, Any]:
        base = DEFAULT_PARAMS.as_dict()
        return {k: v for k, v in self.as_dict().items() if base[k] != v}

    def to_record(self) -> dict[str, Any]:
        """What a result records: the set's hash (12 hex) and the values that differ from the defaults."""
        return {"sha256": self.sha256()[:12], "non_default": self.non_default()}

    @classmethod
    def describe(cls) -> list[tuple[str, Any, str, str]]:
        """(name, default, unit, meaning) of every parameter."""
        return [(f.name, _plain(f.default), f.metadata["unit"], f.metadata["doc"]) for f in dataclasses.fields(cls)]


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


DEFAULT_PARAMS = MeasureParams()
