"""Main-thread side of the live preview: write a worker's slice previews into napari layers in place.

Only the GUI thread calls these (from the worker's ``yielded`` signal). Layers keep the image's scale,
translation and units so that masks, heatmap and clicks stay aligned with the image.
"""

from __future__ import annotations

import numpy as np

HEAT_SUFFIX = " centre heatmap"
TRUSTED_SUFFIX = " trusted (pseudo-labels)"


def _geometry_kwargs(geom: dict) -> dict:
    kw = {"scale": geom["scale"], "translate": geom["translate"]}
    if geom.get("units") is not None:
        kw["units"] = geom["units"]
    return kw


def get_or_add(viewer, name: str, kind: str, geom: dict, dtype, **kwargs):
    """The layer called `name` when it is a `kind` layer of the image's shape; else a new empty one.

    Returns (layer, None), or (None, reason) when a layer of that name exists with the wrong type/shape
    (it is the user's: never replaced silently).
    """
    from napari.layers import Image, Labels

    shape = tuple(geom["shape"])
    if name in viewer.layers:
        layer = viewer.layers[name]
        if not isinstance(layer, Labels if kind == "labels" else Image):
            return None, f"layer {name!r} is not a {kind} layer; rename or delete it"
        if tuple(np.shape(layer.data)) != shape:
            return None, (f"layer {name!r} has shape {tuple(np.shape(layer.data))}, not the image's {shape}; "
                          "rename or delete it")
        return layer, None
    data = np.zeros(shape, dtype)
    add = viewer.add_labels if kind == "labels" else viewer.add_image
    return add(data, name=name, **_geometry_kwargs(geom), **kwargs), None


def _writable(layer):
    data = layer.data
    if not isinstance(data, np.ndarray) or not data.flags.writeable:
        layer.data = data = np.array(data)  # e.g. a read-only or lazy array opened from disk
    return data


def write_slices(layer, planes: dict[int, np.ndarray]) -> None:
    """Overwrite slices {z: (Y, X)} of a 2D or 3D layer in place and redraw it."""
    if not planes:
        return
    data = _writable(layer)
    top = max(int(p.max(initial=0)) for p in planes.values())
    if data.dtype.kind in "ui" and top > np.iinfo(data.dtype).max:
        layer.data = data = data.astype(np.uint32)
    for z, plane in planes.items():
        if data.ndim == 2:
            data[...] = plane
        else:
            data[z] = plane
    layer.refresh()


def instance_planes(previews) -> dict[int, np.ndarray]:
    """Preview instance ids made unique across the updated slices (each slice's ids start after the last)."""
    out, offset = {}, 0
    for p in previews:
        lab = p.labels.astype(np.uint32)
        out[p.z] = np.where(lab > 0, lab + offset, 0).astype(np.uint32)
        offset += int(lab.max(initial=0))
    return out


def heat_planes(previews) -> dict[int, np.ndarray]:
    """Centre heatmaps as uint8 0..255 (a quarter of the memory of float32 for a whole-volume layer)."""
    return {p.z: (np.clip(p.heat, 0.0, 1.0) * 255).astype(np.uint8) for p in previews if p.heat is not None}


def trusted_planes(previews) -> dict[int, np.ndarray]:
    return {p.z: p.trusted for p in previews if p.trusted is not None}


def trusted_colormap():
    """1 = confident mitochondrion (cyan), 2 = unsure, ignored by training (orange), 0 transparent."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: "cyan", 2: "orange"})
