"""Train the source model on a labelled EM stack (default: VNC III) and write a shippable checkpoint.

The checkpoint carries, besides the weights, what adaptation needs when the source data is absent on a
user's machine: a small replay set of source crops with masks and the source class prototypes
(method.md, "Product choices"). A JSON model card is written next to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..data.checkpoint import file_sha256, save_checkpoint
from ..data.io import InputError, check_new_path, read_volume, write_json
from ..data.provenance import provenance, strip_machine_paths
from ..engine.device import pick_device
from ..engine.inference import predict_volume
from ..engine.instances import instances_volume
from ..engine.model import ModelConfig, MultiTaskUNet, count_parameters
from .supervised import FitSettings, SlicePlanes, fit, prepare_slices


def replay_set(data: SlicePlanes, n: int, crop: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """n random source crops (uint8 image, uint8 mask) at working resolution, mito-rich ones first."""
    rng = np.random.default_rng(seed)
    cands = []
    for _ in range(n * 6):
        z = int(rng.integers(0, len(data)))
        h, w = data.images[z].shape
        y, x = int(rng.integers(0, max(1, h - crop + 1))), int(rng.integers(0, max(1, w - crop + 1)))
        m = data.masks[z][y : y + crop, x : x + crop]
        cands.append((float((m == 1).mean()), z, y, x))
    cands.sort(reverse=True)
    pick = cands[: n // 2] + [cands[i] for i in rng.choice(np.arange(n // 2, len(cands)), n - n // 2, replace=False)]
    imgs = [np.round(data.images[z][y : y + crop, x : x + crop] * 255).astype(np.uint8) for _, z, y, x in pick]
    masks = [data.masks[z][y : y + crop, x : x + crop] for _, z, y, x in pick]
    return {"replay_images": torch.from_numpy(np.stack(imgs)), "replay_masks": torch.from_numpy(np.stack(masks))}


@torch.no_grad()
def class_prototypes(model: MultiTaskUNet, data: SlicePlanes, dev) -> torch.Tensor:
    """(2, P) L2-normalised mean projections of background (row 0) and mito (row 1) source pixels."""
    model.eval()
    sums = torch.zeros(2, model.config.proj_dim)
    for img, m in zip(data.images, data.masks):
        h, w = (s // model.multiple * model.multiple for s in img.shape)
        x = torch.from_numpy(img[:h, :w])[None, None].to(dev.device)
        proj = model(x, with_proj=True)["proj"].float()
        proj = torch.nn.functional.normalize(proj, dim=1)[0].cpu()  # (P, h/s, w/s)
        stride = h // proj.shape[1]
        small = torch.from_numpy(m[:h, :w][::stride, ::stride].copy()).long()
        for c in (0, 1):
            sel = small == c
            if sel.any():
                sums[c] += proj[:, sel].sum(dim=1)
    return torch.nn.functional.normalize(sums, dim=1)


def _total(card: dict | None, key: str) -> float:
    """Sum of `key` over a chain of continued trainings."""
    if not card:
        return 0
    return (card.get(key) or 0) + _total(card.get("initialised_from"), key)


def pretrain(
    image_path: str | Path,
    labels_path: str | Path,
    out: str | Path,
    settings: FitSettings | None = None,
    config: ModelConfig | None = None,
    holdout: int = 3,
    threads: int | None = None,
    overwrite: bool = False,
    voxel_size: tuple[float, float, float] | None = None,
    init: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Train on all but the last `holdout` slices, select on those, write checkpoint + model card.

    init: continue from the weights of an earlier checkpoint (its card is kept under "initialised_from").
    """
    out = check_new_path(out, overwrite)
    if threads:
        torch.set_num_threads(threads)
    settings = settings or FitSettings()
    config = config or ModelConfig()
    vol, lab = read_volume(image_path), read_volume(labels_path)
    if vol.data.shape != lab.data.shape:
        raise InputError(f"image {vol.data.shape} and labels {lab.data.shape} differ in shape.")
    n = vol.data.shape[0]
    if holdout >= n:
        raise InputError(f"holdout={holdout} leaves no training slice in a stack of {n}.")
    dev = pick_device()
    train = prepare_slices(vol.data[: n - holdout], lab.data[: n - holdout], config.downsample, settings.sigma)
    val = (prepare_slices(vol.data[n - holdout :], lab.data[n - holdout :], config.downsample, settings.sigma)
           if holdout else None)
    start_card = None
    if init is not None:
        from ..data.checkpoint import load_checkpoint

        start = load_checkpoint(init)
        model, config = start.model.train(), ModelConfig.from_dict(start.config)
        start_card = {k: start.meta.get(k) for k in ("name", "steps", "wall_time_s", "settings", "holdout_metrics",
                                                      "commit", "initialised_from")} | {"sha256": file_sha256(init)}
    else:
        model = MultiTaskUNet(config)
    log(f"training on {len(train)} slices, validating on {holdout}; {count_parameters(model):,} parameters; "
        f"{dev.describe()}; budget {settings.minutes} min")
    t0 = time.perf_counter()
    last = None
    for rep in fit(train, settings, model=model, val=val, dev=dev):
        last = rep
        if rep.step % (settings.report_every * 10) == 0 or rep.done:
            log(f"  step {rep.step:6d}  {rep.elapsed_s / 60:5.1f}/{rep.budget_s / 60:.0f} min  "
                f"seg {rep.losses['seg']:.4f}  "
                f"det {rep.losses['det']:.5f}  {rep.it_per_s:.2f} it/s  val Dice {rep.val_dice}")
    wall = time.perf_counter() - t0
    metrics = {}
    if holdout:
        from ..evaluation.metrics import evaluate_volume

        prob, heat = predict_volume(model, vol.data[n - holdout :], dev)
        inst = instances_volume(prob, heat)
        metrics = {k: v for k, v in evaluate_volume(inst, lab.data[n - holdout :], per_slice=False).items()}
    card = strip_machine_paths({
        "name": out.stem,
        "task": "mitochondria segmentation + centre detection, 2D, EM",
        "training_data": {
            "image": str(image_path), "labels": str(labels_path),
            "train_slices": f"0..{n - holdout - 1}", "holdout_slices": f"{n - holdout}..{n - 1}",
            "voxel_size_nm": voxel_size or vol.voxel_size,
        },
        "model": config.to_dict() | {"parameters": count_parameters(model)},
        "settings": settings.to_dict(),
        "steps": last.step if last else 0,
        "wall_time_s": round(wall, 1),
        "device": dev.describe(),
        "holdout_metrics": metrics,
        "initialised_from": start_card,
        "total_steps": (last.step if last else 0) + _total(start_card, "steps"),
        "total_wall_time_s": round(wall + _total(start_card, "wall_time_s"), 1),
    } | provenance())
    extras = replay_set(train, n=8, crop=settings.crop, seed=settings.seed)
    extras["source_prototypes"] = class_prototypes(model, train, dev)
    save_checkpoint(out, model.cpu(), meta=card, extras=extras, overwrite=overwrite, half=True)
    card["sha256"] = file_sha256(out)
    write_json(out.with_suffix(".json"), card, overwrite=True)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {out.with_suffix('.json')}")
    return card
