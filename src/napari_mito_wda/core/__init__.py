"""The engine of napari-mito-wda: Qt- and napari-free, usable from scripts, the CLI and the plugin.

Packages by job: ``engine`` (the network, devices, tiled inference, instances, ``segment_volume``),
``training`` (supervised training, augmentation, detection targets, the source-model recipe),
``adapt`` (the weakly supervised domain adaptation from centre clicks), ``volumes`` (volumes larger
than memory: lazy IO, chunked runs on dask, stitching), ``data`` (TIFF IO, checkpoints, synthetic
volumes, provenance) and ``evaluation`` (metrics, figures). The short import path of the public API
is the top-level package: ``from napari_mito_wda import read_volume, segment_volume, adapt``.
"""
