import cv2
import numpy as np
import pytest

from radiology.intensity import clahe, enhance_contrast


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_clahe_is_opencv_for_integers(dtype):
    rng = np.random.default_rng(0)
    top = np.iinfo(dtype).max
    image = (rng.random((128, 96)) * 0.3 * top + 0.3 * top).astype(dtype)
    expected = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 8)).apply(image)
    out = clahe(image, clip_limit=3.0, tile_grid=(8, 4))  # (rows, columns)
    assert out.dtype == dtype and np.array_equal(out, expected)


def test_clahe_float_matches_uint16_path():
    rng = np.random.default_rng(1)
    image = rng.random((64, 64)).astype(np.float32) * 0.2 + 0.4
    out = clahe(image)
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    reference = clahe((image * 65535 + 0.5).astype(np.uint16)).astype(np.float32) / 65535
    assert np.allclose(out, reference)
    assert out.std() > image.std() * 2  # local contrast raised


def test_clahe_rejects_bad_input():
    with pytest.raises(ValueError):
        clahe(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError):
        clahe(np.zeros((8, 8), np.uint8), clip_limit=0)
    with pytest.raises(TypeError):
        clahe(np.zeros((8, 8), np.int32))


def test_enhance_contrast_known_answer():
    out = enhance_contrast(np.array([0.0, 0.5, 0.7], np.float32), brightness=0.1, contrast=1.5)
    assert np.allclose(out, [0.0, 0.6, 0.9])
    with pytest.raises(ValueError):
        enhance_contrast(np.zeros(3, np.float32), contrast=0)
