"""Damaged compressed pixel data: refused with one line that says what to do, never measured."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import stenosis
from stenosis.errors import InputError


def _damaged(sample_dicom_dir, tmp_path, where=0.9, n=200):
    src = sample_dicom_dir / "m1_subtracted_pixelspacing.dcm"
    out = tmp_path / "damaged.dcm"
    shutil.copy(src, out)
    data = bytearray(out.read_bytes())
    at = int(len(data) * where)
    data[at:at + n] = np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes()
    out.write_bytes(bytes(data))
    return src, out


def test_damaged_rle_is_refused_not_measured(sample_dicom_dir, tmp_path):
    # the Rust RLE decoder finds the segments overrun the frame (it panics); pydicom's pure-Python
    # decoder would decode the damage silently: this file read 100% +- 113, ">= 50%: YES" (truth 35%)
    _, bad = _damaged(sample_dicom_dir, tmp_path)
    with pytest.raises(InputError, match="RLE segments do not match"):
        stenosis.read_run(bad)


def test_damaged_rle_in_the_cli_is_one_line_exit_3_and_no_panic_text(sample_dicom_dir, tmp_path):
    src, bad = _damaged(sample_dicom_dir, tmp_path)
    t = json.loads(src.with_suffix(".truth.json").read_text())
    p, d = (f"{v[0]:.0f},{v[1]:.0f}" for v in (t["proximal_rc"], t["distal_rc"]))
    res = subprocess.run([sys.executable, "-m", "stenosis", "measure", str(bad), "--segment", "m1", "--proximal", p,
                          "--distal", d], capture_output=True, text=True, timeout=120)
    assert res.returncode == 3
    assert "panicked" not in res.stderr and "Traceback" not in res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "re-export" in lines[0]


def test_compressed_file_cut_in_its_pixel_data_says_so(sample_dicom_dir, tmp_path):
    src = sample_dicom_dir / "m1_subtracted_pixelspacing.dcm"
    cut = tmp_path / "cut.dcm"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="ends inside its pixel data"):
        stenosis.read_run(cut)
