"""Reading files through a pipeline: the one description of how an image is rendered."""

import numpy as np
import pytest

from radiology.convert import ConvertOptions, dicom_to_image, render, render_pipeline
from radiology.dicom import DicomError, apply_voi, has_voi, read_dicom
from radiology.errors import RadiologyError
from radiology.geometry import pad_to_square, resize
from radiology.intensity import clahe, normalize, to_gray
from radiology.io import write_image
from radiology.pipeline import (
    CLAHE,
    VOI,
    CleanBackground,
    Decode,
    Histogram,
    KneeCrop,
    MinMax,
    Percentile,
    Pipeline,
    PipelineError,
    Resize,
)
from radiology.synthetic import phantom_radiograph, write_phantom_dicom


def test_pipeline_inside_conversion(tmp_path):
    path = write_phantom_dicom(tmp_path / "p.dcm", phantom_radiograph((96, 80)), photometric="MONOCHROME1")
    image = read_dicom(path)
    normalizing = Pipeline([Percentile(2, 98), CLAHE()])
    out = render(image, ConvertOptions(render_pipeline(normalizing, width=40)))
    assert out.shape == (48, 40)
    after_default = Pipeline([CLAHE()])
    expected = clahe(dicom_to_image(path))
    assert np.array_equal(dicom_to_image(path, pipeline=after_default), expected)


_FLAT = dict(normalization="percentile", low=0.5, high=99.5, n_bins=100, bins=None, voi_index=0, polarity=True,
             width=None, longest=None, pad_square=False, frame=0, bits=True, modality_lut=True, color="gray")


def _old_render(image, flat, pipeline):
    """The conversion code path before pipelines described everything (kept as the known answer)."""
    o = {**_FLAT, **flat}
    meta = image.metadata
    pixels = image.pixels
    if o["polarity"] and meta.inverted and not meta.is_color:
        pixels = np.negative(pixels.astype(np.int32) if pixels.dtype.kind == "u" else pixels)
    if pipeline is not None and pipeline.normalizes:
        out, pipeline = pipeline(pixels), None
    elif o["normalization"] == "voi" and has_voi(meta) and not meta.is_color:
        out = apply_voi(image.pixels, meta, image.dataset, o["voi_index"])
        out = 1.0 - out if o["polarity"] and meta.inverted else out
    else:
        method = "percentile" if o["normalization"] == "voi" else o["normalization"]
        out = normalize(pixels, method, low=o["low"], high=o["high"],
                        bins=None if o["bins"] is None else np.asarray(o["bins"]), n_bins=o["n_bins"])
    if pipeline is not None:
        out = pipeline(out)
    if o["width"] is not None or o["longest"] is not None:
        out = resize(out, width=o["width"], longest=o["longest"])
    return pad_to_square(out) if o["pad_square"] else out


@pytest.mark.parametrize("flat, pipeline", [
    ({}, None),
    ({"normalization": "histogram", "n_bins": 20, "width": 40, "pad_square": True}, None),
    ({"normalization": "histogram", "bins": (0.0, 100.0, 1000.0, 2000.0, 4095.0)}, None),
    ({"normalization": "minmax", "longest": 50, "polarity": False}, None),
    ({"normalization": "voi", "voi_index": 0, "low": 1, "high": 99}, None),
    ({"width": 30}, Pipeline([Percentile(2, 98), CLAHE()])),
    ({"pad_square": True}, Pipeline([CLAHE(), CleanBackground()])),
    ({"color": "keep", "normalization": "voi"}, None),
])
def test_render_is_byte_identical_to_the_old_code_path(phantoms, flat, pipeline):
    options = ConvertOptions(render_pipeline(pipeline, **flat))
    o = {**_FLAT, **flat}
    for path in phantoms.values():
        image = read_dicom(path, frame=o["frame"], bits=o["bits"], modality_lut=o["modality_lut"], color=o["color"])
        expected = _old_render(image, flat, pipeline)
        out = render(image, options)
        assert out.dtype == expected.dtype and np.array_equal(out, expected), path
        assert np.array_equal(options.to_pipeline().read(path), expected)
        assert np.array_equal(dicom_to_image(path, options), expected)
        assert np.array_equal(dicom_to_image(path, pipeline=pipeline, **flat), expected)


