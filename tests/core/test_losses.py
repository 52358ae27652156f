import math

import numpy as np
import pytest
import torch

from napari_mito_wda.core.adapt.losses import (
    build_prototypes,
    class_focused_contrastive,
    cosine_kmeans,
    detection_weights,
    partial_weighted_mse,
)


def test_partial_mse_on_a_2x2_by_hand():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    weight = torch.tensor([[1.0, 0.0], [2.0, 0.5]])
    # squared errors [[1, 0], [4, 9]]; weighted sum 1*1 + 0 + 2*4 + 0.5*9 = 13.5; 3 weighted pixels -> 4.5
    assert partial_weighted_mse(pred, target, weight).item() == pytest.approx(4.5)
    # Nothing weighted: 0, not NaN.
    assert partial_weighted_mse(pred, target, torch.zeros(2, 2)).item() == 0.0


def test_partial_mse_gradient_only_from_weighted_pixels():
    pred = torch.zeros(1, 1, 2, 2, requires_grad=True)
    weight = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    partial_weighted_mse(pred, torch.ones(1, 1, 2, 2), weight).backward()
    # d/dp (p - 1)^2 = 2 (p - 1) = -2 at the weighted pixel; ignored pixels get no gradient.
    np.testing.assert_allclose(pred.grad[0, 0].numpy(), [[-2.0, 0.0], [0.0, 0.0]])


def test_detection_weights_background_support_boost_and_click_disks():
    shape = (40, 40)
    prev = np.zeros(shape, np.float32)
    prev[0:10, :] = 0.5                    # the previous detector fired here: not background
    centres = np.array([[5.0, 20.0], [20.0, 10.0]])
    clicks = np.array([[30.0, 30.0]])
    w = detection_weights(prev, centres, clicks, shape, sigma=2.0, click_radius=5, peak_boost=3.0)

    def g(d2):  # the 11x11 boost Gaussian, sigma 2, peak 1
        return math.exp(-d2 / (2 * 2.0**2))

    # Pseudo-centre: support (1) + 3 x 1.
    assert w[20, 10] == pytest.approx(4.0)
    # 5 px from a centre, still inside the 11x11 window: 1 + 3 exp(-25/8).
    assert w[20, 15] == pytest.approx(1 + 3 * g(25), rel=1e-5)
    # 6 px away: outside the window, plain background.
    assert w[20, 16] == pytest.approx(1.0)
    # Inside the previous detector's response: only the peak support (heat > 0.01, within ~6 px) counts.
    assert w[5, 25] == pytest.approx(1 + 3 * g(25), rel=1e-5)
    assert w[5, 28] == 0.0 and w[2, 38] == 0.0
    # Click disk (radius 5) is ignored; just outside it is background again.
    assert w[30, 30] == 0.0 and w[30, 35] == 0.0
    assert w[30, 36] == 1.0
    assert w.dtype == np.float32 and w.shape == shape


def test_detection_weights_without_centres_or_clicks_is_the_background_mask():
    prev = np.array([[0.0, 0.2], [0.04, 0.06]], np.float32)
    w = detection_weights(prev, np.zeros((0, 2)), None, (2, 2), sigma=2.0)
    np.testing.assert_array_equal(w, [[1, 0], [1, 0]])


E2 = math.exp(2.0)


def _protos():
    # Class 0 = background at (1, 0), class 1 = mito at (0, 1); each class's negative is the other.
    return {"pos": torch.tensor([[1.0, 0.0], [0.0, 1.0]]), "neg": torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]])}


def test_contrastive_by_hand_anchor_on_positive_and_on_negative():
    # One image, 1 x 3 pixels of 2-d embeddings (unnormalised: the loss normalises them).
    emb = torch.tensor([[3.0, 0.0, 5.0], [0.0, 2.0, 5.0]]).reshape(1, 2, 1, 3)
    labels = torch.tensor([[[0, 1, 255]]])
    conf = torch.ones(1, 1, 3)
    loss = class_focused_contrastive(emb, labels, conf, _protos(), temperature=0.5)
    # Each anchor equals its positive: a.p = 1, a.n = 0 -> -log(e^2 / (e^2 + e^0)) = log(1 + e^-2) per class.
    assert loss.item() == pytest.approx(2 * math.log(1 + math.exp(-2.0)), rel=1e-5)

    # A mito anchor sitting on its negative (the bg prototype): -log(e^0 / (e^0 + e^2)) = log(1 + e^2).
    emb = torch.tensor([[1.0], [0.0]]).reshape(1, 2, 1, 1)
    loss = class_focused_contrastive(emb, torch.tensor([[[1]]]), torch.ones(1, 1, 1), _protos())
    assert loss.item() == pytest.approx(math.log(1 + E2), rel=1e-5)


def test_hard_anchors_are_the_least_confident():
    # Three mito pixels; the least confident (0.2) lies on the negative, the others on the positive.
    emb = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]).reshape(1, 2, 1, 3)
    labels = torch.ones(1, 1, 3, dtype=torch.long)
    conf = torch.tensor([[[0.9, 0.2, 0.6]]])
    hard_only = class_focused_contrastive(emb, labels, conf, _protos(), n_hard=1, n_random=0)
    assert hard_only.item() == pytest.approx(math.log(1 + E2), rel=1e-5)
    # All three: mean of log(1 + e^2) and twice log(1 + e^-2).
    both = class_focused_contrastive(emb, labels, conf, _protos(), n_hard=1, n_random=5)
    expect = (math.log(1 + E2) + 2 * math.log(1 + math.exp(-2.0))) / 3
    assert both.item() == pytest.approx(expect, rel=1e-5)


