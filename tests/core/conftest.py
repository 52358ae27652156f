"""Fixtures for engine tests: tiny real networks and checkpoints on synthetic data (no shared data), and the
`mito-wda` runner of the bad-input tests (test_bad_inputs.py, test_bad_outputs_and_faults.py)."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_mito_wda.core.data.checkpoint import save_checkpoint
from napari_mito_wda.core.data.synthetic import make_volume
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


@pytest.fixture
def em(tmp_path):
    img, _ = make_volume((3, 64, 80), n_objects=5, seed=2)
    tifffile.imwrite(tmp_path / "em.tif", img, photometric="minisblack")
    return tmp_path / "em.tif"


def cli(args, capsys, late: bool = False) -> tuple[int, str]:
    """Run `mito-wda ARGS`; (exit code, stderr). The error, when there is one, is stderr's only line (its last
    one for an error met after the work began: `late`)."""
    from napari_mito_wda.cli import main

    rc = main([str(a) for a in args])
    err = capsys.readouterr().err
    if rc != 0:
        assert "Traceback" not in err
        if late:
            assert err.splitlines()[-1].startswith("mito-wda: error: "), err
        else:
            assert err.startswith("mito-wda: error: ") and err.count("\n") == 1, err
    return rc, err


def listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def carded_ckpt(tmp_path):
    """A tiny network (working resolution 1/2, as the shipped one) whose card says it was trained at 5 nm."""
    torch.manual_seed(0)
    model = MultiTaskUNet(ModelConfig(base=4, depth=2, proj_dim=8, downsample=2)).eval()
    return save_checkpoint(tmp_path / "carded.pt", model,
                           meta={"name": "carded", "training_data": {"voxel_size_nm": [40.0, 5.0, 5.0]}})
