"""build_dataloaders: fastai loaders, batch shapes, sampling, augmentation on training batches only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader

from radiology.augment import MultiView, radiograph_augmentation
from radiology.data import ImageCache, ImageDataset, LabeledImages, build_dataloaders, from_csv
from radiology.pipeline import PadSquare, Pipeline, Resize
from tests.data.conftest import write_case

PIPELINE = Pipeline([Resize(longest=32), PadSquare()])


def always_flip():
    """A radiology.augment pipeline that mirrors every image and does nothing else (a known answer)."""
    return radiograph_augmentation(hflip=1.0, affine_p=0, intensity_p=0, noise_p=0)


@pytest.fixture
def datasets(labeled_phantoms, tmp_path):
    items = from_csv(labeled_phantoms / "labels.csv", None, "file", "label", group_col="patient")
    cache = ImageCache(tmp_path / "cache")
    return ImageDataset(items.subset(range(0, 12)), PIPELINE, cache=cache), ImageDataset(
        items.subset([0, 6, 10]), PIPELINE, cache=cache)


def test_one_batch_shapes_with_fastai_loaders(datasets):
    train_ds, valid_ds = datasets
    dls = build_dataloaders(train_ds, valid_ds, batch_size=4, device="cpu", num_workers=0)
    assert isinstance(dls, DataLoaders) and isinstance(dls.train, DataLoader) and isinstance(dls.valid, DataLoader)
    x, y = dls.train.one_batch()
    assert x.shape == (4, 1, 32, 32) and x.dtype == torch.float32 and y.shape == (4,) and y.dtype == torch.int64
    assert len(dls.train) == 3 and len(dls.valid) == 1
    xv, yv = dls.valid.one_batch()
    assert xv.shape == (3, 1, 32, 32) and yv.tolist() == [0, 1, 2]  # validation in order
    assert sorted(int(v) for _, y in dls.train for v in y) == sorted(train_ds.targets.tolist())


def test_augmentation_runs_on_training_batches_only(tmp_path):
    path = write_case(tmp_path / "p.dcm", seed=4)  # the phantom's "R" marker makes it asymmetric
    items = LabeledImages([(path,)] * 6, [str(i) for i in range(6)], [0, 1] * 3, ["a", "b"])
    dataset = ImageDataset(items, PIPELINE)
    reference = dataset[0][0]
    dls = build_dataloaders(dataset, dataset, batch_size=3, augment=always_flip(), device="cpu")
    for x, _ in dls.train:
        assert torch.equal(x, reference.flip(-1).expand_as(x))
    for x, _ in dls.valid:
        assert torch.equal(x, reference.expand_as(x))
    # A copy in order (what Learner.get_preds makes) neither augments nor resamples.
    x, _ = dls.train.new(shuffle=False).one_batch()
    assert torch.equal(x, reference.expand_as(x))


def test_multi_view_batches_share_the_augmentation(tmp_path):
    left, right = write_case(tmp_path / "l.dcm", seed=1), write_case(tmp_path / "r.dcm", seed=2)
    items = LabeledImages([(left, right)] * 4, list("abcd"), [0, 1, 0, 1], ["x", "y"], views=("left", "right"))
    dataset = ImageDataset(items, PIPELINE)
    reference = dataset[0][0]
    assert reference.shape == (2, 1, 32, 32)
    dls = build_dataloaders(dataset, dataset, batch_size=2, augment=always_flip(), device="cpu")
    x, y = dls.train.one_batch()
    assert x.shape == (2, 2, 1, 32, 32)
    assert torch.equal(x, reference.flip(-1).expand_as(x))  # wrapped in MultiView: both views flipped
    swapping = MultiView(always_flip(), swap_on_hflip=True)
    x, _ = build_dataloaders(dataset, dataset, batch_size=2, augment=swapping, device="cpu").train.one_batch()
    assert torch.equal(x, reference.flip(-1).flip(0).expand_as(x))  # the given MultiView is used as is


def test_min_per_class_and_weighted_sampling(datasets):
    train_ds, valid_ds = datasets
    dls = build_dataloaders(train_ds, valid_ds, batch_size=4, sampler="min_per_class", device="cpu", seed=3)
    batches = [y for _, y in dls.train]
    assert len(batches) == len(dls.train) == 3
    assert all(set(y.tolist()) == {0, 1, 2} for y in batches)  # class "c" has only 2 of 12 images
    weighted = build_dataloaders(train_ds, valid_ds, batch_size=4, sampler="weighted", device="cpu", seed=3)
    counts = np.zeros(3)
    for _ in range(15):
        for _, y in weighted.train:
            counts += np.bincount(y.numpy(), minlength=3)
    np.testing.assert_allclose(counts / counts.sum(), [1 / 3] * 3, atol=0.08)  # uniform 6/4/2 would give .5/.33/.17


def test_seed_makes_epochs_reproducible(datasets):
    train_ds, valid_ds = datasets

    def order(seed):
        dls = build_dataloaders(train_ds, valid_ds, batch_size=4, sampler="min_per_class", device="cpu", seed=seed)
        return [y.tolist() for _ in range(2) for _, y in dls.train]

    assert order(7) == order(7)
    assert order(7) != order(8)


def test_bad_arguments(datasets):
    train_ds, valid_ds = datasets
    with pytest.raises(ValueError, match="sampler"):
        build_dataloaders(train_ds, valid_ds, sampler="balanced")
    with pytest.raises(TypeError, match="nn.Module"):
        build_dataloaders(train_ds, valid_ds, augment=lambda x: x)
