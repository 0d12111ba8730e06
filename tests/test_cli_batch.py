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
