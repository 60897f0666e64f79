"""Known answers for the arithmetic (pseudo-label masks, distribution alignment, sharpening, mixup) and the loaders."""

import pytest

torch = pytest.importorskip("torch")

from radiology.semisup import (  # noqa: E402
    DistributionAlignment,
    ImagesOnly,
    UnlabeledStream,
    mixup,
    one_hot,
    pseudo_labels,
    sharpen,
    soft_cross_entropy,
    unlabeled_loader,
)


def _logits(probs):
    return torch.log(torch.tensor(probs, dtype=torch.float32))


def test_pseudo_labels_respect_the_threshold():
    logits = _logits([[0.97, 0.03], [0.5, 0.5], [0.1, 0.9], [0.02, 0.98]])
    labels, mask = pseudo_labels(logits, 0.95)
    assert labels[[0, 2, 3]].tolist() == [0, 1, 1]
    assert mask.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert pseudo_labels(logits, 0.85)[1].tolist() == [1.0, 0.0, 1.0, 1.0]
    assert pseudo_labels(logits, 0.0)[1].tolist() == [1.0] * 4
    assert pseudo_labels(logits, 1.0)[1].tolist() == [0.0] * 4
    # T = 0.5 squares the odds: 0.9 becomes 0.81 / 0.82 ≈ 0.988, above 0.95.
    assert pseudo_labels(logits, 0.95, temperature=0.5)[1].tolist() == [1.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="threshold"):
        pseudo_labels(logits, 1.5)
    with pytest.raises(ValueError, match=r"\(N, classes\)"):
        pseudo_labels(torch.zeros(4), 0.5)


def test_distribution_alignment_follows_the_formula():
    align = DistributionAlignment(3, momentum=0.9)
    labels = torch.tensor([0, 0, 0, 1])  # prior 0.75 / 0.25 / 0
    align.update_prior(labels)
    torch.testing.assert_close(align.prior(), torch.tensor([0.75, 0.25, 0.0]))
    first = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.6, 0.2]])
    second = torch.tensor([[0.1, 0.1, 0.8], [0.1, 0.1, 0.8]])
    out = align(first)
    # After one batch the bias-corrected running mean is that batch's mean.
    mean = first.mean(0)
    torch.testing.assert_close(align.model_mean(), mean)
    expected = first * torch.tensor([0.75, 0.25, 0.0]) / mean
    torch.testing.assert_close(out, expected / expected.sum(1, keepdim=True))
    align(second)
    m = 0.9
    running = (m * (1 - m) * mean + (1 - m) * second.mean(0)) / (1 - m**2)
    torch.testing.assert_close(align.model_mean(), running)
    # Without update the running mean stays.
    align(second, update=False)
    torch.testing.assert_close(align.model_mean(), running)


def test_distribution_alignment_rebalances_biased_pseudo_labels():
    torch.manual_seed(0)
    # A model biased towards class 0: most images get p(0) near 0.8, the minority ones 0.55.
    p0 = torch.cat([torch.full((80,), 0.8), torch.full((20,), 0.45)])
    probs = torch.stack([p0, 1 - p0], dim=1)
    align = DistributionAlignment(2, prior=[0.5, 0.5])
    aligned = align(probs)
    assert probs.argmax(1).eq(1).sum() == 20
    assert torch.allclose(aligned.sum(1), torch.ones(100))
    # Dividing by the model's mean (0.73 / 0.27) moves the minority rows to class 1 more confidently.
    assert aligned[80:, 1].min() > probs[80:, 1].max()
    assert aligned.mean(0)[1] > probs.mean(0)[1]
    with pytest.raises(ValueError, match="prior"):
        DistributionAlignment(2, prior=[1.0, 0.0])
    with pytest.raises(ValueError, match="2 classes"):
        DistributionAlignment(1)


