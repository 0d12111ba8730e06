"""The U-Net module: architecture from config, tiled inference, determinism, weight hash check.

Most tests use a randomly initialised network (fixed seed) so they hold whether
or not weights are shipped; the shipped-weights tests skip when models/unet.pt
is absent.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from stenosis.errors import ModelError
from stenosis.segmentation import CONFIG_NAME, WEIGHTS_NAME, _recorded_sha256, models_dir
from stenosis.unet import UNet, file_sha256, load_unet, predict_probability, preprocess

SHIPPED = (models_dir() / WEIGHTS_NAME).is_file()


@pytest.fixture(scope="module")
def net() -> UNet:
    torch.manual_seed(0)
    m = UNet(base_channels=4, depth=3)
    # non-trivial BN statistics so eval mode is not an identity
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


def _frame(shape, dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]]
    img = 3000.0 - 800.0 * (np.abs(rr - 0.4 * cc - shape[0] / 4) < 4) + rng.normal(0, 60, shape)
    return np.clip(img, 0, None).astype(dtype)


def test_hyper_parameters_are_constructor_arguments():
    small = UNet(base_channels=4, depth=2)
    big = UNet(base_channels=8, depth=4)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(small) < n(big)
    assert big.config["depth"] == 4 and big.multiple == 16
    rebuilt = UNet(**big.config)
    rebuilt.load_state_dict(big.state_dict())  # the config rebuilds the same architecture
    x = torch.randn(2, 1, 32, 48)
    assert small(x).shape == (2, 1, 32, 48)
    with pytest.raises(ValueError):
        UNet(norm="group")


def test_preprocess_is_robust_and_keeps_polarity():
    img = _frame((64, 80))
    x = preprocess(img)
    assert x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1
    # the dark line stays dark
    assert x[16, 0] < np.median(x)


@pytest.mark.parametrize("shape", [(300, 300), (301, 517), (64, 1100)])
def test_any_size_gives_same_shape_probability(net, shape):
    p = predict_probability(net, _frame(shape))
    assert p.shape == shape and p.dtype == np.float32
    assert np.isfinite(p).all() and 0.0 <= p.min() and p.max() <= 1.0


@pytest.mark.slow
def test_tiled_path_at_1100px(net):
    img = _frame((1100, 1100), dtype=np.uint16)
    p = predict_probability(net, img)  # > max_single_px: tiled
    assert p.shape == img.shape and p.dtype == np.float32 and 0 <= p.min() <= p.max() <= 1


@pytest.mark.slow
def test_tiles_blend_without_seams(net):
    """Tiled and single-pass maps agree (overlap blending hides tile borders)."""
    img = _frame((300, 300), seed=1)
    whole = predict_probability(net, img, max_single_px=1024)
    tiled = predict_probability(net, img, max_single_px=128, tile_px=128, overlap_px=32)
    diff = np.abs(whole - tiled)
    assert diff.mean() < 0.01 and diff.max() < 0.1, (diff.mean(), diff.max())


def test_deterministic_and_threads_restored(net):
    img = _frame((200, 260), seed=2)
    before = torch.get_num_threads()
    a = predict_probability(net, img)
    b = predict_probability(net, img.copy())
    np.testing.assert_array_equal(a, b)
    assert torch.get_num_threads() == before


def test_hash_check_rejects_a_corrupted_copy(net, tmp_path):
    w, c = tmp_path / "unet.pt", tmp_path / "config.json"
    torch.save(net.state_dict(), w)
    c.write_text(json.dumps({"architecture": net.config}))
    digest = file_sha256(w)
    model = load_unet(w, c, expected_sha256=digest)
    assert isinstance(model, UNet) and not model.training
    assert load_unet(w, c, expected_sha256=digest) is model  # cached
    bad = tmp_path / "corrupt.pt"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_unet(bad, c, expected_sha256=digest)
    with pytest.raises(ModelError, match="not found"):
        load_unet(tmp_path / "missing.pt", c, expected_sha256=digest)


@pytest.mark.skipif(not SHIPPED, reason="U-Net weights not shipped in models/")
def test_shipped_corrupted_copy_raises(tmp_path):
    d = models_dir()
    bad = tmp_path / WEIGHTS_NAME
    shutil.copyfile(d / WEIGHTS_NAME, bad)
    data = bytearray(bad.read_bytes())
    data[-100] ^= 0x01
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError):
        load_unet(bad, d / CONFIG_NAME, expected_sha256=_recorded_sha256())
    good = load_unet(d / WEIGHTS_NAME, d / CONFIG_NAME, expected_sha256=_recorded_sha256())
    assert isinstance(good, UNet)


def test_folded_batchnorm_gives_the_same_map(net):
    from stenosis.unet import fold_batchnorm

    img = _frame((96, 128), seed=4)
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # original untouched
    np.testing.assert_allclose(predict_probability(folded, img), predict_probability(net, img), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(96, 128), (61, 203), (300, 300), (1100, 530)])
def test_numpy_engine_matches_torch(net, tmp_path, shape):
    """The torch-free engine (used for the measurement's crops) computes the same network:
    random weights with non-trivial batch-norm statistics, odd sizes (padding) and the
    tiled path (1100 px); agreement to float32 rounding."""
    from stenosis import unet_numpy

    w, c = tmp_path / "unet.pt", tmp_path / "config.json"
    torch.save(net.state_dict(), w)
    c.write_text(json.dumps({"architecture": net.config}))
    state = unet_numpy.load_state_dict(w)
    assert set(state) == set(net.state_dict())
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(state[k], v.numpy())
    engine = unet_numpy.load(str(w), str(c), file_sha256(w))
    img = _frame(shape, seed=5)
    np.testing.assert_allclose(unet_numpy.predict_probability(engine, img), predict_probability(net, img), atol=2e-5)
    with pytest.raises(ModelError, match="sha256"):
        unet_numpy.load(str(w), str(c), "0" * 64)


def test_numpy_engine_refuses_foreign_pickles(tmp_path):
    """The torch-free loader builds arrays only: any other global in the pickle is refused."""
    import pickle
    import zipfile

    from stenosis import unet_numpy

    bad = tmp_path / "evil.pt"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(print))  # a global the loader must not resolve
        z.writestr("evil/byteorder", "little")
    with pytest.raises(pickle.UnpicklingError, match="unexpected object"):
        unet_numpy.load_state_dict(bad)


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED, reason="U-Net weights not shipped in models/")
def test_measurement_crops_do_not_import_torch():
    """A crop-sized probability map (the measurement's) runs without importing torch."""
    import subprocess
    import sys

    code = ("import sys, numpy as np, stenosis; "
            "p = stenosis.vessel_probability(np.random.default_rng(0).random((256, 300))); "
            "assert p.shape == (256, 300); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
