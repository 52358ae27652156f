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
