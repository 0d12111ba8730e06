"""Ground truth of a phantom run (the sidecar ``<name>.truth.json``).

Rules (stated once here, and in the package docstring):
- diameters are true lumen diameters of the main artery sampled every 0.1 mm of arc
  (``arc_mm`` on an absolute 0.1-mm grid), over the part of the artery inside the field;
  ``centerline_rc`` are the lumen centres (eccentric lesions shift them) in pixels of
  the frame ``frame_index`` (patient motion included);
- MLD = the minimum of ``diameter_mm``, at ``mld_rc``;
- reference (WASID): the normal diameter of the proximal artery at ``reference_rc``, the
  middle of the normal proximal segment between the proximal reader point and the
  lesion start (choice "proximal"); for runs with a diseased proximal segment, the
  middle of the normal distal segment (choice "distal"); for runs whose whole
  artery is diseased, the distal part of the normal feeding artery (choice
  "feeding", between ``feeding_proximal_rc`` and ``feeding_distal_rc``);
- percent_stenosis = (1 - MLD / reference) * 100 (Samuels et al., AJNR 2000;21:643-6);
- lesion_length_mm: length of the contiguous arc around the MLD where the diameter is
  below 0.9 x reference, within the reader's points (0 when the MLD itself is not);
- proximal_rc / distal_rc: reader-like points on the centreline, the proximal one at
  least 3 reference diameters (4-5 for these runs) before the lesion start, the distal
  one 2-6 reference diameters after its end;
- frame_index: the first frame in which the graded segment (proximal point, or the
  feeding artery's first point, to the distal point) is fully opacified: the inflow
  concentration has reached its plateau at the segment's latest arrival time;
- arrival_s: arrival time of the contrast front (s after it enters the field) at each
  ``arc_mm`` sample.
"""
from __future__ import annotations

import numpy as np

from .scene import TRUTH_STEP_MM, Scene
from .spec import PhantomSpec

#: lesion-length threshold as a fraction of the reference diameter
LESION_THRESHOLD = 0.9


def compute_truth(
    scene: Scene,
    spec: PhantomSpec,
    *,
    frame_index: int,
    shift_px: tuple[float, float],
    main_arrival_s: np.ndarray | None = None,
) -> dict:
    """The truth dictionary of a run (JSON-able; keys in the package docstring).

    ``main_arrival_s``: arrival time (s) of the contrast front at each sample of
    ``scene.main`` (:func:`stenosis.phantom.engine.bolus_arrival_s`); 0 when omitted.
    """
    pr, pc = spec.mm_per_px
    lm = scene.landmarks
    k0 = int(np.ceil(lm["field_start"] / TRUTH_STEP_MM - 1e-9))
    k1 = int(np.floor(lm["field_end"] / TRUTH_STEP_MM + 1e-9))
    arc = np.arange(k0, k1 + 1) * TRUTH_STEP_MM
    d, _ = scene.diameter(arc)
    g = scene.main.at(arc)
    # lumen centre with the analytic offset (the tube's interpolated one differs by < 1e-6 mm)
    _, off = scene.diameter(arc)
    lumen = g["base"] + off[:, None] * g["normal"]
    rc = lumen / np.array([pr, pc]) + np.asarray(shift_px)

    def rc_at(s: float) -> list[float]:
        gg = scene.main.at(np.array([s]))
        _, o = scene.diameter(np.array([s]))
        p = (gg["base"][0] + o[0] * gg["normal"][0]) / np.array([pr, pc]) + np.asarray(shift_px)
        return [round(float(p[0]), 4), round(float(p[1]), 4)]

    # the lesion as a reader can see it: the MLD and its extent within the proximal..distal
    # points (a diffuse proximal disease may narrow the artery further before the proximal
    # point; that part is not in the graded segment)
    k_p = int(np.argmin(np.abs(arc - lm["proximal"])))
    k_d = int(np.argmin(np.abs(arc - lm["distal"])))
    i_mld = k_p + int(np.argmin(d[k_p : k_d + 1]))
    mld = float(d[i_mld])
    ref_d = float(scene.diameter(np.array([lm["reference"]]))[0][0])
    percent = (1.0 - mld / ref_d) * 100.0
    below = d < LESION_THRESHOLD * ref_d
    if below[i_mld]:
        a = i_mld
        while a > k_p and below[a - 1]:
            a -= 1
        b = i_mld
        while b < k_d and below[b + 1]:
            b += 1
        lesion_length = float((b - a + 1) * TRUTH_STEP_MM)
    else:
        lesion_length = 0.0
    return {
        "segment": str(spec.segment),
        "percent_stenosis": round(percent, 4),
        "meets_50": bool(percent >= 50.0),
        "mld_mm": round(mld, 5),
        "mld_rc": [round(float(rc[i_mld, 0]), 4), round(float(rc[i_mld, 1]), 4)],
        "mld_arc_mm": round(float(arc[i_mld]), 4),
        "reference_diameter_mm": round(ref_d, 5),
        "reference_rc": rc_at(lm["reference"]),
        "reference_arc_mm": round(lm["reference"], 4),
        "reference_choice": scene.reference_choice,
        "lesion_length_mm": round(lesion_length, 4),
        "lesion_rule": f"contiguous arc around the MLD with diameter < {LESION_THRESHOLD} x reference, "
        "within the proximal..distal points",
        "proximal_rc": rc_at(lm["proximal"]),
        "distal_rc": rc_at(lm["distal"]),
        "feeding_proximal_rc": rc_at(lm["feeding_proximal"]) if lm.get("feeding_proximal") is not None else None,
        "feeding_distal_rc": rc_at(lm["feeding_distal"]) if lm.get("feeding_distal") is not None else None,
        "proximal_arc_mm": round(lm["proximal"], 4),
        "distal_arc_mm": round(lm["distal"], 4),
        "frame_index": int(frame_index),
        "mm_per_px": [pr, pc],
        "motion_px": [float(shift_px[0]), float(shift_px[1])],
        "normal_diameter_mm": round(float(scene.normal_diameter_mm), 5),
        "stenoses": [st.to_dict() for st in scene.stenoses],
        "branch_arc_mm": [round(v, 4) for v in lm.get("branches", [])],
        "crossing_arc_mm": round(lm["crossing"], 4) if "crossing" in lm else None,
        "arc_mm": [round(float(v), 4) for v in arc],
        "diameter_mm": [round(float(v), 5) for v in d],
        "centerline_rc": [[round(float(a), 4), round(float(b), 4)] for a, b in rc],
        "arrival_s": [round(float(v), 4) for v in (
            np.interp(arc, scene.main.s_mm, main_arrival_s) if main_arrival_s is not None else np.zeros(len(arc)))],
        "spec": spec.to_dict(),
    }
