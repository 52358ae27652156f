"""User clicks (napari Points) on mitochondria centres: checking, merging, reading and writing files.

Coordinates are voxel indices (z, y, x) as napari writes them for an image layer with unit scale:
a pixel's centre is at an integer, so a click belongs to voxel round(c). A click labels slice round(z).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np

from ..data.io import InputError

# Two clicks on the same slice closer than this (pixels) are one intended click: a double click, or a
# re-click after a missed one. Real mitochondria centres are much further apart than 2 px.
MERGE_DISTANCE_PX = 2.0


def _round_half_up(a: np.ndarray) -> np.ndarray:
    # np.round rounds half to even (2.5 -> 2); napari's pixel i spans [i - 0.5, i + 0.5).
    return np.floor(a + 0.5)


def _fmt(p: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:g}" for v in p) + ")"


def validate_points(points, shape) -> tuple[np.ndarray, list[str]]:
    """Check clicks against a (Z, Y, X) volume (a (Y, X) shape means one slice).

    Accepts (N, 3) (z, y, x) points, (N, 2) (y, x) points for a single-slice image (z = 0), a single
    point as a flat (3,) / (2,) array, and None or an empty array (no clicks: UDA mode).
    Returns (points (N, 3) float64 with z snapped to its slice, warnings). Duplicate clicks (same voxel,
    or closer than 2 px on one slice) are merged into the first one, with one warning each.
    Raises InputError naming the offending clicks for wrong column counts, NaN/inf or out-of-volume
    coordinates.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = (1,) + shape
    if len(shape) != 3:
        raise InputError(
            f"Points can only be placed on a 2D image or a 3D (Z, Y, X) volume, not shape {shape}."
        )
    if points is None:
        return np.zeros((0, 3)), []
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"Points must be numbers (z, y, x); could not read them: {exc}") from None
    if arr.size == 0:
        return np.zeros((0, 3)), []
    if arr.ndim == 1 and arr.size in (2, 3):
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise InputError(
            f"Points must have 3 columns (z, y, x) for a volume or 2 (y, x) for a 2D image; got an array "
            f"of shape {arr.shape}."
        )
    if arr.shape[1] == 2:
        if shape[0] != 1:
            raise InputError(
                f"Got 2D points (y, x) for a volume of {shape[0]} slices: the slice of each click is "
                "unknown. "
                "Add points on the 3D image layer so they carry a z coordinate."
            )
        arr = np.concatenate([np.zeros((len(arr), 1)), arr], axis=1)
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        listed = "; ".join(f"click {i} {_fmt(arr[i])}" for i in bad[:10])
        raise InputError(f"{bad.size} click(s) have missing (NaN) or infinite coordinates: {listed}; delete them "
                         "or click those centres again.")
    vox = _round_half_up(arr)
    outside = np.flatnonzero(((vox < 0) | (vox >= np.asarray(shape))).any(axis=1))
    if outside.size:
        listed = "; ".join(f"click {i} at (z, y, x) = {_fmt(arr[i])}" for i in outside[:10])
        more = f" and {outside.size - 10} more" if outside.size > 10 else ""
        raise InputError(
            f"{outside.size} click(s) lie outside the image of shape (Z, Y, X) = {shape}: {listed}{more}. "
            "Delete them or check that the points belong to this image (same scale)."
        )
    arr[:, 0] = vox[:, 0]

    warnings: list[str] = []
    kept: list[int] = []
    for i in range(len(arr)):
        dup = None
        for j in kept:
            same_voxel = bool(np.all(vox[i] == vox[j]))
            close = arr[i, 0] == arr[j, 0] and np.hypot(*(arr[i, 1:] - arr[j, 1:])) < MERGE_DISTANCE_PX
            if same_voxel or close:
                dup = j
                break
        if dup is None:
            kept.append(i)
        else:
            d = float(np.hypot(*(arr[i, 1:] - arr[dup, 1:])))
            warnings.append(
                f"click {i} at {_fmt(arr[i])} duplicates click {dup} at {_fmt(arr[dup])} "
                f"({d:.1f} px apart on slice {int(arr[i, 0])}); merged into click {dup}."
            )
    return arr[kept], warnings


_AXIS = re.compile(r"^axis-(\d+)$")


