"""Supervised training of the multitask network (source pretraining and the supervised upper bound).

`fit` is a generator: it yields a TrainReport every few iterations and honours a stop request at the
next iteration, keeping the best weights seen on the validation slices (or the last ones when there
are none). The caller decides what to save; nothing here writes files.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..data.io import normalize_slice
from ..engine.device import DeviceInfo, pick_device
from ..engine.inference import predict_working, to_working
from ..engine.model import ModelConfig, MultiTaskUNet
from .augment import cut_paste, degrade, dihedral, elastic, intensity, random_crop
from .targets import centre_heatmap, instance_centres

IGNORE = 255


@dataclass
class FitSettings:
    minutes: float = 10.0          # wall-clock budget; the learning rate decays over it
    max_iters: int = 100_000
    batch: int = 4
    crop: int = 256                # at the network's working resolution
    lr: float = 2e-3
    weight_decay: float = 1e-4
    det_weight: float = 5.0        # heatmaps peak at 1, so their MSE is small next to the seg loss
    sigma: float = 6.0             # heatmap Gaussian, working-resolution pixels
    augment: float = 1.0           # intensity-augmentation strength
    scale: tuple[float, float] = (0.8, 1.25)  # random zoom of the crops (0.5-2 teaches other pixel sizes)
    det_pos_weight: float = 0.0    # detection MSE weight 1 + w * target: 0 = plain MSE, whose mostly empty
    # maps pull the peaks down (the shipped model's heat at true Lucchi centres: median 0.32, target 1.0)
    elastic: float = 0.0           # share of crops warped elastically (augment.elastic)
    cut_paste: float = 0.0         # share of crops that get a window of another slice pasted in, labels too
    degrade: float = 0.0           # share of crops seen as through another microscope (augment.degrade)
    det_head_only: bool = False    # train the centre head alone on frozen features: the segmentation stays
    # bit-identical, so a detector can be fixed without re-opening what the trunk learnt
    ema: float = 0.0               # decay of a moving average of the weights, validated and kept instead of
    # the raw weights (0 = off): the raw ones wander between validations (VNC III hold-out 0.67-0.73)
    val_every_s: float = 60.0
    report_every: int = 10
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainReport:
    step: int
    elapsed_s: float
    budget_s: float
    losses: dict
    it_per_s: float
    lr: float
    val_dice: float | None = None
    best_val_dice: float | None = None
    done: bool = False

    @property
    def eta_s(self) -> float:
        return max(0.0, self.budget_s - self.elapsed_s)


@dataclass
class SlicePlanes:
    """Training slices at working resolution: images in [0,1], masks (0/1/IGNORE), centre heatmaps."""

    images: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    heats: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def prepare_slices(image: np.ndarray, mask: np.ndarray, factor: int, sigma: float) -> SlicePlanes:
    """Normalise, shrink to working resolution and build centre heatmaps for every slice of a stack."""
    planes = SlicePlanes()
    for z in range(image.shape[0]):
        img = to_working(normalize_slice(image[z]), factor)
        m = to_working((mask[z] > 0).astype(np.float32), factor) > 0.5
        planes.images.append(img.astype(np.float32))
        planes.masks.append(m.astype(np.uint8))
        planes.heats.append(centre_heatmap(m.shape, instance_centres(m), sigma))
    return planes


def _geometry(rng: np.random.Generator, planes: list[np.ndarray], crop: int, scale, elastic_p: float,
              around=None) -> list[np.ndarray]:
    planes = dihedral(rng, random_crop(rng, planes, crop, scale, around))
    if elastic_p > 0 and rng.random() < elastic_p:  # no draw when off: older settings keep their stream
        planes = elastic(rng, planes)
    return planes


def _label_planes(label: np.ndarray) -> list[np.ndarray]:
    """A {0, 1, IGNORE} label as two float planes (foreground, valid), so that resizing never turns the
    border of an ignored region into foreground."""
    return [(label == 1).astype(np.float32), (label != IGNORE).astype(np.float32)]


def crop_sample(rng: np.random.Generator, img: np.ndarray, label: np.ndarray, extras: list[np.ndarray],
                crop: int, augment: float, scale=(0.8, 1.25), elastic_p: float = 0.0,
                donor: tuple[np.ndarray, np.ndarray, list[np.ndarray]] | None = None, degrade_p: float = 0.0,
                around: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """One augmented crop: image, label in {0, 1, IGNORE} and any extra float planes, same geometry.

    donor: (image, label, extras) of another slice of the same domain; a crop of it, augmented alike,
    gives a crop/2 window that is pasted into this one. around: a (y, x) pixel the crop must hold.
    """
    planes = _geometry(rng, [img, *_label_planes(label), *extras], crop, scale, elastic_p, around)
    if donor is not None:
        d_img, d_label, d_extras = donor
        other = _geometry(rng, [d_img, *_label_planes(d_label), *d_extras], crop, scale, elastic_p)
        planes = cut_paste(rng, planes, other, crop // 2)
    lab = np.where(planes[2] < 0.5, IGNORE, planes[1] > 0.5).astype(np.int64)
    img = planes[0]
    if degrade_p > 0 and rng.random() < degrade_p:  # no draw when off, as for elastic
        img = degrade(rng, img)
    return intensity(rng, img, augment), lab, planes[3:]


def sample_batch(rng: np.random.Generator, data: SlicePlanes, batch: int, crop: int, augment: float,
                 scale=(0.8, 1.25), elastic_p: float = 0.0, paste_p: float = 0.0, degrade_p: float = 0.0):
    imgs, masks, heats = [], [], []
    for _ in range(batch):
        z = int(rng.integers(0, len(data)))
        donor = None
        if paste_p > 0 and rng.random() < paste_p:
            d = int(rng.integers(0, len(data)))
            donor = (data.images[d], data.masks[d], [data.heats[d]])
        img, lab, (h,) = crop_sample(rng, data.images[z], data.masks[z], [data.heats[z]], crop, augment, scale,
                                     elastic_p, donor, degrade_p)
        imgs.append(img)
        masks.append(lab)
        heats.append(h)
    return (
        torch.from_numpy(np.stack(imgs)[:, None]),
        torch.from_numpy(np.stack(masks)[:, None]),
        torch.from_numpy(np.stack(heats)[:, None]),
    )


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy averaged over pixels whose target is not IGNORE."""
    valid = (target != IGNORE).float()
    t = (target == 1).float()
    return F.binary_cross_entropy_with_logits(logits, t, weight=valid, reduction="sum") / valid.sum().clamp(min=1)


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy + soft Dice over pixels whose target is not IGNORE."""
    valid = (target != IGNORE).float()
    t = (target == 1).float()
    bce = bce_loss(logits, target)
    p = torch.sigmoid(logits) * valid
    dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + (t * valid).sum() + 1)
    return bce + dice


def detection_loss(pred: torch.Tensor, target: torch.Tensor, pos_weight: float = 0.0) -> torch.Tensor:
    """MSE of the centre heatmap, each pixel weighted 1 + pos_weight * target (pos_weight 0: plain MSE).

    Most of a heatmap is empty, so a plain MSE is lowest for a detector that stays low everywhere and
    its peaks never reach the target's 1.0; weighting the pixels near centres makes missing a peak cost.
    """
    if pos_weight <= 0:
        return F.mse_loss(pred, target)
    w = 1.0 + pos_weight * target
    return (w * (pred - target) ** 2).sum() / w.sum()


def val_dice(model: MultiTaskUNet, data: SlicePlanes, dev: DeviceInfo) -> float:
    """Pooled Dice of (logit > 0) against the masks of validation slices (working resolution)."""
    model.eval()
    inter = total = 0.0
    for img, m in zip(data.images, data.masks):
        logit, _ = predict_working(model, img, dev)
        pred, gt = logit > 0, m == 1
        inter += float((pred & gt).sum())
        total += float(pred.sum() + gt.sum())
    model.train()
    return 2 * inter / total if total else 1.0


def _trainable(model: MultiTaskUNet, det_head_only: bool) -> list[torch.nn.Parameter]:
    """Parameters to optimise; with det_head_only the rest is frozen, BatchNorm statistics included."""
    model.train()
    if not det_head_only:
        return list(model.parameters())
    model.eval()
    model.det_head.train()
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.det_head.parameters():
        p.requires_grad_(True)
    return list(model.det_head.parameters())


class WeightAverage:
    """Exponential moving average of a model's state (BatchNorm statistics too; integer counters copied)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = copy.deepcopy(model)  # a second model: validated without touching the trained one
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        mine = self.shadow.state_dict()
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                mine[key].lerp_(value, 1.0 - self.decay)
            else:
                mine[key].copy_(value)


