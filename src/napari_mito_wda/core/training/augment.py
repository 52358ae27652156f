"""Random crops and augmentations for training (numpy + torch, CPU-cheap).

Geometry (random resized crop, the 8 flips/transposes) moves image, mask and heatmap together;
intensity changes (gamma, contrast, brightness, noise, blur) touch the image only. Strong intensity
augmentation is what lets a source model survive the change of microscope.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi


def random_crop(rng: np.random.Generator, planes: list[np.ndarray], crop: int, scale=(0.8, 1.25)) -> list[np.ndarray]:
    """Crop the same random window (side crop*s) from each 2D plane and resize it to crop x crop.

    planes[0] is the image (bilinear); other planes are resized bilinearly too, the caller thresholds
    masks. Slices smaller than the window are reflect-padded first.
    """
    s = float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))))
    side = max(8, int(round(crop * s)))
    h, w = planes[0].shape
    ph, pw = max(0, side - h), max(0, side - w)
    if ph or pw:
        planes = [np.pad(p, ((0, ph), (0, pw)), mode="reflect") for p in planes]
        h, w = planes[0].shape
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    out = [p[y : y + side, x : x + side] for p in planes]
    if side != crop:
        t = torch.from_numpy(np.stack(out).astype(np.float32))[None]
        t = F.interpolate(t, size=(crop, crop), mode="bilinear", align_corners=False)[0]
        out = list(t.numpy())
    return [np.ascontiguousarray(p, dtype=np.float32) for p in out]


def dihedral(rng: np.random.Generator, planes: list[np.ndarray]) -> list[np.ndarray]:
    """One of the 8 flips/rotations by 90 degrees, the same for all planes."""
    k = int(rng.integers(0, 4))
    flip = bool(rng.integers(0, 2))
    out = []
    for p in planes:
        p = np.rot90(p, k)
        out.append(np.ascontiguousarray(p[:, ::-1] if flip else p))
    return out


def intensity(rng: np.random.Generator, img: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Gamma, contrast, brightness, blur and Gaussian noise on an image in [0, 1]."""
    if strength <= 0:
        return img
    img = np.clip(img, 0, 1) ** float(np.exp(rng.uniform(-0.4, 0.4) * strength))
    mean = float(img.mean())
    img = (img - mean) * float(np.exp(rng.uniform(-0.35, 0.35) * strength)) + mean
    img = img + rng.uniform(-0.1, 0.1) * strength
    if rng.random() < 0.3 * strength:
        img = ndi.gaussian_filter(img, float(rng.uniform(0.3, 1.3)))
    if rng.random() < 0.6:
        img = img + rng.normal(0, rng.uniform(0.0, 0.08) * strength, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)
