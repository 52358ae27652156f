import numpy as np
import pytest
import tifffile

from napari_mito_wda.core.data.checkpoint import load_checkpoint
from napari_mito_wda.core.data.synthetic import SOURCE, make_volume
from napari_mito_wda.core.engine.model import ModelConfig, MultiTaskUNet
from napari_mito_wda.core.training.pretrain import pretrain
from napari_mito_wda.core.training.supervised import FitSettings, bce_loss, fit, prepare_slices, seg_loss


def test_seg_loss_ignores_255_and_rewards_right_answers():
    import torch

    target = torch.tensor([[[[1, 0, 255]]]])
    good = torch.tensor([[[[8.0, -8.0, 50.0]]]])
    bad = torch.tensor([[[[-8.0, 8.0, -50.0]]]])
    assert float(seg_loss(good, target)) < 0.01
    assert float(seg_loss(bad, target)) > 1.0
    # the ignored pixel does not matter at all
    ignored = torch.tensor([[[[8.0, -8.0, -50.0]]]])
    assert float(seg_loss(ignored, target)) == pytest.approx(float(seg_loss(good, target)))


def test_bce_loss_on_a_crop_with_no_mitochondrion_fades_with_the_object():
    """The negative crops' loss (background where the user clicked, IGNORE elsewhere): the mean cross-entropy
    of the supervised pixels, so a faded object costs little, unlike seg_loss whose Dice term stays near 1 on
    an empty target until the summed probability is near 0."""
    import torch

    target = torch.full((1, 1, 60, 60), 255)
    target[..., 5:55, 5:55] = 0  # the clicked object, 2,500 pixels
    faded = torch.where(target == 0, -3.0, 9.0)  # p = 0.047 on the object; the rest ignored
    assert float(bce_loss(faded, target)) == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(-3.0))))
    assert float(bce_loss(faded, target)) < 0.05 and float(seg_loss(faded, target)) > 1.0
    assert float(bce_loss(-faded, target)) > 3.0  # still there (p = 0.95): costly


def _small_data(seed=0):
    img, inst = make_volume((4, 96, 96), n_objects=8, domain=SOURCE, seed=seed)
    return img, inst


def test_fit_learns_reports_and_stops_on_request(one_thread):
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


def test_weighted_detection_loss_makes_a_missed_peak_cost_more_than_plain_mse():
    import torch

    from napari_mito_wda.core.training.supervised import detection_loss
    from napari_mito_wda.core.training.targets import centre_heatmap

    target = torch.from_numpy(centre_heatmap((64, 64), np.array([[32.0, 32.0]]), 3.0))[None, None]
    flat = torch.zeros_like(target)  # a detector that never fires
    half = 0.5 * target              # peaks at half height, as the shipped source model's do
    # plain MSE: the silent detector is almost as good as a half-height one, both tiny next to the seg loss
    assert detection_loss(flat, target) < 0.01 and detection_loss(half, target) < 0.01
    weighted_flat = float(detection_loss(flat, target, 20.0))
    weighted_half = float(detection_loss(half, target, 20.0))
    assert weighted_flat > 10 * detection_loss(flat, target)
    assert weighted_half == pytest.approx(weighted_flat / 4, rel=1e-5)  # the error halves at every pixel
    assert detection_loss(target, target, 20.0) == 0
    assert detection_loss(half, target, 0.0) == torch.nn.functional.mse_loss(half, target)


def test_crop_zoom_range_reaches_the_crops():
    from napari_mito_wda.core.training.supervised import crop_sample

    rng = np.random.default_rng(0)
    label = np.zeros((256, 256), np.uint8)
    label[96:160, 96:160] = 1  # a 64-px square: its area in a 64-px crop tells the zoom
    areas = {s: [] for s in ((0.5, 0.5), (2.0, 2.0))}
    for s in areas:
        for _ in range(8):
            _, lab, _ = crop_sample(rng, np.zeros((256, 256), np.float32), label, [], 64, 0.0, scale=s)
            areas[s].append((lab == 1).mean())
    # zoom 2 shows 128 px in 64 (the square fills at most a quarter); zoom 0.5 shows 32 px
    assert max(areas[(2.0, 2.0)]) <= 0.26 and max(areas[(0.5, 0.5)]) > 0.5


def test_det_head_only_changes_the_centre_head_and_nothing_else():
    import torch

    img, inst = _small_data(seed=3)
    data = prepare_slices(img, inst > 0, factor=1, sigma=3.0)
    model = MultiTaskUNet(ModelConfig(base=8, depth=2, proj_dim=4, downsample=1))
    list(fit(data, FitSettings(max_iters=20, batch=2, crop=64, lr=3e-3), model=model))  # a trained start
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = FitSettings(max_iters=30, batch=2, crop=64, lr=3e-3, det_head_only=True, det_pos_weight=10)
    reports = list(fit(data, settings, model=model, val=data))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("det_head.") for k in changed), sorted(changed)
    assert any(k.endswith("weight") for k in changed)
    assert reports[-1].val_dice is None  # validation Dice cannot see a detector: the last weights are kept
    assert all(p.requires_grad for p in model.parameters())  # the model is left trainable


