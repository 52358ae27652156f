"""napari reader: 2D/3D EM TIFF stacks -> one image layer with its physical scale.

Thin wrapper over :func:`napari_mito_wda.core.data.io.read_volume`; a file that cannot be segmented raises
``InputError`` with a message napari shows to the user as is.
"""

from __future__ import annotations

import os
from pathlib import Path

TIFF_SUFFIXES = (".tif", ".tiff")


def _is_tiff(path) -> bool:
    return isinstance(path, (str, os.PathLike)) and Path(path).suffix.lower() in TIFF_SUFFIXES


def get_reader(path):
    """Return :func:`read_tiff` when every path is a TIFF file, else None (napari tries other readers)."""
    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    if not paths or not all(_is_tiff(p) for p in paths):
        return None
    return read_tiff


def _layers_support_units() -> bool:
    """napari >= 0.6 layers take `units` (scale bar in nm); older versions would reject the key."""
    import inspect

    from napari.layers import Image

    return "units" in inspect.signature(Image.__init__).parameters


def _layer_name(path: str) -> str:
    return Path(path).stem


def read_tiff(path) -> list[tuple]:
    """Read one or several TIFFs; one image layer each, scaled by the voxel size (nm) when recorded."""
    from .core.data.io import read_volume

    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    layers = []
    for p in paths:
        vol = read_volume(p)  # InputError (a ValueError) with a clear message on a bad file
        data = vol.data
        voxel = tuple(float(v) for v in vol.voxel_size) if vol.voxel_size else (1.0, 1.0, 1.0)
        # read_volume always returns (Z, Y, X); a single slice is shown as a plain 2D image.
        if data.shape[0] == 1:
            data, scale = data[0], voxel[1:]
        else:
            scale = voxel
        meta = {
            "name": _layer_name(str(p)),
            "scale": scale,
            "metadata": {
                "mito_wda": {
                    "source_path": str(vol.path or p),
                    "voxel_size_nm": list(vol.voxel_size) if vol.voxel_size else None,
                }
            },
        }
        if vol.voxel_size and _layers_support_units():
            meta["units"] = ("nm",) * len(scale)
        layers.append((data, meta, "image"))
    return layers
