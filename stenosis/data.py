"""Where the bundled data live: the sample runs (``sample_dicom/``).

In an installed wheel the repository's ``sample_dicom/`` travels as the package
``stenosis._samples``; in a source checkout (tests run from the repository root,
where ``./stenosis`` shadows the installed package) it is the folder beside the package.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["sample_dir"]


def sample_dir() -> Path:
    """Folder of the bundled phantom runs (``<name>.dcm`` + ``<name>.truth.json``)."""
    try:
        from importlib.resources import files

        d = Path(str(files("stenosis._samples")))
        if any(d.glob("*.dcm")):
            return d
    except (ImportError, ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[1] / "sample_dicom"
