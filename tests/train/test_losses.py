"""Known-answer tests for radiology.train.losses."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from radiology.train.losses import (  # noqa: E402
    LOSSES,
    BinaryFocalLoss,
    FocalLoss,
    NCEandRCE,
    WeightedBCEWithLogits,
    WeightedCrossEntropy,
    make_loss,
    positive_weights,
)

LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.3, -0.2], [-1.0, 2.5, 0.0], [0.0, 0.0, 3.0]])
TARGETS = torch.tensor([0, 2, 1, 0])
WEIGHTS = [1.0, 2.0, 0.5]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_focal_with_gamma_zero_is_cross_entropy(reduction):
    expected = F.cross_entropy(LOGITS, TARGETS, weight=torch.tensor(WEIGHTS), reduction=reduction)
    got = FocalLoss(gamma=0.0, weight=WEIGHTS, reduction=reduction)(LOGITS, TARGETS)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(FocalLoss(0.0, reduction=reduction)(LOGITS, TARGETS),
                               F.cross_entropy(LOGITS, TARGETS, reduction=reduction))


def test_focal_known_answer():
    # One sample, p_y = softmax([0, ln 3])[1] = 3/4: loss = -(1/4)^2 ln(3/4).
    logits = torch.tensor([[0.0, math.log(3.0)]])
    got = FocalLoss(gamma=2.0)(logits, torch.tensor([1]))
    assert float(got) == pytest.approx(-(0.25**2) * math.log(0.75), rel=1e-6)
    # Easy samples are down-weighted relative to CE.
    assert float(FocalLoss(2.0)(LOGITS, TARGETS)) < float(F.cross_entropy(LOGITS, TARGETS))


def test_binary_focal_with_gamma_zero_is_bce_with_pos_weight():
    logits = torch.tensor([[2.0, -1.0, 0.3], [-0.5, 0.7, 4.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    pos_weight = torch.tensor([3.0, 0.5, 2.0])
    expected = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight)
    torch.testing.assert_close(BinaryFocalLoss(0.0, pos_weight=pos_weight)(logits, targets), expected)
    # gamma = 2 on one element: y = 1, p = sigmoid(0) = 1/2 -> (1/2)^2 * ln 2.
    got = BinaryFocalLoss(2.0)(torch.tensor([[0.0]]), torch.tensor([[1.0]]))
    assert float(got) == pytest.approx(0.25 * math.log(2.0), rel=1e-6)


def test_nce_rce_by_hand_on_two_samples():
    logits = torch.tensor([[math.log(2.0), 0.0, 0.0], [0.0, math.log(3.0), 0.0]])
    targets = torch.tensor([0, 2])
    # Sample 1: p = (1/2, 1/4, 1/4), y = 0.  Sample 2: p = (1/5, 3/5, 1/5), y = 2.
    p1, p2 = [0.5, 0.25, 0.25], [0.2, 0.6, 0.2]
    nce1 = math.log(p1[0]) / sum(math.log(p) for p in p1)
    nce2 = math.log(p2[2]) / sum(math.log(p) for p in p2)
    a = -4.0
    rce1 = -sum(p * (0.0 if k == 0 else a) for k, p in enumerate(p1))  # -A (1 - p_y)
    rce2 = -sum(p * (0.0 if k == 2 else a) for k, p in enumerate(p2))
    alpha, beta = 2.0, 0.5
    expected = ((alpha * nce1 + beta * rce1) + (alpha * nce2 + beta * rce2)) / 2
    got = NCEandRCE(3, alpha=alpha, beta=beta)(logits, targets)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    per_sample = NCEandRCE(3, alpha=alpha, beta=beta, reduction="none")(logits, targets)
    np.testing.assert_allclose(per_sample.numpy(), [alpha * nce1 + beta * rce1, alpha * nce2 + beta * rce2],
                               rtol=1e-6)
    # The authors' clamp at 1e-4 is A = ln(1e-4): beta rescaled.
    clamped = NCEandRCE(3, alpha=0.0, beta=1.0, log_zero=math.log(1e-4))(logits, targets)
    assert float(clamped) == pytest.approx(math.log(1e-4) / -4.0 * (rce1 + rce2) / 2, rel=1e-6)


def test_nce_rce_is_bounded():
    # A confidently wrong (mislabelled) sample costs at most alpha * 1 + beta * 4.
    got = NCEandRCE(3)(torch.tensor([[50.0, -50.0, -50.0]]), torch.tensor([2]))
    assert float(got) <= 5.0 + 1e-5
    assert torch.isfinite(got)


def test_label_smoothing_equals_torch():
    weight = torch.tensor(WEIGHTS)
    expected = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=0.2)(LOGITS, TARGETS)
    got = WeightedCrossEntropy(weight=WEIGHTS, label_smoothing=0.2)(LOGITS, TARGETS)
    torch.testing.assert_close(got, expected)
    # Unweighted, by hand: (1 - eps) CE + eps * mean over classes of -log p_k.
    log_p = F.log_softmax(LOGITS, dim=1)
    by_hand = (0.8 * -log_p[torch.arange(4), TARGETS] + 0.2 * -log_p.mean(dim=1)).mean()
    torch.testing.assert_close(WeightedCrossEntropy(label_smoothing=0.2)(LOGITS, TARGETS), by_hand)


def test_bce_pos_weight_by_hand():
    logits = torch.tensor([[0.0, 1.0]])
    targets = torch.tensor([[1.0, 0.0]])
    got = WeightedBCEWithLogits(pos_weight=[3.0, 5.0])(logits, targets)
    # Label 0: 3 * -ln(1/2); label 1 (negative, pos_weight unused): -ln(1 - sigmoid(1)) = ln(1 + e).
    expected = (3 * math.log(2.0) + math.log(1 + math.e)) / 2
    assert float(got) == pytest.approx(expected, rel=1e-6)
    smoothed = WeightedBCEWithLogits(label_smoothing=0.2)(logits, targets)
    torch.testing.assert_close(smoothed, F.binary_cross_entropy_with_logits(logits, torch.tensor([[0.9, 0.1]])))


def test_fastai_protocol():
    single = make_loss("ce", n_classes=3, multi_label=False)
    probs = single.activation(LOGITS)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(4))
    assert single.decodes(probs).tolist() == [0, 1, 1, 2]
    multi = make_loss("bce", n_classes=2, multi_label=True)
    probs = multi.activation(torch.tensor([[0.0, 2.0], [-3.0, 0.1]]))
    assert multi.decodes(probs).tolist() == [[False, True], [False, True]]
    for name in ("ce", "focal", "nce_rce"):
        loss = make_loss(name, n_classes=3, multi_label=False)
        loss.reduction = "none"  # what Learner.get_preds(with_loss=True) does
        assert loss(LOGITS, TARGETS).shape == (4,)
    for name in ("bce", "focal"):
        loss = make_loss(name, n_classes=3, multi_label=True)
        loss.reduction = "none"
        assert loss(LOGITS, (LOGITS > 0).float()).shape == (4,)


def test_fastai_tensor_subclasses_and_half_precision():
    from fastai.torch_core import TensorBase, TensorCategory

    loss = make_loss("focal", n_classes=3, multi_label=False, class_weights=WEIGHTS)
    value = loss(TensorBase(LOGITS.half()), TensorCategory(TARGETS))
    assert value.dtype == torch.float32 and torch.isfinite(value)


def test_gradients_are_finite_for_extreme_logits():
    logits = torch.tensor([[80.0, -80.0, 0.0], [-80.0, 80.0, 0.0]], requires_grad=True)
    for loss in (FocalLoss(2.0), NCEandRCE(3), WeightedCrossEntropy(label_smoothing=0.1)):
        logits.grad = None
        loss(logits, torch.tensor([0, 0])).backward()
        assert torch.isfinite(logits.grad).all(), loss
    logits = torch.tensor([[80.0, -80.0]], requires_grad=True)
    BinaryFocalLoss(2.0)(logits, torch.tensor([[1.0, 1.0]])).backward()
    assert torch.isfinite(logits.grad).all()


def test_make_loss_builds_each_name():
    assert LOSSES == ("ce", "focal", "nce_rce", "bce")
    assert isinstance(make_loss("ce", n_classes=3, multi_label=False, class_weights=WEIGHTS, label_smoothing=0.1),
                      WeightedCrossEntropy)
    assert make_loss("focal", n_classes=3, multi_label=False, gamma=1.5).gamma == 1.5
    assert isinstance(make_loss("focal", n_classes=3, multi_label=True, pos_weight=[1, 2, 3]), BinaryFocalLoss)
    assert isinstance(make_loss("nce_rce", n_classes=3, multi_label=False), NCEandRCE)
    bce = make_loss("bce", n_classes=3, multi_label=True, pos_weight=torch.tensor([1.0, 2.0, 3.0]))
    assert bce.pos_weight.tolist() == [1.0, 2.0, 3.0]
    assert "pos_weight" in dict(bce.named_buffers())  # moves with .to(device)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "dice", "multi_label": False}, "unknown loss 'dice'"),
        ({"name": "bce", "multi_label": False}, "multi-label only"),
        ({"name": "ce", "multi_label": True}, "single-label only"),
        ({"name": "nce_rce", "multi_label": True}, "single-label only"),
        ({"name": "ce", "multi_label": False, "class_weights": [1.0, 2.0]}, "2 values for 3 outputs"),
        ({"name": "ce", "multi_label": False, "pos_weight": [1.0, 2.0, 3.0]}, "pos_weight is for multi-label"),
        ({"name": "bce", "multi_label": True, "class_weights": [1.0, 2.0, 3.0]}, "use pos_weight"),
        ({"name": "ce", "multi_label": False, "label_smoothing": 1.0}, "label_smoothing"),
        ({"name": "focal", "multi_label": False, "gamma": -1.0}, "gamma"),
        ({"name": "ce", "multi_label": False, "class_weights": [1.0, -1.0, 1.0]}, "non-negative"),
    ],
)
def test_make_loss_errors(kwargs, message):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=message):
        make_loss(name, n_classes=3, **kwargs)


def test_positive_weights():
    targets = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1], [1, 0, 1]])
    # Label 0: 2 neg / 2 pos; label 1: no positives -> max; label 2: 1 neg / 3 pos.
    np.testing.assert_allclose(positive_weights(targets, max_weight=10.0), [1.0, 10.0, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(positive_weights([[1], [1]], max_weight=10.0), [0.1])  # no negatives: clipped
    assert positive_weights(targets).dtype == np.float32
    with pytest.raises(ValueError, match="0 and 1"):
        positive_weights([[2, 0]])
    with pytest.raises(ValueError, match="shape"):
        positive_weights([1, 0])
