"""Pictures of results: EM slices with instance outlines, side by side (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _outline_rgb(img: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Grey image with each instance tinted by a stable colour and outlined."""
    from skimage.segmentation import find_boundaries

    g = (img - img.min()) / max(float(np.ptp(img)), 1e-6)
    rgb = np.repeat(g[..., None], 3, axis=2)
    if labels.max() == 0:
        return rgb
    rng = np.random.default_rng(7)
    colours = rng.uniform(0.0, 0.6, size=(int(labels.max()) + 1, 3))
    colours[np.arange(len(colours)), rng.integers(0, 3, size=len(colours))] = 1.0  # one saturated channel each
    inside = labels > 0
    rgb[inside] = 0.55 * rgb[inside] + 0.45 * colours[labels[inside]]
    edge = find_boundaries(labels, mode="inner")
    rgb[edge] = colours[labels[edge]]
    return rgb


def save_comparison(
    path: str | Path,
    image: np.ndarray,
    panels: dict[str, np.ndarray],
    slices: list[int] | None = None,
    title: str | None = None,
) -> Path:
    """A grid: one row per chosen slice; the raw image, then each labelled panel outlined on it."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    image = image if image.ndim == 3 else image[None]
    slices = slices if slices is not None else sorted({0, image.shape[0] // 2, image.shape[0] - 1})
    cols = 1 + len(panels)
    fig, axes = plt.subplots(len(slices), cols, figsize=(3.2 * cols, 2.6 * len(slices)), squeeze=False)
    for r, z in enumerate(slices):
        axes[r, 0].imshow(image[z], cmap="gray")
        axes[r, 0].set_title(f"EM, slice {z}", fontsize=9)
        for c, (name, lab) in enumerate(panels.items(), start=1):
            lab = lab if lab.ndim == 3 else lab[None]
            axes[r, c].imshow(_outline_rgb(image[z].astype(np.float32), lab[z].astype(np.int64)))
            axes[r, c].set_title(name, fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
