"""napari reader for zarr stores and HDF5 files: lazy layers (dask arrays), never read whole.

napari then reads only the slices it shows. A finished segmentation store written by this plugin
(`mito-wda predict ... -o OUT.zarr`) opens as a lazy Labels layer; any other volume as a lazy image.
"""

from __future__ import annotations

import os
from pathlib import Path


def _is_lazy_volume(path) -> bool:
    from .core.volumes.lazy_io import volume_kind

    return isinstance(path, (str, os.PathLike)) and volume_kind(path) in ("zarr", "hdf5")


def get_reader(path):
    """Return :func:`read_lazy` for zarr stores / HDF5 files, else None (napari tries other readers)."""
    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    if not paths or not all(_is_lazy_volume(p) for p in paths):
        return None
    return read_lazy


def _scale_meta(voxel, ndim: int) -> dict:
    from ._reader import _layers_support_units

    scale = tuple(float(v) for v in voxel)[-ndim:] if voxel else (1.0,) * ndim
    meta = {"scale": scale}
    if voxel and _layers_support_units():
        meta["units"] = ("nm",) * ndim
    return meta


def labels_layer_data(store: str | os.PathLike):
    """(dask labels, layer kwargs) of a finished segmentation store, lazily."""
    import dask.array as da

    from .core.volumes.chunked import read_labels

    arr, voxel = read_labels(store)
    data = da.from_zarr(arr)
    meta = {"name": Path(store).stem, "metadata": {"mito_wda": {"labels_store": str(store), "voxel_size_nm": voxel}}}
    return data, meta | _scale_meta(voxel, 3)


def labels_on_image(store: str | os.PathLike, scale, translate=None, name: str | None = None):
    """(dask labels, add_labels kwargs) of a finished store, placed on the image it was made from
    (the image layer's scale and translate win over what the store records)."""
    data, meta = labels_layer_data(store)
    meta.pop("units", None)
    meta["scale"] = tuple(scale)
    if translate is not None:
        meta["translate"] = tuple(translate)
    if name is not None:
        meta["name"] = name
    return data, meta


def _is_segmentation_store(path: Path) -> bool:
    try:
        import zarr

        node = zarr.open(str(path), mode="r")
        return isinstance(node, zarr.Group) and "mito_wda" in node.attrs and "labels" in node
    except Exception:
        return False


def read_lazy(path) -> list[tuple]:
    """One lazy layer per path: Labels for a finished segmentation store, Image otherwise."""
    import dask.array as da
    import numpy as np

    from .core.volumes.lazy_io import open_volume

    layers = []
    for p in list(path) if isinstance(path, (list, tuple)) else [path]:
        p = Path(p)
        if p.suffix.lower() == ".zarr" and _is_segmentation_store(p):
            data, meta = labels_layer_data(p)
            layers.append((data, meta, "labels"))
            continue
        vol = open_volume(p)  # InputError (a ValueError) with a clear message on a bad file
        data = da.from_array(vol.array, chunks=vol.chunks[-vol.array.ndim:] if vol.chunks else "auto")
        if vol.array.ndim == 3 and data.shape[0] == 1:
            data = data[0]
        meta = {
            "name": p.stem,
            "metadata": {"mito_wda": {"source_path": str(p), "dataset": vol.dataset,
                                      "voxel_size_nm": list(vol.voxel_size) if vol.voxel_size else None}},
        } | _scale_meta(vol.voxel_size, data.ndim)
        if np.dtype(vol.dtype).kind in "ui":  # napari would otherwise compute the range over the data
            info = np.iinfo(vol.dtype)
            meta["contrast_limits"] = (float(info.min), float(info.max))
        layers.append((data, meta, "image"))
    return layers
