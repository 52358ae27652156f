"""Synthetic EM-like volumes of mitochondria with a controllable domain shift.

Used by tests and examples so the domain-adaptation pipeline runs in seconds without real data.

Geometry: every mitochondrion is a 3D ellipsoid "tube" (random in-plane orientation, eccentricity
1-2.5, half-length of a few slices, slight xy drift along z) whose cross-section shrinks towards its
ends. Objects never share a voxel (rejection sampling with a small gap).

Look (before the domain transform): mid-grey cytoplasm; mitochondria darker, with a dark double
membrane rim and lighter transverse cristae lines; background clutter of thin curvy dark membranes,
small round vesicles and fine grain, never labelled. A :class:`Domain` then sets contrast, brightness,
blur, noise, object size and clutter strength, so SOURCE and TARGET differ in a controlled way.

Three independent random streams (geometry, clutter, noise) are spawned from the seed, so e.g.
changing ``texture`` or ``noise`` leaves the labels of a seed unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["Domain", "SOURCE", "TARGET", "make_volume", "make_slice", "make_pair"]

# Clean intensities in [0, 1] before the domain transform.
_BACKGROUND = 0.62
_MATRIX = 0.37
_MEMBRANE_DARK = 0.22
_CRISTAE_LIGHT = 0.2
_GAP = 2.0  # px kept free between objects, so instances never touch


@dataclass
class Domain:
    """Appearance of one imaging "domain" (microscope, staining, tissue)."""

    contrast: float = 1.0  # scales the intensity difference objects vs background
    brightness: float = 0.0  # additive offset in [0,1] intensity units
    noise: float = 0.05  # std of additive Gaussian noise (in [0,1] units)
    blur: float = 1.0  # Gaussian blur sigma in px applied to the clean image
    texture: float = 0.3  # strength of background clutter (membrane lines, vesicles, grain)
    object_radius: float = 12.0  # mean semi-axis of mitochondria in px
    invert: bool = False  # optional, flips intensities (a strong shift)


SOURCE = Domain(contrast=1.0, brightness=0.0, noise=0.04, blur=0.8, texture=0.3, object_radius=10.0)
# Lower contrast, brighter, noisier, blurrier, more clutter and ~1.5x larger objects.
TARGET = Domain(contrast=0.7, brightness=0.10, noise=0.07, blur=1.5, texture=0.6, object_radius=15.0)


def make_volume(
    shape: tuple[int, int, int] = (8, 128, 128),
    n_objects: int = 12,
    domain: Domain = SOURCE,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (image uint8 (Z,Y,X), instances uint16 (Z,Y,X), 0 = background, 3D ids 1..n).

    Fewer than ``n_objects`` are placed when the volume is too full to fit them without overlap.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be (Z, Y, X) with positive sizes, got {shape}")
    rng_geom, rng_clutter, rng_noise = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))

    labels, along, across = _place_objects(shape, n_objects, domain.object_radius, rng_geom)
    fg = labels > 0
    # In-plane depth inside objects (2D per slice: EM slices are cut, the rim is seen per section).
    depth = np.stack([ndi.distance_transform_edt(f) if f.any() else np.zeros(f.shape) for f in fg])

    clean = np.full(shape, _BACKGROUND, np.float64)
    clean += _clutter(shape, fg, domain.texture, rng_clutter)

    # Objects: darker matrix with a per-object tone, dark double membrane, light cristae lines.
    n = int(labels.max())
    tone = np.concatenate([[0.0], rng_geom.uniform(-0.04, 0.04, n)])
    clean[fg] = _MATRIX + tone[labels[fg]]
    d = depth[fg]
    clean[fg] -= _MEMBRANE_DARK * np.exp(-0.5 * ((d - 1.2) / 0.8) ** 2)
    clean[fg] += _CRISTAE_LIGHT * _cristae(along[fg], across[fg], labels[fg], rng_geom) * (d > 3.0)

    img = clean
    if domain.blur > 0:
        img = ndi.gaussian_filter(img, sigma=(0.0, domain.blur, domain.blur))
    img = _BACKGROUND + domain.contrast * (img - _BACKGROUND) + domain.brightness
    if domain.noise > 0:
        img = img + rng_noise.normal(0.0, domain.noise, shape)
    if domain.invert:
        img = 1.0 - img
    image = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    return image, labels.astype(np.uint16)


def make_slice(
    shape: tuple[int, int] = (128, 128),
    n_objects: int = 8,
    domain: Domain = SOURCE,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """2D convenience: one slice (image uint8 (Y,X), instances uint16 (Y,X)) with full cross-sections."""
    image, labels = make_volume((1, int(shape[0]), int(shape[1])), n_objects, domain, seed)
    return image[0], labels[0]


def make_pair(
    shape: tuple[int, int, int] = (8, 128, 128), n_objects: int = 12, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Source- and target-looking volumes (same seed, so the same random streams, different look)."""
    return {
        "source": make_volume(shape, n_objects, SOURCE, seed),
        "target": make_volume(shape, n_objects, TARGET, seed),
    }


