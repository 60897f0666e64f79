"""Steps: registry, parameter validation, and what each step computes."""

import numpy as np
import pytest

from radiology.dicom import DicomError, apply_voi, read_dicom
from radiology.intensity import clahe, percentile_window
from radiology.pipeline import CLAHE, STEPS, VOI, KneeCrop, Percentile, Pipeline


def test_every_step_is_registered_and_serializable():
    needs_arguments = {"resize": {"width": 32}}
    for name, cls in STEPS.items():
        step = cls(**needs_arguments.get(name, {}))
        assert step.name == name
        assert Pipeline.from_dict(Pipeline([step]).to_dict()) == Pipeline([step])


def test_pipeline_equals_the_functions_it_names():
    raw = np.random.default_rng(0).integers(0, 4096, (64, 64)).astype(np.uint16)
    out = Pipeline([Percentile(1, 99), CLAHE(2.0)])(raw)
    assert np.array_equal(out, clahe(percentile_window(raw, 1, 99), 2.0))
    trace = Pipeline([Percentile(), CLAHE()]).trace(raw)
    assert [name for name, _ in trace] == ["input", "percentile", "clahe"]


def test_knee_crop_step_centres_on_the_trained_joint(toy_knee):
    weights, image = toy_knee
    step = KneeCrop(weights=str(weights), size_px=40, knees=1)
    crop = Pipeline.from_json(Pipeline([step]).to_json())(image)
    assert crop.shape == (40, 40)
    # The centre of the toy joint is its dark gap between two bright blocks.
    assert crop[:, 10:30].mean() > 0.3
    with pytest.raises(ValueError, match="weights"):
        KneeCrop()(image)


def test_voi_step_uses_the_header_window_else_percentiles(phantoms):
    image = read_dicom(phantoms["w1"])
    expected = 1.0 - apply_voi(image.pixels, image.metadata)  # MONOCHROME1: bone bright after flipping
    assert np.array_equal(Pipeline([VOI()]).read(phantoms["w1"]), expected)
    assert np.array_equal(Pipeline([VOI(low=1, high=99)]).read(phantoms["m2"]),
                          Pipeline([Percentile(1, 99)]).read(phantoms["m2"]))
    with pytest.raises(DicomError, match="window 3 requested"):
        Pipeline([VOI(index=3)]).read(phantoms["w1"])
