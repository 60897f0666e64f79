"""Fixtures of the pipeline tests: phantom DICOMs of both polarities, pydicom's files, toy knee weights."""

import numpy as np
import pytest

from radiology.synthetic import phantom_radiograph, write_phantom_dicom


@pytest.fixture
def phantoms(tmp_path):
    image = phantom_radiograph((96, 80))
    return {
        "m2": write_phantom_dicom(tmp_path / "m2.dcm", image),
        "m1": write_phantom_dicom(tmp_path / "m1.dcm", image, photometric="MONOCHROME1", encoding="rle"),
        "w1": write_phantom_dicom(tmp_path / "w1.dcm", image, photometric="MONOCHROME1", window=(2048, 3000)),
        "ct": pydicom_file("CT_small.dcm"),
        "rgb": pydicom_file("SC_rgb_small_odd_big_endian.dcm"),
    }


def pydicom_file(name):
    from pydicom.data import get_testdata_file

    return get_testdata_file(name)


@pytest.fixture
def toy_knee(tmp_path):
    """``(weights, image)``: a knee localizer trained on toy knees (saved in ``tmp_path``) and a new toy knee."""
    from radiology.geometry.knee import KneeLocalizer
    from tests.geometry.test_knee import _toy_knee

    rng = np.random.default_rng(0)
    train = [_toy_knee(rng) for _ in range(25)]
    model = KneeLocalizer.fit([im for im, _ in train], [[box] for _, box in train], seed=1)
    return model.save(tmp_path / "toy.npz"), _toy_knee(rng)[0]