def fit(
    train: SlicePlanes,
    settings: FitSettings,
    model: MultiTaskUNet | None = None,
    val: SlicePlanes | None = None,
    dev: DeviceInfo | None = None,
    stop: Callable[[], bool] | None = None,
) -> Iterator[TrainReport]:
    """Train seg + centre heads; yields reports; afterwards `model` holds the best weights."""
    dev = dev or pick_device()
    model = model or MultiTaskUNet(ModelConfig())
    model.to(dev.device).to(memory_format=torch.channels_last)
    params = _trainable(model, settings.det_head_only)
    if settings.det_head_only:
        val = None  # the segmentation cannot change, so validation Dice cannot select: keep the last weights
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    average = WeightAverage(model, settings.ema) if settings.ema else None
    judged = average.shadow if average else model  # the weights validated and kept
    budget = settings.minutes * 60.0
    start = last_val = time.perf_counter()
    best, best_state = -1.0, None
    window: dict[str, list[float]] = {"seg": [], "det": []}
    t_window, step = time.perf_counter(), 0
    last_dice = None
    last_losses = {"seg": float("nan"), "det": float("nan")}
    while True:
        elapsed = time.perf_counter() - start
        frac = max(elapsed / budget, step / settings.max_iters)
        if frac >= 1.0 or (stop is not None and stop()):
            break
        warm = min(1.0, (step + 1) / 50)
        lr = settings.lr * warm * 0.5 * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y, h = sample_batch(rng, train, settings.batch, settings.crop, settings.augment, settings.scale,
                               settings.elastic, settings.cut_paste, settings.degrade)
        x = x.to(dev.device).contiguous(memory_format=torch.channels_last)
        with dev.autocast():
            out = model(x)
        ls = seg_loss(out["seg"].float(), y.to(dev.device))
        ld = detection_loss(out["det"].float(), h.to(dev.device), settings.det_pos_weight)
        loss = settings.det_weight * ld if settings.det_head_only else ls + settings.det_weight * ld
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if average:
            average.update(model)
        step += 1
        window["seg"].append(float(ls.detach()))
        window["det"].append(float(ld.detach()))
        if val is not None and time.perf_counter() - last_val >= settings.val_every_s:
            last_dice = val_dice(judged, val, dev)
            last_val = time.perf_counter()
            if last_dice > best:
                best, best_state = last_dice, copy.deepcopy(judged.state_dict())
        if step % settings.report_every == 0:
            now = time.perf_counter()
            last_losses = {k: float(np.mean(v)) for k, v in window.items()}
            yield TrainReport(
                step=step,
                elapsed_s=now - start,
                budget_s=budget,
                losses=last_losses,
                it_per_s=settings.report_every / max(now - t_window, 1e-9),
                lr=lr,
                val_dice=last_dice,
                best_val_dice=best if best >= 0 else None,
            )
            window = {k: [] for k in window}
            t_window = now
    if val is not None:
        final = val_dice(judged, val, dev)
        if final > best:
            best, best_state = final, copy.deepcopy(judged.state_dict())
        model.load_state_dict(best_state)
    elif average:
        model.load_state_dict(average.shadow.state_dict())
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    yield TrainReport(
        step=step,
        elapsed_s=time.perf_counter() - start,
        budget_s=budget,
        losses={k: float(np.mean(v)) for k, v in window.items()} if window["seg"] else last_losses,
        it_per_s=0.0,
        lr=0.0,
        val_dice=best if val is not None else None,
        best_val_dice=best if val is not None else None,
        done=True,
    )