# --------------------------------------------------------------------------- geometry


def _place_objects(shape, n_objects, radius, rng):
    """Rejection-sample non-overlapping ellipsoid tubes.

    Returns labels (int32) and, per labelled voxel, the coordinate along the object's major axis (px)
    and the normalised coordinate across it (-1..1), used to draw cristae.
    """
    nz, ny, nx = shape
    labels = np.zeros(shape, np.int32)
    along = np.zeros(shape, np.float32)
    across = np.zeros(shape, np.float32)
    placed = 0
    max_tries = 60 + 40 * max(int(n_objects), 0)  # give up gracefully when the volume is full
    for _ in range(max_tries):
        if placed >= n_objects:
            break
        r = radius * rng.uniform(0.8, 1.2)
        ecc = rng.uniform(1.0, 2.5)
        # Geometric mean of the two semi-axes = r, so object_radius sets the typical size.
        a, b = max(r * np.sqrt(ecc), 1.0), max(r / np.sqrt(ecc), 1.0)
        theta = rng.uniform(0, np.pi)
        half_len = rng.uniform(1.6, 4.0)  # z half-length in slices: persists over >= 3 slices
        drift = rng.normal(0.0, 0.6, 2)  # xy shift per slice: a slightly tilted tube
        zc = int(rng.integers(0, nz))  # integer centre: the full cross-section is on one slice
        yc, xc = rng.uniform(0, ny - 1), rng.uniform(0, nx - 1)

        # Bounding box including the gap, clipped to the volume.
        ext = a + _GAP + 1 + np.abs(drift).max() * half_len
        dz = int(np.ceil(half_len + 0.5))
        z0, z1 = max(zc - dz, 0), min(zc + dz + 1, nz)
        y0, y1 = max(int(yc - ext), 0), min(int(yc + ext) + 2, ny)
        x0, x1 = max(int(xc - ext), 0), min(int(xc + ext) + 2, nx)
        zz, yy, xx = np.meshgrid(
            np.arange(z0, z1), np.arange(y0, y1), np.arange(x0, x1), indexing="ij", sparse=True
        )
        t = (zz - zc).astype(np.float64)
        cy, cx = yc + drift[0] * t, xc + drift[1] * t
        u = (yy - cy) * np.sin(theta) + (xx - cx) * np.cos(theta)  # along the major axis
        v = -(yy - cy) * np.cos(theta) + (xx - cx) * np.sin(theta)  # across it
        # Cross-section scale s(z) = sqrt(1 - (t/half_len)^2): the tube shrinks at its ends.
        s2 = 1.0 - (t / half_len) ** 2
        inside = (u / a) ** 2 + (v / b) ** 2 <= s2
        inside &= s2 > 0
        if not inside[zc - z0].any():
            continue
        # Overlap test against a slightly larger ellipsoid keeps a gap between instances.
        s2_big = 1.0 - (t / (half_len + 0.75)) ** 2
        big = ((u / (a + _GAP)) ** 2 + (v / (b + _GAP)) ** 2 <= s2_big) & (s2_big > 0)
        box = (slice(z0, z1), slice(y0, y1), slice(x0, x1))
        if (labels[box][big] > 0).any():
            continue
        placed += 1
        labels[box][inside] = placed
        along[box][inside] = np.broadcast_to(u, inside.shape)[inside]
        vn = v / (b * np.sqrt(np.clip(s2, 1e-6, None)))
        across[box][inside] = np.broadcast_to(vn, inside.shape)[inside]
    return labels, along, across


