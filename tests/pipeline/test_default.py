"""The default pipeline: the preprocessing training uses."""

import numpy as np
import pytest

from radiology.io import write_image
from radiology.pipeline import Decode, PadSquare, Percentile, Pipeline, Resize, default_pipeline


@pytest.mark.parametrize("channels, color", [(1, "gray"), (3, "keep")])
def test_steps_and_decode(channels, color):
    pipe = default_pipeline(64, channels=channels)
    assert pipe == Pipeline([Percentile(), Resize(longest=64), PadSquare()], Decode(color=color))
    assert Pipeline.from_json(pipe.to_json()) == pipe


def test_a_dicom_becomes_a_square_float32_image(phantoms):
    image = default_pipeline(64).read(phantoms["ct"])  # pydicom's CT_small.dcm, 128 x 128
    assert image.shape == (64, 64) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1
    wide = default_pipeline(48).read(phantoms["m2"])  # 96 x 80: resized to 48 x 40, then padded
    assert wide.shape == (48, 48) and np.all(wide[:, :4] == 0) and np.all(wide[:, -4:] == 0)


def test_colour_is_kept_with_three_channels(phantoms, tmp_path):
    assert default_pipeline(32, channels=3).read(phantoms["rgb"]).shape == (32, 32, 3)
    assert default_pipeline(32).read(phantoms["rgb"]).shape == (32, 32)
    path = write_image(tmp_path / "photo.png", np.random.default_rng(0).random((20, 40, 3), dtype=np.float32))
    assert default_pipeline(32, channels=3).read(path).shape == (32, 32, 3)


@pytest.mark.parametrize("size, channels, message", [
    (0, 1, "size must be positive, got 0"),
    (64, 2, "channels must be 1 or 3, got 2"),
])
def test_bad_arguments_are_named(size, channels, message):
    with pytest.raises(ValueError, match=message):
        default_pipeline(size, channels=channels)
