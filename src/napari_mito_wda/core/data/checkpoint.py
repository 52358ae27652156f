"""Checkpoints: one file holding the weights, the network settings and a JSON model card.

Files are loaded with torch's weights-only unpickler, so a file that carries code is refused rather
than executed. Everything needed to rebuild the network travels in the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

from ..engine.model import ModelConfig, MultiTaskUNet
from .io import atomic_write

FORMAT = "napari-mito-wda/checkpoint"
FORMAT_VERSION = 1
DEFAULT_MODEL_NAME = "source_vnc3.pt"


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message says why and what to do."""


@dataclass
class LoadedModel:
    model: MultiTaskUNet
    config: dict
    meta: dict
    path: str | None = None
    extras: dict = field(default_factory=dict)  # tensors shipped with the model (replay set, prototypes)


def default_model_path() -> Path:
    """The source model that ships inside the package."""
    return Path(str(resources.files("napari_mito_wda") / "data" / DEFAULT_MODEL_NAME))


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(
    path: str | os.PathLike,
    model: MultiTaskUNet,
    meta: dict | None = None,
    extras: dict[str, torch.Tensor] | None = None,
    overwrite: bool = False,
    half: bool = False,
) -> Path:
    """Atomically write model weights + config + meta (+ extra tensors). Refuses to overwrite by default.

    half=True stores float weights as float16 (half the size; restored to float32 on load), which is
    what the shipped model uses to stay a few MB.
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(model.config.to_dict()),
        "meta": json.dumps(meta or {}),
        "state_dict": {
            k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
            for k, v in model.state_dict().items()
        },
        "extras": {k: v.detach().cpu().contiguous() for k, v in (extras or {}).items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: torch.save(payload, tmp), overwrite)


def load_checkpoint(path: str | os.PathLike | None = None, device: torch.device | str = "cpu") -> LoadedModel:
    """Load and rebuild a model; `path=None` gives the shipped source model."""
    path = Path(path) if path is not None else default_model_path()
    if not path.exists():
        hint = " (the package install looks incomplete; reinstall napari-mito-wda)" if path == default_model_path() else ""
        raise CheckpointError(f"{path}: no such model file{hint}.")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a model file.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # junk bytes fail in the unpickler too
            raise CheckpointError(f"{path}: not a readable model file (corrupt or truncated?): {exc}") from exc
        raise CheckpointError(
            f"{path}: refused, the file contains Python objects other than tensors (it could run code); "
            "only napari-mito-wda checkpoints are accepted."
        ) from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types on junk (struct.error, IndexError, ...)
        raise CheckpointError(f"{path}: not a readable model file (corrupt or truncated?): {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a napari-mito-wda checkpoint (foreign file format).")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} is not supported by this version of the plugin "
            f"(expects {FORMAT_VERSION}); upgrade napari-mito-wda."
        )
    try:
        config = json.loads(payload["config"])
        meta = json.loads(payload["meta"])
        model = MultiTaskUNet(ModelConfig.from_dict(config))
        state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, json.JSONDecodeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: incompatible checkpoint, cannot rebuild the network ({exc}).") from exc
    model.to(device).to(memory_format=torch.channels_last).eval()  # faster convolutions on CPU and GPU
    return LoadedModel(model=model, config=config, meta=meta, path=str(path), extras=dict(payload.get("extras", {})))


def load_model(path: str | os.PathLike | None = None, device=None) -> LoadedModel:
    """Same as load_checkpoint, onto the best available device when none is given."""
    if device is None:
        from ..engine.device import pick_device

        device = pick_device().device
    return load_checkpoint(path, device=device)
