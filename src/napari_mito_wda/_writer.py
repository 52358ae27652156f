"""napari writer: one labels layer -> instance TIFF (ImageJ-calibrated) + JSON provenance sidecar.

Overwriting: napari's own "Save layer" dialog already asks before replacing an existing file, but
``viewer.layers.save(path)`` and scripted saves do not, and the JSON sidecar is never part of that
question. So this writer keeps the safe behaviour of ``core.data.io``: if the TIFF or its sidecar exists it
raises ``FileExistsError`` with a clear message and writes nothing (napari shows the message). A user
who confirmed "replace" in the dialog therefore has to delete the old file or pick a new name; losing
a curated segmentation by a mis-click is worse than that extra step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TIFF_SUFFIXES = (".tif", ".tiff")

# Length units napari layers may carry (pint names) -> nanometres. Unitless ("pixel") is assumed nm.
_TO_NM = {
    "nanometer": 1.0, "nm": 1.0, "pixel": 1.0, "": 1.0,
    "micrometer": 1e3, "micron": 1e3, "um": 1e3, "µm": 1e3,
    "millimeter": 1e6, "mm": 1e6,
    "angstrom": 0.1,
}


def voxel_size_from_layer(scale, units=None) -> tuple[float, float, float] | None:
    """Voxel size (z, y, x) in nm from a layer's scale (and units); None when the scale is all ones.

    A 2D layer (y, x) gets z = x spacing (irrelevant for one slice, but keeps ImageJ calibration sane).
    """
    scale = [float(s) for s in scale]
    if len(scale) not in (2, 3):
        return None
    if units is not None:
        factors = [_TO_NM.get(str(u).strip().lower(), 1.0) for u in units][-len(scale):]
        if len(factors) == len(scale):
            scale = [s * f for s, f in zip(scale, factors)]
    if np.allclose(scale, 1.0):
        return None
    if len(scale) == 2:
        scale = [scale[1], *scale]
    return (scale[0], scale[1], scale[2])


def sidecar_path(path: str | Path) -> Path:
    """`<name>.json` next to `<name>.tif`."""
    return Path(path).with_suffix(".json")


def _as_tiff_path(path: str | Path) -> Path:
    path = Path(path)
    return path if path.suffix.lower() in TIFF_SUFFIXES else path.with_name(path.name + ".tif")


def save_labels_with_sidecar(
    path: str | Path,
    labels,
    *,
    scale=(1.0, 1.0, 1.0),
    units=None,
    layer_name: str = "labels",
    extra: dict | None = None,
    overwrite: bool = False,
) -> list[str]:
    """Write labels via ``core.data.io.write_labels_tiff`` plus a JSON sidecar; return both paths.

    Refuses (FileExistsError, nothing written) when either file exists and overwrite is False.
    """
    from . import __version__
    from .core.data.io import InputError, write_json, write_labels_tiff
    from .core.data.provenance import machine, now_iso

    path = _as_tiff_path(path)
    side = sidecar_path(path)
    if not overwrite:
        for p in (path, side):
            if p.exists():
                raise FileExistsError(
                    f"{p} already exists; nothing was written. Choose another file name or delete the old file."
                )
    arr = np.asarray(labels)
    if arr.ndim not in (2, 3):
        raise InputError(f"layer {layer_name!r}: labels must be 2D or 3D to export, got shape {arr.shape}.")
    voxel = voxel_size_from_layer(scale, units)
    payload = {
        "software": "napari-mito-wda",
        "plugin_version": __version__,
        "date": now_iso(),
        "machine": machine(),
        "layer_name": layer_name,
        "file": path.name,
        "shape_zyx": list(arr.shape if arr.ndim == 3 else (1, *arr.shape)),
        "voxel_size_nm_zyx": list(voxel) if voxel else None,
        "n_instances": int(np.unique(arr[arr > 0]).size) if arr.size else 0,
    }
    if extra:
        payload.update(extra)
    out = write_labels_tiff(
        path, arr, voxel_size=voxel, overwrite=overwrite,
        metadata={"software": "napari-mito-wda", "plugin_version": __version__, "layer_name": layer_name},
    )
    write_json(side, payload, overwrite=overwrite)
    return [str(out), str(side)]


def _jsonable(obj):
    """A JSON-safe copy of layer metadata (numpy values, paths ... become numbers/lists/strings)."""
    import json

    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)

    return json.loads(json.dumps(obj, default=default))


def write_labels(path: str, data, meta: dict) -> list[str]:
    """npe2 single-layer writer for a labels layer; returns the paths written (TIFF, JSON).

    File > Save keeps the same provenance as the widget's export: the plugin's layer metadata (model,
    adaptation runs, image) goes into the sidecar.
    """
    prov = _jsonable(dict((meta.get("metadata") or {}).get("mito_wda", {})))
    extra = {"source": "napari writer"}
    extra.update({k: prov[k] for k in ("image", "model_path", "device", "adaptation") if k in prov})
    if prov:
        extra["layer_provenance"] = prov
    return save_labels_with_sidecar(
        path,
        data,
        scale=meta.get("scale", (1.0,) * np.ndim(data)),
        units=meta.get("units"),
        layer_name=str(meta.get("name", "labels")),
        extra=extra,
        overwrite=False,
    )
