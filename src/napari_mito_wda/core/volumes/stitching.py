"""Instances per chunk, stitched across chunk faces into one id per object.

Each chunk labels its core *plus a halo* with the unchanged in-memory `instances_2d`, slice by slice.
A 2D object (foreground blob) that lies entirely inside that window gets exactly the in-memory
partition: the watershed, its seeds (`peak_local_max`, per blob) and the size filters only look at the
blob's own pixels, and the one global rule (no seed within `min_distance` of the slice border) is kept by
padding the window with `min_distance` empty pixels on sides that are not the slice border.

Every chunk records its labels on the 1-pixel ring just outside its core and on the border pixels of
its core. Where chunk A's ring pixel is a border pixel of chunk B and both are labelled, A's and B's ids
are the same object (an instance is 8-connected, so an object crossing a face or a corner always has
such a pixel). A union-find over these pairs gives global ids; a lookup per chunk relabels.

Exact unless a blob crossing a chunk face is too large for the halo (it touches the window's inner
edge); such blobs are counted as `cut` (the result says how many) and the halo should be raised.
One more, measured, limit: skimage's watershed breaks ties between seeds of *exactly equal* height by
their heap position, which depends on the other seeds in the image, so two objects whose heatmap peaks
are bit-identical may split a shared blob differently in a window. A network's float heatmap does not
produce such ties in practice; hand-made maps can (tests/core/test_stitching.py gives them distinct peaks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..engine.instances import MIN_DISTANCE, MIN_SIZE, instances_2d

INSTANCE_DEFAULTS = {"threshold": 0.5, "min_size": MIN_SIZE, "peak_threshold": 0.5, "min_distance": MIN_DISTANCE,
                     "peak_prominence": 0.3}


@dataclass
class ChunkInstances:
    """What one chunk contributes: its core labels (local ids 1..n) and the face records for stitching."""

    local: np.ndarray  # (nz, cy, cx) uint32, 0 = background
    n_ids: int
    inner_keys: np.ndarray  # int64 linear voxel index of labelled core-border pixels
    inner_ids: np.ndarray  # their local ids
    outer_keys: np.ndarray  # labelled pixels of the ring just outside the core (inside the volume)
    outer_ids: np.ndarray
    cut: int  # objects reaching into the core that the window does not contain whole


def window_box(core, slice_shape, halo: int):
    """The window (y0, y1, x0, x1) a chunk core (y0, y1, x0, x1) needs: the core grown by halo, clipped."""
    y0, y1, x0, x1 = core
    H, W = slice_shape
    return max(0, y0 - halo), min(H, y1 + halo), max(0, x0 - halo), min(W, x1 + halo)


def chunk_instances(
    prob: np.ndarray,
    heat: np.ndarray | None,
    z0: int,
    core: tuple[int, int, int, int],
    window: tuple[int, int, int, int],
    vol_shape: tuple[int, int, int],
    **kw,
) -> ChunkInstances:
    """Instances of one chunk from the probability/heatmap of its window ((nz, wy, wx) arrays).

    core/window = (y0, y1, x0, x1) in global pixels; z0 = the chunk's first slice; kw as instances_2d.
    """
    kw = INSTANCE_DEFAULTS | kw
    _, H, W = vol_shape
    cy0, cy1, cx0, cx1 = core
    wy0, wy1, wx0, wx1 = window
    pad = kw["min_distance"] + 1
    pads = ((pad if wy0 > 0 else 0, pad if wy1 < H else 0), (pad if wx0 > 0 else 0, pad if wx1 < W else 0))
    # The region a chunk reports on: its core plus the 1-pixel ring around it, inside the slice.
    ry0, ry1, rx0, rx1 = max(cy0 - 1, 0), min(cy1 + 1, H), max(cx0 - 1, 0), min(cx1 + 1, W)
    ys, xs = slice(ry0 - wy0, ry1 - wy0), slice(rx0 - wx0, rx1 - wx0)
    inner_edge = np.zeros((wy1 - wy0, wx1 - wx0), bool)  # window sides that are not the slice border
    if wy0 > 0:
        inner_edge[0] = True
    if wy1 < H:
        inner_edge[-1] = True
    if wx0 > 0:
        inner_edge[:, 0] = True
    if wx1 < W:
        inner_edge[:, -1] = True

    nz = prob.shape[0]
    local = np.zeros((nz, cy1 - cy0, cx1 - cx0), np.uint32)
    inner_k, inner_i, outer_k, outer_i = [], [], [], []
    n_ids = cut = 0
    gy, gx = np.mgrid[ry0:ry1, rx0:rx1]
    in_core = (gy >= cy0) & (gy < cy1) & (gx >= cx0) & (gx < cx1)
    on_border = in_core & ((gy == cy0) | (gy == cy1 - 1) | (gx == cx0) | (gx == cx1 - 1))
    for k in range(nz):
        p = np.pad(prob[k], pads)
        h = None if heat is None else np.pad(heat[k], pads)
        lab = instances_2d(p, h, **{n: kw[n] for n in INSTANCE_DEFAULTS})
        lab = lab[pads[0][0] : lab.shape[0] - pads[0][1], pads[1][0] : lab.shape[1] - pads[1][1]]
        region = lab[ys, xs]
        ids = np.unique(region)
        ids = ids[ids > 0]
        lut = np.zeros(int(lab.max()) + 1, np.uint32)
        lut[ids] = np.arange(n_ids + 1, n_ids + 1 + ids.size, dtype=np.uint32)
        n_ids += ids.size
        if ids.size and inner_edge.any():
            blobs, _ = ndi.label(prob[k] > kw["threshold"], structure=np.ones((3, 3)))
            cut_blobs = np.unique(blobs[inner_edge & (blobs > 0)])
            if cut_blobs.size:
                touched = np.unique(blobs[ys, xs][(region > 0)])
                cut += int(np.isin(touched, cut_blobs).sum())
        mapped = lut[region]
        local[k] = mapped[cy0 - ry0 : cy1 - ry0, cx0 - rx0 : cx1 - rx0]
        key_z = (z0 + k) * H * W
        sel = on_border & (mapped > 0)
        inner_k.append(key_z + gy[sel] * W + gx[sel])
        inner_i.append(mapped[sel])
        sel = ~in_core & (mapped > 0)
        outer_k.append(key_z + gy[sel] * W + gx[sel])
        outer_i.append(mapped[sel])
    cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
    return ChunkInstances(local, n_ids, cat(inner_k, np.int64), cat(inner_i, np.uint32),
                          cat(outer_k, np.int64), cat(outer_i, np.uint32), cut)


@dataclass
class Stitching:
    luts: list[np.ndarray]  # per chunk: local id -> global id (index 0 -> 0)
    n_instances: int
    mismatches: int  # ring pixels labelled by one chunk and not by its neighbour (only when cut > 0)


def stitch(chunks: list[ChunkInstances]) -> Stitching:
    """Union-find over ids that label the same pixel from two chunks; compact global ids 1..n.

    Ids are numbered in chunk order, then local order, so the result does not depend on timing.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    counts = np.array([c.n_ids for c in chunks], np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    total = int(offsets[-1])
    def cat(parts):
        return np.concatenate([np.zeros(0, np.int64), *parts])

    # Node of (chunk i, local id k) = offsets[i] + k - 1.
    inner_k = cat(c.inner_keys for c in chunks)
    inner_n = cat(c.inner_ids.astype(np.int64) - 1 + offsets[i] for i, c in enumerate(chunks))
    outer_k = cat(c.outer_keys for c in chunks)
    outer_n = cat(c.outer_ids.astype(np.int64) - 1 + offsets[i] for i, c in enumerate(chunks))
    order = np.argsort(inner_k, kind="stable")
    inner_k, inner_n = inner_k[order], inner_n[order]
    pos = np.searchsorted(inner_k, outer_k)
    pos_c = np.minimum(pos, max(inner_k.size - 1, 0))
    hit = (pos < inner_k.size) & (inner_k[pos_c] == outer_k) if inner_k.size else np.zeros(outer_k.size, bool)
    a, b = outer_n[hit], inner_n[pos_c[hit]]
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(total, total)).tocsr()
    n_comp, comp = connected_components(graph, directed=False)
    # Number components by their first node, so ids follow chunk order.
    first = np.full(n_comp, total, np.int64)
    np.minimum.at(first, comp, np.arange(total))
    rank = np.empty(n_comp, np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(n_comp)
    dtype = np.uint32 if n_comp < 2**32 - 1 else np.uint64
    glob = (rank[comp] + 1).astype(dtype)
    luts = [np.concatenate([[0], glob[offsets[i] : offsets[i + 1]]]).astype(dtype) for i in range(len(chunks))]
    return Stitching(luts, int(n_comp), int((~hit).sum()))


def instances_in_chunks(
    prob: np.ndarray, heat: np.ndarray | None, chunks: tuple[int, int, int], halo: int = 256, **kw
) -> tuple[np.ndarray, Stitching, int]:
    """In-memory driver of the chunked algorithm (tests, small volumes): labels, stitching, cut objects."""
    Z, H, W = prob.shape
    cz, cy, cx = chunks
    boxes, parts = [], []
    for z0 in range(0, Z, cz):
        for y0 in range(0, H, cy):
            for x0 in range(0, W, cx):
                core = (y0, min(H, y0 + cy), x0, min(W, x0 + cx))
                win = window_box(core, (H, W), halo)
                zs = slice(z0, min(Z, z0 + cz))
                ws = (zs, slice(win[0], win[1]), slice(win[2], win[3]))
                part_heat = None if heat is None else heat[ws]
                parts.append(chunk_instances(prob[ws], part_heat, z0, core, win, prob.shape, **kw))
                boxes.append((zs, slice(core[0], core[1]), slice(core[2], core[3])))
    st = stitch(parts)
    out = np.zeros(prob.shape, st.luts[0].dtype if st.luts else np.uint32)
    for box, part, lut in zip(boxes, parts, st.luts):
        out[box] = lut[part.local]
    return out, st, sum(p.cut for p in parts)
