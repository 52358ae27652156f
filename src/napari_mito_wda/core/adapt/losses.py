"""Target-domain losses of the WDA method: partial detection MSE and class-focused contrastive loss.

See shared/docs/method.md ("Losses"). Class index 0 = background, 1 = mitochondria everywhere here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from ..training.targets import centre_heatmap

IGNORE = 255
BG, MITO = 0, 1
# Pixels where the target heatmap exceeds this count as a pseudo-peak's support.
SUPPORT_THRESH = 0.01


def partial_weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum(w * (pred - target)^2) / max(#pixels with w > 0, 1).

    Normalising by the number of supervised pixels (not by their weights, nor by all pixels) keeps the
    loss scale independent of how much of the image is ignored.
    """
    weight = torch.as_tensor(weight, dtype=pred.dtype, device=pred.device).expand_as(pred)
    n = (weight > 0).sum().clamp(min=1).to(pred.dtype)
    return (weight * (pred - target) ** 2).sum() / n


def _gaussian_kernel(size: int, sigma: float) -> np.ndarray:
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    return np.outer(g, g).astype(np.float32)  # peak 1 at the centre


def detection_weights(
    prev_heat: np.ndarray,
    pseudo_centres: np.ndarray,
    clicks: np.ndarray | None,
    shape: tuple[int, int],
    sigma: float,
    bg_thresh: float = 0.05,
    click_radius: float | None = None,
    peak_boost: float = 3.0,
    boost_size: int = 11,
    boost_sigma: float = 2.0,
) -> np.ndarray:
    """Pixel weights (H, W) float32 for the target partial detection loss of one slice.

    1 on "detection background": the previous model's heatmap < bg_thresh, minus disks of radius
    click_radius (default 3 sigma, the extent of one heatmap peak) around clicks, because a clicked
    object may still be unseen by the previous detector and must not be taught "no centre here";
    1 on the support of the target peaks (target heatmap > 0.01);
    + peak_boost x a boost_size^2 Gaussian (peak 1, boost_sigma) at each pseudo-centre, because peaks
    are few pixels against a sea of background;
    0 (ignored) everywhere else: uncertain regions that are neither background nor a pseudo-instance.
    """
    shape = tuple(int(s) for s in shape)
    prev_heat = np.asarray(prev_heat, dtype=np.float32)
    if prev_heat.shape != shape:
        raise ValueError(f"prev_heat has shape {prev_heat.shape}, expected {shape}")
    centres = np.asarray(pseudo_centres, dtype=np.float64).reshape(-1, 2)
    click_radius = 3.0 * sigma if click_radius is None else float(click_radius)

    background = prev_heat < bg_thresh
    clicks = np.zeros((0, 2)) if clicks is None else np.asarray(clicks, dtype=np.float64).reshape(-1, 2)
    if len(clicks) and click_radius > 0:
        seeds = np.ones(shape, dtype=bool)
        for y, x in np.floor(clicks + 0.5).astype(int):
            if 0 <= y < shape[0] and 0 <= x < shape[1]:
                seeds[y, x] = False
        if not seeds.all():
            background &= ndi.distance_transform_edt(seeds) > click_radius

    support = centre_heatmap(shape, centres, sigma) > SUPPORT_THRESH
    weight = (background | support).astype(np.float32)

    if peak_boost > 0 and len(centres):
        impulses = np.zeros(shape, dtype=np.float32)
        for y, x in np.floor(centres + 0.5).astype(int):
            if 0 <= y < shape[0] and 0 <= x < shape[1]:
                impulses[y, x] += 1.0
        # A correlation with a symmetric kernel places one Gaussian per impulse (overlaps add up).
        boost = ndi.convolve(impulses, _gaussian_kernel(boost_size, boost_sigma), mode="constant")
        weight += peak_boost * boost
    return weight


