"""Helpers shared by the benchmark scripts (not a benchmark itself: its name starts with _)."""
from __future__ import annotations

import sys
from pathlib import Path


def use_repo(argv: list[str] | None) -> None:
    """``--repo DIR`` puts that checkout first on sys.path before ``stenosis`` is imported, so one
    script measures another checkout's code. Without it the usual resolution holds (PYTHONPATH,
    then the editable install)."""
    argv = sys.argv[1:] if argv is None else argv
    for i, a in enumerate(argv):
        if a == "--repo" and i + 1 < len(argv):
            sys.path.insert(0, str(Path(argv[i + 1]).resolve()))
        elif a.startswith("--repo="):
            sys.path.insert(0, str(Path(a.split("=", 1)[1]).resolve()))
