"""Tiling-invariant prediction: the same probabilities whichever way a slice is cut into chunks.

Both the in-memory path (`inference.predict_volume` / `predict_slice` / `predict_working`) and the
chunked one (`chunked.segment_to_zarr`) predict through this module, so a volume gets the same answer
whether it is held in memory or cut into chunks. (Blending overlapping tiles placed relative to the
slice, as the in-memory path once did, makes values near seams depend on where the tiles fall, which a
chunk cannot reproduce.) Every tile is extended by a halo at least as wide as the network's receptive
field and only its core is kept:

* a core pixel then depends only on input pixels inside the tile, never on where the tile ends;
* tile origins lie on one global grid (multiples of 2**depth working pixels), so max-pooling sees
  the same 2x2 groups in every tile;
* the slice border has one global rule: the working image is extended by reflection to a multiple of
  2**depth, and a tile reaching the slice border stops there, so the network's own zero padding acts
  at the same place for every tile (no halo is paid on those sides);
* shrinking to the working resolution (f x f means) and growing back (bilinear, align_corners=False,
  exact factor f) are local with global index arithmetic.

So `predict_region` over a chunk equals `predict_region` over the whole slice cropped to that chunk,
up to float rounding (< 1e-5: convolutions of different sizes in fp32, 1 ulp of the sigmoid at the ends
of rows; tests/core/test_tiling.py, test_one_tiling.py). The cost is the halo on sides inside the slice:
a core of C working pixels with halos on both sides costs ((C + 2 h) / C)**2 network evaluations; a
slice up to max_core working pixels a side is one tile with no halo at all (every side is the border).

Reading aside, the work runs in torch on the network's device (downsampling, tile cuts, bilinear growth,
sigmoid), in place where it can: numpy fancy indexing and temporaries over full-resolution maps cost a
third of the network's time.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import rescale
from .device import DeviceInfo
from .model import ModelConfig, MultiTaskUNet


def _forward(model: MultiTaskUNet, batch: torch.Tensor, dev: DeviceInfo,
             flips: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Segmentation logits and heatmaps (float32) for a batch, averaged over 4 flips when asked."""
    variants = [(), (-1,), (-2,), (-2, -1)] if flips else [()]
    seg_sum = det_sum = None
    for dims in variants:
        x = torch.flip(batch, dims) if dims else batch
        with dev.autocast():
            out = model(x.contiguous(memory_format=torch.channels_last))
        seg, det = out["seg"].float(), out["det"].float()
        if dims:
            seg, det = torch.flip(seg, dims), torch.flip(det, dims)
        seg_sum = seg if seg_sum is None else seg_sum + seg
        det_sum = det if det_sum is None else det_sum + det
    if len(variants) == 1:
        return seg_sum, det_sum
    return seg_sum / len(variants), det_sum / len(variants)


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


def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map any integer positions into [0, n) by mirror reflection without repeating the edge (numpy 'reflect')."""
    idx = np.asarray(idx, dtype=np.int64)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    r = np.mod(idx, period)
    return np.where(r < n, r, period - r)


def _bilinear_span(start: int, stop: int, factor: int, n_work: int) -> tuple[int, int]:
    """The first and last working pixel that bilinear growth (align_corners=False, scale = factor) reads
    for full-resolution positions start..stop-1: torch's source index (pos + 0.5) / f - 0.5, clamped."""
    first = int(np.floor(max((start + 0.5) / factor - 0.5, 0.0)))
    last = int(np.floor(max((stop - 1 + 0.5) / factor - 0.5, 0.0)))
    return min(first, n_work - 1), min(last + 1, n_work - 1)


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


def _working_window(read: Callable, rows: tuple[int, int], cols: tuple[int, int], full_shape, factor: int,
                    device: torch.device) -> torch.Tensor:
    """Working-resolution image over working rows/cols [a, b): f x f means of the normalised full image.

    Full rows/cols past the slice end (when its size is not a multiple of f) repeat the last one.
    """
    (ra, rb), (ca, cb) = rows, cols
    H, W = full_shape
    ya, yb = ra * factor, min(H, rb * factor)
    xa, xb = ca * factor, min(W, cb * factor)
    full = torch.as_tensor(read(ya, yb, xa, xb), dtype=torch.float32)  # (nz, yb - ya, xb - xa) in [0, 1]
    full = full.to(device)
    pad_y, pad_x = (rb - ra) * factor - (yb - ya), (cb - ca) * factor - (xb - xa)
    if pad_y or pad_x:
        full = F.pad(full[:, None], (0, pad_x, 0, pad_y), mode="replicate")[:, 0]
    if factor == 1:
        return full
    # f x f means as sums of strided views: 4x faster than F.avg_pool2d here (0.15 vs 0.65 ms a slice).
    rows = full[:, 0::factor]
    for i in range(1, factor):
        rows = rows + full[:, i::factor]
    out = rows[:, :, 0::factor]
    for j in range(1, factor):
        out = out + rows[:, :, j::factor]
    return out.div_(factor * factor)


