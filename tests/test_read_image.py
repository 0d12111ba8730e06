"""Picture exports of an angiogram (PNG, TIFF, ...) are read from Python with ``stenosis.read_image``
(a new user measured a CIMAT PNG through ``AngioRun.from_array``, whose default reads stored values
as LOG: 31.8% where the real-image benchmark's reading, relative to the background, is 24.3%)."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import stenosis
from stenosis.cli.main import cli


def test_a_png_is_an_uncalibrated_native_frame_read_relative_to_its_background(tmp_path):
    img = np.full((64, 80), 200, np.uint8)
    img[30:34] = 120
    Image.fromarray(img).save(tmp_path / "a.png")
    run = stenosis.read_image(tmp_path / "a.png")
    assert run.frames.shape == (1, 64, 80) and np.array_equal(run.frames[0], img)
    assert run.metadata.pixel_intensity_relationship is None and run.calibration.mm_per_px is None
    assert run.source == str(tmp_path / "a.png")
    assert len(run.warnings) == 1 and "relative to the brightness behind the vessel" in run.warnings[0]


def test_a_grey_rgb_png_and_a_16_bit_tiff_stack_are_read(tmp_path):
    img = np.full((32, 40), 90, np.uint8)
    Image.fromarray(np.stack([img] * 3, axis=-1)).save(tmp_path / "rgb.png")
    assert np.array_equal(stenosis.read_image(tmp_path / "rgb.png").frames[0], img)
    pages = [Image.fromarray(np.full((32, 40), 1000 + k, np.uint16)) for k in range(3)]
    pages[0].save(tmp_path / "s.tif", save_all=True, append_images=pages[1:])
    run = stenosis.read_image(tmp_path / "s.tif")
    assert run.frames.shape == (3, 32, 40) and int(run.frames[2, 0, 0]) == 1002
    assert "log-scaled for subtraction" in run.warnings[0]


@pytest.mark.parametrize("make,expect", [
    (lambda p: p.write_text("not an image"), "not a readable image"),
    (lambda p: Image.fromarray(np.dstack([np.zeros((32, 32), np.uint8), np.full((32, 32), 9, np.uint8),
                                          np.zeros((32, 32), np.uint8)])).save(p), "a colour image"),
    (lambda p: Image.fromarray(np.zeros((8, 8), np.uint8)).save(p), "at least 16 x 16"),
    (lambda p: None, "no such file"),
], ids=["text", "colour", "tiny", "missing"])
def test_bad_pictures_are_one_line_input_errors(tmp_path, make, expect):
    p = tmp_path / "x.png"
    make(p)
    with pytest.raises(stenosis.InputError) as err:
        stenosis.read_image(p)
    assert expect in str(err.value) and "\n" not in str(err.value)


def test_the_cli_points_a_png_to_read_image(tmp_path):
    Image.fromarray(np.full((32, 32), 100, np.uint8)).save(tmp_path / "a.png")
    r = CliRunner().invoke(cli, ["measure", str(tmp_path / "a.png"), "--segment", "M1", "--proximal", "5,5",
                                 "--distal", "20,20"])
    assert r.exit_code == 3 and "stenosis.read_image(path)" in r.output and "Traceback" not in r.output


def test_a_cimat_png_reads_as_the_real_image_benchmark_reads_it(cimat_dir):
    """``benchmarks/real.py`` reads CIMAT with the intensity relationship unknown; read_image too."""
    from stenosis.io import AngioRun

    pts = ("M1", (168.0, 76.0), (222.0, 113.0))  # image 23's faint vessel (tests/test_measure.py)
    res = stenosis.measure(stenosis.read_image(cimat_dir / "23.png"), *pts)
    img = np.array(Image.open(cimat_dir / "23.png").convert("L"))
    same = stenosis.measure(AngioRun.from_array(img, pixel_intensity_relationship=None), *pts)
    assert res.percent_stenosis == same.percent_stenosis  # 37.9 measured


def test_palette_and_grey_alpha_pictures_are_read_as_shown(tmp_path):
    """A palette picture's stored values are indices: read as the greys it shows (a reversed
    palette inverts the indices, not the picture); grey + alpha is grey."""
    img = np.tile(np.arange(32, 232, 5, dtype=np.uint8), (40, 1))  # 40 x 40, a grey ramp
    pal = Image.fromarray((255 - img).astype(np.uint8), mode="L").convert("P")
    reversed_palette = []
    for g in range(256):
        reversed_palette += [255 - g] * 3
    pal.putpalette(reversed_palette)  # index i shows 255 - i: the picture shows img
    pal.save(tmp_path / "p.png")
    assert np.array_equal(stenosis.read_image(tmp_path / "p.png").frames[0], img)
    Image.fromarray(img, mode="L").convert("LA").save(tmp_path / "la.png")
    assert np.array_equal(stenosis.read_image(tmp_path / "la.png").frames[0], img)


def test_a_dsa_picture_can_be_read_as_subtracted(tmp_path):
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(tmp_path / "d.png")
    run = stenosis.read_image(tmp_path / "d.png", subtracted=True)
    assert run.metadata.subtracted and "read as subtracted (DSA) frames" in run.warnings[0]


def test_a_folder_of_pictures_points_to_read_image(tmp_path):
    Image.fromarray(np.full((32, 32), 100, np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(stenosis.InputError) as err:
        stenosis.read_run(tmp_path)
    assert "no DICOM file found in this folder" in str(err.value) and "stenosis.read_image(path)" in str(err.value)


def test_info_on_a_folder_of_pictures_points_to_read_image(tmp_path):
    Image.fromarray(np.full((32, 32), 100, np.uint8)).save(tmp_path / "a.png")
    r = CliRunner().invoke(cli, ["info", str(tmp_path)])
    assert r.exit_code == 3 and "stenosis.read_image(path)" in r.output, r.output