def _as_neg_list(neg) -> list[torch.Tensor]:
    if isinstance(neg, torch.Tensor):
        if neg.ndim != 3 or neg.shape[0] != 2:
            raise ValueError(f"negatives must be (2, K, P), got {tuple(neg.shape)}")
        return [neg[0], neg[1]]
    if isinstance(neg, Sequence) and len(neg) == 2:
        return [torch.as_tensor(n) for n in neg]
    raise ValueError("negatives must be a (2, K, P) tensor or a pair of (K_c, P) tensors")


def _pick_anchors(
    cand: torch.Tensor, conf: torch.Tensor, n_hard: int, n_random: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Indices: the n_hard least-confident candidates, plus n_random others drawn at random."""
    if cand.numel() == 0:
        return cand
    c = conf[cand]
    n_h = min(n_hard, cand.numel())
    order = torch.argsort(c, stable=True)  # stable: ties resolved by position, so runs are repeatable
    hard = cand[order[:n_h]]
    rest = cand[order[n_h:]]
    if n_random <= 0 or rest.numel() == 0:
        return hard
    perm = torch.randperm(rest.numel(), generator=generator, device="cpu")[:n_random].to(rest.device)
    return torch.cat([hard, rest[perm]])


def class_focused_contrastive(
    emb: torch.Tensor,
    labels: torch.Tensor,
    conf: torch.Tensor,
    prototypes: dict,
    temperature: float = 0.5,
    n_hard: int = 512,
    n_random: int = 512,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Prototype InfoNCE per class: L_bg + L_mito.

    emb (B, P, h, w) raw embeddings (L2-normalised here); labels (B, h, w) in {0, 1, 255} at the
    embedding resolution (255 never becomes an anchor); conf (B, h, w) in [0, 1] (hard anchors = the
    least confident); prototypes {"pos": (2, P), "neg": (2, K, P) or [(K_bg, P), (K_mito, P)]}, class 0 =
    background, 1 = mito. For class c: L_c = -mean_a log softmax([a.p_c, a.n_c1, ...] / t)[0], anchors
    pooled over the batch (up to n_hard + n_random per image). A class without anchors adds 0.
    """
    if emb.ndim != 4:
        raise ValueError(f"emb must be (B, P, h, w), got {tuple(emb.shape)}")
    b, p, h, w = emb.shape
    if tuple(labels.shape) != (b, h, w) or tuple(conf.shape) != (b, h, w):
        raise ValueError(
            f"labels {tuple(labels.shape)} and conf {tuple(conf.shape)} must be (B, h, w) = {(b, h, w)}"
        )
    # Prototypes are targets, not parameters: no gradient flows into them.
    pos = F.normalize(torch.as_tensor(prototypes["pos"]).detach().to(emb), dim=-1)
    negs = [F.normalize(n.detach().to(emb).reshape(-1, p), dim=-1) for n in _as_neg_list(prototypes["neg"])]

    flat = F.normalize(emb, dim=1).permute(0, 2, 3, 1).reshape(b, h * w, p)
    lab = labels.reshape(b, h * w)
    cf = conf.reshape(b, h * w).to(emb.dtype)
    total = emb.sum() * 0.0  # keeps the graph (and the device/dtype) when no class has anchors
    for c in (BG, MITO):
        anchors = []
        for i in range(b):
            cand = torch.nonzero(lab[i] == c, as_tuple=False).flatten()
            idx = _pick_anchors(cand, cf[i], n_hard, n_random, generator)
            if idx.numel():
                anchors.append(flat[i, idx])
        if not anchors:
            continue
        a = torch.cat(anchors)
        logits = torch.cat([a @ pos[c][:, None], a @ negs[c].T], dim=1) / temperature
        total = total - torch.log_softmax(logits, dim=1)[:, 0].mean()
    return total


def _unit_mean(feats: torch.Tensor) -> torch.Tensor:
    return F.normalize(F.normalize(feats, dim=-1).mean(0), dim=0)


def cosine_kmeans(
    feats: torch.Tensor,
    k: int,
    iters: int = 10,
    generator: torch.Generator | None = None,
    max_points: int = 20000,
) -> torch.Tensor:
    """Spherical k-means: (min(k, N), P) unit centroids of the L2-normalised rows of feats.

    Initialised on k distinct random rows (drawn with generator, so runs repeat); an empty cluster keeps
    its previous centroid. Large inputs are subsampled to max_points rows (centroids barely move, cost does).
    """
    feats = feats.detach().float()
    x = F.normalize(feats.reshape(len(feats), feats.shape[-1]), dim=1)
    n = len(x)
    k = min(int(k), n)
    if k <= 0:
        return x.new_zeros((0, x.shape[1]))
    if n > max_points:
        x = x[torch.randperm(n, generator=generator)[:max_points].to(x.device)]
        n = max_points
    cent = x[torch.randperm(n, generator=generator)[:k].to(x.device)].clone()
    for _ in range(iters):
        assign = (x @ cent.T).argmax(1)
        sums = torch.zeros_like(cent).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)
        new = F.normalize(sums, dim=1)
        cent = torch.where((counts > 0)[:, None], new, cent)
    return cent


