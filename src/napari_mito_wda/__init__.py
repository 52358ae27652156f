"""napari-mito-wda."""
__version__ = "0.1.0"
