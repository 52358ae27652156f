"""Lazy (Z, Y, X) volumes: TIFF, zarr (v2 and v3) and HDF5 read region by region, never whole.

A :class:`LazyVolume` holds only the path and what to open; the file is opened on first access in
each process (so the object pickles small and travels to dask workers) and every read is a region.
TIFF goes through tifffile's zarr interface, which reads only the strips/tiles a region touches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.io import (
    MAX_PIXEL_NM,
    MIN_PIXEL_NM,
    NO_PAGES,
    InputError,
    check_stack_shape,
    check_tiff_path,
    not_a_tiff,
    quiet_tifffile,
    tiff_spacing,
    unit_to_nm,
)

TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIXES = (".zarr", ".zr", ".ome.zarr")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".n5h5")


def volume_kind(path: str | os.PathLike) -> str | None:
    """'tiff', 'zarr' or 'hdf5' from the name (a zarr store is a folder), None otherwise."""
    name = str(path).rstrip("/").lower()
    if name.endswith(TIFF_SUFFIXES):
        return "tiff"
    markers = ("zarr.json", ".zarray", ".zgroup")
    if name.endswith(ZARR_SUFFIXES) or (Path(path).is_dir() and any((Path(path) / m).exists() for m in markers)):
        return "zarr"
    if name.endswith(HDF5_SUFFIXES):
        return "hdf5"
    return None


@dataclass
class LazyVolume:
    """A 2D/3D image on disk (or any array-like) read as (Z, Y, X) regions."""

    path: str | None
    kind: str  # "tiff", "zarr", "hdf5" or "array"
    dataset: str | None
    shape: tuple[int, int, int]
    dtype: np.dtype
    voxel_size: tuple[float, float, float] | None = None
    chunks: tuple[int, int, int] | None = None  # the storage chunks, when the format has them
    _array: object = field(default=None, repr=False, compare=False)
    _squeeze: bool = False  # stored as 2D (Y, X)

    def __getstate__(self):
        state = dict(self.__dict__)
        if self.kind != "array":
            state["_array"] = None  # reopened on the worker: file handles do not pickle
        return state

    @property
    def array(self):
        if self._array is None:
            self._array = _open_array(self.path, self.kind, self.dataset)[0]
        return self._array

    def read(self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int, step: tuple[int, int] = (1, 1)) -> np.ndarray:
        """The region [z0:z1, y0:y1:step_y, x0:x1:step_x] as a numpy (Z, Y, X) array."""
        sy, sx = step
        if self._squeeze:
            out = np.asarray(self.array[y0:y1:sy, x0:x1:sx])[None][z0:z1]
        else:
            out = np.asarray(self.array[z0:z1, y0:y1:sy, x0:x1:sx])
        return out

    def describe(self) -> str:
        where = f"{self.path}" + (f" [{self.dataset}]" if self.dataset else "")
        return f"{where}: {self.kind}, {self.shape} {np.dtype(self.dtype).name}"


def _open_array(path: str, kind: str, dataset: str | None):
    """(array-like, voxel size or None, storage chunks or None, dataset name)."""
    if kind == "tiff":
        import tifffile
        import zarr

        check_tiff_path(Path(path))
        try:
            with quiet_tifffile():
                with tifffile.TiffFile(path) as tif:
                    voxel = tiff_spacing(tif)
                store = tifffile.imread(path, aszarr=True)
                arr = zarr.open(store, mode="r")
        except (IndexError, KeyError) as exc:  # tifffile on a file without a single image page
            raise InputError(NO_PAGES.format(path=path)) from exc
        except (tifffile.TiffFileError, ValueError, OSError) as exc:
            raise InputError(not_a_tiff(path, exc)) from exc
        if not hasattr(arr, "shape"):  # a pyramid: level 0 is the full resolution
            arr = arr["0"]
        return arr, voxel, tuple(arr.chunks), None
    if kind == "zarr":
        import zarr

        try:
            node = zarr.open(path, mode="r")
        except Exception as exc:  # zarr raises several types for a folder that is not a store
            why = " ".join(str(exc).split())
            raise InputError(f"{path}: cannot be opened as a zarr store ({why}); give the folder of a zarr array "
                             "or group (zarr v2/v3, OME-Zarr).") from exc
        arr, name = _pick_zarr_array(node, dataset, path)
        voxel = _voxel_from_attrs(dict(arr.attrs)) or _voxel_from_attrs(dict(node.attrs), name)
        return arr, voxel, tuple(arr.chunks), name
    if kind == "hdf5":
        import h5py

        try:
            fh = h5py.File(path, "r")
        except OSError as exc:
            why = " ".join(str(exc).split())
            raise InputError(f"{path}: cannot be opened as HDF5 ({why}); check that it is an HDF5 file and copy "
                             "it again.") from exc
        names = []
        fh.visititems(lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) and obj.ndim in (2, 3) else None)
        if dataset is None:
            if len(names) != 1:
                raise InputError(f"{path}: holds {len(names)} image datasets {names}; name one (--dataset).")
            dataset = names[0]
        if dataset not in fh or not isinstance(fh[dataset], h5py.Dataset):
            raise InputError(f"{path}: no dataset {dataset!r}; it holds {names}.")
        ds = fh[dataset]
        return ds, _voxel_from_attrs(dict(ds.attrs)), ds.chunks, dataset
    raise InputError(f"{path}: not a TIFF, zarr or HDF5 volume (by its name).")


def _pick_zarr_array(node, dataset: str | None, path: str):
    import zarr

    if isinstance(node, zarr.Array):
        return node, None
    if dataset is not None:
        if dataset not in node:
            raise InputError(f"{path}: no array {dataset!r} in this zarr store.")
        return node[dataset], dataset
    multiscales = node.attrs.get("multiscales") or node.attrs.get("ome", {}).get("multiscales")
    if multiscales:  # OME-Zarr: the first dataset is the full resolution
        name = multiscales[0]["datasets"][0]["path"]
        return node[name], name
    names = [k for k, v in node.arrays() if v.ndim in (2, 3)]
    if len(names) != 1:
        raise InputError(f"{path}: holds {len(names)} image arrays {sorted(names)}; name one (--dataset).")
    return node[names[0]], names[0]


def _voxel_from_attrs(attrs: dict, dataset: str | None = None) -> tuple[float, float, float] | None:
    """Voxel size in nm from the attributes, if recorded and plausible (io.tiff_spacing's range)."""
    try:
        voxel = _attrs_voxel(attrs, dataset)
    except (TypeError, ValueError, KeyError, AttributeError):  # a malformed attribute: as if absent
        return None
    if voxel is None or not all(MIN_PIXEL_NM <= v <= MAX_PIXEL_NM for v in voxel[1:]):
        return None
    return voxel


def _attrs_voxel(attrs: dict, dataset: str | None) -> tuple[float, float, float] | None:
    """Our own attribute (nm), the HDF5 conventions (ilastik/Fiji element_size_um; a `resolution` or
    `pixel_size` in nm, as CREMI writes it), or OME-Zarr multiscales (with their axes' units)."""
    for key, to_nm in (("voxel_size_nm", 1.0), ("element_size_um", 1000.0), ("resolution", 1.0),
                       ("pixel_size", 1.0)):
        if key in attrs:
            raw = attrs[key]
            v = [float(x) * to_nm for x in (raw if np.ndim(raw) else [raw])]
            if len(v) == 1:  # one in-plane size
                v = [v[0]] * 2
            return tuple(v[-3:]) if len(v) >= 3 else (v[-1], *v[-2:])
    ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if ms:
        axes = ms[0].get("axes", [])
        for ds in ms[0].get("datasets", []):
            if dataset is None or ds.get("path") == dataset:
                for t in ds.get("coordinateTransformations", []):
                    if t.get("type") == "scale":
                        s = [float(x) for x in t["scale"]][-3:]
                        units = [a.get("unit") if isinstance(a, dict) else None for a in axes][-3:]
                        f = [unit_to_nm(u) or 1.0 for u in units] if len(units) == 3 else [1.0] * 3
                        return tuple(a * b for a, b in zip(s, f)) if len(s) == 3 else None
    return None


def open_volume(source, dataset: str | None = None) -> LazyVolume:
    """A lazy volume from a path (TIFF, zarr, HDF5), an array-like, or an existing LazyVolume."""
    if isinstance(source, LazyVolume):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder; check the path.")
        kind = volume_kind(path)
        if kind is None:
            raise InputError(f"{path}: not a TIFF, zarr or HDF5 volume (use .tif, .zarr or .h5).")
        arr, voxel, chunks, name = _open_array(str(path), kind, dataset)
        shape, squeeze = check_stack_shape(arr.shape, arr.dtype, str(path))
        if chunks is not None and squeeze:
            chunks = (1, *chunks)
        return LazyVolume(str(path), kind, name, shape, np.dtype(arr.dtype), voxel, chunks, arr, squeeze)
    if hasattr(source, "shape") and hasattr(source, "dtype") and hasattr(source, "__getitem__"):
        shape, squeeze = check_stack_shape(source.shape, source.dtype, "array")
        return LazyVolume(None, "array", None, shape, np.dtype(source.dtype), None, None, source, squeeze)
    raise InputError(f"cannot read a volume from {type(source).__name__}; give a path or an array.")
