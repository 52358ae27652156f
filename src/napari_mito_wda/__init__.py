"""napari-mito-wda: mitochondria in EM volumes, and adaptation to a new microscope from centre clicks.

The Python API, importable from here (the engine lives in ``napari_mito_wda.core``, packages by job):

    from napari_mito_wda import read_volume, segment_volume, adapt, AdaptSettings, load_model

The names are imported on first use (PEP 562), so that importing the plugin does not import torch.
"""

from .core._lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".core.data.io": ["InputError", "read_volume", "write_labels_tiff"],
    ".core.data.checkpoint": ["CheckpointError", "LoadedModel", "load_checkpoint", "load_model",
                              "save_checkpoint"],
    ".core.engine.device": ["pick_device"],
    ".core.engine.segment": ["segment_volume"],
    ".core.adapt.points": ["read_points", "simulate_clicks", "write_points_csv"],
    ".core.adapt.suggest": ["suggest_points"],
    ".core.adapt.corrections": ["Corrections", "corrections_from_edit"],
    ".core.adapt.settings": ["AdaptSettings", "AdaptReport"],
    ".core.adapt.loop": ["adapt"],
    ".core.adapt.saving": ["save_adapted"],
    ".core.volumes.lazy_io": ["open_volume"],
    ".core.volumes.chunked": ["ChunkSettings", "segment_to_zarr", "read_labels"],
    ".core.volumes.runner": ["ClusterSettings"],
    ".core.evaluation.metrics": ["evaluate_volume", "format_table"],
    ".core.training.supervised": ["FitSettings"],
    ".core.training.pretrain": ["pretrain"],
})