def test_sharpen_known_answer():
    out = sharpen(torch.tensor([[0.6, 0.4], [0.5, 0.5]]), 0.5)
    torch.testing.assert_close(out, torch.tensor([[0.36 / 0.52, 0.16 / 0.52], [0.5, 0.5]]))
    # Clear winners (a logit gap of 0.3 or more), so that T = 0.01 gives one-hot rows to 1e-3.
    probs = torch.softmax(torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.1, 1.5, 0.4, -0.3], [0.0, 0.0, 1.0, 0.2],
                                        [-1.0, 0.3, 0.2, 2.0], [1.2, 0.2, 0.9, 0.0]]), dim=1)
    torch.testing.assert_close(sharpen(probs, 1.0), probs)
    cold = sharpen(probs, 0.01)
    torch.testing.assert_close(cold, one_hot(probs.argmax(1), 4), atol=1e-3, rtol=0)
    torch.testing.assert_close(sharpen(probs, 0.3).sum(1), torch.ones(5))
    with pytest.raises(ValueError, match="temperature"):
        sharpen(probs, 0.0)


def test_mixup_shapes_and_larger_weight():
    x, other = torch.zeros(3, 1, 8, 8), torch.ones(3, 1, 8, 8)
    y, other_y = one_hot(torch.tensor([0, 0, 0]), 2), one_hot(torch.tensor([1, 1, 1]), 2)
    lam = torch.tensor([0.2, 0.5, 0.9])
    mixed_x, mixed_y = mixup(x, y, other, other_y, lam)
    assert mixed_x.shape == x.shape and mixed_y.shape == y.shape
    weights = torch.tensor([0.8, 0.5, 0.9])  # λ' = max(λ, 1 − λ): never below 1/2 on the first input
    torch.testing.assert_close(mixed_x[:, 0, 3, 3], 1 - weights)
    torch.testing.assert_close(mixed_y[:, 0], weights)
    torch.testing.assert_close(mixed_y.sum(1), torch.ones(3))
    with pytest.raises(ValueError, match="lam"):
        mixup(x, y, other, other_y, torch.tensor([0.5]))
    with pytest.raises(ValueError, match="differ"):
        mixup(x, y, torch.ones(3, 1, 4, 4), other_y, lam)


def test_soft_cross_entropy_matches_hard_targets():
    logits, targets = torch.randn(6, 3), torch.tensor([0, 2, 1, 1, 0, 2])
    torch.testing.assert_close(soft_cross_entropy(logits, one_hot(targets, 3)),
                               torch.nn.functional.cross_entropy(logits, targets))


def test_unlabeled_stream_cycles_and_concatenates():
    batches = [torch.full((3, 1, 2, 2), float(i)) for i in range(2)]
    stream = UnlabeledStream([(b, torch.zeros(3)) for b in batches])  # (x, y): y ignored
    firsts = [stream.take(4, "cpu")[:, 0, 0, 0].tolist() for _ in range(3)]
    assert firsts == [[0, 0, 0, 1], [1, 1, 0, 0], [0, 1, 1, 1]]
    with pytest.raises(ValueError, match="no batch"):
        UnlabeledStream([]).take(1, "cpu")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        UnlabeledStream([torch.zeros(3, 4)]).take(1, "cpu")


def test_unlabeled_loader_drops_targets_and_shuffles():
    from torch.utils.data import TensorDataset

    data = TensorDataset(torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1), torch.zeros(10))
    assert len(ImagesOnly(data)[0]) == 1
    loader = unlabeled_loader(data, 4, seed=1, pin_memory=False)
    epoch = [b for b in loader]
    assert all(len(b) == 1 and b[0].shape == (4, 1, 1, 1) for b in epoch) and len(epoch) == 2
    values = torch.cat([b[0] for b in epoch]).flatten().tolist()
    assert len(set(values)) == 8 and values != sorted(values)
    with pytest.raises(ValueError, match="empty"):
        unlabeled_loader([], 4)
