"""Fixtures for engine tests: tiny real networks and checkpoints on synthetic data (no shared data)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_mito_wda.core.data.checkpoint import save_checkpoint
from napari_mito_wda.core.engine.model import ModelConfig, MultiTaskUNet

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return MultiTaskUNet(ModelConfig(base=4, depth=2, proj_dim=8, downsample=1)).eval()


@pytest.fixture
def tiny_ckpt(tmp_path, tiny_model):
    return save_checkpoint(tmp_path / "tiny.pt", tiny_model, meta={"name": "tiny"})


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def needs_shared(*parts):
    """Mark a test `shared` (select or deselect with -m) and skip it where ../shared/data lacks the file."""
    path = SHARED.joinpath(*parts)
    skip = pytest.mark.skipif(not path.exists(), reason=f"real data not available here ({path} is absent)")
    return lambda test: pytest.mark.shared(skip(test))
