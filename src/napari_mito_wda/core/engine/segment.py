"""The whole segmentation pipeline on an in-memory stack: normalise, predict, make instances."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..data.checkpoint import LoadedModel, load_model
from ..data.io import labels_dtype, read_volume, validate_image
from ..data.pixel_size import image_and_pixel_size, pixel_scale
from .device import DeviceInfo, pick_device
from .inference import predict_volume
from .instances import MIN_SIZE, instances_volume, sizes_at_scale
from .orthoplanes import check as check_orthoplanes


@dataclass
class Segmentation:
    labels: np.ndarray  # (Z, Y, X) instance ids, uint16 or uint32
    prob: np.ndarray    # (Z, Y, X) float32 mitochondria probability
    heat: np.ndarray    # (Z, Y, X) float32 centre heatmap


def segment_volume(
    image: np.ndarray,
    model: LoadedModel | None = None,
    device: DeviceInfo | None = None,
    progress: Callable[[int, int], None] | None = None,
    flips: bool = False,
    link_3d: bool = False,
    threshold: float = 0.5,
    min_size: int = MIN_SIZE,
    max_core: int = 1024,
    pixel_size: float | None = None,
    orthoplanes: bool = False,
    voxel_size: tuple[float, float, float] | None = None,
) -> Segmentation:
    """Instances of a raw (Z, Y, X) or (Y, X) image with the given (default: shipped) model.

    image: an array, a `Volume` (`read_volume`) or a TIFF path. pixel_size: the image's in-plane nm
    per pixel; default: a Volume's or file's metadata, none for an array. When both it and the model's
    (its card) are known, slices are rescaled to the model's pixel size for the network; the outputs
    are on the image's own grid either way. The same tiling as the chunked path (max_core: a tile's
    core in working pixels, i.e. memory; the result does not depend on it), so a TIFF and a zarr store
    of one volume give the same instances.

    orthoplanes=True: predict along xy, xz and yz and average the probabilities (`orthoplanes.py`), for
    near-isotropic stacks only: InputError when a side is too short or the voxels are anisotropic: z of
    voxel_size (z, y, x nm; default: a Volume's or file's; used for this check only) against pixel_size
    when given, else against voxel_size's y, x. About 3x the prediction time.
    """
    if isinstance(image, (str, os.PathLike)):
        image = read_volume(image)
    if voxel_size is None:
        voxel_size = getattr(image, "voxel_size", None)
    given_pixel = pixel_size  # the isotropy check: the user's pixel size, else voxel_size's in-plane one
    image, pixel_size = image_and_pixel_size(image, pixel_size)
    image = validate_image(image)
    device = device or pick_device()
    model = model or load_model(device=device.device)
    if orthoplanes:  # before any prediction: a refusal costs nothing
        check_orthoplanes(image.shape, model.model.config, voxel_size, given_pixel)
    scale = pixel_scale(pixel_size, model.pixel_size_nm)
    prob, heat = predict_volume(model.model, image, device, progress=progress, flips=flips,
                                max_core=max_core, scale=scale, orthoplanes=orthoplanes)
    labels = instances_volume(prob, heat, link_3d=link_3d, threshold=threshold, **sizes_at_scale(scale, min_size))
    return Segmentation(labels=labels.astype(labels_dtype(labels)), prob=prob, heat=heat)
