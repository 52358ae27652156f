import numpy as np
import pytest
import torch

from napari_mito_wda.core.engine.device import DeviceInfo, pick_device
from napari_mito_wda.core.engine.inference import predict_slice, predict_volume, predict_working
from napari_mito_wda.core.engine.model import ModelConfig, MultiTaskUNet

CPU32 = DeviceInfo(torch.device("cpu"), None, 1)


@pytest.fixture
def shallow():
    torch.manual_seed(1)
    return MultiTaskUNet(ModelConfig(base=4, depth=1, proj_dim=4, downsample=1)).eval()


def test_working_tiles_of_any_size_give_the_untiled_answer(shallow, rng):
    """predict_working (adaptation) uses the halo-exact tiles of predict_volume: no seams to blend."""
    img = rng.random((150, 170)).astype(np.float32)
    whole_l, whole_h = predict_working(shallow, img, CPU32, max_core=256)
    tiled_l, tiled_h = predict_working(shallow, img, CPU32, max_core=16)  # 10 x 11 tiles
    np.testing.assert_allclose(tiled_l, whole_l, atol=1e-5, rtol=0)
    np.testing.assert_allclose(tiled_h, whole_h, atol=1e-5, rtol=1e-5)
    assert whole_l.shape == (150, 170) and whole_l.std() > 1e-3


def test_downsampling_model_returns_full_size_maps(rng):
    model = MultiTaskUNet(ModelConfig(base=4, depth=2, proj_dim=4, downsample=2)).eval()
    img = (rng.random((70, 90)) * 255).astype(np.uint8)
    prob, heat = predict_slice(model, img, CPU32)
    assert prob.shape == heat.shape == (70, 90)
    assert prob.dtype == np.float32 and 0 <= prob.min() and prob.max() <= 1 and heat.min() >= 0


def test_flip_averaging_is_flip_invariant(tiny_model, rng):
    img = rng.random((64, 64)).astype(np.float32)
    a, _ = predict_working(tiny_model, img, CPU32, flips=True)
    b, _ = predict_working(tiny_model, img[:, ::-1].copy(), CPU32, flips=True)
    np.testing.assert_allclose(a[:, ::-1], b, atol=1e-4)


def test_volume_progress_and_output_arrays(tiny_model, rng):
    vol = (rng.random((3, 40, 48)) * 60000).astype(np.uint16)
    calls = []
    out = np.full((3, 40, 48), -1, np.float32)
    prob, heat = predict_volume(tiny_model, vol, CPU32, progress=lambda d, t: calls.append((d, t)), out_prob=out)
    assert prob is out and out.min() >= 0
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_input_is_left_untouched(tiny_model, rng):
    """Normalisation runs in place on a copy: a float32 image (no dtype conversion) stays as it was."""
    vol = (rng.random((2, 40, 48)) * 1000).astype(np.float32)
    before = vol.copy()
    predict_volume(tiny_model, vol, CPU32)
    np.testing.assert_array_equal(vol, before)


def test_bf16_and_fp32_predictions_agree(rng):
    torch.manual_seed(0)
    model = MultiTaskUNet(ModelConfig(base=8, depth=2, proj_dim=4, downsample=1)).eval()
    img = rng.random((64, 64)).astype(np.float32)
    p32, _ = predict_slice(model, img, pick_device("cpu", precision="fp32"), normalized=True)
    p16, _ = predict_slice(model, img, pick_device("cpu", precision="bf16"), normalized=True)
    assert np.abs(p32 - p16).max() < 0.02
    assert ((p32 > 0.5) == (p16 > 0.5)).mean() > 0.99


def test_device_choice_is_explicit():
    dev = pick_device("cpu", precision="fp32")
    assert dev.device.type == "cpu" and dev.amp_dtype is None and "CPU, fp32" in dev.describe()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            pick_device("cuda")
    with pytest.raises(ValueError):
        pick_device("cpu", precision="fp8")


@pytest.mark.parametrize("depth, stride", [(1, 1), (2, 2), (4, 4)])
def test_projection_head_resolution(depth, stride):
    model = MultiTaskUNet(ModelConfig(base=4, depth=depth, proj_dim=6)).eval()
    out = model(torch.rand(2, 1, 32, 32), with_proj=True)
    assert out["seg"].shape == out["det"].shape == (2, 1, 32, 32)
    assert out["proj"].shape == (2, 6, 32 // stride, 32 // stride)
    assert out["det"].min() >= 0
