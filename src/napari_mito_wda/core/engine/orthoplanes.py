"""Orthoplane inference: the 2D network along xy, xz and yz of a near-isotropic stack, probabilities averaged.

As empanada does for isotropic FIB-SEM: each voxel is predicted in three planes through it, so an object
cut tangentially in one plane (a faint, ambiguous section) is seen across it in another. Each orientation
is the ordinary in-memory path (`inference.predict_volume`, its tiling, flips and pixel-size rescaling)
over the volume transposed so that its planes are the 2D images, and its maps are transposed back.

Which maps are combined:

* probabilities: a weighted mean, xy 1/2, xz and yz 1/4 each (WEIGHTS). The planes across z are only Z
  voxels tall (80 on Lucchi: 40 working pixels, less than the network's receptive field) and, alone, break
  each slice's objects into twice as many fragments as xy does; a plain mean (1/3 each) let enough of them
  through the threshold to cost PQ while it raised Dice. Chosen on Lucchi *train*, the shipped model: plain
  mean Dice +0.064, AJI +0.060, PQ -0.068 over xy only; 1/2, 1/4, 1/4: +0.067, +0.075, +0.017 (the test
  stack agrees: docs/benchmarks.md "Orthoplanes", docs/journal.md);
* centre heatmap: the xy one alone. The instance step splits each xy slice at the peaks of its heatmap,
  which the network puts at the centre of the object's section *in that plane*. In an xz or yz plane the
  peak sits at the centre of the object's section across z, i.e. only on the slices near the object's
  middle in z: averaged in, it fades the seeds of every other slice and pulls them towards the object's
  3D centre. Measured (Lucchi, shipped model): averaging the heatmaps too cost AJI 0.011 and PQ 0.007 on
  train, 0.006 and 0.007 on test.

Intensities are normalised once per xy slice (the arithmetic of the xy-only path) and every orientation
sees those same values, so the xy orientation is exactly the xy-only prediction. One scale serves all
three planes only when the voxels are near-isotropic, hence `refusal`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from ..data.io import InputError, normalize_slices, validate_image
from ..data.pixel_size import in_plane
from .model import ModelConfig

# (Z, Y, X) transposed by these axes gives a stack whose 2D items are the planes: (Z, Y, X) itself, the
# (Z, X) planes at fixed y, the (Z, Y) planes at fixed x.
PLANES = {"xy": (0, 1, 2), "xz": (1, 0, 2), "yz": (2, 0, 1)}
WEIGHTS = {"xy": 0.5, "xz": 0.25, "yz": 0.25}  # of each orientation's probability (module doc)
# Z spacing over in-plane spacing (either way) above which one pixel scale does not fit the xz/yz planes
# (e.g. VNC III: 50 nm sections of 4.6 nm pixels, 11x; Lucchi's FIB-SEM about 1x).
MAX_ANISOTROPY = 1.5
# Fewest voxels along any side: the planes across z have Z / downsample working pixels and the network
# pools 2**depth-fold; below 32 (16 working pixels for the shipped model) they are mostly padding.
MIN_SIDE = 32
# Full-resolution voxels above which "auto" leaves orthoplanes off (asked for, any size runs): they take
# about 3.4x the network work of xy only and hold a transposed copy of the volume; 4x the Lucchi test stack.
AUTO_MAX_VOXELS = 4 * 80 * 768 * 1024
# The user's word (the CLI's auto / on / off, the widget's) -> `choice(wanted=)`; the cross views' too.
CHOICES = {"auto": None, "on": True, "off": False}


def min_side(config: ModelConfig) -> int:
    """Fewest voxels along each side: MIN_SIDE, or one pooling cell at the network's bottom if larger."""
    return max(MIN_SIDE, 2**config.depth * config.downsample)


def refusal(shape, config: ModelConfig, voxel_size=None, pixel_size: float | None = None) -> str | None:
    """Why orthoplanes cannot run on a stack of this shape and voxel size (z, y, x nm), or None if they can.

    pixel_size (the user's in-plane nm) overrides the voxel size's y, x; an unknown z spacing is allowed.
    """
    shape = tuple(int(s) for s in shape)
    need = min_side(config)
    if len(shape) != 3 or min(shape) < need:
        return (f"orthoplanes need a 3D stack of at least {need} voxels along each side (z, y, x), got "
                f"{' x '.join(map(str, shape))}; predict it slice by slice (xy only) instead.")
    xy = pixel_size or in_plane(voxel_size)
    z = z_spacing(voxel_size)
    if xy and z and max(z / xy, xy / z) > MAX_ANISOTROPY:
        return (f"orthoplanes are for near-isotropic voxels (z within {MAX_ANISOTROPY:g}x of the in-plane size); "
                f"this stack has {z:g} nm sections and {xy:g} nm pixels ({max(z / xy, xy / z):.1f}x); predict it "
                "slice by slice (xy only) instead.")
    return None


