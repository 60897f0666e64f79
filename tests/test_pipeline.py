import numpy as np
import pytest

from radiology.convert import ConvertOptions, dicom_to_image, render
from radiology.dicom import read_dicom
from radiology.intensity import clahe, percentile_window
from radiology.pipeline import (
    CLAHE,
    STEPS,
    CleanBackground,
    Enhance,
    FundusCrop,
    Histogram,
    Percentile,
    Pipeline,
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
    for name, cls in STEPS.items():
        step = cls()
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


def test_knee_crop_step_centres_on_the_trained_joint(tmp_path):
    from radiology.geometry.knee import KneeLocalizer
    from radiology.pipeline import KneeCrop
    from tests.geometry.test_knee import _toy_knee

    rng = np.random.default_rng(0)
    train = [_toy_knee(rng) for _ in range(25)]
    model = KneeLocalizer.fit([im for im, _ in train], [[box] for _, box in train], seed=1)
    weights = model.save(tmp_path / "toy.npz")
    image, (x, y, w, h) = _toy_knee(rng)
    step = KneeCrop(weights=str(weights), size_px=40, knees=1)
    crop = Pipeline.from_json(Pipeline([step]).to_json())(image)
    assert crop.shape == (40, 40)
    # The centre of the toy joint is its dark gap between two bright blocks.
    assert crop[:, 10:30].mean() > 0.3
    with pytest.raises(ValueError, match="weights"):
        KneeCrop()(image)
