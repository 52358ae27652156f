"""Main-thread side of the live preview: write a worker's slice previews into napari layers in place.

Only the GUI thread calls these (from the worker's ``yielded`` signal). Layers keep the image's scale,
translation and units so that masks, heatmap and clicks stay aligned with the image.
"""

from __future__ import annotations

import numpy as np

from ._proofread import merge_planes
from ._util import same_layer

HEAT_SUFFIX = " centre heatmap"
TRUSTED_SUFFIX = " trusted (pseudo-labels)"
INSTANCES_SUFFIX = " instances"


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


def writable_data(layer):
    data = layer.data
    if not isinstance(data, np.ndarray) or not data.flags.writeable:
        layer.data = data = np.array(data)  # e.g. a read-only or lazy array opened from disk
    return data


def write_slices(layer, planes: dict[int, np.ndarray]) -> None:
    """Overwrite slices {z: (Y, X)} of a 2D or 3D layer in place and redraw it."""
    if not planes:
        return
    data = writable_data(layer)
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


def with_points_on_top(viewer, points_layer, func, *args, **kwargs):
    """Run func (which may add layers); keep the clicks layer on top and active so clicking goes on."""
    before = len(viewer.layers)
    active = viewer.layers.selection.active
    out = func(*args, **kwargs)
    if len(viewer.layers) != before and points_layer is not None:
        index = [i for i, ly in enumerate(viewer.layers) if same_layer(ly, points_layer)]
        if index and index[0] != len(viewer.layers) - 1:
            viewer.layers.move(index[0], len(viewer.layers))
        if active is not None and any(same_layer(active, ly) for ly in viewer.layers):
            viewer.layers.selection.active = active
    return out


def show_previews(viewer, points_layer, name: str, geom: dict, previews, maps: bool) -> tuple[str | None, int]:
    """Write a worker's slices into the image `name`'s instances layer (and the optional maps).

    Returns (None, or why the preview cannot be shown: a user's layer of that name is in the way; how
    many of the user's corrected objects were kept on those slices, _proofread.merge_planes).
    """
    layer, why = with_points_on_top(viewer, points_layer, get_or_add, viewer, f"{name}{INSTANCES_SUFFIX}",
                                    "labels", geom, np.uint32)
    if layer is None:
        return why, 0
    planes, kept = merge_planes(layer, instance_planes(previews))
    write_slices(layer, planes)
    if maps:
        heat, _ = with_points_on_top(viewer, points_layer, get_or_add, viewer, f"{name}{HEAT_SUFFIX}", "image",
                                     geom, np.uint8, colormap="magma", blending="additive",
                                     contrast_limits=(0, 255), opacity=0.6)
        trusted, _ = with_points_on_top(viewer, points_layer, get_or_add, viewer, f"{name}{TRUSTED_SUFFIX}",
                                        "labels", geom, np.uint8, colormap=trusted_colormap(), opacity=0.4,
                                        visible=False)
        if heat is not None:
            write_slices(heat, heat_planes(previews))
        if trusted is not None:
            write_slices(trusted, trusted_planes(previews))
    return None, kept