def choice(shape, config: ModelConfig, voxel_size=None, wanted: bool | None = None,
           pixel_size: float | None = None) -> tuple[bool, str]:
    """(predict along xy, xz and yz?, the reason shown). wanted: the user's word; None (auto): on when the
    voxel size says the stack is near-isotropic, `refusal` has nothing against it and it is not larger than
    AUTO_MAX_VOXELS. Why on by default where it can: on Lucchi test it added 0.06 Dice to the source model and
    0.015 to adapted ones (docs/benchmarks.md "Orthoplanes", "The annotation loop")."""
    if wanted is not None:
        return wanted, "xy, xz and yz planes (asked for)" if wanted else "xy slices only (orthoplanes off)"
    if reason := refusal(shape, config, voxel_size, pixel_size):
        return False, "xy slices only: " + reason.split(";")[0]
    if not ((pixel_size or in_plane(voxel_size)) and z_spacing(voxel_size)):
        return False, ("xy slices only (voxel size unknown; for near-isotropic data such as FIB-SEM ask for the "
                       "xz and yz planes too: --orthoplanes on, or the Orthoplanes box)")
    if math.prod(int(s) for s in shape) > AUTO_MAX_VOXELS:
        return False, ("xy slices only (the xz and yz planes of so large a stack take about 3x the time: ask for "
                       "them with --orthoplanes on, or the Orthoplanes box)")
    return True, "xy, xz and yz planes (near-isotropic voxels)"


def z_spacing(voxel_size) -> float | None:
    """The z spacing of a (z, y, x) voxel size when it is a positive finite number, else None (unknown)."""
    try:
        z = float(list(voxel_size)[0]) if voxel_size is not None and len(voxel_size) == 3 else None
    except (TypeError, ValueError):
        return None
    return z if z is not None and math.isfinite(z) and z > 0 else None


def check(shape, config: ModelConfig, voxel_size=None, pixel_size: float | None = None) -> None:
    """InputError saying why, when orthoplanes cannot run (`refusal`)."""
    reason = refusal(shape, config, voxel_size, pixel_size)
    if reason:
        raise InputError(reason)


def plane_maps(model, norm: np.ndarray, dev, planes=tuple(PLANES), progress: Callable | None = None,
               **kw) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(plane, probability, heatmap) of each orientation of a normalised (Z, Y, X) stack, on its (Z, Y, X) grid.

    progress(done, total) counts planes over all orientations; kw: `predict_volume`'s (flips, max_core,
    slices_per_call, scale).
    """
    from .inference import predict_volume  # (which calls back here when asked for orthoplanes)

    total = sum(norm.shape[PLANES[p][0]] for p in planes)
    done = 0
    for name in planes:
        axes = PLANES[name]
        # A contiguous copy: the tiles then read whole rows, not every X-th float (yz is 2x faster so).
        view = np.ascontiguousarray(norm.transpose(axes))
        step = (lambda d, n, base=done: progress(base + d, total)) if progress else None
        prob, heat = predict_volume(model, view, dev, progress=step, normalized=True, **kw)
        del view
        done += prob.shape[0]
        back = tuple(np.argsort(axes))
        yield name, prob.transpose(back), heat.transpose(back)


def predict_orthoplanes(model, volume: np.ndarray, dev, progress: Callable | None = None,
                        out_prob: np.ndarray | None = None, out_heat: np.ndarray | None = None,
                        normalized: bool = False, **kw) -> tuple[np.ndarray, np.ndarray]:
    """Probability (weighted mean over xy, xz, yz) and heatmap (xy's) of a raw (Z, Y, X) stack; module doc."""
    volume = validate_image(volume)
    check(volume.shape, model.config)
    norm = np.asarray(volume, np.float32) if normalized else normalize_slices(volume)
    prob = out_prob if out_prob is not None else np.zeros(volume.shape, np.float32)
    heat = out_heat if out_heat is not None else np.zeros(volume.shape, np.float32)
    for name, p, h in plane_maps(model, norm, dev, progress=progress, **kw):
        if name == "xy":
            np.multiply(p, WEIGHTS[name], out=prob)
            heat[...] = h
        else:
            prob += WEIGHTS[name] * p
    return prob, heat
