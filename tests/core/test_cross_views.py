"""The xz / yz views as a second opinion for the pseudo-labels (cross_views.py) and the IPL rule that
takes every confident component of the blend."""

import numpy as np
import torch

from napari_mito_wda.core.adapt import AdaptSettings, adapt
from napari_mito_wda.core.adapt.cross_views import combine, cross_view_probability, cross_view_refusal
from napari_mito_wda.core.adapt.pseudo_labels import instance_aware_pseudo_labels
from napari_mito_wda.core.data.checkpoint import LoadedModel
from napari_mito_wda.core.data.io import normalize_slices
from napari_mito_wda.core.data.synthetic import TARGET, make_volume
from napari_mito_wda.core.engine.device import pick_device
from napari_mito_wda.core.engine.inference import predict_volume, to_working
from napari_mito_wda.core.engine.model import ModelConfig, MultiTaskUNet
from napari_mito_wda.core.engine.orthoplanes import plane_maps
from napari_mito_wda.core.training.supervised import prepare_slices


def _two_objects():
    prob = np.zeros((40, 60), np.float32)
    prob[5:15, 5:15] = 0.95   # clicked
    prob[25:35, 40:50] = 0.95  # not clicked
    return prob, np.zeros_like(prob), np.array([[10.0, 10.0]])


def test_only_clicked_components_without_select_confident():
    prob, heat, clicks = _two_objects()
    res = instance_aware_pseudo_labels(prob, heat, clicks, ratio=0.0, count=1, t_s=0.8)
    assert res.label[10, 10] == 1 and res.label[30, 45] != 1 and res.n_confident == 0


def test_select_confident_takes_every_confident_component_but_excluded_ones():
    prob, heat, clicks = _two_objects()
    res = instance_aware_pseudo_labels(prob, heat, clicks, ratio=0.0, count=1, t_s=0.8, select_confident=True)
    assert res.label[10, 10] == 1 and res.label[30, 45] == 1
    assert res.n_confident == 1 and res.n_selected == 2
    exclude = np.zeros(prob.shape, bool)
    exclude[30, 45] = True  # a negative click's object
    res = instance_aware_pseudo_labels(prob, heat, clicks, ratio=0.0, count=1, t_s=0.8, select_confident=True,
                                       exclude=exclude)
    assert res.label[30, 45] != 1 and res.n_confident == 0
    assert res.label[39, 0] == 0  # far from the click: background still


def test_combine_blends_the_xy_probability_with_the_cross_views():
    prob = np.full((2, 4, 4), 0.8, np.float32)
    cross = np.stack([np.full((4, 4), v, np.float32) for v in (0.0, 0.2, 0.4)])
    assert combine(prob, None, [0, 2]) is prob
    out = combine(prob, cross, [0, 2])
    np.testing.assert_allclose(out[:, 0, 0], [0.4, 0.6])


def test_cross_views_need_enough_slices():
    config = ModelConfig(base=4, depth=2, proj_dim=8, downsample=2)
    assert "at least 32 voxels" in cross_view_refusal((16, 128, 128), config)
    assert cross_view_refusal((32, 128, 128), config) is None


def test_cross_view_probability_is_on_the_working_grid_and_transposes_back():
    torch.manual_seed(0)
    model = MultiTaskUNet(ModelConfig(base=4, depth=2, proj_dim=8, downsample=2)).eval()
    vol, _ = make_volume((32, 64, 96), n_objects=5, domain=TARGET, seed=1)
    dev = pick_device("cpu")
    cross = cross_view_probability(model, vol, dev, factor=2, scale=1.0)
    assert cross.shape == (32, 32, 48) and cross.dtype == np.float32
    assert np.isfinite(cross).all() and 0 <= cross.min() and cross.max() <= 1
    # Only the planes through the working rows and columns: close to every plane predicted, then shrunk.
    maps = {p: m for p, m, _ in plane_maps(model, normalize_slices(vol), dev, planes=("xz", "yz"))}
    every = np.stack([to_working((maps["xz"][z] + maps["yz"][z]) / 2, 2) for z in range(32)])
    assert every.shape == cross.shape and np.abs(every - cross).mean() < 0.02
    # At factor 1: the mean of the network's probability over the (Z, X) planes and the (Z, Y) planes.
    norm = normalize_slices(vol)
    xz = predict_volume(model, np.ascontiguousarray(norm.transpose(1, 0, 2)), dev, normalized=True)[0]
    yz = predict_volume(model, np.ascontiguousarray(norm.transpose(2, 0, 1)), dev, normalized=True)[0]
    want = (xz.transpose(1, 0, 2) + yz.transpose(1, 2, 0)) / 2
    np.testing.assert_allclose(cross_view_probability(model, vol, dev, factor=1, scale=1.0), want, atol=1e-5)


def test_adaptation_says_whether_it_uses_the_cross_views():
    torch.manual_seed(0)
    model = MultiTaskUNet(ModelConfig(base=4, depth=2, proj_dim=8, downsample=1))
    src_img, src_inst = make_volume((2, 64, 64), n_objects=4, seed=4)
    source = prepare_slices(src_img, src_inst > 0, 1, sigma=3.0)
    loaded = LoadedModel(model=model, config=model.config.to_dict(), meta={}, path="tiny",
                         extras={"source_prototypes": torch.nn.functional.normalize(torch.randn(2, 8), dim=1)})
    fast = AdaptSettings(minutes=5, max_iters=2, stage1_rounds=0, stage2_rounds=1, source_batch=1, target_batch=1,
                         crop=32, label_slices=2, report_every=1, cross_views=True)
    for depth, said in ((32, "pseudo-labels from the xy, xz and yz views"), (4, "no cross views")):
        img, _ = make_volume((depth, 48, 48), n_objects=4, domain=TARGET, seed=3)
        first = next(iter(adapt(img, None, loaded, fast, source_data=source)))
        assert said in first.message
