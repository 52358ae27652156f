"""Small helpers shared by the napari-side modules."""

from __future__ import annotations


def _unwrap(obj):
    """napari hands plugins proxies (PublicOnlyProxy) of the viewer and its layers; compare the originals."""
    return getattr(obj, "__wrapped__", obj)


def same_layer(a, b) -> bool:
    return a is not None and b is not None and _unwrap(a) is _unwrap(b)


def layer_named(viewer, name: str):
    """The viewer's layer called `name`, or None (also for an empty name)."""
    return viewer.layers[name] if name and name in viewer.layers else None


def points_in_image_coords(points_layer, image) -> list[list[float]]:
    """A Points layer's points as the image's voxel coordinates (z, y, x) or (y, x), via world coordinates."""
    import numpy as np

    if points_layer is None or len(points_layer.data) == 0:
        return []
    out = []
    for p in np.asarray(points_layer.data):
        world = points_layer.data_to_world(p)
        coords = image.world_to_data(world) if image is not None else p
        out.append([round(float(c), 3) for c in coords])
    return out
