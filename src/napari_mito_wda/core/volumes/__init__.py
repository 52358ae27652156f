"""Volumes larger than memory: TIFF/zarr/HDF5 read region by region (``open_volume``), chunked
segmentation on dask.distributed into a resumable zarr store (``segment_to_zarr``), exact stitching of
instances across chunk faces, the dask runner with its allocator settings, and EM-like synthetic
volumes of any size made on demand. See docs/large-volumes.md.
"""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".lazy_io": ["LazyVolume", "open_volume", "volume_kind"],
    ".chunked": ["ChunkSettings", "ChunkedResult", "Progress", "segment_to_zarr", "segment_to_zarr_iter",
                 "read_labels"],
    ".stitching": ["ChunkInstances", "chunk_instances", "stitch", "instances_in_chunks", "window_box"],
    ".runner": ["ClusterSettings", "Runner", "WORKER_MALLOC_ENV", "worker_malloc_env"],
    ".alloc": ["keep_memory_for_inference"],
    ".synthetic_lazy": ["LazySyntheticEM"],
})
