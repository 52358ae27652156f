import numpy as np
import pytest
import tifffile

from napari_mito_wda.core.data.checkpoint import load_checkpoint
from napari_mito_wda.core.data.synthetic import SOURCE, make_volume
from napari_mito_wda.core.engine.model import ModelConfig, MultiTaskUNet
from napari_mito_wda.core.training.pretrain import pretrain
from napari_mito_wda.core.training.supervised import FitSettings, fit, prepare_slices, seg_loss


def test_seg_loss_ignores_255_and_rewards_right_answers():
    import torch

    target = torch.tensor([[[[1, 0, 255]]]])
    good = torch.tensor([[[[8.0, -8.0, 50.0]]]])
    bad = torch.tensor([[[[-8.0, 8.0, -50.0]]]])
    assert float(seg_loss(good, target)) < 0.01
    assert float(seg_loss(bad, target)) > 1.0
    # the ignored pixel does not matter at all
    assert float(seg_loss(torch.tensor([[[[8.0, -8.0, -50.0]]]]), target)) == pytest.approx(float(seg_loss(good, target)))


def _small_data(seed=0):
    img, inst = make_volume((4, 96, 96), n_objects=8, domain=SOURCE, seed=seed)
    return img, inst


def test_fit_learns_reports_and_stops_on_request():
    img, inst = _small_data()
    data = prepare_slices(img, inst > 0, factor=1, sigma=3.0)
    model = MultiTaskUNet(ModelConfig(base=8, depth=2, proj_dim=4, downsample=1))
    settings = FitSettings(minutes=5, max_iters=60, batch=2, crop=64, report_every=5, lr=3e-3)
    reports = list(fit(data, settings, model=model, val=data))
    steps = [r.step for r in reports if not r.done]
    assert steps == list(range(5, 61, 5)) and reports[-1].done
    assert reports[-1].losses["seg"] < reports[0].losses["seg"]
    assert reports[-1].best_val_dice > 0.5

    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 3

    short = list(fit(data, settings, model=model, stop=stop))
    assert short[-1].done and short[-1].step == 3


def test_pretrain_writes_a_loadable_checkpoint_and_card(tmp_path):
    img, inst = _small_data(1)
    tifffile.imwrite(tmp_path / "img.tif", img, photometric="minisblack")
    tifffile.imwrite(tmp_path / "lab.tif", (inst > 0).astype(np.uint8), photometric="minisblack")
    out = tmp_path / "m.pt"
    card = pretrain(tmp_path / "img.tif", tmp_path / "lab.tif", out,
                    settings=FitSettings(minutes=5, max_iters=6, batch=2, crop=64, report_every=2),
                    config=ModelConfig(base=4, depth=2, proj_dim=4, downsample=1), holdout=1, log=lambda m: None)
    loaded = load_checkpoint(out)
    assert card["steps"] == 6 and "dice" in card["holdout_metrics"] and len(card["sha256"]) == 64
    assert loaded.meta["steps"] == 6 and (tmp_path / "m.json").exists()
    assert loaded.extras["replay_images"].shape[1:] == (64, 64)
    with pytest.raises(FileExistsError):
        pretrain(tmp_path / "img.tif", tmp_path / "lab.tif", out, log=lambda m: None)


def test_crops_never_turn_ignored_borders_into_foreground():
    from napari_mito_wda.core.training.supervised import IGNORE, crop_sample

    rng = np.random.default_rng(0)
    img = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    label = np.zeros((64, 64), np.uint8)
    label[:, 32:] = IGNORE          # right half unknown, no foreground anywhere
    for _ in range(20):
        _, lab, _ = crop_sample(rng, img, label, [], crop=48, augment=1.0)
        assert set(np.unique(lab)) <= {0, IGNORE} and (lab == IGNORE).any()
