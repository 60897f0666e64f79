"""ImageDataset: tensors of the right shape, values from Pipeline.read, fixed-size check, views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radiology.data import ImageCache, ImageDataset, from_csv, from_paths, output_size
from radiology.intensity import to_gray
from radiology.pipeline import Decode, FOVCrop, PadSquare, Pipeline, Resize
from radiology.synthetic import phantom_radiograph
from tests.conftest import correlation, shared_path
from tests.data.conftest import SIZE

PIPELINE = Pipeline([Resize(longest=32), PadSquare()])


def test_items_become_tensors_with_the_pipeline_output(labeled_phantoms, tmp_path):
    items = from_csv(labeled_phantoms / "labels.csv", None, "file", "label")
    cache = ImageCache(tmp_path / "cache")
    for channels in (1, 3):
        dataset = ImageDataset(items, PIPELINE, cache=cache, channels=channels)
        x, y = dataset[3]
        assert x.shape == (channels, 32, 32) and x.dtype == torch.float32
        assert y.dtype == torch.int64 and int(y) == 0
        expected = PIPELINE.read(items.paths[3][0])
        for channel in x:
            np.testing.assert_array_equal(channel.numpy(), expected)
    assert len(dataset) == 12 and dataset.size == (32, 32) and dataset.classes == ["a", "b", "c"]
    # Known answer: the stored phantom comes back (polarity and scale right) after the pipeline.
    truth = PIPELINE(phantom_radiograph(SIZE, seed=13))
    assert correlation(dataset[3][0][0].numpy(), truth) > 0.99


def test_pipeline_must_have_a_fixed_size(labeled_phantoms):
    items = from_csv(labeled_phantoms / "labels.csv", None, "file", "label")
    with pytest.raises(ValueError, match="fixed size"):
        ImageDataset(items, Pipeline([Resize(width=32)]))
    with pytest.raises(ValueError, match="fixed size"):
        ImageDataset(items, Pipeline([Resize(longest=32), PadSquare(), FOVCrop()]))
    with pytest.raises(ValueError, match="channels"):
        ImageDataset(items, PIPELINE, channels=2)
    assert output_size(Pipeline([Resize(width=40, height=30)])) == (30, 40)
    assert output_size(Pipeline([Resize(width=40, height=30), PadSquare()])) == (40, 40)
    assert output_size(Pipeline([FOVCrop(), Resize(longest=24), PadSquare()])) == (24, 24)


def test_unlabeled_target_is_minus_one(labeled_phantoms):
    dataset = ImageDataset(from_paths([labeled_phantoms / "a" / "0.dcm"]), PIPELINE)
    assert int(dataset[0][1]) == -1


def test_odir_two_views_rgb_and_gray():
    root = shared_path("fundus", "odir")
    items = from_csv(root / "labels.csv", root, ["left", "right"], list("NDGCAHMO"), multi_label=True)
    items = items.subset([0, 1])
    colour = Pipeline([Resize(longest=32), PadSquare()], decode=Decode(color="keep"))
    x, y = ImageDataset(items, colour, channels=3)[1]
    assert x.shape == (2, 3, 32, 32) and y.dtype == torch.float32 and y.shape == (8,)
    assert y.tolist() == items.targets[1].tolist()
    assert float(x[:, 0].mean()) > float(x[:, 2].mean())  # fundus photographs are red, not blue
    gray, _ = ImageDataset(items, colour, channels=1)[1]
    assert gray.shape == (2, 1, 32, 32)
    np.testing.assert_allclose(gray[:, 0].numpy(), to_gray(x.permute(0, 2, 3, 1).numpy()), atol=1e-6)
    left = colour.read(items.paths[1][0])
    np.testing.assert_array_equal(x[0].permute(1, 2, 0).numpy(), left)


def test_unreadable_files_are_named_by_their_reference_not_their_full_path(labeled_phantoms):
    from radiology.data import data_report, drop_unreadable

    (labeled_phantoms / "b" / "7.dcm").write_bytes(b"")
    items = from_csv(labeled_phantoms / "labels.csv", None, "file", "label")
    kept, failures = drop_unreadable(ImageDataset(items, PIPELINE), progress=False)
    assert len(kept) == len(items) - 1 and [name for name, _ in failures] == ["b/7.dcm"]
    assert failures[0][1].startswith("b/7.dcm") and str(labeled_phantoms) not in failures[0][1]
    assert data_report(failures).decode().splitlines() == ["file,reason", f"b/7.dcm,{failures[0][1]}"]


def test_a_name_that_is_not_utf8_is_escaped_in_the_data_report(tmp_path):
    import os

    from radiology.data import data_report, drop_unreadable, from_folder
    from radiology.io import write_image

    for name in ("a/1.png", "b/2.png"):
        write_image(tmp_path / name, np.ones((8, 6), np.float32))
    (tmp_path / os.fsdecode(b"b/\xff.png")).write_bytes(b"")
    kept, failures = drop_unreadable(ImageDataset(from_folder(tmp_path), PIPELINE), progress=False)
    assert len(kept) == 2 and len(failures) == 1
    report = data_report(failures).decode("utf-8")  # would fail on a surrogate escape
    assert report.splitlines()[1].startswith("b/\\xff.png,b/\\xff.png: ")


def test_model_input_turns_pipeline_images_into_model_channels():
    from radiology.data import model_input

    gray = np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)
    one = model_input(gray, 1)
    assert one.shape == (1, 2, 2) and one.dtype == np.float32
    np.testing.assert_array_equal(one[0], gray)
    three = model_input(gray.astype(np.float64), 3)  # gray repeated, float32 whatever came in
    assert three.shape == (3, 2, 2) and three.dtype == np.float32
    for channel in three:
        np.testing.assert_array_equal(channel, gray)
    rgb = np.stack([gray, 1 - gray, np.full_like(gray, 0.5)], axis=-1)
    kept = model_input(rgb, 3)  # RGB kept, channels first
    np.testing.assert_array_equal(kept, rgb.transpose(2, 0, 1))
    assert kept.flags.c_contiguous
    luma = model_input(rgb, 1)  # RGB made gray by the package's one rule
    np.testing.assert_allclose(luma[0], to_gray(rgb), rtol=0, atol=1e-7)
    np.testing.assert_allclose(luma[0, 0, 0], 0.299 * 0 + 0.587 * 1 + 0.114 * 0.5, atol=1e-6)
    for bad in (np.zeros(4), np.zeros((2, 2, 4)), np.zeros((1, 2, 2, 3))):
        with pytest.raises(ValueError, match=r"^scan\.dcm: pipeline produced shape"):
            model_input(bad, 1, "scan.dcm")
    with pytest.raises(ValueError, match="channels"):
        model_input(gray, 0, "scan.dcm")


def test_the_dataset_and_a_bundle_read_a_view_alike():
    """Training and serving share one rule: ImageDataset.read and Bundle.model_input give the same array."""
    from radiology.data import model_input

    rgb = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    pytest.importorskip("timm")
    from radiology.models import Bundle

    bundle = Bundle(folder=None, backend="eager", classes=["a", "b"], multi_label=False, thresholds=None,
                    views=("image",), channels=1, size=(32, 32), pipeline=PIPELINE)
    np.testing.assert_array_equal(bundle.model_input(rgb, "x.png"), model_input(rgb, 1, "x.png"))
    with pytest.raises(ValueError, match=r"^x\.png: pipeline produced \(16, 16\) images"):
        bundle.model_input(np.zeros((16, 16), np.float32), "x.png")
