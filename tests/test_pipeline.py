import json
import shutil

import numpy as np
import pytest

from radiology.convert import ConvertOptions, dicom_to_image, render
from radiology.dicom import DicomError, apply_voi, has_voi, read_dicom
from radiology.errors import RadiologyError
from radiology.geometry import pad_to_square, resize
from radiology.intensity import clahe, normalize, percentile_window, to_gray
from radiology.io import write_image
from radiology.pipeline import (
    CLAHE,
    STEPS,
    VOI,
    CleanBackground,
    Decode,
    Enhance,
    FundusCrop,
    Histogram,
    KneeCrop,
    MinMax,
    Percentile,
    Pipeline,
    PipelineError,
    Resize,
)
from radiology.synthetic import phantom_radiograph, write_phantom_dicom


def test_json_and_yaml_round_trip(tmp_path):
    pipe = Pipeline([Histogram.fit([np.arange(1000, dtype=np.uint16)], n_bins=8), CleanBackground(fill=0.1),
                     CLAHE(3.0, (4, 4)), Enhance(0.05, 1.2), Resize(width=64), FundusCrop(threshold=0.2)])
    for name in ("p.json", "p.yaml"):
        assert Pipeline.load(pipe.save(tmp_path / name)) == pipe
    assert Pipeline.from_json(pipe.to_json()).steps[0].bins == pipe.steps[0].bins


def test_every_step_is_registered_and_serializable():
    needs_arguments = {"resize": {"width": 32}}
    for name, cls in STEPS.items():
        step = cls(**needs_arguments.get(name, {}))
        assert step.name == name
        assert Pipeline.from_dict(Pipeline([step]).to_dict()) == Pipeline([step])


def test_bad_pipelines_are_rejected():
    with pytest.raises(ValueError, match="must come first"):
        Pipeline([CLAHE(), Percentile()])
    with pytest.raises(ValueError, match="unknown step"):
        Pipeline.from_dict({"format": "radiology.pipeline", "version": 1, "steps": [{"name": "sharpen"}]})
    with pytest.raises(ValueError, match="unknown parameters"):
        Pipeline.from_dict({"format": "radiology.pipeline", "version": 1, "steps": [{"name": "clahe", "clip": 1}]})
    with pytest.raises(ValueError, match="not a radiology pipeline"):
        Pipeline.from_dict({"steps": []})


def test_pipeline_equals_the_functions_it_names():
    raw = np.random.default_rng(0).integers(0, 4096, (64, 64)).astype(np.uint16)
    out = Pipeline([Percentile(1, 99), CLAHE(2.0)])(raw)
    assert np.array_equal(out, clahe(percentile_window(raw, 1, 99), 2.0))
    trace = Pipeline([Percentile(), CLAHE()]).trace(raw)
    assert [name for name, _ in trace] == ["input", "percentile", "clahe"]


def test_pipeline_inside_conversion(tmp_path):
    path = write_phantom_dicom(tmp_path / "p.dcm", phantom_radiograph((96, 80)), photometric="MONOCHROME1")
    image = read_dicom(path)
    normalizing = Pipeline([Percentile(2, 98), CLAHE()])
    out = render(image, ConvertOptions(pipeline=normalizing, width=40))
    assert out.shape == (48, 40)
    after_default = Pipeline([CLAHE()])
    expected = clahe(dicom_to_image(path))
    assert np.array_equal(dicom_to_image(path, pipeline=after_default), expected)


def _toy_knee_weights(folder):
    from radiology.geometry.knee import KneeLocalizer
    from tests.geometry.test_knee import _toy_knee

    rng = np.random.default_rng(0)
    train = [_toy_knee(rng) for _ in range(25)]
    model = KneeLocalizer.fit([im for im, _ in train], [[box] for _, box in train], seed=1)
    return model.save(folder / "toy.npz"), _toy_knee(rng)[0]


def test_knee_crop_step_centres_on_the_trained_joint(tmp_path):
    weights, image = _toy_knee_weights(tmp_path)
    step = KneeCrop(weights=str(weights), size_px=40, knees=1)
    crop = Pipeline.from_json(Pipeline([step]).to_json())(image)
    assert crop.shape == (40, 40)
    # The centre of the toy joint is its dark gap between two bright blocks.
    assert crop[:, 10:30].mean() > 0.3
    with pytest.raises(ValueError, match="weights"):
        KneeCrop()(image)


# ----------------------------------------------------------------------------- one description


