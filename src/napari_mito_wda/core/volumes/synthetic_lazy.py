"""A synthetic EM-like volume of any size, made region by region on demand (nothing stored).

Every voxel is a pure function of its coordinates and the seed, so any region read twice, or by two
dask workers, is identical: objects come from a hashed grid of cells (one mitochondrion-like tube per
cell at most, darker matrix with a dark rim, spanning a few slices) and the grain from an integer hash
of (z, y, x). Used by the large-volume benchmark (0.1-16 GVoxel without a multi-GB file) and tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CELL = 160  # px: one object centre per cell in Y/X
_ZCELL = 12  # slices: objects live within one block of slices


@dataclass(frozen=True)
class LazySyntheticEM:
    shape: tuple[int, int, int]
    seed: int = 0
    fill: float = 0.85  # fraction of cells holding an object

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        return 3

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, tuple) or len(key) != 3 or not all(isinstance(k, slice) for k in key):
            raise IndexError("LazySyntheticEM takes three slices")
        (z0, z1, sz), (y0, y1, sy), (x0, x1, sx) = (k.indices(n) for k, n in zip(key, self.shape))
        if sz != 1:
            raise IndexError("no step along Z")
        # Make the contiguous block, then subsample: steps are only used for small samples.
        return self._region(z0, z1, y0, y1, x0, x1)[:, ::sy, ::sx]

    def _region(self, z0, z1, y0, y1, x0, x1) -> np.ndarray:
        img = np.full((z1 - z0, y1 - y0, x1 - x0), 0.62, np.float32)
        # Curvy dark "membranes" between objects (a fixed pattern of the coordinates).
        yy = np.arange(y0, y1, dtype=np.float32)[:, None]
        xx = np.arange(x0, x1, dtype=np.float32)[None, :]
        wave = np.abs(np.sin(xx / 41.0 + 2.0 * np.sin(yy / 57.0) + self.seed))
        wave = wave * np.abs(np.sin(yy / 67.0 + 1.5 * np.sin(xx / 73.0)))
        img[:] -= np.float32(0.25) * (wave < 0.03)
        zz = np.arange(z0, z1)
        for cz in range(z0 // _ZCELL, (max(z1 - 1, z0)) // _ZCELL + 1):
            for cy in range(max(0, (y0 - _CELL) // _CELL), (y1 + _CELL) // _CELL + 1):
                for cx in range(max(0, (x0 - _CELL) // _CELL), (x1 + _CELL) // _CELL + 1):
                    self._draw(img, zz, y0, x0, cz, cy, cx)
        img += self._grain(z0, z1, y0, y1, x0, x1)
        return np.clip(img * 255.0, 0, 255).astype(np.uint8)

    def _draw(self, img, zz, y0, x0, cz, cy, cx) -> None:
        rng = np.random.default_rng([self.seed, cz, cy, cx])
        if rng.random() > self.fill:
            return
        a, b = rng.uniform(22, 70), rng.uniform(16, 34)  # semi-axes (px)
        ang = rng.uniform(0, np.pi)
        yc, xc = (cy + rng.uniform(0.25, 0.75)) * _CELL, (cx + rng.uniform(0.25, 0.75)) * _CELL
        zs = cz * _ZCELL + int(rng.integers(0, _ZCELL // 3))
        ze = zs + int(rng.integers(_ZCELL // 2, _ZCELL - _ZCELL // 3 + 1))
        zsel = (zz >= zs) & (zz < ze)
        if not zsel.any():
            return
        r = int(np.ceil(a))
        ya, yb = max(int(yc) - r, y0), min(int(yc) + r + 1, y0 + img.shape[1])
        xa, xb = max(int(xc) - r, x0), min(int(xc) + r + 1, x0 + img.shape[2])
        if ya >= yb or xa >= xb:
            return
        yy, xx = np.mgrid[ya:yb, xa:xb].astype(np.float32)
        u = (yy - yc) * np.cos(ang) + (xx - xc) * np.sin(ang)
        v = -(yy - yc) * np.sin(ang) + (xx - xc) * np.cos(ang)
        rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        inside = rho < 1.0
        tone = np.where(rho > 0.82, 0.22, 0.37 + 0.06 * np.cos(u * 0.5)).astype(np.float32)  # rim, cristae
        sub = img[zsel, ya - y0 : yb - y0, xa - x0 : xb - x0]
        img[zsel, ya - y0 : yb - y0, xa - x0 : xb - x0] = np.where(inside, tone, sub)

    def _grain(self, z0, z1, y0, y1, x0, x1) -> np.ndarray:
        """Uniform noise in [-0.08, 0.08] from an integer hash of the coordinates (fast, stateless)."""
        z = np.arange(z0, z1, dtype=np.uint32)[:, None, None]
        y = np.arange(y0, y1, dtype=np.uint32)[None, :, None]
        x = np.arange(x0, x1, dtype=np.uint32)[None, None, :]
        h = (z * np.uint32(73856093)) ^ (y * np.uint32(19349663)) ^ (x * np.uint32(83492791))
        h ^= np.uint32(self.seed * 2654435761 % 2**32)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0x5BD1E995)
        h ^= h >> np.uint32(15)
        return (h >> np.uint32(8)).astype(np.float32) * np.float32(0.16 / 2**24) - np.float32(0.08)
