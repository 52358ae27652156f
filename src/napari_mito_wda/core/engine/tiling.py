"""Tiling-invariant prediction: the same probabilities whichever way a slice is cut into chunks.

The default in-memory path (`inference.predict_working`) blends overlapping tiles placed relative to
the slice, so on slices larger than one tile its values near tile seams depend on where the tiles
fall. A chunk of a large volume cannot reproduce that without computing its neighbours' tiles. Here
instead every tile is extended by a halo at least as wide as the network's receptive field and only
its core is kept:

* a core pixel then depends only on input pixels inside the tile, never on where the tile ends;
* tile origins lie on one global grid (multiples of 2**depth working pixels), so max-pooling sees
  the same 2x2 groups in every tile;
* the slice border has one global rule: the working image is extended by reflection to a multiple of
  2**depth (as `predict_working` pads), and a tile reaching the slice border stops there, so the
  network's own zero padding acts at the same place for every tile (no halo is paid on those sides);
* shrinking to the working resolution (f x f means) and growing back (bilinear, align_corners=False,
  exact factor f) are local with global index arithmetic.

So `predict_region` over a chunk equals `predict_region` over the whole slice cropped to that chunk,
up to float rounding of convolutions of different sizes (< 1e-5; tests/core/test_tiling.py), and for
a slice that fits in one in-memory tile (<= 512 working pixels a side) it equals `predict_slice` too.
The cost is the halo on sides inside the slice: a core of C working pixels with halos on both sides
costs ((C + 2 h) / C)**2 network evaluations.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .device import DeviceInfo
from .inference import _forward
from .model import ModelConfig, MultiTaskUNet


def receptive_radius(config: ModelConfig) -> int:
    """Largest distance (working pixels, Chebyshev) from an output pixel to an input pixel it depends on.

    Per level l (scale s = 2**l): two 3x3 convolutions in the encoder and two in the decoder (+s
    each); the 2x2 max-pool down and the 2x2 stride-2 transposed convolution back up together +s (a
    pixel and its parent at the coarser level cover an aligned pair, so only one side grows); two 3x3
    convolutions at the bottom (+2**depth each) and the heatmap head's 3x3 convolution (+1).
    Checked against autograd at every pooling alignment (tests/core/test_tiling.py): depth 4 -> 108.
    """
    d = config.depth
    return 5 * (2**d - 1) + 2 * 2**d + 1


def working_halo(config: ModelConfig) -> int:
    """Halo in working pixels: the receptive radius rounded up to the pooling grid (2**depth)."""
    m = 2**config.depth
    return int(math.ceil(receptive_radius(config) / m) * m)


def full_halo(config: ModelConfig) -> int:
    """The same halo in full-resolution pixels (what a chunk must read beyond its faces)."""
    return working_halo(config) * config.downsample + config.downsample


def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map any integer positions into [0, n) by mirror reflection without repeating the edge (numpy 'reflect')."""
    idx = np.asarray(idx, dtype=np.int64)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    r = np.mod(idx, period)
    return np.where(r < n, r, period - r)


