"""napari sample data: the real Lucchi CA1 FIB-SEM crop and a synthetic EM-like volume.

Each returns [image layer, ground-truth instances layer] with the voxel size as `scale` (nm).
"""

from __future__ import annotations


def _units(n: int) -> dict:
    from ._reader import _layers_support_units

    return {"units": ("nm",) * n} if _layers_support_units() else {}


def make_lucchi_sample() -> list[tuple]:
    """Lucchi et al. CA1 hippocampus FIB-SEM crop (5 nm isotropic) with ground-truth instances."""
    from .sample import load_lucchi_sample

    image, instances, voxel_size, citation = load_lucchi_sample()
    scale = tuple(float(v) for v in voxel_size)
    md = {"mito_wda": {"sample": "lucchi", "citation": citation, "voxel_size_nm": list(scale)}}
    units = _units(len(scale))
    return [
        (image, {"name": "Lucchi CA1 FIB-SEM", "scale": scale, "metadata": md, **units}, "image"),
        (instances, {"name": "Lucchi ground truth", "scale": scale, "metadata": md, "opacity": 0.5, **units},
         "labels"),
    ]


def make_synthetic_sample(shape=(8, 128, 128), n_objects: int = 12, seed: int = 0) -> list[tuple]:
    """A small synthetic EM-like stack with mitochondria-like objects (for trying the workflow quickly)."""
    from .core.data.synthetic import make_volume

    image, instances = make_volume(shape=tuple(shape), n_objects=n_objects, seed=seed)
    md = {"mito_wda": {"sample": "synthetic", "seed": seed}}
    return [
        (image, {"name": "synthetic EM", "metadata": md}, "image"),
        (instances, {"name": "synthetic ground truth", "metadata": md, "opacity": 0.5, "visible": False}, "labels"),
    ]
