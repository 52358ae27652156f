"""Inference over slices and volumes, on the halo-exact tiling of `tiling.py`.

In memory and in chunks (`chunked.segment_to_zarr`) a slice is cut into the same kind of tiles: each
tile's core is kept and its halo covers the network's receptive field, so the answer does not depend
on where tiles or chunks fall, and a TIFF and a zarr store of one volume give the same instances.
Memory is bounded by the tile size (max_core working pixels a side) and by slices per call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data.io import intensity_range, sample_strides, validate_image
from .device import DeviceInfo, pick_device
from .model import MultiTaskUNet
from .rescale import resample_slice
from .tiling import _tiles_forward, predict_region


@torch.no_grad()
def predict_working(
    model: MultiTaskUNet,
    img: np.ndarray,
    dev: DeviceInfo,
    max_core: int = 1024,
    flips: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Seg logits and heatmap of a normalised 2D image already at the network's working resolution.

    The same tiles as `predict_volume` (adaptation's previews and pseudo-labels see what prediction will).
    """
    h, w = img.shape
    t = torch.as_tensor(np.asarray(img, dtype=np.float32)).to(dev.device)[None]
    logit, heat, _, _ = _tiles_forward(model, lambda r, c: t[:, r[0] : r[1], c[0] : c[1]], (h, w), (0, h - 1),
                                       (0, w - 1), dev, max_core, flips, 1)
    return logit[0, :h, :w].cpu().numpy(), heat[0, :h, :w].cpu().numpy()


def to_working(img: np.ndarray, factor: int, scale: float = 1.0) -> np.ndarray:
    """A 2D float image on the working grid: shrunk by an integer factor (area averaging), or resampled
    from its pixel size to the model's on the way (scale = image_nm / model_nm; `rescale.py`), as
    `predict_volume` does."""
    if scale != 1.0:
        return resample_slice(np.asarray(img, np.float32), scale / factor)
    if factor == 1:
        return img
    t = torch.from_numpy(np.ascontiguousarray(img))[None, None]
    return F.interpolate(t, scale_factor=1 / factor, mode="area", recompute_scale_factor=False)[0, 0].numpy()


def to_full(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a working-resolution map back to the slice shape."""
    if arr.shape == tuple(shape):
        return arr
    t = torch.from_numpy(np.ascontiguousarray(arr))[None, None]
    return F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0].numpy()


def _normaliser(raw: np.ndarray, ranges: list[tuple[float, float]]) -> Callable:
    """read(ya, yb, xa, xb) for `predict_region`: normalised windows of raw (nz, H, W) slices.

    The arithmetic of io.apply_range (float32 (x - lo) / (hi - lo), clipped; a constant slice -> 0),
    which the chunked path applies, in torch and in place: IEEE subtraction and division give the
    same bits, in fewer passes over the slice.
    """
    lo = torch.tensor([r[0] for r in ranges], dtype=torch.float32)[:, None, None]
    span = torch.tensor([r[1] - r[0] for r in ranges], dtype=torch.float32)[:, None, None]
    flat = [k for k, r in enumerate(ranges) if r[1] - r[0] < 1e-8]

    def read(ya, yb, xa, xb):
        # A copy even of float32 input: the in-place arithmetic below must not touch the caller's image.
        # (np.array copies read-only input too, which torch.from_numpy would warn about)
        x = torch.from_numpy(np.array(raw[:, ya:yb, xa:xb], dtype=np.float32))
        x = x.sub_(lo).div_(span).clamp_(0.0, 1.0)
        if flat:
            x[flat] = 0.0
        return x

    return read


def predict_slice(model: MultiTaskUNet, img: np.ndarray, dev: DeviceInfo | None = None, normalized: bool = False, **kw):
    """Mito probability and centre heatmap (both float32, slice shape) of one 2D slice."""
    prob, heat = predict_volume(model, np.asarray(img)[None], dev, normalized=normalized, **kw)
    return prob[0], heat[0]


def predict_volume(
    model: MultiTaskUNet,
    volume: np.ndarray,
    dev: DeviceInfo | None = None,
    progress: Callable[[int, int], None] | None = None,
    out_prob: np.ndarray | None = None,
    out_heat: np.ndarray | None = None,
    flips: bool = False,
    max_core: int = 1024,
    slices_per_call: int = 1,
    normalized: bool = False,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Predict every slice of a raw (Z, Y, X) stack; outputs may be given (e.g. memory-mapped arrays).

    Per slice: the intensity range of the strided subsample (as io.normalize_slice and the chunked
    path), then `tiling.predict_region` over the whole slice. normalized=True: slices already in [0, 1].
    scale = image_nm / model_nm (`rescale.pixel_scale`); the outputs are on the image's grid either way.
    """
    volume = validate_image(volume)
    dev = dev or pick_device()
    model.eval()
    Z, H, W = volume.shape
    prob = out_prob if out_prob is not None else np.zeros(volume.shape, np.float32)
    heat = out_heat if out_heat is not None else np.zeros(volume.shape, np.float32)
    sy, sx = sample_strides((H, W))
    step = max(1, slices_per_call)
    # One autocast context over the stack keeps the weights cast to bf16 from slice to slice (leaving
    # the outermost context drops them: ~1.3 ms a slice); only the network's ops are autocast-eligible.
    with dev.autocast():
        for z0 in range(0, Z, step):
            raw = volume[z0 : z0 + step]
            n = len(raw)
            if normalized:
                read = lambda ya, yb, xa, xb, raw=raw: np.asarray(raw[:, ya:yb, xa:xb], np.float32)  # noqa: E731
            else:
                read = _normaliser(raw, [intensity_range(s[::sy, ::sx]) for s in raw])
            # Write straight into the outputs when they are plain float32 arrays (else through a copy).
            dst = (prob[z0 : z0 + n], heat[z0 : z0 + n])
            direct = all(isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous
                         for a in dst)
            p, h = predict_region(model, read, (H, W), (0, H, 0, W), dev, max_core=max_core, flips=flips,
                                  batch_size=step, out=dst if direct else None, scale=scale)
            if not direct:
                prob[z0 : z0 + n], heat[z0 : z0 + n] = p, h
            if progress is not None:
                for z in range(z0, z0 + n):
                    progress(z + 1, Z)
    return prob, heat
