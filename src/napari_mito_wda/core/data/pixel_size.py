"""Pixel sizes: the image's (its file's metadata, or the user's word), the model's (its card), the checks.

The network sees mitochondria at the size it was trained on only when the image is rescaled from its
pixel size to the model's (core/engine/rescale.py). Sizes here are in-plane, in nm per pixel; an
unknown one is None and the image is used at the scale it arrives in.
"""

from __future__ import annotations

import math
import os

from .io import MAX_PIXEL_NM, MIN_PIXEL_NM, InputError, Volume

# Ratios this close to 1 keep the engine's integer path: the network is not that sensitive to object
# size, and the results stay bit-identical to those of a run without a pixel size.
SAME_SCALE = 0.02


def pixel_scale(image_nm: float | None, model_nm: float | None) -> float:
    """image_nm / model_nm (an image pixel spans this many model pixels); 1.0 when either is unknown or close."""
    if not image_nm or not model_nm:
        return 1.0
    s = float(image_nm) / float(model_nm)
    return 1.0 if abs(s - 1.0) < SAME_SCALE else s


def check_pixel_size(value, what: str = "pixel size") -> float | None:
    """A pixel size in nm as a float, None for None; InputError for <= 0, NaN, infinite or outside
    [MIN_PIXEL_NM, MAX_PIXEL_NM] (above, a 1 um pixel is wider than most mitochondria; below, atoms)."""
    if value is None:
        return None
    try:
        nm = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} takes a number of nm per pixel (e.g. 5), got {value!r}.") from None
    if not math.isfinite(nm) or nm <= 0:
        raise InputError(f"{what} takes a number of nm per pixel above 0 (e.g. 5), got {value!r}; leave it out "
                         "when unknown.")
    if not MIN_PIXEL_NM <= nm <= MAX_PIXEL_NM:
        raise InputError(f"{what}: {nm:g} nm per pixel is no EM image's (expected {MIN_PIXEL_NM:g} to "
                         f"{MAX_PIXEL_NM:g}); give it in nm, e.g. 5 for 5 nm (not 0.005 um, not 5000 pm).")
    return nm


def in_plane(voxel_size) -> float | None:
    """The in-plane pixel size (mean of y and x) of a (z, y, x) or (y, x) voxel size in nm, if plausible."""
    if not voxel_size or len(voxel_size) < 2:
        return None
    try:
        y, x = (float(v) for v in list(voxel_size)[-2:])
    except (TypeError, ValueError):
        return None
    nm = (y + x) / 2
    return nm if math.isfinite(nm) and MIN_PIXEL_NM <= nm <= MAX_PIXEL_NM else None


def model_pixel_size(meta: dict) -> float | None:
    """The pixel size a model was trained at, from its card (training_data.voxel_size_nm); None if absent."""
    return in_plane((meta.get("training_data") or {}).get("voxel_size_nm"))


def image_and_pixel_size(image, pixel_size=None):
    """(raw array, pixel size in nm or None) of an array, a Volume or a TIFF path given to the API.

    An explicit pixel_size wins; else a Volume's or file's metadata; an array alone has none.
    """
    if isinstance(image, (str, os.PathLike)):
        from .io import read_volume

        image = read_volume(image)
    nm = check_pixel_size(pixel_size, "pixel_size")
    if isinstance(image, Volume):
        return image.data, nm if nm is not None else in_plane(image.voxel_size)
    return image, nm


def resolve(flag: float | None, voxel_size, flag_name: str = "--pixel-size") -> tuple[float | None, str]:
    """(pixel size, where it came from): the user's value beats the file's metadata."""
    if flag is not None:
        return check_pixel_size(flag, flag_name), flag_name
    nm = in_plane(voxel_size)
    return nm, ("the file's metadata" if nm is not None else "")


def describe(image_nm: float | None, source: str, model_nm: float | None, hint: str = "--pixel-size NM") -> str:
    """One line saying which pixel size is used, where it came from, and what it does; or the notice."""
    if image_nm is None:
        target = f"the model's {model_nm:g} nm" if model_nm else "the model's pixel size"
        return (f"pixel size unknown: the image is used at the scale it arrives in (give {hint} to rescale it to "
                f"{target}).")
    if model_nm is None:
        return (f"pixel size {image_nm:g} nm ({source}); the model records none, so the image is used at the scale "
                "it arrives in.")
    scale = pixel_scale(image_nm, model_nm)
    what = ("no rescaling" if scale == 1.0
            else f"slices rescaled x{scale:.3g} for the network, results on the image's own grid")
    return f"pixel size {image_nm:g} nm ({source}); model trained at {model_nm:g} nm: {what}."