def _take(work: torch.Tensor, idx: np.ndarray, origin: int, dim: int) -> torch.Tensor:
    """work's positions idx (shifted by origin) along dim: a view when they run in order (no mirroring)."""
    a = int(idx[0]) - origin
    if np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):
        return work.narrow(dim, a, idx.size)
    return work.index_select(dim, torch.as_tensor(idx - origin, device=work.device))


def _tiles_forward(model, read_work: Callable, n_work: tuple[int, int], span_y: tuple[int, int],
                   span_x: tuple[int, int], dev: DeviceInfo, max_core: int, flips: bool, batch_size: int):
    """Logits and heatmap (nz, ly, lx) of working rows/cols [span[0], span[1]], from halo-exact tiles.

    read_work(rows, cols) returns the working image over [a, b) x [c, d) (inside the working slice).
    Returns (logit, heat, oy, ox): tensors on the device, covering working pixels from (oy, ox) on.
    """
    m, h = model.multiple, working_halo(model.config)
    hw, ww = n_work
    cores_y = _cores(span_y[0], span_y[1], m, max_core)
    cores_x = _cores(span_x[0], span_x[1], m, max_core)
    # Tiles: core + halo, stopped at the slice border padded to the grid (hp, wp); positions past
    # the slice mirror into it. Read the bounding window of everything needed once.
    hp, wp = -(-hw // m) * m, -(-ww // m) * m
    tiles_y = [(max(0, a - h), min(hp, b + h)) for a, b in cores_y]
    tiles_x = [(max(0, a - h), min(wp, b + h)) for a, b in cores_x]
    idx_y = [reflect_index(np.arange(ta, tb), hw) for ta, tb in tiles_y]
    idx_x = [reflect_index(np.arange(ta, tb), ww) for ta, tb in tiles_x]
    wy = (min(int(i.min()) for i in idx_y), max(int(i.max()) for i in idx_y) + 1)
    wx = (min(int(i.min()) for i in idx_x), max(int(i.max()) for i in idx_x) + 1)
    work = read_work(wy, wx)
    nz = work.shape[0]
    oy, ox = cores_y[0][0], cores_x[0][0]
    size = (nz, cores_y[-1][1] - oy, cores_x[-1][1] - ox)
    logit = torch.empty(size, dtype=torch.float32, device=dev.device)
    heat = torch.empty_like(logit)
    if model.training:  # eval() walks every module: ~1 ms a call, once per slice otherwise
        model.eval()
    for (ya, yb), (tya, _), iy in zip(cores_y, tiles_y, idx_y):
        rows = _take(work, iy, wy[0], 1)
        for (xa, xb), (txa, _), ix in zip(cores_x, tiles_x, idx_x):
            tile = _take(rows, ix, wx[0], 2)
            for k in range(0, nz, batch_size):
                seg, det = _forward(model, tile[k : k + batch_size, None], dev, flips)
                core = (slice(None), 0, slice(ya - tya, yb - tya), slice(xa - txa, xb - txa))
                logit[k : k + batch_size, ya - oy : yb - oy, xa - ox : xb - ox] = seg[core]
                heat[k : k + batch_size, ya - oy : yb - oy, xa - ox : xb - ox] = det[core]
    return logit, heat, oy, ox


@torch.no_grad()
def predict_region(
    model: MultiTaskUNet,
    read: Callable[[int, int, int, int], np.ndarray],
    full_shape: tuple[int, int],
    region: tuple[int, int, int, int],
    dev: DeviceInfo,
    max_core: int = 1024,
    flips: bool = False,
    batch_size: int = 1,
    out: tuple[np.ndarray, np.ndarray] | None = None,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Probability and heatmap (float32, (nz, y1-y0, x1-x0)) of a region of a stack of slices.

    read(ya, yb, xa, xb) returns the *normalised* full-resolution slices over rows [ya, yb) and
    columns [xa, xb) (inside the slice; a numpy array or a tensor); region = (y0, y1, x0, x1) in
    full-resolution pixels; full_shape = the whole slice's (H, W). max_core bounds a tile's core
    (working pixels), i.e. memory; batch_size = slices per network call; out = float32 arrays of the
    result's shape to write into (saves a copy of each map). scale = image_nm / model_nm: the image is
    resampled to the model's pixel size on the way to the working grid and the maps back to the image's
    grid (`rescale.py`); 1.0 = the image is at the model's pixel size (or it is unknown).
    """
    cfg = model.config
    f = cfg.downsample
    H, W = full_shape
    y0, y1, x0, x1 = region
    if not (0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W):
        raise ValueError(f"region {region} is not inside a slice of {full_shape}")
    if scale == 1.0:
        hw, ww = -(-H // f), -(-W // f)
        span_y, span_x = _bilinear_span(y0, y1, f, hw), _bilinear_span(x0, x1, f, ww)
        window = lambda rows, cols: _working_window(read, rows, cols, full_shape, f, dev.device)  # noqa: E731
    else:
        zoom = scale / f
        hw, ww = rescale.working_size(H, zoom), rescale.working_size(W, zoom)
        span_y, span_x = rescale.span(y0, y1, hw, zoom), rescale.span(x0, x1, ww, zoom)
        window = lambda rows, cols: rescale.working_window(read, rows, cols, full_shape, zoom,  # noqa: E731
                                                           dev.device)
    logit, heat, oy, ox = _tiles_forward(model, window, (hw, ww), span_y, span_x, dev, max_core, flips,
                                         batch_size)
    if scale == 1.0:
        logit = _grow(logit, (y0, y1), (x0, x1), span_y, span_x, (oy, ox), f)
        heat = _grow(heat, (y0, y1), (x0, x1), span_y, span_x, (oy, ox), f)
    else:
        logit = rescale.grow(logit, (y0, y1), (x0, x1), (oy, ox), (hw, ww), zoom)
        heat = rescale.grow(heat, (y0, y1), (x0, x1), (oy, ox), (hw, ww), zoom)
    if out is None:
        out = (np.empty(logit.shape, np.float32), np.empty(logit.shape, np.float32))
    prob_t, heat_t = torch.from_numpy(out[0]), torch.from_numpy(out[1])
    # Straight into the outputs, without full-size temporaries. (torch's vectorised exp and its scalar
    # one, used at the ends of rows, may differ by 1 ulp: the only bits here that depend on the region.)
    if logit.device.type == "cpu":
        torch.sigmoid(logit, out=prob_t)
    else:
        prob_t.copy_(torch.sigmoid(logit))
    heat_t.copy_(heat)
    return out


def _grow(work: torch.Tensor, rows, cols, span_y, span_x, origin, f: int) -> torch.Tensor:
    """Bilinear growth (align_corners=False, exact factor f) of working maps to full rows/cols [a, b).

    work covers working pixels from origin on; span = the first and last working pixel the region
    needs (`_bilinear_span`). Interpolating only that span gives the global arithmetic: torch's
    source index (dst + 0.5) / f - 0.5 shifts by whole pixels with the crop, its clamp at 0 acts only
    at the slice's first pixel (the only place a needed index is negative) and its clamp at the end
    only at the slice's last working pixel (the span ends there or before).
    """
    (y0, y1), (x0, x1), (oy, ox) = rows, cols, origin
    crop = work[:, span_y[0] - oy : span_y[1] + 1 - oy, span_x[0] - ox : span_x[1] + 1 - ox]
    if f == 1:
        return crop[:, y0 - span_y[0] : y1 - span_y[0], x0 - span_x[0] : x1 - span_x[0]]
    up = F.interpolate(crop[:, None], scale_factor=f, mode="bilinear", align_corners=False,
                       recompute_scale_factor=False)[:, 0]
    a, b = span_y[0] * f, span_x[0] * f
    return up[:, y0 - a : y1 - a, x0 - b : x1 - b]


def predict_exact(model: MultiTaskUNet, norm: np.ndarray, dev: DeviceInfo, **kw) -> tuple[np.ndarray, np.ndarray]:
    """Whole-slice(s) version: probability and heatmap of normalised (nz, H, W) slices held in memory."""
    norm = np.asarray(norm, dtype=np.float32)
    if norm.ndim == 2:
        norm = norm[None]
    H, W = norm.shape[1:]
    return predict_region(model, lambda ya, yb, xa, xb: norm[:, ya:yb, xa:xb], (H, W), (0, H, 0, W), dev, **kw)
