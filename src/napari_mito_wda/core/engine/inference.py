"""Tiled inference over slices and volumes: overlap blending, optional flip averaging.

Memory is bounded by the tile size: each slice is cut into tiles at the network's working resolution,
predicted in small batches and blended with a window that fades towards tile borders (no seams).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data.io import normalize_slice, validate_image
from .device import DeviceInfo, pick_device
from .model import MultiTaskUNet


def _ramp(n: int, overlap: int) -> np.ndarray:
    """1D blending weights: rise over `overlap` pixels at both ends, never exactly zero."""
    w = np.ones(n, dtype=np.float32)
    if overlap > 0:
        r = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        w[:overlap] = np.minimum(w[:overlap], r)
        w[-overlap:] = np.minimum(w[-overlap:], r[::-1])
    return w


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


def _forward(model: MultiTaskUNet, batch: torch.Tensor, dev: DeviceInfo, flips: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Segmentation logits and heatmaps for a batch, averaged over 4 flips when asked."""
    variants = [(), (-1,), (-2,), (-2, -1)] if flips else [()]
    seg_sum = det_sum = 0
    for dims in variants:
        x = torch.flip(batch, dims) if dims else batch
        with dev.autocast():
            out = model(x.contiguous(memory_format=torch.channels_last))
        seg, det = out["seg"].float(), out["det"].float()
        if dims:
            seg, det = torch.flip(seg, dims), torch.flip(det, dims)
        seg_sum = seg_sum + seg
        det_sum = det_sum + det
    return seg_sum / len(variants), det_sum / len(variants)


@torch.no_grad()
def predict_working(
    model: MultiTaskUNet,
    img: np.ndarray,
    dev: DeviceInfo,
    tile: int = 512,
    overlap: int = 64,
    flips: bool = False,
    batch_size: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Seg logits and heatmap of a normalised 2D image already at the network's working resolution."""
    h, w = img.shape
    m = model.multiple
    tile = max(m, (tile // m) * m)
    th, tw = min(tile, -(-h // m) * m), min(tile, -(-w // m) * m)
    # Reflect-pad so every tile is full-sized and a multiple of the network stride.
    ph, pw = max(th, h), max(tw, w)
    padded = np.pad(img, ((0, ph - h), (0, pw - w)), mode="reflect" if min(h, w) > 1 else "edge")
    weight = np.outer(_ramp(th, overlap if ph > th else 0), _ramp(tw, overlap if pw > tw else 0))
    logit = np.zeros((ph, pw), np.float32)
    heat = np.zeros((ph, pw), np.float32)
    norm = np.zeros((ph, pw), np.float32)
    boxes = [(y, x) for y in _starts(ph, th, overlap) for x in _starts(pw, tw, overlap)]
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i : i + batch_size]
        batch = torch.from_numpy(np.stack([padded[y : y + th, x : x + tw] for y, x in chunk])[:, None])
        seg, det = _forward(model, batch.to(dev.device), dev, flips)
        seg, det = seg[:, 0].cpu().numpy(), det[:, 0].cpu().numpy()
        for k, (y, x) in enumerate(chunk):
            logit[y : y + th, x : x + tw] += seg[k] * weight
            heat[y : y + th, x : x + tw] += det[k] * weight
            norm[y : y + th, x : x + tw] += weight
    return (logit / norm)[:h, :w], (heat / norm)[:h, :w]


def to_working(img: np.ndarray, factor: int) -> np.ndarray:
    """Shrink a 2D float image by an integer factor (area averaging)."""
    if factor == 1:
        return img
    t = torch.from_numpy(np.ascontiguousarray(img))[None, None]
    return F.interpolate(t, scale_factor=1 / factor, mode="area", recompute_scale_factor=False)[0, 0].numpy()


def to_full(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a working-resolution map back to the slice shape."""
    if arr.shape == tuple(shape):
        return arr
    t = torch.from_numpy(np.ascontiguousarray(arr))[None, None]
    return F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0].numpy()


def predict_slice(model: MultiTaskUNet, img: np.ndarray, dev: DeviceInfo | None = None, normalized: bool = False, **kw):
    """Mito probability and centre heatmap (both float32, slice shape) of one 2D slice."""
    dev = dev or pick_device()
    norm = img if normalized else normalize_slice(img)
    factor = model.config.downsample
    small = to_working(norm.astype(np.float32, copy=False), factor)
    logit, heat = predict_working(model, small, dev, **kw)
    prob = 1.0 / (1.0 + np.exp(-to_full(logit, norm.shape)))
    return prob.astype(np.float32), to_full(heat, norm.shape).astype(np.float32)


def predict_volume(
    model: MultiTaskUNet,
    volume: np.ndarray,
    dev: DeviceInfo | None = None,
    progress: Callable[[int, int], None] | None = None,
    out_prob: np.ndarray | None = None,
    out_heat: np.ndarray | None = None,
    **kw,
) -> tuple[np.ndarray, np.ndarray]:
    """Predict every slice of a raw (Z, Y, X) stack; outputs may be given (e.g. memory-mapped arrays)."""
    volume = validate_image(volume)
    dev = dev or pick_device()
    model.eval()
    prob = out_prob if out_prob is not None else np.zeros(volume.shape, np.float32)
    heat = out_heat if out_heat is not None else np.zeros(volume.shape, np.float32)
    for z in range(volume.shape[0]):
        prob[z], heat[z] = predict_slice(model, volume[z], dev, **kw)
        if progress is not None:
            progress(z + 1, volume.shape[0])
    return prob, heat
