"""The real EM sample that ships with the package (a Lucchi CA1 crop; see data/SAMPLE_README.md)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

CITATION = (
    "Lucchi et al., Supervoxel-Based Segmentation of Mitochondria in EM Image Stacks with Learned Shape "
    "Features, IEEE TMI 31(2), 2012 (EPFL CA1 hippocampus FIB-SEM)"
)


def data_dir() -> Path:
    return Path(str(resources.files("napari_mito_wda") / "data"))


def sample_paths() -> dict[str, Path]:
    d = data_dir()
    return {
        "image": d / "lucchi_sample.tif",
        "instances": d / "lucchi_sample_instances.tif",
        "clicks": d / "lucchi_sample_clicks.csv",
    }


def load_lucchi_sample() -> tuple[np.ndarray, np.ndarray, tuple[float, float, float], str]:
    """(image uint8 (Z,Y,X), ground-truth instances uint16, voxel size (z,y,x) nm, citation)."""
    from .core.data.io import read_volume

    paths = sample_paths()
    img = read_volume(paths["image"])
    inst = read_volume(paths["instances"])
    return img.data, inst.data, img.voxel_size or (5.0, 5.0, 5.0), CITATION
