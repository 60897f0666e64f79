import numpy as np
import pytest

from radiology.dicom import read_dicom, to_grayscale
from radiology.intensity import LUMA_WEIGHTS, to_gray


def test_to_gray_is_bt601():
    rgb = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]], np.float32)
    assert np.allclose(to_gray(rgb), [[0.299, 0.587, 0.114, 1.0]])
    assert to_gray(rgb).dtype == np.float32
    assert to_gray(np.zeros((3, 4), np.uint16)).dtype == np.float32
    assert np.allclose(LUMA_WEIGHTS.sum(), 1.0)
    with pytest.raises(ValueError, match="shape"):
        to_gray(np.zeros((3, 4, 4)))


def test_dicom_colour_decoding_uses_the_same_function():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("SC_rgb_small_odd_big_endian.dcm")
    rgb = read_dicom(path, color="keep").pixels
    assert np.array_equal(read_dicom(path).pixels, to_gray(rgb))
    assert np.array_equal(to_grayscale(rgb), to_gray(rgb))
