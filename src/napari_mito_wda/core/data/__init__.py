"""Data in and out: TIFF stacks with their voxel size, image checks and normalisation, atomic writes
(labels TIFF for ImageJ, JSON), model checkpoints (weights, settings, model card, replay set; the
shipped model), pixel sizes (the image's and the model's, and their checks), EM-like synthetic volumes
with a controllable domain shift, and the provenance stamped on every output.
"""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".io": ["InputError", "Volume", "read_volume", "validate_image", "normalize_slice", "normalize_slices",
            "labels_dtype", "write_labels_tiff", "write_json", "atomic_write"],
    ".checkpoint": ["CheckpointError", "LoadedModel", "load_checkpoint", "load_model", "save_checkpoint",
                    "default_model_path", "file_sha256"],
    ".pixel_size": ["check_pixel_size", "model_pixel_size"],
    ".synthetic": ["Domain", "SOURCE", "TARGET", "make_volume", "make_slice", "make_pair"],
    ".provenance": ["git_commit", "machine", "now_iso"],  # provenance(): from .provenance (a module too)
})
