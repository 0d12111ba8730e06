"""`stenosis measure` and `stenosis demo` through click's runner (exit statuses, JSON, files)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from stenosis.cli.main import cli

PATH = "m1_subtracted_pixelspacing"


@pytest.fixture(scope="module")
def sample(sample_dicom_dir):
    p = sample_dicom_dir / f"{PATH}.dcm"
    if not p.is_file():
        pytest.skip(f"{p} missing")
    truth = json.loads(p.with_suffix(".truth.json").read_text())
    prox = ",".join(f"{v:.2f}" for v in truth["proximal_rc"])
    dist = ",".join(f"{v:.2f}" for v in truth["distal_rc"])
    return p, truth, prox, dist


def test_json_is_one_object_and_out_writes_files(sample, tmp_path):
    p, truth, prox, dist = sample
    r = CliRunner().invoke(cli, ["measure", str(p), "--segment", "M1", "--proximal", prox, "--distal", dist,
                                 "--json", "--model", "classical", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["percent_stenosis"] == pytest.approx(truth["percent_stenosis"], abs=5)
    assert d["file"] == p.name
    assert (tmp_path / "o" / "result.json").is_file()
    png = (tmp_path / "o" / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000


def test_exit_statuses(sample):
    p, _, prox, _ = sample
    runner = CliRunner()
    bad_rc = runner.invoke(cli, ["measure", str(p), "--segment", "M1", "--proximal", "12", "--distal", "3,4"])
    assert bad_rc.exit_code == 2
    outside = runner.invoke(cli, ["measure", str(p), "--segment", "M1", "--proximal", prox, "--distal", "9999,3", "--model", "classical"])
    assert outside.exit_code == 3
    assert outside.stderr.count("\n") == 1 and "outside the image" in outside.stderr
    missing = runner.invoke(cli, ["measure", "/nonexistent.dcm", "--segment", "M1", "--proximal", prox, "--distal", prox])
    assert missing.exit_code == 3 and "Traceback" not in missing.output


def test_demo_writes_report(tmp_path):
    r = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--model", "classical"])
    assert r.exit_code == 0, r.output
    assert "measured" in r.stdout and "true" in r.stdout
    assert (tmp_path / "report.png").is_file() and (tmp_path / "result.json").is_file()


@pytest.mark.parametrize("args", [
    ["--proximal", "12;14"], ["--proximal", "nan,3"], ["--proximal", "3,inf"], ["--proximal", "1,2,3"],
    ["--pixel-mm", "1000"], ["--pixel-mm", "1e-4"], ["--pixel-mm", "nan"], ["--pixel-mm", "0"],
], ids=lambda a: " ".join(a))
def test_bad_point_or_pixel_size_is_usage_error(sample, args):
    """#19 items 1 and 5: a point that is not two finite numbers, a pixel size outside 0.02-2 mm: exit 2."""
    p, _, prox, dist = sample
    opts = {"--proximal": prox, "--distal": dist}
    opts[args[0]] = args[1]
    r = CliRunner().invoke(cli, ["measure", str(p), "--segment", "M1", *[x for kv in opts.items() for x in kv]])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and "internal error" not in r.output


def test_frames_option(sample):
    p, _, prox, dist = sample
    base = ["measure", str(p), "--segment", "M1", "--proximal", prox, "--distal", dist, "--model", "classical", "--json"]
    one = json.loads(CliRunner().invoke(cli, [*base, "--frames", "single"]).output)
    assert len(one["frames"]["used"]) == 1 and one["parameters"]["reader"]["frames"] == "single"
    every = json.loads(CliRunner().invoke(cli, base).output)
    assert len(every["frames"]["used"]) >= 2 and "frames" not in every["parameters"]["reader"]
    bad = CliRunner().invoke(cli, [*base, "--frames", "some"])
    assert bad.exit_code == 2 and "--frames" in bad.output
