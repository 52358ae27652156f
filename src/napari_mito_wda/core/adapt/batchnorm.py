"""BatchNorm on the target: AdaBN re-estimates the statistics at the start, blended with the source's
by the amount of target data (a small crop's statistics are noisy and biased by what it shows);
source batches then leave the running statistics alone (AdaptSettings.target_bn_stats).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..engine.device import DeviceInfo


def _bns(model: torch.nn.Module) -> list[torch.nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def target_weight(n_pixels: int, n0: float | None) -> float:
    """Weight of the target statistics, n / (n + n0) for n target working pixels; n0 None: 1 (plain AdaBN)."""
    if n0 is None:
        return 1.0
    if n0 < 0:
        raise ValueError(f"the AdaBN pixel scale n0 must be 0 or more, got {n0}")
    return float(n_pixels / (n_pixels + n0)) if n_pixels + n0 > 0 else 1.0


@torch.no_grad()
def blend_bn_stats(model: torch.nn.Module, source: list[tuple[torch.Tensor, torch.Tensor]], weight: float) -> None:
    """Running statistics := the mixture of w x target (the model's now) and (1 - w) x source.

    The variance is the mixture's (w var_t + (1-w) var_s + w (1-w) (mean_t - mean_s)^2), so that w = 0 gives
    the source statistics and w = 1 the target's exactly.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the blend weight must lie in [0, 1], got {weight}")
    bns = _bns(model)
    if len(bns) != len(source):
        raise ValueError(f"{len(source)} source statistics for {len(bns)} BatchNorm layers")
    for m, (mean_s, var_s) in zip(bns, source):
        mean_t, var_t = m.running_mean.clone(), m.running_var.clone()
        m.running_mean.copy_(weight * mean_t + (1 - weight) * mean_s)
        m.running_var.copy_(weight * var_t + (1 - weight) * var_s + weight * (1 - weight) * (mean_t - mean_s) ** 2)


@torch.no_grad()
def adabn(model: torch.nn.Module, images: list[np.ndarray], dev: DeviceInfo, crop: int, n: int = 48,
          seed: int = 0, n0: float | None = None) -> float:
    """Replace BatchNorm running statistics by those of target crops (AdaBN); weights untouched.

    n0: blend them with the source statistics by target_weight(target working pixels, n0) (None: target
    only). Returns the weight given to the target.
    """
    rng = np.random.default_rng(seed)
    bns = _bns(model)
    source = [(m.running_mean.clone(), m.running_var.clone()) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the crops below
    model.train()
    for _ in range(max(1, n // 4)):
        batch = []
        for _ in range(4):
            img = images[int(rng.integers(0, len(images)))]
            h, w = img.shape
            c = min(crop, h, w) // model.multiple * model.multiple
            y, x = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            batch.append(img[y : y + c, x : x + c])
        model(torch.from_numpy(np.stack(batch)[:, None]).to(dev.device).contiguous(memory_format=torch.channels_last))
    for m in bns:
        m.momentum = 0.1
    weight = target_weight(sum(int(im.size) for im in images), n0)
    if weight < 1.0:
        blend_bn_stats(model, source, weight)
    model.eval()
    return weight


@contextlib.contextmanager
def frozen_bn_stats(model: torch.nn.Module, active: bool):
    """Source batches still normalise with their own batch statistics but leave the running ones alone."""
    bns = _bns(model) if active else []
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
