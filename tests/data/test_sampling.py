"""Imbalance: class weights (known answers), MinPerClassSampler batches, weighted sampling."""

from __future__ import annotations

import numpy as np
import pytest

from radiology.data import MinPerClassSampler, class_weights, sample_weights


def test_class_weights_known_answers():
    # counts 1, 2, 4 -> inverse 1, 1/2, 1/4 -> mean 7/12 -> 12/7, 6/7, 3/7
    weights = class_weights(np.array([0, 1, 1, 2, 2, 2, 2, -1]), 3)
    np.testing.assert_allclose(weights, [12 / 7, 6 / 7, 3 / 7], rtol=1e-6)
    assert weights.dtype == np.float32 and weights.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(class_weights(np.array([0, 0, 2, 2]), 4), [1, 0, 1, 0])  # absent classes: 0
    multi = np.array([[1, 1], [1, 0], [1, 0], [1, 0]], np.float32)  # positives 4 and 1
    np.testing.assert_allclose(class_weights(multi), [0.4, 1.6], rtol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        class_weights(np.array([0, 3]), 2)


def test_weighted_sampling_balances_classes():
    targets = np.array([0] * 90 + [1] * 9 + [2])
    weights = sample_weights(targets)
    assert weights.sum() == pytest.approx(1.0)
    draws = np.random.default_rng(0).choice(len(targets), 30000, p=weights)
    np.testing.assert_allclose(np.bincount(targets[draws]) / 30000, [1 / 3] * 3, atol=0.02)


@pytest.mark.parametrize("k", [1, 2])
def test_every_batch_holds_every_class(k):
    targets = np.array([0] * 80 + [1] * 12 + [2] * 3 + [-1] * 5)
    sampler = MinPerClassSampler(targets, batch_size=8, min_per_class=k, seed=0)
    batches = sampler.batches()
    assert len(batches) == 12 and len(sampler) == 96
    for batch in batches:
        assert len(batch) == 8
        assert (np.bincount(targets[batch][targets[batch] >= 0], minlength=3) >= k).all()
    # Rare members are all used before any repeats.
    assert set(np.concatenate(batches)[np.isin(np.concatenate(batches), [92, 93, 94])]) == {92, 93, 94}
    assert list(sampler)[:8] != list(sampler)[:8]  # each epoch draws afresh
    assert MinPerClassSampler(targets, 8, k, seed=5).indices().tolist() == \
        MinPerClassSampler(targets, 8, k, seed=5).indices().tolist()


def test_multi_label_batches_hold_every_label():
    rng = np.random.default_rng(1)
    targets = (rng.random((60, 3)) < [0.6, 0.2, 0.05]).astype(np.float32)
    targets[0, 2] = 1
    for batch in MinPerClassSampler(targets, batch_size=6, seed=0).batches():
        assert (targets[batch].sum(axis=0) >= 1).all()


def test_impossible_batches_are_refused():
    with pytest.raises(ValueError, match="at least 6"):
        MinPerClassSampler(np.array([0, 1, 2] * 4), batch_size=4, min_per_class=2)
