"""Checkpoints: one file holding the weights, the network settings and a JSON model card.

Files are loaded with torch's weights-only unpickler, so a file that carries code is refused rather
than executed. Everything needed to rebuild the network travels in the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

from ..engine.model import ModelConfig, MultiTaskUNet
from .io import atomic_write
from .provenance import strip_machine_paths

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

    @property
    def pixel_size_nm(self) -> float | None:
        """In-plane nm per pixel the model was trained at (its card); None for a card without one."""
        from .pixel_size import model_pixel_size

        return model_pixel_size(self.meta)

    @property
    def det_pos_weight(self) -> float:
        """The pixel weighting of the detection loss the model was trained with (0: plain MSE), so that
        adapting it keeps that loss on the source replay and does not pull its peaks down again."""
        return float((self.meta.get("settings") or {}).get("det_pos_weight") or 0.0)


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
        "meta": json.dumps(strip_machine_paths(meta or {})),
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
        hint = ("the package install looks incomplete; reinstall napari-mito-wda" if path == default_model_path()
                else "check the path")
        raise CheckpointError(f"{path}: no such model file; {hint}.")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a model file; give the .pt file inside it.")
    try:
        with warnings.catch_warnings():  # torch warns on pickle protocols it did not write; the error says it all
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower() and not _pickle_imports(path):  # junk bytes fail in the unpickler too
            raise CheckpointError(_unreadable(path, exc)) from exc
        raise CheckpointError(
            f"{path}: refused, the file contains Python objects other than tensors (it could run code); "
            "only napari-mito-wda checkpoints are accepted."
        ) from exc
    except Exception as exc:  # noqa: BLE001 - torch raises many types on junk (struct.error, IndexError, ...)
        raise CheckpointError(_unreadable(path, exc)) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a napari-mito-wda checkpoint (foreign file format); give a model saved "
                              "by napari-mito-wda (the shipped one, `mito-wda pretrain` or `adapt`, or the widget).")
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
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: incompatible checkpoint, cannot rebuild the network ({_why(exc)}); "
                              "give a model written by napari-mito-wda.") from exc
    model.to(device).to(memory_format=torch.channels_last).eval()  # faster convolutions on CPU and GPU
    return LoadedModel(model=model, config=config, meta=meta, path=str(path), extras=dict(payload.get("extras", {})))


def _unreadable(path: Path, exc: BaseException) -> str:
    """One line for a file torch cannot read. torch's own text is left out on purpose: it spans many lines
    and advises loading with weights_only=False, which would let a malicious file run code."""
    size = path.stat().st_size if path.exists() else 0
    return (f"{path}: not a readable model file (corrupt or truncated, or not a napari-mito-wda checkpoint; "
            f"{type(exc).__name__}, {size} bytes); copy it again or give another model.")


def _why(exc: BaseException) -> str:
    """A one-line reason from a (possibly many-line) error while rebuilding the network."""
    if isinstance(exc, KeyError):
        return f"no {exc} entry"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) > 1 and "state_dict" in lines[0]:  # torch's load_state_dict: a header, then one line a tensor
        return (f"its weights do not fit the network it describes: {len(lines) - 1} problem(s), "
                f"first: {lines[1].rstrip('.')}")
    return lines[0] if lines else type(exc).__name__


_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE"}


def _pickle_imports(path: Path) -> bool:
    """True when a plain (non-zip) pickle file would import or call Python objects; read, never run."""
    import pickletools

    try:
        with open(path, "rb") as fh:
            head = fh.read(2)  # a pickle starts with PROTO 2-5; torch's zip format (b"PK") is torch's to judge
            if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:
                return False
            fh.seek(0)
            for op, _arg, _pos in pickletools.genops(fh):
                if op.name in _CODE_OPCODES:
                    return True
    except Exception:  # noqa: BLE001 - junk bytes: not a pickle at all
        return False
    return False


def load_model(path: str | os.PathLike | None = None, device=None) -> LoadedModel:
    """Same as load_checkpoint, onto the best available device when none is given."""
    if device is None:
        from ..engine.device import pick_device

        device = pick_device().device
    return load_checkpoint(path, device=device)
