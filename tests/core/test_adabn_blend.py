"""AdaBN blended with the source statistics by the amount of target data (core/adapt/batchnorm.py)."""

import copy

import numpy as np
import pytest
import torch

from napari_mito_wda.core.adapt.batchnorm import adabn, blend_bn_stats, target_weight
from napari_mito_wda.core.engine.device import pick_device
from napari_mito_wda.core.engine.model import ModelConfig, MultiTaskUNet


def _stats(model):
    return [(m.running_mean.clone(), m.running_var.clone()) for m in model.modules()
            if isinstance(m, torch.nn.BatchNorm2d)]


def _hand_made():
    """Two BatchNorm layers with source statistics, then target statistics written into the model."""
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2))
    src = [(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 4.0])),
           (torch.tensor([0.5, -0.5]), torch.tensor([2.0, 0.5]))]
    tgt = [(torch.tensor([1.0, 1.0, -2.0]), torch.tensor([3.0, 1.0, 1.0])),
           (torch.tensor([0.5, 1.5]), torch.tensor([1.0, 1.0]))]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m, (mean, var) in zip(bns, tgt):
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
    return model, src, tgt


@pytest.mark.parametrize("w", [0.0, 0.3, 1.0])
def test_blend_gives_source_at_0_target_at_1_and_the_mixture_between(w):
    model, src, tgt = _hand_made()
    blend_bn_stats(model, src, w)
    for (mean, var), (ms, vs), (mt, vt) in zip(_stats(model), src, tgt):
        assert torch.allclose(mean, w * mt + (1 - w) * ms)
        # the variance of the pooled data: between-domain spread added to the weighted variances
        assert torch.allclose(var, w * vt + (1 - w) * vs + w * (1 - w) * (mt - ms) ** 2)
    if w == 0.0:
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(_stats(model), src))
    if w == 1.0:
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(_stats(model), tgt))


def test_blend_refuses_a_weight_outside_0_1_and_mismatched_layers():
    model, src, _ = _hand_made()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        blend_bn_stats(model, src, 1.5)
    with pytest.raises(ValueError, match="2 BatchNorm layers"):
        blend_bn_stats(model, src[:1], 0.5)


def test_target_weight_grows_with_the_target_pixels():
    assert target_weight(100, None) == 1.0
    assert target_weight(0, 50) == 0.0
    assert target_weight(50, 50) == 0.5
    assert target_weight(150, 50) == 0.75
    with pytest.raises(ValueError):
        target_weight(10, -1)


def test_adabn_with_n0_lands_between_source_and_plain_adabn():
    torch.manual_seed(0)
    model = MultiTaskUNet(ModelConfig(base=4, depth=2, proj_dim=8, downsample=1)).eval()
    dev = pick_device("cpu")
    rng = np.random.default_rng(0)
    images = [rng.random((64, 64), dtype=np.float32) * 3 + 2 for _ in range(2)]  # far from the init stats
    source = _stats(model)
    plain = copy.deepcopy(model)
    assert adabn(plain, images, dev, 32, n=8) == 1.0
    n = sum(im.size for im in images)
    blended = copy.deepcopy(model)
    w = adabn(blended, images, dev, 32, n=8, n0=3 * n)
    assert w == pytest.approx(0.25)
    first = lambda m: _stats(m)[0][0]  # noqa: E731
    assert torch.allclose(first(blended), 0.25 * first(plain) + 0.75 * source[0][0], atol=1e-5)
    assert not torch.allclose(first(blended), first(plain))
