"""Settings that suit the user's volume: crop, pseudo-labelled slices and rounds from its size, the
number of clicks and the time budget (auto_settings), each choice with the reason the user is shown.

The defaults were measured on 80 Lucchi slices of 768 x 1024 px; a biologist often clicks a small crop
(the shipped sample was 16 x 384 x 512), where a 256-px training crop is larger than the working image.
"""

from __future__ import annotations

import dataclasses

from ..data.pixel_size import in_plane
from ..engine.orthoplanes import CHOICES, MAX_ANISOTROPY, MIN_SIDE, z_spacing
from .heldout import held_out_count
from .settings import AdaptSettings

# One training iteration at crop 256 on the benchmark CPU (2 threads; docs/journal.md, the crop rows):
# the cost scales with the crop's area. Only the number of rounds a budget affords depends on it.
SEC_PER_ITER_256 = 1.38
# The measured default (390 iterations, 6 rounds) gives each round ~65 iterations; below ~50 a round's
# pseudo-labels are renewed before the model has learnt from them.
MIN_ITERS_PER_ROUND = 50
# A budget of fewer rounds is short: stage 1 (detector and embedding, no target segmentation) would take
# half of it, and a 256-px step costs 1.8x a 192-px one. Lucchi, 32-slice crop, 25 clicks, 3 minutes (seeds
# 0 / 1): warm-up + 1 round at 256 px 0.800 / 0.813; 1 round at 256 0.813 / 0.817; 1 round at 192
# 0.824 / 0.834; warm-up + 3 rounds at 192 0.812 / 0.826; 1 round at 128 0.821 / 0.805 (docs/journal.md).
MIN_ROUNDS_FOR_STAGE1 = 3
SHORT_BUDGET_CROP = 192
# Working voxels (Z x Y/f x X/f) up to which the quick preset predicts the xz / yz views: 4x the 80-slice Lucchi
# crop (80 x 384 x 512 working px, whose views take 59 s on 1 thread beside two other runs, ~32 s scaled from the
# 32-slice crop's 12.7 s beside one), about 1 GB of full-resolution float32 planes. Asked for explicitly, 8x that.
MAX_VIEW_VOXELS = 4 * 80 * 384 * 512
MAX_VIEW_VOXELS_ASKED = 8