def _old_render(image, options):
    """The conversion code path before pipelines described everything (kept as the known answer)."""
    meta = image.metadata
    pixels = image.pixels
    if options.polarity and meta.inverted and not meta.is_color:
        pixels = np.negative(pixels.astype(np.int32) if pixels.dtype.kind == "u" else pixels)
    pipeline = options.pipeline
    if pipeline is not None and pipeline.normalizes:
        out, pipeline = pipeline(pixels), None
    elif options.normalization == "voi" and has_voi(meta) and not meta.is_color:
        out = apply_voi(image.pixels, meta, image.dataset, options.voi_index)
        out = 1.0 - out if options.polarity and meta.inverted else out
    else:
        method = "percentile" if options.normalization == "voi" else options.normalization
        out = normalize(pixels, method, low=options.low, high=options.high,
                        bins=None if options.bins is None else np.asarray(options.bins), n_bins=options.n_bins)
    if pipeline is not None:
        out = pipeline(out)
    if options.width is not None or options.longest is not None:
        out = resize(out, width=options.width, longest=options.longest)
    return pad_to_square(out) if options.pad_square else out


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


@pytest.mark.parametrize("options", [
    ConvertOptions(),
    ConvertOptions(normalization="histogram", n_bins=20, width=40, pad_square=True),
    ConvertOptions(normalization="histogram", bins=(0.0, 100.0, 1000.0, 2000.0, 4095.0)),
    ConvertOptions(normalization="minmax", longest=50, polarity=False),
    ConvertOptions(normalization="voi", voi_index=0, low=1, high=99),
    ConvertOptions(pipeline=Pipeline([Percentile(2, 98), CLAHE()]), width=30),
    ConvertOptions(pipeline=Pipeline([CLAHE(), CleanBackground()]), pad_square=True),
    ConvertOptions(color="keep", normalization="voi"),
], ids=lambda o: repr(o.to_pipeline()))
def test_render_is_byte_identical_to_the_old_code_path(phantoms, options):
    for path in phantoms.values():
        image = read_dicom(path, frame=options.frame, bits=options.bits, modality_lut=options.modality_lut,
                           color=options.color)
        expected = _old_render(image, options)
        out = render(image, options)
        assert out.dtype == expected.dtype and np.array_equal(out, expected), path
        assert np.array_equal(options.to_pipeline().read(path), expected)
        assert np.array_equal(dicom_to_image(path, options), expected)


def test_read_equals_the_convert_options_pipeline(phantoms):
    path = phantoms["m2"]
    assert np.array_equal(Pipeline().read(path), dicom_to_image(path))
    assert np.array_equal(Pipeline().read(path), ConvertOptions().to_pipeline().read(path))
    assert ConvertOptions().to_pipeline() == Pipeline()  # the percentile default is implied
    options = ConvertOptions(normalization="voi", pipeline=Pipeline([CLAHE()]), width=32, frame=0, color="keep")
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


def test_voi_step_uses_the_header_window_else_percentiles(phantoms):
    image = read_dicom(phantoms["w1"])
    expected = 1.0 - apply_voi(image.pixels, image.metadata)  # MONOCHROME1: bone bright after flipping
    assert np.array_equal(Pipeline([VOI()]).read(phantoms["w1"]), expected)
    assert np.array_equal(Pipeline([VOI(low=1, high=99)]).read(phantoms["m2"]),
                          Pipeline([Percentile(1, 99)]).read(phantoms["m2"]))
    with pytest.raises(DicomError, match="window 3 requested"):
        Pipeline([VOI(index=3)]).read(phantoms["w1"])


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


def test_version_2_dict_and_version_1_still_loads():
    pipe = Pipeline([Percentile(1, 99), Resize(width=8)], Decode(frame=-1, polarity=False, color="keep"))
    data = pipe.to_dict()
    assert data["version"] == 2
    assert data["decode"] == {"frame": -1, "bits": True, "modality_lut": True, "polarity": False, "color": "keep"}
    assert Pipeline.from_dict(json.loads(json.dumps(data))) == pipe
    v1 = {"format": "radiology.pipeline", "version": 1, "steps": [{"name": "percentile", "low": 1, "high": 99}]}
    assert Pipeline.from_dict(v1) == Pipeline([Percentile(1, 99)])
    assert Pipeline.from_dict(v1).decode == Decode()
    with pytest.raises(ValueError, match="unknown keys"):
        Pipeline.from_dict({**v1, "decode": {}})
    with pytest.raises(ValueError, match="version 3"):
        Pipeline.from_dict({**data, "version": 3})
    with pytest.raises(ValueError, match=r"decode: color must be"):
        Pipeline.from_dict({**data, "decode": {"color": "rgb"}})
    with pytest.raises(ValueError, match=r"decode: unknown parameters \['colour'\]"):
        Pipeline.from_dict({**data, "decode": {"colour": "keep"}})


