import numpy as np
import pytest

from radiology.geometry import pad_to_square, resize, target_size


def test_width_keeps_aspect():
    image = np.random.default_rng(0).random((1000, 800)).astype(np.float32)
    out = resize(image, width=512)
    assert out.shape == (640, 512) and out.dtype == np.float32
    assert abs(float(out.mean()) - float(image.mean())) < 1e-3  # area averaging keeps the mean


def test_longest_and_forced_size():
    assert target_size((300, 600), longest=100) == (50, 100)
    assert resize(np.zeros((10, 20, 3), np.uint8), width=7, height=9).shape == (9, 7, 3)


def test_upscaling_is_smooth():
    image = np.array([[0.0, 1.0]], np.float32)
    out = resize(image, width=8)
    assert np.all(np.diff(out[0]) >= 0)


@pytest.mark.parametrize("kwargs", [{}, {"width": 0}, {"longest": 10, "width": 5}])
def test_bad_sizes(kwargs):
    with pytest.raises(ValueError):
        target_size((10, 10), **kwargs)


def test_pad_to_square_centres():
    out = pad_to_square(np.ones((3, 6), np.float32), value=0.5)
    assert out.shape == (6, 6)
    assert out[:, 0].tolist() == [0.5, 1.0, 1.0, 1.0, 0.5, 0.5]  # odd pixel at the bottom
    assert pad_to_square(np.ones((4, 4))).shape == (4, 4)
