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
    fields = {f.name for f in dataclasses.fields(DEFAULT_PARAMS)}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or name not in fields:
            raise SystemExit(f"--param {pair!r}: give NAME=VALUE with NAME a MeasureParams field")
        default = getattr(DEFAULT_PARAMS, name)
        try:
            if isinstance(default, tuple) and value == "":
                changes[name] = ()  # an empty tuple: the mechanism off (e.g. mask_noise_scales_px)
                continue
            if isinstance(default, tuple):
                parts = value.split(":")
                if len(parts) != len(default):
                    raise ValueError(f"{len(default)} values separated by ':'")
                changes[name] = tuple(_typed(v, x) for v, x in zip(default, parts))
            else:
                changes[name] = _typed(default, value)
        except ValueError as exc:
            raise SystemExit(f"--param {pair!r}: {exc}") from None
    return {"params": dataclasses.replace(DEFAULT_PARAMS, **changes)}


def _typed(default, text: str):
    """``text`` as the type of ``default`` (an int field refuses a fraction)."""
    v = float(text)
    if isinstance(default, bool) or not isinstance(default, int):
        return type(default)(v)
    if not v.is_integer():
        raise ValueError(f"a whole number is needed, got {text}")
    return int(v)


def by_level(rows: list[dict]) -> list[tuple[str, str, "object"]]:
    """(factor, level, row indices as an array) for every factor level in ``rows[i]["levels"]``,
    sorted: the per-factor tables of the robustness and foreign-chain benchmarks."""
    import numpy as np

    groups: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        for f, v in r["levels"].items():
            groups.setdefault((f, v), []).append(i)
    return [(f, v, np.array(groups[(f, v)])) for (f, v) in sorted(groups)]