def build_prototypes(
    source_mito: torch.Tensor | None,
    target_click_mito: torch.Tensor | None,
    target_conf_mito: torch.Tensor | None,
    target_bg: torch.Tensor | None,
    bg_feats: torch.Tensor | None,
    mito_feats: torch.Tensor | None,
    k: int = 2,
    iters: int = 10,
    generator: torch.Generator | None = None,
) -> dict:
    """Class prototypes for class_focused_contrastive (all unit vectors, detached).

    pos[mito] = normalised mean of the available unit-normalised source mito, clicked-instance mito and
    confident-mito prototypes (each normalised first so each domain/source counts equally); pos[bg] =
    the target background mean. neg[mito] = [pos[bg]] + k cosine-k-means centroids of bg_feats;
    neg[bg] = [pos[mito]] + k centroids of mito_feats. Missing prototypes fall back to the mean of the
    corresponding feats; fewer than k feats give fewer centroids. "neg" is a (2, K, P) tensor when both
    classes have the same number of negatives, else a list of two (K_c, P) tensors.
    Feats are (N, P) confident embeddings of the target (N may be 0 or None).
    """
    with torch.no_grad():
        vecs = [v for v in (source_mito, target_click_mito, target_conf_mito) if v is not None]
        mito_feats = None if mito_feats is None or len(mito_feats) == 0 else mito_feats.detach().float()
        bg_feats = None if bg_feats is None or len(bg_feats) == 0 else bg_feats.detach().float()
        if vecs:
            pos_mito = _unit_mean(torch.stack([torch.as_tensor(v).detach().float().flatten() for v in vecs]))
        elif mito_feats is not None:
            pos_mito = _unit_mean(mito_feats)
        else:
            raise ValueError("no mitochondria prototype: give a source/target mito prototype or mito_feats")
        if target_bg is not None:
            pos_bg = F.normalize(torch.as_tensor(target_bg).detach().float().flatten(), dim=0)
        elif bg_feats is not None:
            pos_bg = _unit_mean(bg_feats)
        else:
            raise ValueError("no background prototype: give target_bg or bg_feats")
        pos_bg = pos_bg.to(pos_mito.device)

        def centroids(feats):
            if feats is None:
                return pos_mito.new_zeros((0, pos_mito.numel()))
            return cosine_kmeans(feats.to(pos_mito.device), k, iters, generator)

        neg_bg = torch.cat([pos_mito[None], centroids(mito_feats)])
        neg_mito = torch.cat([pos_bg[None], centroids(bg_feats)])
        neg = torch.stack([neg_bg, neg_mito]) if len(neg_bg) == len(neg_mito) else [neg_bg, neg_mito]
        return {"pos": torch.stack([pos_bg, pos_mito]), "neg": neg}
