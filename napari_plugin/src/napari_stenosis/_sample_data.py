"""Sample data: the phantom runs bundled with ``stenosis`` (``stenosis._samples``).

The runs are synthetic X-ray angiograms rendered by :mod:`stenosis.phantom` with a
known stenosis (the truth sits beside each run as ``<name>.truth.json``). They are
found through :mod:`importlib.resources` in an installed ``stenosis``, with the
repository's ``sample_dicom/`` as the fallback for a source checkout.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._reader import read_angio

__all__ = ["sample_dir", "sample_files", "sample_truth", "load_sample", "load_all_samples", "SAMPLES"]

#: bundled runs (file stem) and the name readers see: the artery and a letter, never the
#: true stenosis or the reference choice (that would unblind a reader; truth: the sidecar)
SAMPLES = {
    "ica_native_geometry": "ICA sample run A",
    "m1_subtracted_pixelspacing": "M1 sample run A",
    "v4_native_magnification": "V4 sample run A",
    "ba_subtracted_geometry": "BA sample run A",
    "m1_native_uncalibrated": "M1 sample run B",
}


def sample_dir() -> Path:
    """Folder of the bundled sample runs (the library knows where they are)."""
    import stenosis

    return stenosis.sample_dir()


def sample_files() -> list[Path]:
    """The bundled runs (``*.dcm``), sorted by name."""
    return sorted(sample_dir().glob("*.dcm"))


def sample_truth(name: str) -> dict[str, Any] | None:
    """Truth sidecar of a sample run (``<name>.truth.json``), or None."""
    p = sample_dir() / f"{Path(name).stem}.truth.json"
    return json.loads(p.read_text()) if p.is_file() else None


def load_sample(name: str) -> list[tuple]:
    """Layer data of the sample run whose file stem is ``name``."""
    p = sample_dir() / f"{name}.dcm"
    if not p.is_file():
        have = ", ".join(f.stem for f in sample_files()) or "none"
        raise FileNotFoundError(f"sample run {name!r} not found in {sample_dir()} (have: {have})")
    return read_angio(str(p))


def load_all_samples() -> list[tuple]:
    """Layer data of every bundled sample run."""
    files = sample_files()
    if not files:
        raise FileNotFoundError(f"no sample runs in {sample_dir()}; reinstall stenosis")
    return [layer for f in files for layer in read_angio(str(f))]


# one function per bundled run (npe2 sample-data commands take no arguments)
def ica_native_geometry() -> list[tuple]:
    return load_sample("ica_native_geometry")


def m1_subtracted_pixelspacing() -> list[tuple]:
    return load_sample("m1_subtracted_pixelspacing")


def v4_native_magnification() -> list[tuple]:
    return load_sample("v4_native_magnification")


def ba_subtracted_geometry() -> list[tuple]:
    return load_sample("ba_subtracted_geometry")


def m1_native_uncalibrated() -> list[tuple]:
    return load_sample("m1_native_uncalibrated")
