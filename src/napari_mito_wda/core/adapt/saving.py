"""The adaptation's side of a checkpoint: the source replay set it trains on when no source data is
given, and the adapted model it writes with its provenance.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from ..data.checkpoint import LoadedModel
from ..training.supervised import SlicePlanes
from ..training.targets import centre_heatmap, instance_centres
from .settings import AdaptReport, AdaptSettings


def replay_planes(extras: dict, sigma: float) -> SlicePlanes:
    """Source training planes from the replay set that ships inside a checkpoint."""
    if "replay_images" not in extras:
        raise ValueError("this model carries no source replay set, so it cannot be adapted; start from the shipped "
                         "model or one made by `mito-wda pretrain` (or pass labelled source_data in the API).")
    planes = SlicePlanes()
    for img, m in zip(extras["replay_images"].numpy(), extras["replay_masks"].numpy()):
        planes.images.append(img.astype(np.float32) / 255.0)
        planes.masks.append(m.astype(np.uint8))
        planes.heats.append(centre_heatmap(m.shape, instance_centres(m == 1), sigma))
    return planes


def with_state(loaded: LoadedModel, state: dict) -> LoadedModel:
    """A copy of `loaded` holding the weights `state` (an AdaptReport's best_state), on the same device."""
    model = copy.deepcopy(loaded.model)
    model.load_state_dict(state)
    return dataclasses.replace(loaded, model=model.eval())


def save_adapted(path, loaded: LoadedModel, settings: AdaptSettings, clicks: np.ndarray | None,
                 last: AdaptReport | None, image_path: str | None = None, overwrite: bool = False,
                 negatives: np.ndarray | None = None):
    """Write the adapted model with its provenance (source model, clicks and negative clicks, settings,
    progress)."""
    from ..data.checkpoint import save_checkpoint
    from ..data.provenance import provenance

    meta = dict(loaded.meta)
    history = list(meta.get("adaptations", []))
    history.append({
        "from_model": loaded.path, "target_image": image_path, "settings": settings.to_dict(),
        "n_clicks": 0 if clicks is None else int(len(clicks)),
        "clicks_zyx": [] if clicks is None else np.asarray(clicks, float).round(2).tolist(),
        "negative_clicks_zyx": [] if negatives is None else np.asarray(negatives, float).round(2).tolist(),
        "n_corrected": last.n_corrected if last else 0,
        "steps": last.step if last else 0, "elapsed_s": round(last.elapsed_s, 1) if last else 0.0,
        "score": last.best_score if last else None, "finished": bool(last and last.message.startswith("finished")),
        "quality": last.quality if last else None,  # the held-out clicks' estimate (heldout.heldout_quality)
    } | provenance())
    meta["adaptations"] = history
    meta["name"] = str(path)
    extras = dict(loaded.extras)
    return save_checkpoint(path, loaded.model, meta=meta, extras=extras, overwrite=overwrite)