def _cristae(along, across, ids, rng):
    """Thin transverse lines inside each object, slightly bent, per-object spacing and phase (0..1)."""
    n = int(ids.max()) if ids.size else 0
    period = np.concatenate([[1.0], rng.uniform(4.0, 6.0, n)])[ids]
    phase = np.concatenate([[0.0], rng.uniform(0.0, 1.0, n)])[ids]
    bend = np.concatenate([[0.0], rng.uniform(-2.5, 2.5, n)])[ids]
    pos = (along + bend * across**2) / period + phase
    dist = np.abs(pos - np.round(pos)) * period  # px to the nearest crista
    # Cristae rarely reach the membrane across the object: fade them out near the side walls.
    return np.exp(-0.5 * (dist / 0.6) ** 2) * (np.abs(across) < 0.8)


# --------------------------------------------------------------------------- clutter


def _clutter(shape, fg, texture, rng):
    """Additive background clutter (zero inside objects): membranes, vesicles and grain."""
    out = np.zeros(shape, np.float64)
    if texture <= 0:
        return out
    nz, ny, nx = shape
    # Curvy thin membranes: zero-level lines of a smooth random field. |f| / |grad f| approximates
    # the distance to the line, giving ~1 px wide lines whatever the local slope; smoothing in z too
    # keeps them consistent between neighbouring slices.
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma=(1.5, 11.0, 11.0))
    gy, gx = np.gradient(field, axis=(1, 2))
    dist = np.abs(field) / (np.hypot(gy, gx) + 1e-12)
    out -= 0.6 * texture * np.exp(-0.5 * (dist / 0.7) ** 2)

    # Vesicles: small spheres with a dark membrane and a slightly light lumen, kept off the objects.
    free = np.stack([ndi.distance_transform_edt(~f) if f.any() else np.full(f.shape, np.inf) for f in fg])
    n_ves = int(round(texture * nz * ny * nx / 1200))
    for _ in range(n_ves):
        rv = rng.uniform(2.0, 4.5)
        z, y, x = int(rng.integers(0, nz)), rng.uniform(0, ny), rng.uniform(0, nx)
        if free[z, min(int(y), ny - 1), min(int(x), nx - 1)] < rv + 3:
            continue
        z0, z1 = max(z - 1, 0), min(z + 2, nz)
        y0, y1 = max(int(y - rv - 2), 0), min(int(y + rv + 3), ny)
        x0, x1 = max(int(x - rv - 2), 0), min(int(x + rv + 3), nx)
        zz, yy, xx = np.ogrid[z0:z1, y0:y1, x0:x1]
        rz = rv * np.sqrt(np.clip(1 - ((zz - z) / 1.6) ** 2, 0, None))  # radius at this slice
        rr = np.hypot(yy - y, xx - x)
        ring = np.exp(-0.5 * ((rr - rz) / 0.6) ** 2) * (rz > 0.5)
        lumen = (rr < rz - 0.8).astype(np.float64)
        out[z0:z1, y0:y1, x0:x1] += texture * (0.08 * lumen - 0.7 * ring)

    # Fine cytoplasm grain.
    grain = ndi.gaussian_filter(rng.standard_normal(shape), sigma=(0.0, 1.2, 1.2))
    out += 0.06 * texture * grain / (grain.std() + 1e-12)

    out[fg] = 0.0  # clutter is never part of a label
    return out
