"""Fixed value sets used across the package (magicgui shows them as drop-downs)."""
from __future__ import annotations

from enum import Enum


class Segment(str, Enum):
    """Arterial segment graded with WASID (Samuels et al., AJNR 2000;21:643-6)."""

    ICA = "ICA"  # intracranial internal carotid artery
    M1 = "M1"  # first segment of the middle cerebral artery
    V4 = "V4"  # intracranial vertebral artery
    BA = "BA"  # basilar artery

    def __str__(self) -> str:
        return self.value


class ReferenceChoice(str, Enum):
    """Which WASID site supplied the normal diameter D_normal."""

    PROXIMAL = "proximal"
    DISTAL = "distal"
    FEEDING = "feeding"
    MANUAL = "manual"

    def __str__(self) -> str:
        return self.value


class CalibrationSource(str, Enum):
    """Where mm/px at the isocentre came from, in order of precedence."""

    PIXEL_SPACING = "pixel_spacing"
    GEOMETRY = "geometry"  # ImagerPixelSpacing x SOD / SID
    MAGNIFICATION = "magnification"  # ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor
    CATHETER = "catheter"
    MANUAL = "manual"
    NONE = "none"

    def __str__(self) -> str:
        return self.value


class ModelName(str, Enum):
    """Vessel-probability model."""

    UNET = "unet"
    CLASSICAL = "classical"

    def __str__(self) -> str:
        return self.value
