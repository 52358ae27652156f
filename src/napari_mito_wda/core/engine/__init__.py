"""The segmentation engine: the multitask 2D U-Net, the device it runs on, tiled inference (whole
slices, or exact regions with a halo for chunked runs), instances from the two heads, and
``segment_volume``, the whole pipeline in one call.
"""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".model": ["ModelConfig", "MultiTaskUNet", "count_parameters"],
    ".device": ["DeviceInfo", "pick_device", "cpu_has_native_bf16"],
    ".inference": ["predict_slice", "predict_volume", "predict_working", "to_working", "to_full"],
    ".tiling": ["predict_exact", "predict_region", "receptive_radius", "working_halo"],
    ".instances": ["instances_2d", "instances_volume", "link_slices"],
    ".segment": ["Segmentation", "segment_volume"],
})
