import numpy as np
import pydicom
import pytest

from radiology.dicom import read_dicom
from radiology.synthetic import ENCODINGS, phantom_dicom, phantom_radiograph, write_phantom_dicom


def test_phantom_is_deterministic_and_anatomical():
    a, b = phantom_radiograph((200, 160), seed=1), phantom_radiograph((200, 160), seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, phantom_radiograph((200, 160), seed=2))
    spine = a[100, 78:82].mean()
    lung = a[100, 40].mean()
    air = a[190, 2]
    assert spine > lung > air  # bone bright, lung dark, air darkest


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_every_encoding_stores_the_exact_values(tmp_path, encoding):
    image = phantom_radiograph((64, 64))
    path = write_phantom_dicom(tmp_path / "p.dcm", image, encoding=encoding, bits_stored=12)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == ENCODINGS[encoding]
    stored = read_dicom(path, modality_lut=False).pixels
    assert np.array_equal(stored, np.round(image * 4095).astype(np.uint16))


def test_monochrome1_stores_inverted_values_and_keeps_the_uid():
    image = phantom_radiograph((64, 64))
    ds = phantom_dicom(image, photometric="MONOCHROME1", bits_stored=10, encoding="rle", sop_instance_uid="1.2.9")
    assert ds.SOPInstanceUID == "1.2.9"
    assert ds.pixel_array.max() <= 1023 and ds.pixel_array[0, 0] > 900  # air is bright when stored inverted


def test_bad_arguments():
    with pytest.raises(ValueError):
        phantom_dicom(np.zeros((8, 8)), bits_stored=20)
    with pytest.raises(ValueError):
        phantom_dicom(np.zeros((8, 8)), encoding="jpeg-xl")
    with pytest.raises(ValueError):
        phantom_radiograph((10, 10))
