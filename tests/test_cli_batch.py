"""`stenosis batch` option checks through click's CliRunner."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("address", ["garbage", "tcp://host", "http://x:1"])
def test_a_bad_scheduler_address_is_a_usage_error(sample_dicom_dir, tmp_path, address):
    # dask raised "ValueError: missing port number" inside the batch: "internal error", exit 1
    from click.testing import CliRunner

    from stenosis.cli.main import cli

    r = CliRunner().invoke(cli, ["batch", str(sample_dicom_dir), "--auto", "--segment", "m1", "--out", str(tmp_path / "o"),
                                 "--scheduler", address])
    assert r.exit_code == 2 and "not a Dask scheduler address" in r.output
    assert not (tmp_path / "o").exists()


def test_recorded_paths_are_relative_to_the_batch_folder_or_a_file_name(tmp_path):
    # an absolute path in a points file was written as-is to results.csv (docs/privacy.md: never),
    # and "../bad/x.dcm" was recorded as "bad/x.dcm", another file's path
    from stenosis.batch.tasks import _norm_rel

    root = tmp_path / "runs"
    root.mkdir()
    assert _norm_rel("a/b.dcm", root) == "a/b.dcm"
    assert _norm_rel("./a/../b.dcm", root) == "b.dcm"
    assert _norm_rel(str(root / "c" / "d.dcm"), root) == "c/d.dcm"
    assert _norm_rel("/home/PATIENT_NAME/run.dcm", root) == "run.dcm"
    assert _norm_rel("../bad/ident.dcm", root) == "ident.dcm"
    assert _norm_rel(".hidden/x.dcm", root) == ".hidden/x.dcm"
