"""Random crops and augmentations for training (numpy + torch, CPU-cheap).

Geometry (random resized crop, the 8 flips/transposes, elastic deformation, same-domain cut-and-paste) moves
image, mask and heatmap together; intensity changes (gamma, contrast, brightness, noise, blur, and the coarser
sampling and tone curve of `degrade`) touch the image only. Strong intensity augmentation is what lets a
source model survive the change of microscope; elastic and cut-and-paste give it shapes and contexts VNC III
alone does not hold.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi


def random_crop(rng: np.random.Generator, planes: list[np.ndarray], crop: int, scale=(0.8, 1.25),
                around: tuple[float, float] | None = None) -> list[np.ndarray]:
    """Crop the same random window (side crop*s) from each 2D plane and resize it to crop x crop.

    planes[0] is the image (bilinear); other planes are resized bilinearly too, the caller thresholds
    masks. Slices smaller than the window are reflect-padded first. around: a (y, x) pixel the window
    must hold (anywhere in it, at random).
    """
    s = float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))))
    side = max(8, int(round(crop * s)))
    h, w = planes[0].shape
    ph, pw = max(0, side - h), max(0, side - w)
    if ph or pw:
        planes = [np.pad(p, ((0, ph), (0, pw)), mode="reflect") for p in planes]
        h, w = planes[0].shape
    if around is None:
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(0, w - side + 1))
    else:
        cy, cx = (int(min(max(v, 0), n - 1)) for v, n in zip(around, (h, w)))
        y = int(rng.integers(max(0, cy - side + 1), min(h - side, cy) + 1))
        x = int(rng.integers(max(0, cx - side + 1), min(w - side, cx) + 1))
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


def degrade(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Another microscope's look on an image in [0, 1]: coarser sampling and a different tone curve.

    The slice is shrunk by 1.3-2.5x and blown up again (detail lost as at a larger pixel or a thicker
    section), then passed through a random monotone curve (five knots), which gamma and contrast alone
    cannot make: stains and detectors differ in how they map density to grey, not just in its range.
    """
    h, w = img.shape
    f = float(rng.uniform(1.3, 2.5))
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    small = F.interpolate(t, size=(max(4, round(h / f)), max(4, round(w / f))), mode="area")
    img = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()
    knots = np.concatenate([[0.0], np.sort(rng.uniform(0, 1, 3)), [1.0]])
    mix = float(rng.uniform(0.3, 1.0))  # part identity, so no crop loses all of its contrast
    values = (1 - mix) * knots + mix * np.concatenate([[0.0], np.sort(rng.uniform(0, 1, 3)), [1.0]])
    return np.interp(np.clip(img, 0, 1), knots, values).astype(np.float32)


def elastic(rng: np.random.Generator, planes: list[np.ndarray], alpha: float = 6.0, sigma: float = 10.0
            ) -> list[np.ndarray]:
    """The same smooth random warp of every plane (bilinear, reflected at the border).

    The displacement field is white noise smoothed with a Gaussian of `sigma` px and scaled so that its
    standard deviation is `alpha` px: membranes bend, mitochondria change shape, nothing tears.
    """
    h, w = planes[0].shape
    field = []
    for _ in range(2):
        d = ndi.gaussian_filter(rng.standard_normal((h, w)), sigma)
        field.append(d * (alpha / max(float(d.std()), 1e-9)))
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    coords = np.stack([yy + field[0], xx + field[1]])
    return [ndi.map_coordinates(p, coords, order=1, mode="reflect").astype(np.float32) for p in planes]


def cut_paste(rng: np.random.Generator, planes: list[np.ndarray], donor: list[np.ndarray], size: int
              ) -> list[np.ndarray]:
    """Paste a random size x size window of `donor` into `planes` (labels included) at a random place.

    Both crops come from the same domain (method.md): the network meets mitochondria next to
    unfamiliar neighbours and cannot lean on the context of one slice.
    """
    h, w = planes[0].shape
    size = min(size, h, w)
    ys, xs = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    yd, xd = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    out = [p.copy() for p in planes]
    for o, d in zip(out, donor):
        o[yd : yd + size, xd : xd + size] = d[ys : ys + size, xs : xs + size]
    return out
