"""A point the vessel map of a small crop misses is looked for on the map of a wider crop, then
of the whole frame, before it is refused (session 14): the U-Net sees a faint artery in context.
The real XA1 ICA's proximal point slid 10 px along the artery (real.py's slide check) was refused
as "not on a vessel" on the small crop's map; one CIMAT side branch on the experts' mask too."""
from __future__ import annotations

import pytest

import stenosis

pytestmark = pytest.mark.slow  # the real 1024 x 1024 cerebral frame


def test_the_slid_ica_point_is_found_on_the_wider_map(wg04_dir):
    res = stenosis.measure(wg04_dir / "XA1_UNC", "ICA", (1005, 463), (880, 430))
    base = stenosis.measure(wg04_dir / "XA1_UNC", "ICA", (995, 462), (880, 430))
    assert abs(res.reference_diameter_px - base.reference_diameter_px) < 1.0   # the same artery
    assert abs(res.percent_stenosis - base.percent_stenosis) < 5.0, (res.percent_stenosis, base.percent_stenosis)


def test_points_off_any_vessel_are_still_refused(wg04_dir):
    with pytest.raises(stenosis.StenosisError, match="not on a"):
        stenosis.measure(wg04_dir / "XA1_UNC", "M1", (60, 60), (90, 120))   # the black corner
