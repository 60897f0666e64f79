import io
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.pixels import apply_modality_lut as pydicom_modality_lut
from pydicom.pixels import apply_voi as pydicom_voi

from radiology.convert import dicom_to_image
from radiology.demo import pydicom_test_files
from radiology.dicom import (
    DicomError,
    InconsistentAttributesError,
    NoPixelDataError,
    NotDicomError,
    TruncatedPixelDataError,
    apply_voi,
    mask_bits,
    read_dataset,
    read_dicom,
)
from radiology.dicom.read import PIXEL_DATA_KEYWORDS
from radiology.synthetic import phantom_dicom
from tests.conftest import correlation, shared_path

# Files of pydicom's wheel that hold pixel data but cannot be decoded: truncated, a
# 12-bit JPEG no installed codec accepts, a corrupt J2K stream, invalid attribute values.
KNOWN_BROKEN = {
    "MR_truncated.dcm",
    "JPEG-lossy.dcm",
    "JPEG2000-embedded-sequence-delimiter.dcm",
    "badVR.dcm",
    "meta_missing_tsyntax.dcm",
    "nested_priv_SQ.dcm",
}


def _pydicom_image_files() -> list[Path]:
    files = []
    for name in pydicom_test_files():
        try:
            ds = pydicom.dcmread(name, force=True)
        except Exception:  # noqa: BLE001 - folders, text files
            continue
        if any(k in ds for k in PIXEL_DATA_KEYWORDS):
            files.append(Path(name))
    return files


def test_every_shipped_pydicom_image_converts_or_fails_typed():
    files = _pydicom_image_files()
    converted, failed = [], []
    for path in files:
        try:
            image = dicom_to_image(path)
        except DicomError as error:
            assert "\n" not in str(error)
            failed.append(path.name)
            continue
        assert image.dtype == np.float32 and 0.0 <= image.min() <= image.max() <= 1.0
        converted.append(path.name)
    assert len(converted) + len(failed) == len(files)
    assert set(failed) <= KNOWN_BROKEN, set(failed) - KNOWN_BROKEN
    assert len(files) >= 95 and len(converted) >= len(files) - len(KNOWN_BROKEN)


@pytest.mark.parametrize(
    "name, error",
    [
        ("README.txt", NotDicomError),
        ("rtplan.dcm", NoPixelDataError),
        ("MR_truncated.dcm", TruncatedPixelDataError),
        ("badVR.dcm", InconsistentAttributesError),
    ],
)
def test_typed_errors_name_the_file(name, error):
    path = pydicom.data.get_testdata_file(name)
    with pytest.raises(error, match=name):
        read_dicom(path)


def test_missing_file_is_not_dicom(tmp_path):
    with pytest.raises(NotDicomError):
        read_dicom(tmp_path / "nothing.dcm")


def test_bytes_file_object_and_path_agree():
    path = pydicom.data.get_testdata_file("MR_small_RLE.dcm")
    from_path = read_dicom(path).pixels
    data = Path(path).read_bytes()
    assert np.array_equal(read_dicom(data).pixels, from_path)
    assert np.array_equal(read_dicom(io.BytesIO(data)).pixels, from_path)


def test_no_preamble_no_meta_no_extension(tmp_path, phantom):
    ds = phantom_dicom(phantom, bits_stored=12)
    path = tmp_path / "1.2.3.4"  # named like archives name files: no .dcm
    del ds.file_meta
    ds.preamble = None
    ds.save_as(path, enforce_file_format=False, implicit_vr=True, little_endian=True)
    raw = path.read_bytes()
    assert raw[128:132] != b"DICM"  # really no preamble
    ds_read = read_dataset(path)
    assert ds_read.file_meta.TransferSyntaxUID.name == "Implicit VR Little Endian"
    assert correlation(dicom_to_image(path), phantom) > 0.999


def test_multiframe_pick_or_all():
    path = pydicom.data.get_testdata_file("SC_rgb_rle_2frame.dcm")
    both = read_dicom(path, frame=None, color="keep").pixels
    assert both.shape[0] == 2 and both.shape[-1] == 3
    assert np.array_equal(read_dicom(path, frame=1, color="keep").pixels, both[1])
    assert np.array_equal(read_dicom(path, frame=-1, color="keep").pixels, both[1])
    with pytest.raises(InconsistentAttributesError, match="frame 2"):
        read_dicom(path, frame=2)


def test_colour_to_gray_or_kept():
    path = pydicom.data.get_testdata_file("SC_rgb_small_odd.dcm")
    rgb = read_dicom(path, color="keep").pixels
    gray = read_dicom(path).pixels
    assert rgb.shape[-1] == 3 and gray.shape == rgb.shape[:2]
    expected = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    assert np.allclose(gray, expected, atol=1e-3)


def test_ybr_jpeg_is_converted_to_rgb():
    # Same picture stored as RGB (uncompressed) and as YBR_FULL JPEG: colours must agree.
    reference = read_dicom(pydicom.data.get_testdata_file("SC_rgb_small_odd.dcm"), color="keep").pixels.astype(float)
    ybr = read_dicom(pydicom.data.get_testdata_file("SC_rgb_small_odd_jpeg.dcm"), color="keep").pixels
    assert np.abs(ybr.astype(float) - reference).mean() < 5


def test_palette_colour():
    image = read_dicom(pydicom.data.get_testdata_file("examples_palette.dcm"), color="keep")
    assert image.pixels.shape[-1] == 3 and image.metadata.photometric == "PALETTE COLOR"


