"""--auto on the real cerebral frame: its vessel map merges into regions ~125 px wide, and the
points it placed there were refused as "the distal point is not on a vessel" (session 13, on all
8 encodings). The error row now says --auto found no distinct artery and what to do; never
"place it on the lumen" (the user gave no points)."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from stenosis.cli.main import cli

pytestmark = pytest.mark.slow  # the real cerebral frame and the U-Net on 1024 x 1024


def test_auto_error_row_says_auto_placed_the_points(wg04_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(wg04_dir / "XA1_UNC", src / "XA1_UNC")
    r = CliRunner().invoke(cli, ["batch", str(src), "--auto", "--segment", "ICA", "--out", str(tmp_path / "out"), "-q"])
    rows = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 1, r.output
    row = rows[0]
    assert row["status"] == "error"
    assert row["error"].startswith("--auto found no distinct artery") and "give the points in a points file" in row["error"]
    assert "place it on the lumen" not in row["error"] and "not on a vessel" not in row["error"]