def test_read_equals_the_convert_options_pipeline(phantoms):
    path = phantoms["m2"]
    assert np.array_equal(Pipeline().read(path), dicom_to_image(path))
    assert np.array_equal(Pipeline().read(path), ConvertOptions().to_pipeline().read(path))
    assert ConvertOptions().to_pipeline() == Pipeline()  # the percentile default is implied
    options = ConvertOptions(render_pipeline(Pipeline([CLAHE()]), normalization="voi", width=32, frame=0, color="keep"))
    assert options.to_pipeline() == Pipeline([VOI(), CLAHE(), Resize(width=32)], Decode(color="keep"))
    with open(path, "rb") as file:  # bytes and file-likes are DICOMs too
        assert np.array_equal(Pipeline().read(file.read()), Pipeline().read(path))


def test_monochrome1_and_monochrome2_give_the_same_image(phantoms):
    for pipe in (Pipeline(), Pipeline([Histogram(n_bins=16), CLAHE()]), Pipeline([MinMax(), Resize(width=40)])):
        m2, m1 = pipe.read(phantoms["m2"]), pipe.read(phantoms["m1"])
        assert m2.dtype == np.float32 and 0 <= m2.min() and m2.max() <= 1
        assert np.allclose(m1, m2, rtol=0, atol=1e-6)  # stored values differ by a shift: float rounding only
    flipped = Pipeline(decode=Decode(polarity=False))
    assert np.allclose(flipped.read(phantoms["m1"]), 1 - flipped.read(phantoms["m2"]), atol=1e-6)


def test_read_image_files_goes_through_all_steps_with_bt601_gray(tmp_path):
    rgb = np.zeros((40, 50, 3), np.float32)
    rgb[..., 0], rgb[10:30, 10:40, 1] = 0.5, 1.0
    path = write_image(tmp_path / "c.png", rgb)
    gray = Pipeline().read(path)  # no implied normalization for images: already in [0, 1]
    assert gray.shape == (40, 50) and gray.dtype == np.float32
    stored = np.round(rgb * 255) / 255
    assert np.allclose(gray, stored @ np.float32([0.299, 0.587, 0.114]), atol=1e-6)
    assert Pipeline(decode=Decode(color="keep")).read(path).shape == (40, 50, 3)
    stretched = Pipeline([Percentile(0, 100), Resize(width=25)]).read(path)
    assert stretched.shape == (20, 25) and stretched.min() == 0 and stretched.max() == 1
    assert np.array_equal(Pipeline([CLAHE()], Decode(color="keep")).read(path), clahe(to_gray(stored)))


def test_read_errors_name_the_file_and_step(tmp_path, phantoms):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(PipelineError, match="bad.png"):
        Pipeline().read(bad)
    with pytest.raises(RadiologyError, match=r"m2.dcm: knee_crop: .*weights"):
        Pipeline([KneeCrop()]).read(phantoms["m2"])
    with pytest.raises(DicomError, match="junk"):
        (tmp_path / "junk.dcm").write_bytes(b"\x00" * 10)
        Pipeline().read(tmp_path / "junk.dcm")
    with pytest.raises(TypeError):
        Pipeline().render(np.zeros((4, 4)))


def test_trace_shows_every_stage_and_ends_with_read(phantoms):
    pipe = Pipeline([CLAHE(), Resize(width=40)])
    trace = pipe.trace(phantoms["m1"])
    assert [name for name, _ in trace] == ["input", "percentile", "clahe", "resize"]
    assert trace[0][1].dtype.kind == "i"  # raw, polarity-ordered values
    assert np.array_equal(trace[-1][1], pipe.read(phantoms["m1"]))
    assert np.array_equal(pipe.raw(phantoms["m1"]), trace[0][1])