def test_mask_bits_clears_garbage_high_bits(tmp_path, write_phantom, phantom):
    clean = write_phantom("clean.dcm", bits_stored=12)
    ds = pydicom.dcmread(clean)
    stored = ds.pixel_array
    ds.PixelData = (stored | 0xF000).astype(np.uint16).tobytes()  # overlay-style junk in bits 12-15
    dirty = tmp_path / "dirty.dcm"
    ds.save_as(dirty)
    assert np.array_equal(read_dicom(dirty).pixels, stored)
    assert not np.array_equal(read_dicom(dirty, bits=False).pixels, stored)


def test_mask_bits_sign_extends():
    values = np.array([0x07FF, 0x0800, 0x0FFF], dtype=np.uint16)
    assert mask_bits(values, 12, signed=True).tolist() == [2047, -2048, -1]


def test_rescale_honoured_and_switchable(write_phantom):
    path = write_phantom(bits_stored=12, rescale=(2.0, -1024.0))
    stored = read_dicom(path, modality_lut=False).pixels
    modality = read_dicom(path).pixels
    assert np.allclose(modality, stored.astype(np.float32) * 2 - 1024)
    # Linear LUTs do not change a metadata-independent normalization.
    assert np.allclose(dicom_to_image(path), dicom_to_image(path, modality_lut=False), atol=1e-6)


def test_modality_lut_sequence_matches_pydicom():
    path = shared_path("dicom_corpus", "pydicom-data", "mlut_18.dcm")
    ours = read_dicom(path).pixels
    ds = pydicom.dcmread(path)
    assert np.array_equal(ours, pydicom_modality_lut(ds.pixel_array, ds))
    assert not np.array_equal(ours, ds.pixel_array)


def test_voi_lut_sequence_matches_pydicom():
    path = shared_path("dicom_corpus", "pydicom-data", "vlut_04.dcm")
    image = read_dicom(path)
    ds = pydicom.dcmread(path)
    top = 2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1
    expected = pydicom_voi(ds.pixel_array, ds).astype(np.float64) / top
    assert np.allclose(apply_voi(image.pixels, image.metadata, image.dataset), expected, atol=1e-6)


def test_voi_window_known_answer(write_phantom):
    path = write_phantom(bits_stored=12, window=(2000.0, 1001.0))
    image = read_dicom(path)
    x = image.pixels.astype(np.float64)
    expected = np.clip((x - 1999.5) / 1000.0 + 0.5, 0, 1)  # PS3.3 C.11.2.1.2.1 LINEAR
    assert np.allclose(apply_voi(image.pixels, image.metadata), expected, atol=1e-5)


def test_multiple_windows_pick_index(write_phantom):
    path = write_phantom(bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.WindowCenter, ds.WindowWidth = ["1000", "3000"], ["500", "800"]
    ds.save_as(path)
    image = read_dicom(path)
    first, second = (apply_voi(image.pixels, image.metadata, index=i) for i in (0, 1))
    assert first.mean() > second.mean()  # the lower window shows everything brighter
    with pytest.raises(InconsistentAttributesError):
        apply_voi(image.pixels, image.metadata, index=2)


def test_voi_ignored_unless_asked(write_phantom, phantom):
    plain = write_phantom("plain.dcm", bits_stored=12)
    windowed = write_phantom("windowed.dcm", bits_stored=12, window=(800.0, 400.0))
    assert np.array_equal(dicom_to_image(plain), dicom_to_image(windowed))
    narrow = dicom_to_image(windowed, normalization="voi")
    assert not np.allclose(narrow, dicom_to_image(plain), atol=0.05)
    assert narrow.max() == 1.0 and (narrow == 1.0).mean() > 0.3  # a narrow low window saturates


@pytest.mark.parametrize("encoding", ["explicit", "implicit", "deflated", "rle", "jpegls", "jpeg2000"])
@pytest.mark.parametrize("normalization", ["percentile", "histogram", "minmax"])
def test_monochrome1_and_2_give_the_same_image(write_phantom, phantom, encoding, normalization):
    mono1 = write_phantom("m1.dcm", photometric="MONOCHROME1", encoding=encoding, bits_stored=14)
    mono2 = write_phantom("m2.dcm", photometric="MONOCHROME2", encoding=encoding, bits_stored=14)
    a = dicom_to_image(mono1, normalization=normalization)
    b = dicom_to_image(mono2, normalization=normalization)
    assert np.allclose(a, b, atol=1e-5)
    similar = 0.95 if normalization == "histogram" else 0.99  # equalization is not linear
    assert correlation(a, phantom) > similar  # bone bright, like the phantom
    kept = dicom_to_image(mono1, normalization=normalization, polarity=False)
    assert correlation(kept, phantom) < -similar


def test_presentation_lut_inverse_inverts_monochrome2(write_phantom, phantom):
    path = write_phantom(photometric="MONOCHROME2")
    ds = pydicom.dcmread(path)
    ds.PresentationLUTShape = "INVERSE"
    ds.save_as(path)
    assert read_dicom(path).metadata.inverted
    assert correlation(dicom_to_image(path), phantom) < -0.99


def test_voi_rendering_respects_polarity(write_phantom, phantom):
    path = write_phantom(photometric="MONOCHROME1", bits_stored=12, window=(2048.0, 4096.0))
    assert correlation(dicom_to_image(path, normalization="voi"), phantom) > 0.99