def _bilinear_source(start: int, stop: int, factor: int, n_work: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For full-resolution positions start..stop-1: the two working indices and the weight of the second.

    Same arithmetic as torch's bilinear interpolation with align_corners=False and scale = factor.
    """
    pos = np.arange(start, stop, dtype=np.float64)
    src = np.maximum((pos + 0.5) / factor - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_work - 1)
    i1 = np.minimum(i0 + 1, n_work - 1)
    w1 = (src - i0).astype(np.float32)
    return i0, i1, w1


def _cores(first: int, last: int, m: int, max_core: int) -> list[tuple[int, int]]:
    """Tile cores (working pixels, start on the global grid of m, length a multiple of m) covering [first, last].

    Cores are of equal size; max_core may be exceeded by 2 m, so that the one-pixel margin bilinear
    growth needs past a chunk of exactly max_core pixels does not cost a sliver tile with a full halo.
    """
    start = (first // m) * m
    length = last + 1 - start
    max_core = max(m, (max_core // m) * m)
    n = 1 if length <= max_core + 2 * m else -(-length // max_core)
    size = int(math.ceil(length / n / m)) * m
    return [(a, min(a + size, start + int(math.ceil(length / m)) * m)) for a in range(start, last + 1, size)]


def _working_window(read: Callable, rows: tuple[int, int], cols: tuple[int, int], full_shape, factor: int) -> np.ndarray:
    """Working-resolution image over working rows/cols [a, b): f x f means of the normalised full image.

    Full rows/cols past the slice end (when its size is not a multiple of f) repeat the last one.
    """
    (ra, rb), (ca, cb) = rows, cols
    H, W = full_shape
    ya, yb = ra * factor, min(H, rb * factor)
    xa, xb = ca * factor, min(W, cb * factor)
    full = read(ya, yb, xa, xb)  # (nz, yb - ya, xb - xa) float32 in [0, 1]
    pad_y, pad_x = (rb - ra) * factor - (yb - ya), (cb - ca) * factor - (xb - xa)
    if pad_y or pad_x:
        full = np.pad(full, ((0, 0), (0, pad_y), (0, pad_x)), mode="edge")
    if factor == 1:
        return full
    t = torch.from_numpy(np.ascontiguousarray(full))[:, None]
    return F.avg_pool2d(t, factor)[:, 0].numpy()


@torch.no_grad()
def predict_region(
    model: MultiTaskUNet,
    read: Callable[[int, int, int, int], np.ndarray],
    full_shape: tuple[int, int],
    region: tuple[int, int, int, int],
    dev: DeviceInfo,
    max_core: int = 1024,
    flips: bool = False,
    batch_size: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Probability and heatmap (float32, (nz, y1-y0, x1-x0)) of a region of a stack of slices.

    read(ya, yb, xa, xb) returns the *normalised* full-resolution slices over rows [ya, yb) and
    columns [xa, xb) (inside the slice); region = (y0, y1, x0, x1) in full-resolution pixels;
    full_shape = the whole slice's (H, W). max_core bounds a tile's core (working pixels), i.e. memory.
    """
    cfg = model.config
    f, m, h = cfg.downsample, model.multiple, working_halo(cfg)
    H, W = full_shape
    y0, y1, x0, x1 = region
    if not (0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W):
        raise ValueError(f"region {region} is not inside a slice of {full_shape}")
    hw, ww = -(-H // f), -(-W // f)
    ry = _bilinear_source(y0, y1, f, hw)
    rx = _bilinear_source(x0, x1, f, ww)
    cores_y = _cores(int(ry[0].min()), int(ry[1].max()), m, max_core)
    cores_x = _cores(int(rx[0].min()), int(rx[1].max()), m, max_core)
    # Tiles: core + halo, stopped at the slice border padded to the grid (hp, wp); positions past
    # the slice mirror into it. Read the bounding window of everything needed once.
    hp, wp = -(-hw // m) * m, -(-ww // m) * m
    tiles_y = [(max(0, a - h), min(hp, b + h)) for a, b in cores_y]
    tiles_x = [(max(0, a - h), min(wp, b + h)) for a, b in cores_x]
    idx_y = [reflect_index(np.arange(ta, tb), hw) for ta, tb in tiles_y]
    idx_x = [reflect_index(np.arange(ta, tb), ww) for ta, tb in tiles_x]
    wy = (min(int(i.min()) for i in idx_y), max(int(i.max()) for i in idx_y) + 1)
    wx = (min(int(i.min()) for i in idx_x), max(int(i.max()) for i in idx_x) + 1)
    work = _working_window(read, wy, wx, full_shape, f)
    nz = work.shape[0]
    oy, ox = cores_y[0][0], cores_x[0][0]
    logit = np.zeros((nz, cores_y[-1][1] - oy, cores_x[-1][1] - ox), np.float32)
    heat = np.zeros_like(logit)
    model.eval()
    for (ya, yb), (tya, _), iy in zip(cores_y, tiles_y, idx_y):
        for (xa, xb), (txa, _), ix in zip(cores_x, tiles_x, idx_x):
            tile = work[:, (iy - wy[0])[:, None], (ix - wx[0])[None, :]]
            for k in range(0, nz, batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(tile[k : k + batch_size]))[:, None].to(dev.device)
                seg, det = _forward(model, batch, dev, flips)
                core = (slice(None), 0, slice(ya - tya, yb - tya), slice(xa - txa, xb - txa))
                logit[k : k + batch_size, ya - oy : yb - oy, xa - ox : xb - ox] = seg[core].cpu().numpy()
                heat[k : k + batch_size, ya - oy : yb - oy, xa - ox : xb - ox] = det[core].cpu().numpy()
    up_logit = _upsample(logit, ry, rx, oy, ox)
    prob = (1.0 / (1.0 + np.exp(-up_logit))).astype(np.float32)
    return prob, _upsample(heat, ry, rx, oy, ox)


def _upsample(work: np.ndarray, ry, rx, oy: int, ox: int) -> np.ndarray:
    """Bilinear growth back to full resolution at the requested positions (rows, then columns)."""
    (y0, y1, wy), (x0, x1, wx) = ry, rx
    rows = work[:, y0 - oy] * (1 - wy)[None, :, None] + work[:, y1 - oy] * wy[None, :, None]
    out = rows[:, :, x0 - ox] * (1 - wx)[None, None, :] + rows[:, :, x1 - ox] * wx[None, None, :]
    return out.astype(np.float32, copy=False)


def predict_exact(model: MultiTaskUNet, norm: np.ndarray, dev: DeviceInfo, **kw) -> tuple[np.ndarray, np.ndarray]:
    """Whole-slice(s) version: probability and heatmap of normalised (nz, H, W) slices held in memory."""
    norm = np.asarray(norm, dtype=np.float32)
    if norm.ndim == 2:
        norm = norm[None]
    H, W = norm.shape[1:]
    return predict_region(model, lambda ya, yb, xa, xb: norm[:, ya:yb, xa:xb], (H, W), (0, H, 0, W), dev, **kw)
