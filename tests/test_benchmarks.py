"""CI runs every benchmark script at a small size: it must finish and print its table.

Speed and memory are measured by these scripts, never asserted in unit tests; this
only guards that the scripts keep working (a benchmark that has rotted measures nothing).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # minutes of real data, subprocesses or benchmarks: not in the edit loop

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_benchmark_runs_small(script: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(script), "--small"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # a table: at least a header and one row separated by column rules or aligned spaces
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) >= 2, proc.stdout
    print(proc.stdout)


def _segmentation_bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_seg_bench", BENCH / "segmentation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_segmentation_bootstrap_interval() -> None:
    """The Dice interval of the segmentation benchmark: brackets the mean, collapses on
    constant scores, widens with the spread, undefined for one image."""
    mod = _segmentation_bench()
    scores = [0.83, 0.80, 0.83, 0.60, 0.80, 0.81, 0.79, 0.71]
    lo, hi = mod.bootstrap_ci(scores)
    assert lo < sum(scores) / len(scores) < hi
    assert 0.60 < lo and hi < 0.83
    assert mod.bootstrap_ci([0.8] * 8) == pytest.approx((0.8, 0.8))
    narrow = mod.bootstrap_ci([0.79, 0.80, 0.81] * 3)
    assert narrow[1] - narrow[0] < hi - lo
    assert all(v != v for v in mod.bootstrap_ci([0.8]))  # NaN
    assert mod.bootstrap_ci(scores) == (lo, hi)  # deterministic


def test_segmentation_dice_breakdown_separates_error_kinds() -> None:
    """A 1 px wider edge, an extra far blob and a missed far bar: each correction removes
    exactly its own kind of error."""
    import numpy as np

    mod = _segmentation_bench()
    truth = np.zeros((64, 64), bool)
    truth[10:14, 5:60] = True  # vessel 1
    truth[40:43, 5:30] = True  # vessel 2, missed
    mask = np.zeros_like(truth)
    mask[9:15, 5:60] = True  # vessel 1, one px wider each side
    mask[50:60, 45:55] = True  # far false positive (catheter-like)
    b = mod.dice_breakdown(mask, truth)
    assert b["dice"] < b["no far FP"] < 1 and b["dice"] < b["no far FN"] < 1
    # with exact edges only the far errors remain
    far_fp, far_fn, tp = 100, 3 * 25, 4 * 55
    assert b["exact edges"] == pytest.approx(2 * tp / (2 * tp + far_fp + far_fn))
    assert mod.dice_breakdown(truth, truth) == {k: 1.0 for k in b}


@pytest.mark.slow
def test_robustness_over_several_seeds_prints_a_line_per_seed(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "robustness.py"), "--n", "2", "--seeds", "43", "45"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any(ln.startswith("seed 43: 2 runs, pct MAE") for ln in lines), proc.stdout
    assert any(ln.startswith("seed 45: 2 runs, pct MAE") for ln in lines), proc.stdout
    assert "robustness on 4 varied phantom runs (design seeds 43, 45" in proc.stdout