def test_elastic_warps_every_plane_alike_and_keeps_objects_whole():
    from scipy import ndimage as ndi

    from napari_mito_wda.core.training.augment import elastic

    mask = np.zeros((128, 128), np.float32)
    mask[40:88, 40:88] = 1
    warped_img, warped_mask = elastic(np.random.default_rng(0), [mask * 0.8, mask.copy()])
    assert np.allclose(warped_img, warped_mask * 0.8, atol=1e-6)  # one field for all planes
    moved = (warped_mask > 0.5) != (mask > 0.5)
    assert moved.sum() > 50  # it warps...
    assert abs((warped_mask > 0.5).sum() / mask.sum() - 1) < 0.15  # ...without tearing the object apart
    assert ndi.label(warped_mask > 0.5)[1] == 1
    same = elastic(np.random.default_rng(0), [mask], alpha=0.0)[0]
    assert np.allclose(same, mask)


def test_cut_paste_moves_image_and_labels_of_the_donor_together():
    from napari_mito_wda.core.training.augment import cut_paste
    from napari_mito_wda.core.training.supervised import crop_sample

    rng = np.random.default_rng(0)
    recipient = [np.zeros((64, 64), np.float32), np.zeros((64, 64), np.float32)]
    donor_lab = (np.random.default_rng(1).random((64, 64)) > 0.5).astype(np.float32)
    out_img, out_lab = cut_paste(rng, recipient, [donor_lab * 0.7, donor_lab], 32)
    changed = out_img != 0
    assert np.array_equal(out_img, out_lab * 0.7)  # image and label from the same donor window
    ys, xs = np.nonzero(changed)
    assert ys.max() - ys.min() < 32 and xs.max() - xs.min() < 32 and changed.sum() > 300
    # through crop_sample: a slice with no mitochondria gets the donor's, image and label aligned
    img, lab, _ = crop_sample(rng, np.zeros((64, 64), np.float32), np.zeros((64, 64), np.uint8), [], 64, 0.0,
                              scale=(1.0, 1.0), donor=(np.ones((64, 64), np.float32), np.ones((64, 64), np.uint8), []))
    assert (lab == 1).mean() == pytest.approx(0.25) and np.array_equal(img > 0.5, lab == 1)


def test_degrade_blurs_detail_and_remaps_grey_monotonically():
    from napari_mito_wda.core.training.augment import degrade

    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))
    checker = (np.indices((64, 64)).sum(0) % 2).astype(np.float32)  # finest detail there is
    for seed in range(5):
        out = degrade(np.random.default_rng(seed), ramp)
        assert out.shape == ramp.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
        assert np.all(np.diff(out[32, 2:-2]) >= -1e-6)  # a tone curve, not a shuffle: order of grey kept
        assert abs(out - ramp).max() > 0.02  # and not the identity
        fine = degrade(np.random.default_rng(seed), checker)
        assert fine[8:-8, 8:-8].std() < 0.6 * checker.std()  # pixel-level detail is lost


def test_fit_runs_with_elastic_cut_paste_and_degrade():
    img, inst = _small_data(seed=4)
    data = prepare_slices(img, inst > 0, factor=1, sigma=3.0)
    model = MultiTaskUNet(ModelConfig(base=8, depth=2, proj_dim=4, downsample=1))
    settings = FitSettings(max_iters=12, batch=2, crop=64, report_every=4, elastic=0.5, cut_paste=0.5, degrade=0.5)
    reports = list(fit(data, settings, model=model))
    assert reports[-1].done and reports[-1].step == 12 and np.isfinite(reports[-1].losses["seg"])


def test_weight_average_moves_by_its_decay_and_copies_counters():
    import torch

    from napari_mito_wda.core.training.supervised import WeightAverage

    model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(0.0)
    avg = WeightAverage(model, decay=0.75)
    with torch.no_grad():
        model[0].weight.fill_(4.0)
    model[1].num_batches_tracked.fill_(7)
    avg.update(model)
    assert torch.allclose(avg.shadow[0].weight, torch.full((1, 2), 1.0))  # 0.75 * 0 + 0.25 * 4
    avg.update(model)
    assert torch.allclose(avg.shadow[0].weight, torch.full((1, 2), 1.75))  # 0.75 * 1 + 0.25 * 4
    assert int(avg.shadow[1].num_batches_tracked) == 7
    assert float(model[0].weight[0, 0]) == 4.0  # the trained model is untouched
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


def test_fit_with_a_weight_average_keeps_the_averaged_weights():
    import copy

    img, inst = _small_data(seed=5)
    data = prepare_slices(img, inst > 0, factor=1, sigma=3.0)
    start = MultiTaskUNet(ModelConfig(base=8, depth=2, proj_dim=4, downsample=1))
    settings = FitSettings(max_iters=10, batch=2, crop=64, lr=3e-3, seed=1)

    def moved(model):
        return float((model.seg_head.weight - start.seg_head.weight).abs().sum())

    raw = copy.deepcopy(start)
    list(fit(data, settings, model=raw))
    averaged = FitSettings(**(settings.to_dict() | {"ema": 0.999}))
    # decay 0.999 over 10 steps: the kept weights go ~1% of the raw ones' way, with validation or without
    for val in (None, data):
        model = copy.deepcopy(start)
        reports = list(fit(data, averaged, model=model, val=val))
        assert reports[-1].done and reports[-1].step == 10
        assert 0 < moved(model) < 0.05 * moved(raw)
