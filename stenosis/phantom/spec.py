"""The parameters of one phantom run (frozen, JSON-able, stored in the truth sidecar)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ..enums import CalibrationSource, Segment
from ..errors import InputError

#: calibration encodings the DICOM writer can produce
CALIBRATION_ENCODINGS = (
    CalibrationSource.PIXEL_SPACING,
    CalibrationSource.GEOMETRY,
    CalibrationSource.MAGNIFICATION,
    CalibrationSource.NONE,
)


@dataclass(frozen=True)
class PhantomSpec:
    """Everything that defines a phantom run; the same spec and seed give the same bytes.

    Geometry (mm at the isocentre)
        segment : artery graded (sets the normal diameter range when
        ``normal_diameter_mm`` is None); normal_diameter_mm; taper (fractional
        decrease of the normal diameter from the start of the analysed segment to
        the end of the vessel in the field); stenosis_percent (0..100, diameter
        reduction at the narrowest point relative to the local normal diameter);
        stenosis_length_mm (full length of the cosine narrowing); eccentricity
        (0 concentric .. 1 one wall stays put); lesion_fraction (where the lesion
        sits within the room available, 0..1); curvature (0 straight .. 1 gently
        curved); control_points_px (optional (row, col) pixel points the main
        centreline passes through, in order from proximal to distal, instead of
        the random spline; extend them beyond the field so the artery crosses it);
        n_branches (side branches, outside the reader's points); branch_fractions
        (optional: branch origins at these fractions 0..1 of the artery's arc in the
        field, anywhere, instead of n_branches random ones);
        crossing (a vessel from another plane overlapping the main vessel in
        projection); crossing_in_segment (put the crossing between the reader's
        points, a harder case); feeding (a wider feeding-artery segment before the
        analysed segment); proximal_diseased (the proximal segment is narrowed too,
        so the WASID reference is the distal artery).
    Acquisition
        shape (H, W); mm_per_px (row, col) at the isocentre; n_frames; n_mask_frames
        (frames without contrast); arrival_frames (frames of rising
        concentration at the inflow); washout_frames (falling concentration at the end);
        bolus_velocity_mm_s (mm/s, default 300; None = the contrast arrives everywhere
        at once): speed of the contrast front along the vessels from the inflow (the
        main artery's proximal end in the field; branches inherit their parent's
        arrival at the branch point), so upstream fills first. 300 mm/s is a mean
        intracranial arterial velocity (20-60 cm/s by transcranial Doppler); at
        3-4 frames/s the front then takes a fraction of a frame to about a frame and
        a half across a 40-100 mm field, as in real DSA. The graded segment must be
        fully opacified in some frame (else an InputError says to add frames);
        mu_iodine_per_mm (linear attenuation of the opacified lumen, 1/mm);
        background (anatomical log-attenuation on); background_strength;
        blur_sigma_mm (Gaussian PSF); scatter_fraction, scatter_sigma_mm (wide
        tail); photons (quanta per pixel at I0; None = noiseless); poisson (Poisson
        counts; default False = the Gaussian approximation, faster and equivalent at
        these counts); motion_px (row, col) translation of the patient
        in the contrast frames relative to the mask frames.
    DICOM
        subtracted (store log-subtracted frames); intensity_relationship ("LOG":
        stored ~ ln I, or "LIN": stored ~ I, native runs only); photometric
        ("MONOCHROME2", or "MONOCHROME1": stored values inverted, displayed the same);
        calibration (encoding, one of
        :data:`CALIBRATION_ENCODINGS`); compression ("rle" or "none"); sid_mm,
        sod_mm (source-detector / source-patient distances, also the
        magnification SID/SOD); primary_angle_deg, secondary_angle_deg;
        frame_time_ms.
    """

    seed: int = 0
    segment: Segment = Segment.M1
    normal_diameter_mm: float | None = None
    taper: float = 0.0
    stenosis_percent: float = 60.0
    stenosis_length_mm: float = 6.0
    eccentricity: float = 0.0
    lesion_fraction: float = 0.5
    curvature: float = 0.5
    control_points_px: tuple[tuple[float, float], ...] | None = None
    n_branches: int = 2
    branch_fractions: tuple[float, ...] | None = None
    crossing: bool = True
    crossing_in_segment: bool = False
    feeding: bool = False
    proximal_diseased: bool = False
    artery_diseased: bool = False
    shape: tuple[int, int] = (512, 512)
    mm_per_px: tuple[float, float] = (0.2, 0.2)
    n_frames: int = 8
    n_mask_frames: int = 2
    arrival_frames: int = 2
    washout_frames: int = 0
    bolus_velocity_mm_s: float | None = 300.0
    mu_iodine_per_mm: float = 0.12
    background: bool = True
    background_strength: float = 1.0
    blur_sigma_mm: float = 0.2
    scatter_fraction: float = 0.05
    scatter_sigma_mm: float = 12.0
    photons: float | None = 20000.0
    poisson: bool = False
    motion_px: tuple[float, float] = (0.0, 0.0)
    subtracted: bool = False
    intensity_relationship: str = "LOG"
    photometric: str = "MONOCHROME2"
    calibration: CalibrationSource = CalibrationSource.GEOMETRY
    compression: str = "rle"
    sid_mm: float = 1000.0
    sod_mm: float = 800.0
    primary_angle_deg: float = 0.0
    secondary_angle_deg: float = 0.0
    frame_time_ms: float = 333.3333
    name: str = field(default="phantom")

    def __post_init__(self):
        object.__setattr__(self, "segment", Segment(self.segment))
        object.__setattr__(self, "calibration", CalibrationSource(self.calibration))
        object.__setattr__(self, "shape", tuple(int(v) for v in self.shape))
        object.__setattr__(self, "mm_per_px", tuple(float(v) for v in self.mm_per_px))
        object.__setattr__(self, "motion_px", tuple(float(v) for v in self.motion_px))
        if self.branch_fractions is not None:
            object.__setattr__(self, "branch_fractions", tuple(float(f) for f in self.branch_fractions))
        if self.control_points_px is not None:
            pts = tuple((float(r), float(c)) for r, c in self.control_points_px)
            if len(pts) < 2:
                raise InputError("control_points_px needs at least two (row, col) points")
            object.__setattr__(self, "control_points_px", pts)
        if self.calibration not in CALIBRATION_ENCODINGS:
            raise InputError(f"calibration must be one of {[str(c) for c in CALIBRATION_ENCODINGS]}")
        if self.artery_diseased and not self.feeding:
            raise InputError("artery_diseased needs a feeding artery segment: set feeding=True")
        if self.artery_diseased and self.proximal_diseased:
            raise InputError("choose one of artery_diseased and proximal_diseased")
        if self.intensity_relationship not in ("LOG", "LIN"):
            raise InputError("intensity_relationship must be 'LOG' or 'LIN'")
        if self.subtracted and self.intensity_relationship != "LOG":
            raise InputError("subtracted runs hold log data: use intensity_relationship='LOG'")
        if self.photometric not in ("MONOCHROME2", "MONOCHROME1"):
            raise InputError("photometric must be 'MONOCHROME2' or 'MONOCHROME1'")
        if self.compression not in ("rle", "none"):
            raise InputError("compression must be 'rle' or 'none'")
        if self.bolus_velocity_mm_s is not None:
            v = float(self.bolus_velocity_mm_s)
            if not (v > 0 and v < float("inf")):
                raise InputError("bolus_velocity_mm_s must be a positive number of mm/s (or None: no front)")
            object.__setattr__(self, "bolus_velocity_mm_s", v)
        if not 0 <= self.stenosis_percent <= 100:
            raise InputError("stenosis_percent must be within 0..100")
        if self.n_mask_frames < 1 or self.n_frames < self.n_mask_frames + self.arrival_frames + 1 + self.washout_frames:
            raise InputError("n_frames must hold the mask, arrival, one full and the washout frames")

    def replace(self, **changes) -> "PhantomSpec":
        """A copy with some fields changed."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["segment"] = str(self.segment)
        d["calibration"] = str(self.calibration)
        d["shape"] = list(self.shape)
        d["mm_per_px"] = list(self.mm_per_px)
        d["motion_px"] = list(self.motion_px)
        if self.branch_fractions is not None:
            d["branch_fractions"] = list(self.branch_fractions)
        if self.control_points_px is not None:
            d["control_points_px"] = [list(p) for p in self.control_points_px]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PhantomSpec":
        def tup(v):
            return tuple(tup(x) for x in v) if isinstance(v, list) else v

        return cls(**{k: tup(v) for k, v in d.items()})


def random_spec(seed: int, **overrides) -> PhantomSpec:
    """A random but plausible phantom run (for benchmarks and accuracy sweeps).

    Draws from ``seed`` (independently of the rendering streams): artery, lesion
    severity 20-95% and length 3-12 mm, eccentricity, taper 0-8%, feeding segment,
    WASID reference case (proximal 70 %, distal 15 %, feeding 15 %),
    pixel size 0.12-0.25 mm, blur, noise, motion, native or subtracted, calibration
    encoding, compression and beam angles. ``overrides`` replace any field.

    Returns
    -------
    PhantomSpec
    """
    import numpy as np

    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EC]))
    seg = [Segment.ICA, Segment.M1, Segment.V4, Segment.BA][int(rng.integers(4))]
    px = float(np.round(rng.uniform(0.12, 0.25), 3))
    fields = dict(
        seed=int(seed),
        segment=seg,
        stenosis_percent=float(np.round(rng.uniform(20, 95), 1)),
        stenosis_length_mm=float(np.round(rng.uniform(3, 12), 1)),
        eccentricity=float(np.round(rng.choice([0.0, rng.uniform(0, 1), 1.0]), 2)),
        taper=float(np.round(rng.uniform(0, 0.08), 3)),
        feeding=bool(rng.uniform() < 0.3),
        lesion_fraction=float(np.round(rng.uniform(0.2, 0.8), 2)),
        curvature=float(np.round(rng.uniform(0.2, 1.0), 2)),
        mm_per_px=(px, px),
        blur_sigma_mm=float(np.round(rng.uniform(0.1, 0.35), 3)),
        scatter_fraction=float(np.round(rng.uniform(0, 0.12), 3)),
        photons=float(np.round(np.exp(rng.uniform(np.log(3000), np.log(100000))))),
        motion_px=tuple(float(v) for v in np.round(rng.uniform(-1, 1, 2) * (rng.uniform() < 0.5), 2)),
        subtracted=bool(rng.uniform() < 0.5),
        calibration=CALIBRATION_ENCODINGS[int(rng.integers(3))],
        compression="rle" if rng.uniform() < 0.5 else "none",
        sid_mm=float(np.round(rng.uniform(950, 1250))),
        sod_mm=float(np.round(rng.uniform(700, 850))),
        primary_angle_deg=float(np.round(rng.uniform(-45, 45), 1)),
        secondary_angle_deg=float(np.round(rng.uniform(-30, 30), 1)),
        name=f"random_{seed}",
    )
    case = rng.uniform()
    if case > 0.85:
        fields.update(feeding=True, artery_diseased=True)
    elif case > 0.70:
        fields.update(proximal_diseased=True)
    fields.update(overrides)
    return PhantomSpec(**fields)