def _read_csv(path: Path) -> np.ndarray:
    try:
        with open(path, newline="") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error):
        raise InputError(f"{path}: not a text CSV file (is it a binary file with a .csv name?); save the Points "
                         "layer from napari as CSV.") from None
    if not rows:
        raise InputError(
            f"{path}: the file is empty; expected a napari Points CSV (index,axis-0,axis-1,axis-2)."
        )
    header = [c.strip() for c in rows[0]]
    axes = {int(m.group(1)): i for i, c in enumerate(header) if (m := _AXIS.match(c))}
    if axes:
        cols = [axes[k] for k in sorted(axes)]
        if sorted(axes) != list(range(len(axes))):
            raise InputError(f"{path}: axis columns {sorted(axes)} are not consecutive from axis-0.")
        body, first_line = rows[1:], 2
    else:
        # Tolerate a header-less numeric file of (z, y, x) or (y, x) rows.
        try:
            [float(c) for c in rows[0]]
        except ValueError:
            raise InputError(
                f"{path}: no 'axis-0', 'axis-1', ... columns in the header {header}; expected a napari "
                "Points CSV as written by File > Save Selected Layer(s)."
            ) from None
        cols, body, first_line = list(range(len(rows[0]))), rows, 1
    out = np.zeros((len(body), len(cols)))
    for r, row in enumerate(body):
        try:
            out[r] = [float(row[c]) for c in cols]
        except (ValueError, IndexError):
            raise InputError(f"{path}, line {r + first_line}: cannot read coordinates from {row}; every row needs a "
                             "number in each axis-N column (save the Points layer from napari again).") from None
    return out


def read_points(path: str | os.PathLike) -> np.ndarray:
    """Read clicks from a napari Points CSV (axis-0..axis-n columns, others ignored) or a .npy array.

    Returns the raw (N, D) coordinates; pass them to validate_points for the volume they belong to.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Points file not found: {path}; check the path.")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return _read_csv(path)
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            # numpy's own text is left out: it advises allow_pickle=True, which would let the file run code
            raise InputError(f"{path}: not a readable .npy array of numbers ({type(exc).__name__}); save the clicks "
                             "with numpy.save or as a napari Points CSV.") from None
        if arr.dtype.kind not in "uif":
            raise InputError(f"{path}: expected numeric coordinates, got dtype {arr.dtype}; save an (N, 3) array of "
                             "numbers (z, y, x).")
        return arr.astype(np.float64)
    raise InputError(
        f"{path}: unsupported points file type '{suffix}'; use a napari Points .csv or a .npy array."
    )


def write_points_csv(path: str | os.PathLike, points: np.ndarray, properties: dict | None = None,
                     overwrite: bool = False) -> Path:
    """Write (N, D) points as a napari Points CSV (index, axis-0.., then one column per property), atomically.

    napari opens it as a Points layer (the extra columns become its properties) and read_points reads it
    back; an existing file is replaced only with overwrite.
    """
    from ..data.io import atomic_write

    pts = np.asarray(points, dtype=np.float64).reshape(len(points), -1) if len(points) else np.zeros((0, 3))
    props = {k: list(v) for k, v in (properties or {}).items()}
    if any(len(v) != len(pts) for v in props.values()):
        raise ValueError("every property needs one value per point")

    def write(tmp):
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["index", *(f"axis-{i}" for i in range(pts.shape[1])), *props])
            for i, p in enumerate(pts):
                w.writerow([i, *(f"{v:g}" for v in p), *(v[i] for v in props.values())])

    return atomic_write(Path(path), write, overwrite)


def points_by_slice(points: np.ndarray) -> dict[int, np.ndarray]:
    """Group (N, 3) (z, y, x) clicks (or (N, 2) on one slice, z = 0) by slice: {z: (k, 2) (y, x)}."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.size == 0:
        return {}
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise ValueError(f"expected (N, 3) or (N, 2) points, got shape {arr.shape}")
    if arr.shape[1] == 2:
        return {0: arr.copy()}
    z = _round_half_up(arr[:, 0]).astype(int)
    return {int(k): arr[z == k, 1:] for k in np.unique(z)}


def innermost_point(mask: np.ndarray) -> tuple[int, int]:
    """The pixel deepest inside a 2D object (argmax of its distance transform): a 'centre click'."""
    from scipy import ndimage as ndi

    dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(y), int(x)


def simulate_clicks(labels: np.ndarray, fraction: float = 0.15, seed: int = 0, slices=None,
                    max_total: int | None = None) -> np.ndarray:
    """Benchmark clicks at the innermost pixel of randomly chosen 2D objects (fixed seed).

    Default (the authors' protocol): on each slice, `fraction` of its objects, at least one.
    With `max_total` (a user-like budget, e.g. 50 clicks on 5 slices): objects are taken round-robin
    over the slices, in random order within each slice, until the budget is spent.
    """
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    zs = list(range(labels.shape[0])) if slices is None else list(slices)
    queues = []
    for z in zs:
        comp, n = ndi.label(labels[z] > 0)
        if n == 0:
            continue
        order = rng.permutation(np.arange(1, n + 1))
        if max_total is None:
            order = order[: max(1, int(round(fraction * n)))]
        queues.append((z, comp, list(order)))
    pts = []
    while any(q for _, _, q in queues) and (max_total is None or len(pts) < max_total):
        for z, comp, q in queues:
            if q and (max_total is None or len(pts) < max_total):
                pts.append((z, *innermost_point(comp == q.pop(0))))
    pts.sort()
    return np.asarray(pts, dtype=float).reshape(-1, 3)
