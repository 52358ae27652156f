"""Supervision targets: instance centres from masks, Gaussian centre heatmaps, count estimates."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

MIN_COMPONENT_PX = 4


def instance_centres(mask_or_labels: np.ndarray, min_size: int = MIN_COMPONENT_PX) -> np.ndarray:
    """Centroids (N, 2) of the 2D connected components (or instance ids) of one slice, dropping tiny ones."""
    arr = np.asarray(mask_or_labels)
    if arr.dtype == bool or arr.max() <= 1:
        labels, n = ndi.label(arr > 0, structure=np.ones((3, 3)))
    else:
        labels, n = arr, int(arr.max())
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    ids = np.arange(1, n + 1)
    sizes = ndi.sum_labels(np.ones_like(labels, dtype=np.float32), labels, ids)
    keep = ids[sizes >= min_size]
    if keep.size == 0:
        return np.zeros((0, 2), dtype=np.float32)
    cents = ndi.center_of_mass(np.ones_like(labels, dtype=np.float32), labels, keep)
    return np.asarray(cents, dtype=np.float32).reshape(-1, 2)


def centre_heatmap(shape: tuple[int, int], centres: np.ndarray, sigma: float, peak: float = 1.0) -> np.ndarray:
    """Sum of Gaussians (height `peak`) at the given (y, x) centres; float32 of `shape`."""
    heat = np.zeros(shape, dtype=np.float32)
    if len(centres) == 0:
        return heat
    impulses = np.zeros(shape, dtype=np.float32)
    for y, x in np.round(centres).astype(int):
        if 0 <= y < shape[0] and 0 <= x < shape[1]:
            impulses[y, x] += 1.0
    heat = ndi.gaussian_filter(impulses, sigma, mode="constant", truncate=3.0)
    return heat * (peak * 2 * np.pi * sigma**2)


def peak_mass(sigma: float, peak: float = 1.0) -> float:
    """Integral C of one heatmap peak: the count estimate is sum(heatmap) / C."""
    return float(peak * 2 * np.pi * sigma**2)


def count_estimate(heatmap: np.ndarray, sigma: float, peak: float = 1.0) -> int:
    """N = round(sum(D) / C) for a predicted heatmap D (any shape)."""
    return int(round(float(np.sum(heatmap, dtype=np.float64)) / peak_mass(sigma, peak)))
