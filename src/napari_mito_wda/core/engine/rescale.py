"""Resampling between an image's pixel grid and the network's working grid, at any pixel-size ratio.

The network was trained on slices at the model's pixel size, shrunk by ModelConfig.downsample. An
image at another pixel size is brought to that grid in the same single step: with scale = image_nm /
model_nm, zoom = scale / downsample working pixels per image pixel. Where scale is 1 (or the pixel size
is unknown; `data/pixel_size.pixel_scale`) tiling.py keeps its integer f x f path unchanged.

Why the ratio is folded into the working-resolution step rather than applied to each slice before and
after the engine: one interpolation each way instead of two, and the halo-exact tiling stays exact.
Every output pixel's taps (input positions and weights) are a function of its global index alone, like
tiling's f x f means, so a chunk equals the whole slice cropped to it and a TIFF and a zarr store of one
volume still give the same objects; the tile and halo arithmetic in working pixels is untouched.

Shrinking averages the input pixels an output pixel covers (area weights: the f x f mean at integer
factors), growing is bilinear (align_corners=False, as torch's), so neither way aliases. Positions past
the slice repeat its last pixel, as the integer path does.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch


def working_size(n: int, zoom: float) -> int:
    """Working pixels along an axis of n image pixels (ceil, as the integer path's -(-n // f))."""
    return max(1, int(math.ceil(n * zoom - 1e-9)))


def taps(start: int, stop: int, n_in: int, zoom: float) -> tuple[np.ndarray, np.ndarray]:
    """Input positions (int64) and weights (float32), (stop - start, T), of output pixels start..stop-1.

    zoom = output pixels per input pixel over an axis of n_in input pixels. Weights are computed in
    float64 from the global index, so every chunk gets the same bits for the same pixel.
    """
    i = np.arange(start, stop, dtype=np.float64)
    if zoom >= 1.0:  # bilinear: torch's source index (i + 0.5) / zoom - 0.5, clamped at 0
        src = np.maximum((i + 0.5) / zoom - 0.5, 0.0)
        first = np.floor(src)
        lam = src - first
        j = first.astype(np.int64)[:, None] + np.arange(2)[None]
        w = np.stack([1.0 - lam, lam], axis=1)
    else:  # area: the overlap of input pixel [j, j + 1) with the output pixel's [i / zoom, (i + 1) / zoom)
        k = 1.0 / zoom
        a, b = i * k, (i + 1) * k
        j = np.floor(a).astype(np.int64)[:, None] + np.arange(int(math.ceil(k)) + 1)[None]
        w = np.clip(np.minimum(j + 1, b[:, None]) - np.maximum(j, a[:, None]), 0.0, None) * zoom
    return np.minimum(j, n_in - 1), w.astype(np.float32)


def apply_taps(x: torch.Tensor, idx: np.ndarray, w: np.ndarray, dim: int, origin: int) -> torch.Tensor:
    """Resample x along dim (which holds input positions origin, origin + 1, ...) with the given taps."""
    shape = [1] * x.dim()
    shape[dim] = idx.shape[0]
    out = None
    for t in range(idx.shape[1]):
        sel = x.index_select(dim, torch.as_tensor(idx[:, t] - origin, device=x.device))
        term = sel.mul_(torch.as_tensor(w[:, t], device=x.device).view(shape))
        out = term if out is None else out.add_(term)
    return out


def span(start: int, stop: int, n_work: int, zoom: float) -> tuple[int, int]:
    """First and last working pixel that growing to image positions start..stop-1 reads."""
    idx, _ = taps(start, stop, n_work, 1.0 / zoom)
    return int(idx.min()), int(idx.max())


def working_window(read: Callable, rows: tuple[int, int], cols: tuple[int, int], full_shape, zoom: float,
                   device: torch.device) -> torch.Tensor:
    """Working image over working rows/cols [a, b) from read(ya, yb, xa, xb) (normalised image pixels)."""
    H, W = full_shape
    iy, wy = taps(rows[0], rows[1], H, zoom)
    ix, wx = taps(cols[0], cols[1], W, zoom)
    ya, yb, xa, xb = int(iy.min()), int(iy.max()) + 1, int(ix.min()), int(ix.max()) + 1
    full = torch.as_tensor(read(ya, yb, xa, xb), dtype=torch.float32).to(device)
    return apply_taps(apply_taps(full, iy, wy, 1, ya), ix, wx, 2, xa)


def grow(work: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int], origin: tuple[int, int],
         n_work: tuple[int, int], zoom: float) -> torch.Tensor:
    """Working maps (covering working pixels from origin on) resampled to image rows/cols [a, b)."""
    iy, wy = taps(rows[0], rows[1], n_work[0], 1.0 / zoom)
    ix, wx = taps(cols[0], cols[1], n_work[1], 1.0 / zoom)
    return apply_taps(apply_taps(work, iy, wy, 1, origin[0]), ix, wx, 2, origin[1])


def resample_slice(img: np.ndarray, zoom: float) -> np.ndarray:
    """A whole 2D float image on the working grid of `zoom` (what adaptation trains on)."""
    H, W = img.shape
    out = working_window(lambda ya, yb, xa, xb: img[None, ya:yb, xa:xb], (0, working_size(H, zoom)),
                         (0, working_size(W, zoom)), (H, W), zoom, torch.device("cpu"))
    return out[0].numpy()
