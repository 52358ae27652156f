"""BatchNorm on the target: AdaBN re-estimates the statistics at the start; source batches then
leave the running statistics alone (AdaptSettings.target_bn_stats).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..engine.device import DeviceInfo


@torch.no_grad()
def adabn(model: torch.nn.Module, images: list[np.ndarray], dev: DeviceInfo, crop: int, n: int = 48,
          seed: int = 0) -> None:
    """Replace BatchNorm running statistics by those of target crops (AdaBN); weights untouched."""
    rng = np.random.default_rng(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
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
    model.eval()


@contextlib.contextmanager
def frozen_bn_stats(model: torch.nn.Module, active: bool):
    """Source batches still normalise with their own batch statistics but leave the running ones alone."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)] if active else []
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
