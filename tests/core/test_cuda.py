"""The GPU path: the same engine on CUDA (skipped without a GPU; run where torch sees one)."""

import numpy as np
import pytest
import torch

from napari_mito_wda.core.adapt import AdaptSettings, adapt
from napari_mito_wda.core.data.checkpoint import LoadedModel
from napari_mito_wda.core.data.synthetic import TARGET, make_volume
from napari_mito_wda.core.engine.device import pick_device, release_memory
from napari_mito_wda.core.engine.inference import predict_volume
from napari_mito_wda.core.engine.model import ModelConfig, MultiTaskUNet
from napari_mito_wda.core.training.supervised import prepare_slices

pytestmark = pytest.mark.cuda


def _model(seed: int = 0) -> MultiTaskUNet:
    torch.manual_seed(seed)
    return MultiTaskUNet(ModelConfig(base=4, depth=2, proj_dim=8, downsample=1)).eval()


def test_gpu_prediction_matches_the_cpu():
    vol, _ = make_volume((2, 96, 128), n_objects=5, seed=2)
    cpu_model, gpu_model = _model(), _model().cuda()
    p_cpu, h_cpu = predict_volume(cpu_model, vol, pick_device("cpu", "fp32"))
    p_gpu, h_gpu = predict_volume(gpu_model, vol, pick_device("cuda", "fp32"))
    np.testing.assert_allclose(p_gpu, p_cpu, atol=1e-3)
    np.testing.assert_allclose(h_gpu, h_cpu, atol=1e-3)


def test_gpu_adaptation_runs_and_its_memory_is_released():
    img, _ = make_volume((3, 96, 96), n_objects=6, domain=TARGET, seed=3)
    src_img, src_inst = make_volume((2, 96, 96), n_objects=6, seed=4)
    source = prepare_slices(src_img, src_inst > 0, 1, sigma=3.0)
    release_memory()
    before = torch.cuda.memory_allocated()
    model = _model()
    loaded = LoadedModel(model=model, config=model.config.to_dict(), meta={}, path="tiny",
                         extras={"source_prototypes": torch.nn.functional.normalize(torch.randn(2, 8), dim=1)})
    settings = AdaptSettings(minutes=2, max_iters=4, stage1_rounds=1, stage2_rounds=1, source_batch=1,
                             target_batch=2, crop=64, label_slices=2)
    reports = list(adapt(img, np.array([[1, 40, 40]], float), loaded, settings, source_data=source,
                         dev=pick_device("cuda")))
    assert reports[-1].stage == "done" and next(model.parameters()).is_cuda
    del reports, loaded, model
    release_memory()
    # everything the run allocated (model, optimiser, activations) is given back once it is dropped
    assert torch.cuda.memory_allocated() <= before
    assert torch.cuda.memory_reserved() - torch.cuda.memory_allocated() < 2**20
