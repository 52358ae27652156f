"""What the chunk tasks of a chunked run share and do, on the dask workers.

The chunk grid, the context and model shipped to the workers (one model built per worker, cached), the
done-markers that make a run resumable, and the tasks of the stages: normalise, predict, instances,
relabel (the driver, `chunked.segment_to_zarr_iter`, runs them and stitches on the client).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data.io import InputError, apply_range, intensity_range, sample_strides
from .alloc import keep_memory_for_inference
from .lazy_io import LazyVolume
from .stitching import ChunkInstances, chunk_instances, window_box

if TYPE_CHECKING:
    from .chunked import ChunkSettings


# ------------------------------------------------------------------------------ chunk grid


@dataclass
class Grid:
    shape: tuple[int, int, int]
    chunks: tuple[int, int, int]

    @property
    def counts(self) -> tuple[int, int, int]:
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunks))

    def __len__(self) -> int:
        a, b, c = self.counts
        return a * b * c

    def box(self, i: int) -> tuple[int, int, int, int, int, int]:
        nz, ny, nx = self.counts
        iz, rem = divmod(i, ny * nx)
        iy, ix = divmod(rem, nx)
        (Z, H, W), (cz, cy, cx) = self.shape, self.chunks
        return (iz * cz, min(Z, (iz + 1) * cz), iy * cy, min(H, (iy + 1) * cy), ix * cx, min(W, (ix + 1) * cx))


# ------------------------------------------------------------------------------ what tasks share


@dataclass
class ModelPayload:
    """Weights and architecture, shipped once per worker; `token` names the model in the worker cache."""

    token: str
    config: dict
    state: dict


@dataclass
class TaskContext:
    source: LazyVolume
    work: str  # the .partial store
    grid: Grid
    settings: ChunkSettings
    torch_threads: int | None
    norm: np.ndarray | None = None  # (Z, 2) per-slice intensity range
    client_pid: int = 0  # tasks in another process (a worker) tune its allocator (core/volumes/alloc.py)
    scale: float = 1.0  # image_nm / model_nm (core/engine/rescale.py)


_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()  # a worker's threads share one model; only one of them builds it
MODEL_BUILDS = {"count": 0}  # models built in this process (tests check: once per worker, not per chunk)


def _model_on_worker(payload: ModelPayload, settings: ChunkSettings):
    key = (payload.token, settings.device, settings.precision)
    with _MODELS_LOCK:
        return _MODELS[key] if key in _MODELS else _build_model(key, payload, settings)


def _build_model(key, payload: ModelPayload, settings: ChunkSettings):
    import torch

    from ..engine.device import pick_device
    from ..engine.model import ModelConfig, MultiTaskUNet

    dev = pick_device(settings.device, settings.precision)
    model = MultiTaskUNet(ModelConfig.from_dict(payload.config))
    model.load_state_dict(payload.state)
    model.to(dev.device).to(memory_format=torch.channels_last).eval()
    _MODELS.clear()  # one model per worker at a time
    _MODELS[key] = (model, dev)
    MODEL_BUILDS["count"] += 1
    return _MODELS[key]


def release_models() -> None:
    """Drop this process's cached model (the in-process runner's lives in the client)."""
    _MODELS.clear()


def _set_threads(n: int | None) -> None:
    if n:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


# ------------------------------------------------------------------------------ markers


def _marker(work: str, stage: str, i: int) -> Path:
    return Path(work) / "_work" / "done" / stage / str(i)


def _mark_done(work: str, stage: str, i: int) -> None:
    path = _marker(work, stage, i)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text("")
    os.replace(tmp, path)  # atomic: a marker is there whole or not at all


def is_done(work: str, stage: str, i: int) -> bool:
    return _marker(work, stage, i).exists()


def _array(work: str, name: str, mode: str = "r+"):
    import zarr

    return zarr.open_array(store=work, path=name, mode=mode)


# ------------------------------------------------------------------------------ tasks (run on workers)


def norm_task(z_range: tuple[int, int], ctx: TaskContext) -> tuple[int, np.ndarray]:
    """Per-slice (lo, hi) of slices z0..z1-1 from the strided subsample, read chunk by chunk."""
    z0, z1 = z_range
    src = ctx.source
    _, H, W = src.shape
    sy, sx = sample_strides((H, W))
    cy, cx = ctx.grid.chunks[1:]
    rows = []
    for ya in range(0, H, cy):  # block by block: bounded memory whatever the slice size
        cols = []
        for xa in range(0, W, cx):
            y_first, x_first = -(-ya // sy) * sy, -(-xa // sx) * sx
            cols.append(src.read(z0, z1, y_first, min(H, ya + cy), x_first, min(W, xa + cx), (sy, sx)))
        rows.append(np.concatenate(cols, axis=2))
    sample = np.concatenate(rows, axis=1)
    _check_finite(sample, src, z0)
    return z0, np.array([intensity_range(s) for s in sample], np.float64)


def _check_finite(arr: np.ndarray, src: LazyVolume, z0: int) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        z = z0 + int(np.nonzero(~np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1))[0][0])
        raise InputError(f"{src.describe()}: slice {z} has NaN or infinite pixels; replace them and retry.")


def predict_task(i: int, ctx: TaskContext, payload: ModelPayload) -> int:
    from ..engine.tiling import predict_region

    if is_done(ctx.work, "predict", i):  # a retried or resubmitted task after a worker loss
        return i
    _set_threads(ctx.torch_threads)
    if os.getpid() != ctx.client_pid:
        keep_memory_for_inference()
    model, dev = _model_on_worker(payload, ctx.settings)
    z0, z1, y0, y1, x0, x1 = ctx.grid.box(i)
    src, (_, H, W) = ctx.source, ctx.source.shape
    norm = ctx.norm[z0:z1]

    def read(ya, yb, xa, xb):
        raw = src.read(z0, z1, ya, yb, xa, xb)
        _check_finite(raw, src, z0)
        return np.stack([apply_range(s, lo, hi) for s, (lo, hi) in zip(raw, norm)])

    s = ctx.settings
    prob, heat = predict_region(model, read, (H, W), (y0, y1, x0, x1), dev, max_core=s.max_core, flips=s.flips,
                                batch_size=s.batch_size, scale=ctx.scale)
    box = (slice(z0, z1), slice(y0, y1), slice(x0, x1))
    _array(ctx.work, "prob")[box] = prob
    _array(ctx.work, "heat")[box] = heat
    _mark_done(ctx.work, "predict", i)
    return i


def instances_task(i: int, ctx: TaskContext) -> int:
    if is_done(ctx.work, "instances", i):
        return i
    z0, z1, y0, y1, x0, x1 = ctx.grid.box(i)
    shape = ctx.source.shape
    win = window_box((y0, y1, x0, x1), shape[1:], ctx.settings.instance_halo)
    wbox = (slice(z0, z1), slice(win[0], win[1]), slice(win[2], win[3]))
    prob, heat = _array(ctx.work, "prob", "r")[wbox], _array(ctx.work, "heat", "r")[wbox]
    part = chunk_instances(prob, heat, z0, (y0, y1, x0, x1), win, shape, **ctx.settings.instance_kw(ctx.scale))
    _array(ctx.work, "_local")[z0:z1, y0:y1, x0:x1] = part.local
    side = Path(ctx.work) / "_work" / "faces" / f"{i}.npz"
    side.parent.mkdir(parents=True, exist_ok=True)
    tmp = side.with_name(f".{i}.{os.getpid()}.part.npz")
    np.savez(tmp, n_ids=part.n_ids, cut=part.cut, inner_keys=part.inner_keys, inner_ids=part.inner_ids,
             outer_keys=part.outer_keys, outer_ids=part.outer_ids)
    os.replace(tmp, side)
    _mark_done(ctx.work, "instances", i)
    return i


def relabel_task(item: tuple[int, np.ndarray], ctx: TaskContext) -> int:
    i, lut = item
    if is_done(ctx.work, "relabel", i):
        return i
    z0, z1, y0, y1, x0, x1 = ctx.grid.box(i)
    local = _array(ctx.work, "_local", "r")[z0:z1, y0:y1, x0:x1]
    _array(ctx.work, "labels")[z0:z1, y0:y1, x0:x1] = lut[local]
    _mark_done(ctx.work, "relabel", i)
    return i


def load_faces(work: str, i: int) -> ChunkInstances:
    with np.load(Path(work) / "_work" / "faces" / f"{i}.npz") as d:
        return ChunkInstances(np.zeros((0, 0, 0), np.uint32), int(d["n_ids"]), d["inner_keys"], d["inner_ids"],
                              d["outer_keys"], d["outer_ids"], int(d["cut"]))
