"""One self-training round's material: pseudo-labels, detection targets and weights of every labelled
slice (build_round), the target batches cut from them and the prototypes of the contrastive loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from ..engine.device import DeviceInfo
from ..training.supervised import IGNORE, crop_sample
from ..training.targets import centre_heatmap, instance_centres
from .corrections import apply_corrections
from .losses import build_prototypes, detection_weights
from .negatives import apply_negatives, negative_region
from .pseudo_labels import instance_aware_pseudo_labels, pixel_confidence_pseudo_labels, spare_background_near
from .settings import AdaptSettings


@dataclass
class TargetRound:
    """Everything the target losses need for one round, per labelled slice (working resolution)."""

    z: list[int]
    labels: list[np.ndarray]
    det_targets: list[np.ndarray]
    det_weights: list[np.ndarray]
    conf: list[np.ndarray]
    negative: list[np.ndarray | None] = field(default_factory=list)  # what the negative clicks made background


def labelled_slices(depth: int, label_slices: int) -> list[int]:
    """The slices pseudo-labelled every round before any clicks are added: label_slices of them (at most
    depth), evenly spaced from the first slice to the last."""
    n = min(label_slices, depth)
    return sorted(set(np.linspace(0, depth - 1, n).round().astype(int).tolist()))


def build_round(prob, heat, zs, clicks, ratio, t_s, anchors, s: AdaptSettings,
                use_detector: bool = True, source_prob: dict[int, np.ndarray] | None = None,
                negatives: dict[int, np.ndarray] | None = None,
                corrections: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
                seen_prob: np.ndarray | None = None) -> tuple[TargetRound, int]:
    """Pseudo-labels, detection targets and weights of every labelled slice.

    use_detector False: IPL keeps the clicked components only and the detector's heat vetoes no
    background; the detector still learns from the selected instances' centres (cross-teaching).
    source_prob: the starting model's probability by slice, for s.source_veto (slices without one are
    not vetoed).
    negatives: negative clicks {slice: (k, 2) (y, x)}; their objects become background (negatives.py).
    corrections: the user's corrected objects {slice: (labels, region)} at working resolution
    (corrections.py); they override everything else there, and their mitochondria are detection targets.
    seen_prob: the xy probability the user saw, when `prob` is a blend (the xz / yz views): a negative click
    names an object of the xy prediction, which the blend may have pulled below 0.5 (then only a disk would
    become background and the rest of the object be ignored, left as it was).
    """
    rnd = TargetRound([], [], [], [], [])
    n_sel = 0
    use = use_detector and s.detection
    for k, z in enumerate(zs):
        cz = clicks.get(z, np.zeros((0, 2), np.float32))
        neg = None
        if negatives:  # the object may be in the blend or in the xy prediction the user saw (seen_prob)
            where = prob[k] if seen_prob is None else np.maximum(prob[k], seen_prob[k])
            neg = negative_region(where, negatives, z, s.click_reach_z, s.click_reach_radius, cz)
        corr = (corrections or {}).get(z)
        excl = neg if corr is None else corr[1] if neg is None else neg | corr[1]  # no peak budget spent there
        if s.pseudo == "ipl":
            res = instance_aware_pseudo_labels(prob[k], heat[k] if use else np.zeros_like(heat[k]), cz,
                                               ratio=ratio if use else 0.0, count=anchors[z], t_s=t_s, exclude=excl,
                                               select_confident=s.cross_views)
            label, centres = res.label, res.centres
            if s.click_reach_z > 0:
                near = [c for dz, c in clicks.items() if 0 < abs(dz - z) <= s.click_reach_z and len(c)]
                if near:
                    spare_background_near(label, np.concatenate(near), s.click_reach_radius)
            if s.source_veto is not None and source_prob is not None and z in source_prob:
                vetoed = source_prob[z] >= s.source_veto
                if s.source_veto_erode > 0:
                    vetoed = ndi.binary_erosion(vetoed, iterations=s.source_veto_erode)
                label[(label == 0) & vetoed] = IGNORE
            n_sel += res.n_selected
        elif s.pseudo == "pixel":
            label = pixel_confidence_pseudo_labels(prob[k], t_s)
            centres = instance_centres(label == 1)
            n_sel += len(centres)
        else:  # "naive": disks at the clicks = mito, the model's confident background = background
            label = naive_click_labels(prob[k], cz)
            centres = cz
            n_sel += len(cz)
        if neg is not None and neg.any():  # last: the source veto and the click reach must not undo it
            apply_negatives(label, neg, cz)
            if s.pseudo != "naive":
                centres = instance_centres(label == 1)
        if corr is not None:  # very last: the user's masks beat clicks, negative clicks and the vetoes
            apply_corrections(label, *corr)
            centres = instance_centres(label == 1)
        det_centres = centres if s.cross_teaching else cz
        target = centre_heatmap(label.shape, det_centres, s.sigma)
        weight = detection_weights(heat[k], det_centres, cz, label.shape, s.sigma)
        if neg is not None:  # "no centre here" on the objects the user called false
            weight[neg] = np.maximum(weight[neg], 1.0)
        if corr is not None:  # the corrected region's centres are known exactly
            weight[corr[1]] = np.maximum(weight[corr[1]], 1.0)
        rnd.z.append(z)
        rnd.labels.append(label)
        rnd.det_targets.append(target)
        rnd.det_weights.append(weight.astype(np.float32))
        rnd.conf.append(np.abs(2 * prob[k] - 1).astype(np.float32))
        rnd.negative.append(neg if neg is not None and neg.any() else None)
    return rnd, n_sel


def naive_click_labels(prob: np.ndarray, clicks: np.ndarray, radius: float = 10.0, bg_p: float = 0.05) -> np.ndarray:
    """The baseline that failed in method.md's lessons: click disks = 1, p < bg_p = 0, else ignore."""
    label = np.full(prob.shape, IGNORE, np.uint8)
    label[prob < bg_p] = 0
    yy, xx = np.ogrid[: prob.shape[0], : prob.shape[1]]
    for y, x in clicks:
        label[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = 1
    return label


def focus_points(rnd: TargetRound, negatives: dict[int, np.ndarray] | None,
                 corrections: dict[int, tuple[np.ndarray, np.ndarray]] | None) -> list[tuple[int, float, float]]:
    """(index into rnd, y, x) of every negative click and of the centre of every corrected region on the
    round's slices: where the user said the model is wrong."""
    out = []
    for k, z in enumerate(rnd.z):
        out += [(k, float(y), float(x)) for y, x in (negatives or {}).get(z, ())]
        corr = (corrections or {}).get(z)
        if corr is not None and corr[1].any():
            lab, n = ndi.label(corr[1])
            out += [(k, float(y), float(x)) for y, x in ndi.center_of_mass(corr[1], lab, range(1, n + 1))]
    return out


def click_points(rnd: TargetRound, clicks: dict[int, np.ndarray]) -> list[tuple[int, float, float]]:
    """(index into rnd, y, x) of every training click on the round's slices."""
    return [(k, float(y), float(x)) for k, z in enumerate(rnd.z) for y, x in clicks.get(z, ())]


def target_batch(rng, images, rnd: TargetRound, batch: int, crop: int, augment: float,
                 focus: list[tuple[int, float, float]] | None = None, focus_share: float = 0.0,
                 clicked: list[tuple[int, float, float]] | None = None, click_share: float = 0.0):
    """`batch` augmented target crops of random labelled slices; with `focus` (focus_points), a share
    `focus_share` of them holds one of those points instead, and of the rest a share `click_share` holds
    one of the `clicked` points (click_points). A pool is drawn from only when it has points and a share,
    so runs without them keep their random stream."""
    pools = [(p, share) for p, share in ((focus, focus_share), (clicked, click_share)) if p and share > 0]
    samples = []
    for _ in range(batch):
        around = None
        for points, share in pools:
            if rng.random() < share:
                k, y, x = points[int(rng.integers(0, len(points)))]
                around = (y, x)
                break
        if around is None:
            k = int(rng.integers(0, len(rnd.z)))
        samples.append(crop_sample(rng, images[rnd.z[k]], rnd.labels[k],
                                   [rnd.det_targets[k], rnd.det_weights[k], rnd.conf[k]], crop, augment, around=around))
    return _as_batch(samples)


def _as_batch(samples) -> tuple[torch.Tensor, ...]:
    """(image, label, target, weight, confidence) tensors of shape (B, 1, H, W) from crop_sample outputs."""
    imgs, labs, extras = zip(*samples)
    planes = [imgs, labs, *zip(*extras)]
    return tuple(torch.from_numpy(np.stack(xs)[:, None]) for xs in planes)


def negative_click_sites(rnd: TargetRound, negatives: dict[int, np.ndarray] | None) -> list[tuple[int, float, float]]:
    """(index into rnd, y, x) of every negative click whose slice has a region the clicks made background."""
    return [(k, float(y), float(x)) for k, z in enumerate(rnd.z) if k < len(rnd.negative)
            and rnd.negative[k] is not None for y, x in (negatives or {}).get(z, ())]


def negative_batch(rng, images, rnd: TargetRound, points: list[tuple[int, float, float]], n: int, crop: int,
                   augment: float):
    """`n` augmented crops, each around a random negative click (negative_click_sites), supervised only where the
    clicks made background: label 0 there and IGNORE elsewhere, the detector taught "no centre" there only.

    Why: a random crop meets a given false object a few times in a round (1 of 15 was gone after one, in
    the bench_annotation "false" arm), and crops cut around the clicks with their whole pseudo-labels
    taught the false objects' neighbours too (Lucchi Dice fell, focus_share). These crops teach the user's
    answer alone. None when there are no points (no random draw then).
    """
    if not points or n <= 0:
        return None
    samples = []
    for _ in range(n):
        k, y, x = points[int(rng.integers(0, len(points)))]
        region = rnd.negative[k]
        label = np.where(region, 0, IGNORE).astype(np.uint8)
        weight = (rnd.det_weights[k] * region).astype(np.float32)
        samples.append(crop_sample(rng, images[rnd.z[k]], label, [rnd.det_targets[k], weight, rnd.conf[k]],
                                   crop, augment, around=(y, x)))
    return _as_batch(samples)


@torch.no_grad()
def round_prototypes(model, images, rnd: TargetRound, clicks, source_protos, dev: DeviceInfo, max_slices: int = 8):
    """Class prototypes for the contrastive loss, refreshed once per round (detached)."""
    model.eval()
    mito, bg, clicked = [], [], []
    for k in np.linspace(0, len(rnd.z) - 1, min(max_slices, len(rnd.z))).astype(int):
        img = images[rnd.z[k]]
        h, w = (s // model.multiple * model.multiple for s in img.shape)
        proj = model(torch.from_numpy(img[:h, :w])[None, None].to(dev.device), with_proj=True)["proj"]
        emb = F.normalize(proj.float(), dim=1)[0]
        stride = h // emb.shape[1]
        lab = torch.from_numpy(rnd.labels[k][:h:stride, :w:stride].astype(np.int64)).to(dev.device)
        mito.append(emb[:, lab == 1].T)
        bg.append(emb[:, lab == 0].T)
        cz = clicks.get(rnd.z[k])
        if cz is not None and len(cz):
            comp, _ = ndi.label(rnd.labels[k] == 1)
            ids = {int(comp[min(int(y), comp.shape[0] - 1), min(int(x), comp.shape[1] - 1)]) for y, x in cz} - {0}
            if ids:
                sel = torch.from_numpy(np.isin(comp, list(ids))[:h:stride, :w:stride]).to(dev.device)
                clicked.append(emb[:, sel].T)
    mito_f = torch.cat(mito) if mito else None
    bg_f = torch.cat(bg) if bg else None
    mean = lambda f: F.normalize(f.mean(0), dim=0) if f is not None and len(f) else None  # noqa: E731
    if mito_f is not None and not len(mito_f):
        mito_f = None
    if bg_f is not None and not len(bg_f):
        bg_f = None
    if bg_f is None or (mito_f is None and source_protos is None):
        return None  # nothing confident yet: no contrastive term this round
    gen = torch.Generator(device="cpu").manual_seed(0)
    return build_prototypes(
        source_mito=source_protos[1].to(dev.device) if source_protos is not None else None,
        target_click_mito=mean(torch.cat(clicked)) if clicked else None,
        target_conf_mito=mean(mito_f), target_bg=mean(bg_f),
        bg_feats=bg_f, mito_feats=mito_f, generator=gen,
    )