def test_random_anchors_repeat_with_the_same_generator_and_count_is_capped():
    torch.manual_seed(0)
    emb = torch.randn(2, 4, 8, 8)
    labels = torch.randint(0, 2, (2, 8, 8))
    labels[0, :2] = 255
    conf = torch.rand(2, 8, 8)
    protos = {"pos": torch.randn(2, 4), "neg": torch.randn(2, 3, 4)}
    a = class_focused_contrastive(emb, labels, conf, protos, n_hard=3, n_random=4,
                                  generator=torch.Generator().manual_seed(1))
    b = class_focused_contrastive(emb, labels, conf, protos, n_hard=3, n_random=4,
                                  generator=torch.Generator().manual_seed(1))
    c = class_focused_contrastive(emb, labels, conf, protos, n_hard=3, n_random=4,
                                  generator=torch.Generator().manual_seed(2))
    assert a.item() == b.item() and a.item() != c.item()


def test_no_anchors_gives_zero_and_prototypes_get_no_gradient():
    emb = torch.randn(1, 2, 2, 2, requires_grad=True)
    protos = {"pos": torch.randn(2, 2, requires_grad=True), "neg": torch.randn(2, 1, 2, requires_grad=True)}
    zero = class_focused_contrastive(emb, torch.full((1, 2, 2), 255), torch.ones(1, 2, 2), protos)
    assert zero.item() == 0.0
    zero.backward()
    loss = class_focused_contrastive(emb, torch.tensor([[[0, 1], [1, 255]]]), torch.ones(1, 2, 2), protos)
    loss.backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    assert protos["pos"].grad is None and protos["neg"].grad is None


def test_cosine_kmeans_finds_two_directions():
    feats = torch.tensor([[2.0, 0.1, 0.0], [1.0, -0.1, 0.0], [0.0, 0.0, 3.0], [0.0, 0.1, 1.0]])
    cent = cosine_kmeans(feats, 2, generator=torch.Generator().manual_seed(0))
    cent = cent[cent[:, 0].argsort(descending=True)]
    # Cluster 1: mean of (1, .05, 0)/|.| and (1, -.1, 0)/|.| points along x; cluster 2 mostly along z.
    assert cent[0, 0] > 0.99 and cent[1, 2] > 0.99
    np.testing.assert_allclose(cent.norm(dim=1).numpy(), [1.0, 1.0], rtol=1e-6)
    assert cosine_kmeans(feats[:1], 2).shape == (1, 3)      # fewer points than k -> fewer centroids
    assert cosine_kmeans(feats[:0], 2).shape == (0, 3)


def test_build_prototypes_by_hand():
    gen = torch.Generator().manual_seed(0)
    bg_feats = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [-3.0, 0.0]])
    mito_feats = torch.tensor([[0.0, 1.0], [0.0, 2.0], [1.0, 1.0]])
    pro = build_prototypes(
        source_mito=torch.tensor([0.0, 2.0]),          # -> (0, 1)
        target_click_mito=torch.tensor([1.0, 1.0]),    # -> (0.7071, 0.7071)
        target_conf_mito=None,                         # missing piece: skipped
        target_bg=torch.tensor([2.0, 0.0]),            # -> (1, 0)
        bg_feats=bg_feats, mito_feats=mito_feats, k=2, generator=gen,
    )
    # mean of (0, 1) and (0.7071, 0.7071), normalised: the direction at 67.5 degrees.
    a = math.radians(67.5)
    np.testing.assert_allclose(pro["pos"][1].numpy(), [math.cos(a), math.sin(a)], atol=1e-6)
    np.testing.assert_allclose(pro["pos"][0].numpy(), [1.0, 0.0], atol=1e-6)
    assert tuple(pro["neg"].shape) == (2, 3, 2)
    # Negatives of mito: the bg positive, then the two bg clusters (+x and -x).
    np.testing.assert_allclose(pro["neg"][1][0].numpy(), [1.0, 0.0], atol=1e-6)
    assert sorted(pro["neg"][1][1:, 0].tolist()) == pytest.approx([-1.0, 1.0])
    # Negatives of bg: the mito positive first.
    np.testing.assert_allclose(pro["neg"][0][0].numpy(), pro["pos"][1].numpy(), atol=1e-6)


def test_build_prototypes_with_missing_pieces():
    # No clicks, no source prototype: the mito positive falls back to the confident-mito mean; a single
    # confident mito embedding gives one centroid, so the two classes have different negative counts.
    pro = build_prototypes(None, None, None, None, torch.tensor([[1.0, 0.0], [-1.0, 0.0]]),
                           torch.tensor([[0.0, 3.0]]), k=2, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(pro["pos"][1].numpy(), [0.0, 1.0], atol=1e-6)
    assert [len(n) for n in pro["neg"]] == [2, 3]
    # Still usable by the loss.
    emb = torch.tensor([[0.0], [1.0]]).reshape(1, 2, 1, 1)
    assert torch.isfinite(class_focused_contrastive(emb, torch.ones(1, 1, 1, dtype=torch.long),
                                                    torch.ones(1, 1, 1), pro))
    with pytest.raises(ValueError, match="mitochondria"):
        build_prototypes(None, None, None, torch.tensor([1.0, 0.0]), None, None)