@pytest.mark.parametrize("step, message", [
    ({"name": "clahe", "clip_limit": 0}, r"step 0 \(clahe\): clip_limit must be > 0, got 0"),
    ({"name": "clahe", "tile_grid": [8]}, r"step 0 \(clahe\): tile_grid must be 2 positive integers"),
    ({"name": "percentile", "low": 99, "high": 1}, r"step 0 \(percentile\): low must be < high"),
    ({"name": "histogram", "bins": [3, 2, 1]}, r"step 0 \(histogram\): bins must hold"),
    ({"name": "histogram", "n_bins": 1}, r"step 0 \(histogram\): n_bins must be >= 2"),
    ({"name": "resize"}, r"step 0 \(resize\): give width"),
    ({"name": "resize", "width": "big"}, r"step 0 \(resize\): width must be an integer"),
    ({"name": "enhance", "brightness": 3}, r"step 0 \(enhance\): brightness must be <= 1"),
    ({"name": "fov_crop", "threshold": 1.5}, r"step 0 \(fov_crop\): threshold must be < 1"),
    ({"name": "clean_background", "crop_collimation": "yes"},
     r"step 0 \(clean_background\): crop_collimation must be true or false"),
    ({"name": "knee_crop", "knees": 3}, r"step 0 \(knee_crop\): knees must be 1, 2 or null"),
    ({"name": "voi", "index": -1}, r"step 0 \(voi\): index must be >= 0"),
])
def test_bad_parameters_fail_at_load_naming_step_and_parameter(tmp_path, step, message):
    data = {"format": "radiology.pipeline", "version": 2, "steps": [step]}
    with pytest.raises(ValueError, match=message):
        Pipeline.from_dict(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PipelineError, match="bad.json: " + message) as info:
        Pipeline.load(path)
    assert "\n" not in str(info.value)


def test_load_names_the_file_on_syntax_errors(tmp_path):
    (tmp_path / "p.yaml").write_text("steps: [unclosed\n  - x: {")
    with pytest.raises(PipelineError, match=r"p.yaml: not valid YAML") as info:
        Pipeline.load(tmp_path / "p.yaml")
    assert "\n" not in str(info.value)
    (tmp_path / "p.json").write_text("{")
    with pytest.raises(PipelineError, match=r"p.json: not valid JSON"):
        Pipeline.load(tmp_path / "p.json")
    with pytest.raises(ValueError, match="clip_limit must be > 0"):
        CLAHE(clip_limit=-1)


def test_knee_crop_pipeline_with_copied_files_moves_as_a_folder(tmp_path):
    weights, image = _toy_knee_weights(tmp_path)
    dicom = write_phantom_dicom(tmp_path / "knee.dcm", image)
    pipe = Pipeline([Percentile(0, 100), KneeCrop(weights=str(weights), size_px=40, knees=1), Resize(width=32)])
    assert pipe.files() == [weights]
    folder_a = tmp_path / "a"
    folder_a.mkdir()
    pipe.save(folder_a / "pipeline.json", copy_files=True)
    assert (folder_a / "toy.npz").read_bytes() == weights.read_bytes()
    assert json.loads((folder_a / "pipeline.json").read_text())["steps"][1]["weights"] == "toy.npz"
    folder_b = tmp_path / "elsewhere" / "b"
    shutil.copytree(folder_a, folder_b)
    shutil.rmtree(folder_a)
    weights.unlink()
    moved = Pipeline.load(folder_b / "pipeline.json")
    assert moved.files() == [folder_b / "toy.npz"]
    expected = Pipeline([Percentile(0, 100)]).read(dicom)
    assert np.array_equal(moved.read(dicom), Pipeline(moved.steps[1:])(expected))
    assert moved.read(dicom).shape == (32, 32)


def test_save_without_copy_keeps_references_valid(tmp_path, monkeypatch):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "k.npz").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    pipe = Pipeline([KneeCrop(weights="w/k.npz")])
    saved = pipe.save(tmp_path / "conf" / "p.yaml")  # relative to the cwd, not to conf/
    assert Pipeline.load(saved).files() == [(tmp_path / "w" / "k.npz").absolute()]
    inside = pipe.save(tmp_path / "p.json")
    assert json.loads(inside.read_text())["steps"][0]["weights"] == "w/k.npz"
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        Pipeline([KneeCrop(weights="missing.npz")]).save(tmp_path / "x.json", copy_files=True)
