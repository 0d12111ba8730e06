"""The reader: claims DICOM only, gives (T, H, W) with the mm scale, window and metadata."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nst_helpers import tube_frames, write_xa
from napari_stenosis._reader import napari_get_reader


def test_reader_claims_dicom_only(tmp_path, xa_file):
    assert napari_get_reader(str(xa_file)) is not None
    assert napari_get_reader([str(xa_file), str(xa_file)]) is not None
    (tmp_path / "notes.txt").write_text("not a DICOM file")
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert napari_get_reader(str(empty)) is None
    assert napari_get_reader(str(tmp_path / "missing.dcm")) is None
    assert napari_get_reader([str(xa_file), str(tmp_path / "notes.txt")]) is None


def test_a_file_named_dicom_that_is_not_says_why(tmp_path):
    """Session 32: napari said only "Reader 'napari-stenosis' ... refused the file" for a .dcm
    that is not DICOM; the reader now claims it and reading it gives the library's reason."""
    import stenosis

    (tmp_path / "notes.dcm").write_text("not a DICOM file, whatever the extension")
    read = napari_get_reader(str(tmp_path / "notes.dcm"))
    assert read is not None
    with pytest.raises(stenosis.InputError, match="not a DICOM file"):
        read(str(tmp_path / "notes.dcm"))


def test_reader_layer_scale_window_metadata(xa_file):
    data, kwargs, kind = napari_get_reader(str(xa_file))(str(xa_file))[0]
    assert kind == "image" and data.shape == (3, 96, 128)
    np.testing.assert_array_equal(data, tube_frames())
    assert kwargs["scale"] == (1.0, 0.25, 0.25)
    assert kwargs["contrast_limits"] == (1500.0, 3500.0)  # window 2500 +- 1000
    meta = kwargs["metadata"]["stenosis"]
    assert meta["calibration"]["source"] == "pixel_spacing" and meta["calibration"]["mm_per_px"] == [0.25, 0.25]
    assert meta["frame_time_ms"] == pytest.approx(66.7)
    assert len(meta["run_id"]) >= 8
    flat = repr(meta)
    assert "SECRET" not in flat and "ID-DO-NOT-SHOW" not in flat  # no patient identifiers


def test_reader_uncalibrated_and_folders(tmp_path):
    d = tmp_path / "site"
    d.mkdir()
    write_xa(d / "a.dcm", tube_frames((2, 40, 50)))
    write_xa(d / "b", tube_frames((2, 30, 30)), pixel_spacing=0.3)  # no extension
    (d / "readme.txt").write_text("x")
    layers = napari_get_reader(str(d))(str(d))
    assert [ly[0].shape for ly in layers] == [(2, 40, 50), (2, 30, 30)]
    assert layers[0][1]["scale"] == (1.0, 1.0, 1.0)  # uncalibrated: 1
    assert layers[0][1]["metadata"]["stenosis"]["calibration_source"] == "none"
    lo, hi = layers[0][1]["contrast_limits"]  # no window: percentiles of the data
    assert 1500 <= lo < hi <= 3000
    assert layers[1][1]["scale"] == (1.0, 0.3, 0.3)


def test_viewer_opens_with_plugin_and_mm_scale(make_napari_viewer, xa_file):
    viewer = make_napari_viewer(show=True)
    layers = viewer.open(str(xa_file), plugin="napari-stenosis")
    (layer,) = layers
    assert layer.data.shape == (3, 96, 128)
    np.testing.assert_allclose(layer.scale, [1.0, 0.25, 0.25])
    # 96 rows x 0.25 mm: the world extent is in mm
    np.testing.assert_allclose(layer.extent.world[1][1] - layer.extent.world[0][1], 96 * 0.25, atol=0.25)
    assert layer.metadata["stenosis"]["calibration_source"] == "pixel_spacing"


WG04 = Path(__file__).resolve().parents[3] / "shared" / "data" / "wg04-xa1"


@pytest.mark.parametrize("name", ["XA1_UNC", "XA1_JPLL"])
def test_reader_real_cerebral_angiogram(name):
    """The WG04 XA1 lateral cerebral angiogram (no file extension, no calibration tags)."""
    path = WG04 / name
    if not path.is_file():
        pytest.skip(f"real data not found at {path}")
    reader = napari_get_reader(str(path))
    assert reader is not None
    data, kwargs, _ = reader(str(path))[0]
    assert data.shape == (1, 1024, 1024)
    assert kwargs["scale"] == (1.0, 1.0, 1.0)
    meta = kwargs["metadata"]["stenosis"]
    assert meta["calibration_source"] == "none" and any("mm values are not reported" in w for w in meta["warnings"])
    lo, hi = kwargs["contrast_limits"]
    assert data.min() <= lo < hi <= data.max()


def test_reader_opens_the_sample_folder(sample_runs):
    """A folder of several runs (the bundled phantoms) gives one layer per run, each with
    the mm scale of its own calibration (PixelSpacing, geometry, magnification or none)."""
    from napari_stenosis._sample_data import sample_dir, sample_truth

    folder = str(sample_dir())
    layers = napari_get_reader(folder)(folder)
    assert sorted(ly[1]["name"] for ly in layers) == sorted(p.stem for p in sample_runs)
    for data, kwargs, _ in layers:
        truth = sample_truth(kwargs["name"])
        assert data.ndim == 3 and data.shape[0] > truth["frame_index"]
        expected = [1.0, 1.0] if kwargs["metadata"]["stenosis"]["calibration_source"] == "none" else truth["mm_per_px"]
        np.testing.assert_allclose(kwargs["scale"][1:], expected, rtol=1e-6)


def test_npe2_discovers_the_plugin():
    """The installed distribution is found by npe2 with its reader, widget and samples."""
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-stenosis")
    contrib = manifest.contributions
    assert [w.display_name for w in contrib.widgets] == ["Measure stenosis"]
    assert contrib.readers[0].accepts_directories
    from napari_stenosis._sample_data import SAMPLES

    assert {s.key for s in contrib.sample_data} == {"all_phantoms", *SAMPLES}
    # every command resolves to an importable callable
    for cmd in contrib.commands:
        module, _, attr = cmd.python_name.partition(":")
        assert callable(getattr(__import__(module, fromlist=[attr]), attr))


def test_sample_names_do_not_unblind_readers():
    """Sample-data names show the artery and a letter, never the true percent or reference."""
    import re
    from pathlib import Path

    import napari_stenosis
    from napari_stenosis._sample_data import SAMPLES

    manifest = (Path(napari_stenosis.__file__).parent / "napari.yaml").read_text()
    names = list(SAMPLES.values()) + re.findall(r"(?:display_name|title): (.*)", manifest)
    for name in names:
        assert "%" not in name and not re.search(r"\d\d", name), name
        assert "distal reference" not in name, name