def auto_settings(shape, n_clicks: int, minutes: float | None = None, downsample: int = 2, multiple: int = 16,
                  sec_per_iter_256: float = SEC_PER_ITER_256, voxel_size=None,
                  cross_views: bool | None = None) -> tuple[AdaptSettings, list[str]]:
    """The quick preset fitted to a (Z, Y, X) or (Y, X) volume with n_clicks clicks; (settings, reasons).

    downsample: the model's working-resolution factor; multiple: the side its input must divide by.
    voxel_size: (z, y, x) nm when known; cross_views: the user's choice of the xz / yz views for the
    pseudo-labels (None: on when the voxel size says near-isotropic; see `cross_views_choice`).
    """
    shape = tuple(int(v) for v in shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"auto_settings takes a (Z, Y, X) or (Y, X) shape, got {shape}")
    if minutes is not None and not minutes > 0:
        raise ValueError(f"the time budget must be above 0 minutes, got {minutes}")
    base, reasons = AdaptSettings(), []
    z = shape[0]
    if minutes is None:
        minutes = base.minutes
        reasons.append(f"budget {minutes:g} min (the quick preset)")
    side = min(shape[1:]) // downsample  # the working image's short side
    crop = min(base.crop, side // multiple * multiple) if side >= multiple else side
    iters = minutes * 60.0 / (sec_per_iter_256 * (crop / 256) ** 2)
    n_rounds = int(min(base.stage1_rounds + base.stage2_rounds, max(2, iters // MIN_ITERS_PER_ROUND)))
    short = n_rounds < MIN_ROUNDS_FOR_STAGE1
    small = max(multiple, SHORT_BUDGET_CROP // multiple * multiple)  # the network's multiple below 192 px
    shrunk = short and crop > small
    if shrunk:  # more, smaller steps
        crop, iters = small, iters * (crop / small) ** 2
    reasons.append(f"training crops of {crop} px" + (
        " (a short budget: more steps of smaller crops)" if shrunk else
        f" (the working image's short side is {side} px)" if crop < base.crop else ""))
    label_slices = min(z, base.label_slices)
    reasons.append(f"{label_slices} of {z} slices pseudo-labelled per round"
                   + (" (all of them)" if label_slices == z else " (evenly spaced, plus every clicked slice)"))
    if short:
        stage1, stage2 = 0, 1
        reasons.append(f"1 round of self-training and no detection-only warm-up (about {iters:.0f} iterations "
                       "fit the budget on a CPU, too few to spend part of them on the warm-up)")
    else:
        stage1, stage2 = base.stage1_rounds, n_rounds - base.stage1_rounds
        reasons.append(f"{n_rounds} rounds (about {iters:.0f} iterations fit the budget on a CPU, "
                       f"at least {MIN_ITERS_PER_ROUND} per round)")
    views, why_views = cross_views_choice(shape, voxel_size, cross_views, downsample)
    reasons.append(why_views)
    held = held_out_count(n_clicks, base.heldout_share)
    if n_clicks == 0 and views:
        reasons.append("no clicks: unsupervised; the latest model is kept (the xz / yz views guard its pseudo-labels)")
    elif n_clicks == 0:
        reasons.append("no clicks: unsupervised; the AdaBN model is kept unless a trained one scores "
                       f"{base.uda_margin:g} higher")
    elif held:
        reasons.append(f"{held} of {n_clicks} clicks held out to pick the model and estimate its quality")
    else:
        reasons.append(f"{n_clicks} clicks: all train, so no quality estimate (it takes 5 or more)")
    return dataclasses.replace(base, minutes=float(minutes), crop=int(crop), label_slices=int(label_slices),
                               stage1_rounds=int(stage1), stage2_rounds=int(stage2), cross_views=views), reasons


def cross_views_choice(shape, voxel_size=None, wanted: bool | None = None, downsample: int = 2) -> tuple[bool, str]:
    """(use the xz / yz views for the pseudo-labels?, the reason shown). They need a stack of MIN_SIDE
    slices or more and near-isotropic voxels: the user says so (wanted), else the voxel size does; and a
    stack small enough that predicting them (once, in memory) fits a run (MAX_VIEW_VOXELS)."""
    shape = tuple(shape) if len(shape) == 3 else (1, *tuple(shape)[-2:])
    if wanted is False:
        return False, "pseudo-labels from the xy slices only (cross views off)"
    if shape[0] < MIN_SIDE or min(shape[1:]) < MIN_SIDE:
        return False, f"pseudo-labels from the xy slices only (xz / yz views need {MIN_SIDE} slices or more)"
    working = shape[0] * (shape[1] // downsample) * (shape[2] // downsample)
    if working > MAX_VIEW_VOXELS * (MAX_VIEW_VOXELS_ASKED if wanted else 1):
        return False, (f"pseudo-labels from the xy slices only (the xz / yz views of {shape[0]} slices of "
                       f"{shape[1]} x {shape[2]} px would take too long and too much memory; adapt a crop of it "
                       "to use them)")
    if wanted:
        return True, "pseudo-labels from the xy, xz and yz views (you said the voxels are near-isotropic)"
    xy, z = in_plane(voxel_size), z_spacing(voxel_size)
    if not (xy and z):
        return False, ("pseudo-labels from the xy slices only (voxel size unknown; for near-isotropic data such as "
                       "FIB-SEM, turn the xz / yz views on: --cross-views on, or the widget's combo)")
    ratio = max(z / xy, xy / z)
    if ratio > MAX_ANISOTROPY:
        return False, f"pseudo-labels from the xy slices only ({z:g} nm sections, {ratio:.1f}x the pixel size)"
    return True, f"pseudo-labels from the xy, xz and yz views (near-isotropic voxels, {z:g} x {xy:g} nm)"


# The user's word on the cross views (`adapt --cross-views`, the widget's combo) -> cross_views_choice(wanted=).
CROSS_VIEW_CHOICES = CHOICES
# The fields auto_settings chooses: the CLI and the widget pass these on as overrides.
AUTO_FIELDS = ("minutes", "crop", "label_slices", "stage1_rounds", "stage2_rounds", "cross_views")
