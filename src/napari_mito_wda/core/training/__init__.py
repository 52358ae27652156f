"""Supervised training: the training slices and loop (``fit``, ``SlicePlanes``, ``crop_sample``,
``seg_loss``), augmentation, the detection targets (instance centres, Gaussian centre heatmaps, count
estimates) and ``pretrain``, the recipe that made the shipped source model. The adaptation reuses the
slices, crops and losses.
"""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".supervised": ["IGNORE", "FitSettings", "TrainReport", "SlicePlanes", "prepare_slices", "crop_sample",
                    "sample_batch", "seg_loss", "val_dice", "fit"],
    ".augment": ["random_crop", "dihedral", "intensity"],
    ".targets": ["instance_centres", "centre_heatmap", "peak_mass", "count_estimate"],
    ".pretrain": ["replay_set", "class_prototypes"],  # pretrain(): from .pretrain (a module too)
})
