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


def measure_kwargs(pairs: list[str] | None) -> dict:
    """``--param NAME=VALUE`` (repeatable) as keyword arguments of ``stenosis.measure``: a
    :class:`~stenosis.params.MeasureParams` with those fields changed (typed like the default),
    to measure a candidate value on the same cases. Empty without any."""
    if not pairs:
        return {}
    import dataclasses

    from stenosis.params import DEFAULT_PARAMS

    changes = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if not hasattr(DEFAULT_PARAMS, name):
            raise SystemExit(f"--param: MeasureParams has no field {name!r}")
        default = getattr(DEFAULT_PARAMS, name)
        if isinstance(default, tuple):
            changes[name] = tuple(type(v)(float(x)) for v, x in zip(default, value.split(":")))
        else:
            changes[name] = type(default)(float(value))
    return {"params": dataclasses.replace(DEFAULT_PARAMS, **changes)}
