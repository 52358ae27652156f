"""Tiling-invariant prediction: chunks of a slice give the whole slice's values, exactly enough."""

import numpy as np
import pytest
import torch

from napari_mito_wda.core.engine.device import DeviceInfo
from napari_mito_wda.core.engine.model import ModelConfig, MultiTaskUNet
from napari_mito_wda.core.engine.tiling import (
    predict_exact,
    predict_region,
    receptive_radius,
    reflect_index,
    working_halo,
)

CPU32 = DeviceInfo(torch.device("cpu"), None, 1)


def _alive(model):
    """Positive BatchNorm shifts keep ReLUs open, so every dependency shows in the gradient."""
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.bias.data.fill_(0.5)
    model.eval()
    # Spread probabilities over (0, 1) instead of ~0.5 +- 0.01: steeper head, centred logits.
    model.seg_head.weight.data *= 30
    with torch.no_grad():
        seg = model(torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0)))["seg"]
    model.seg_head.bias.data -= seg.mean()
    return model


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_receptive_radius_bounds_the_real_dependencies(depth):
    torch.manual_seed(0)
    model = _alive(MultiTaskUNet(ModelConfig(base=4, depth=depth, downsample=1)))
    r = receptive_radius(model.config)
    n = -(-(2 * r + 40) // model.multiple) * model.multiple
    reach = 0
    for align in range(model.multiple):  # every position on the pooling grid
        c = n // 2 + align
        x = torch.rand(1, 1, n, n, requires_grad=True)
        out = model(x)
        g = torch.autograd.grad(out["det"][0, 0, c, c] + out["seg"][0, 0, c, c], x)[0][0, 0].abs().numpy()
        ys, xs = np.nonzero(g > 0)
        reach = max(reach, np.abs(ys - c).max(), np.abs(xs - c).max())
    assert reach <= r  # the halo is never too small ...
    assert reach >= r - 2  # ... and not wastefully large
    assert working_halo(model.config) % model.multiple == 0 and working_halo(model.config) >= r


def test_reflect_index_is_numpy_reflect():
    for n in (1, 2, 5):
        idx = reflect_index(np.arange(-12, 12 + n), n)
        np.testing.assert_array_equal(idx, np.pad(np.arange(n), 12, mode="reflect" if n > 1 else "edge"))


@pytest.mark.parametrize("downsample", [1, 2])
def test_regions_equal_the_whole_slice(downsample, rng):
    torch.manual_seed(3)
    model = _alive(MultiTaskUNet(ModelConfig(base=4, depth=2, downsample=downsample)))
    norm = rng.random((2, 83, 101)).astype(np.float32)  # odd sizes on purpose
    whole_p, whole_h = predict_exact(model, norm, CPU32, max_core=32)
    read = lambda ya, yb, xa, xb: norm[:, ya:yb, xa:xb]  # noqa: E731
    # Unaligned chunk borders, a 1-pixel region and a region touching two slice edges.
    for region in [(0, 40, 0, 37), (40, 83, 37, 101), (17, 18, 50, 51), (61, 83, 0, 13)]:
        y0, y1, x0, x1 = region
        p, h = predict_region(model, read, (83, 101), region, CPU32, max_core=16)
        np.testing.assert_allclose(p, whole_p[:, y0:y1, x0:x1], atol=1e-5, rtol=0)
        np.testing.assert_allclose(h, whole_h[:, y0:y1, x0:x1], atol=1e-4, rtol=1e-5)
    assert whole_p.std() > 0.02  # a near-constant map would pass trivially


def test_halo_is_what_makes_it_exact(rng, monkeypatch):
    """With the halo cut to a quarter, chunk borders show: the equality above is not luck."""
    import napari_mito_wda.core.engine.tiling as tiling

    torch.manual_seed(3)
    model = _alive(MultiTaskUNet(ModelConfig(base=4, depth=2, downsample=1)))
    norm = rng.random((1, 64, 64)).astype(np.float32)
    whole, _ = predict_exact(model, norm, CPU32)
    monkeypatch.setattr(tiling, "working_halo", lambda cfg: 8)
    cut, _ = predict_exact(model, norm, CPU32, max_core=16)
    assert np.abs(cut - whole).max() > 1e-3  # 100 x the tolerance of the equality test


def test_the_default_path_is_the_exact_tiling(rng):
    """predict_slice (in memory) is predict_exact of the normalised slice, one tile or many."""
    from napari_mito_wda.core.data.io import normalize_slice
    from napari_mito_wda.core.engine.inference import predict_slice

    torch.manual_seed(3)
    model = _alive(MultiTaskUNet(ModelConfig(base=4, depth=2, downsample=2)))
    img = (rng.random((90, 124)) * 255).astype(np.uint8)
    p_exact, h_exact = predict_exact(model, normalize_slice(img), CPU32)
    for max_core in (1024, 16):  # one tile; 3 x 4 tiles
        p_default, h_default = predict_slice(model, img, CPU32, max_core=max_core)
        np.testing.assert_allclose(p_exact[0], p_default, atol=1e-5, rtol=0)
        np.testing.assert_allclose(h_exact[0], h_default, atol=1e-4, rtol=1e-5)
