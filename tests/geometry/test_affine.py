"""Affine bookkeeping: matrices against OpenCV's pixel grid, and every geometric pipeline step mapped back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np
import pytest

from radiology.geometry import map_points, resize_matrix, translation_matrix, warp_back
from radiology.geometry.knee import N_FEATURES, KneeLocalizer
from radiology.pipeline import (
    CLAHE,
    CircleCrop,
    CleanBackground,
    FOVCrop,
    FundusCrop,
    KneeCrop,
    PadSquare,
    Percentile,
    Pipeline,
    PipelineError,
    Resize,
    Step,
)
from radiology.synthetic import write_phantom_dicom


def _ramp(rows: int, cols: int) -> np.ndarray:
    # Linear in x and y: bilinear and area resampling reproduce it exactly away from the edges.
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    return (0.1 + 0.004 * x + 0.003 * y).astype(np.float32)


def _blob(image: np.ndarray, center: tuple[float, float], sigma: float = 2.5, amplitude: float = 0.45) -> np.ndarray:
    y, x = np.mgrid[0:image.shape[0], 0:image.shape[1]].astype(np.float32)
    bump = amplitude * np.exp(-((x - center[0]) ** 2 + (y - center[1]) ** 2) / (2 * sigma**2))
    return (image + bump).astype(np.float32)


def _blob_center(image: np.ndarray, near: tuple[float, float], window: int = 12) -> tuple[float, float]:
    """Centroid of the half-maximum region of the blob next to ``near`` (symmetric: unbiased)."""
    x0, y0 = int(round(near[0])), int(round(near[1]))
    top, left = max(0, y0 - window), max(0, x0 - window)
    patch = image[top:y0 + window + 1, left:x0 + window + 1].astype(np.float64)
    level = np.median(patch)
    weights = np.clip(patch - level - 0.5 * (patch.max() - level), 0, None)
    y, x = np.mgrid[0:patch.shape[0], 0:patch.shape[1]]
    return float((weights * x).sum() / weights.sum() + left), float((weights * y).sum() / weights.sum() + top)


# --------------------------------------------------------------------------- matrices


def test_translation_and_composition():
    crop_then_pad = translation_matrix(3, 1) @ translation_matrix(-10, -5)
    assert map_points(crop_then_pad, [(12, 7), (0, 0)]).tolist() == [[5, 3], [-7, -4]]
    assert np.allclose(np.linalg.inv(crop_then_pad), translation_matrix(7, 4))


@pytest.mark.parametrize("in_shape, out_shape, pixels", [
    ((60, 80), (30, 40), 0.01),
    ((30, 40), (75, 88), 0.01),
    ((60, 80), (45, 70), 0.1),  # OpenCV's area weights of a non-integer shrink: < 0.1 px off
])
def test_resize_matrix_matches_opencv(in_shape, out_shape, pixels):
    image = _ramp(*in_shape)
    shrinking = out_shape[0] * out_shape[1] < in_shape[0] * in_shape[1]
    out = cv2.resize(image, out_shape[::-1], interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    inverse = np.linalg.inv(resize_matrix(in_shape, out_shape))
    v, u = np.mgrid[3:out_shape[0] - 3, 3:out_shape[1] - 3]
    source = map_points(inverse, np.stack([u.ravel(), v.ravel()], 1))
    expected = 0.1 + 0.004 * source[:, 0] + 0.003 * source[:, 1]
    # The ramp rises 0.004 a pixel in x, 0.003 in y: a value error is a position error.
    assert np.abs(out[v, u].ravel() - expected).max() < pixels * (0.004 + 0.003)


def test_map_points_and_warp_back_validate():
    with pytest.raises(ValueError, match="last row"):
        map_points(np.ones((3, 3)), (0, 0))
    with pytest.raises(ValueError, match="singular"):
        map_points(np.diag([0.0, 1.0, 1.0]), (0, 0))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        map_points(np.eye(3), [(1, 2, 3)])
    with pytest.raises(ValueError, match="positive"):
        resize_matrix((0, 4), (2, 2))
    with pytest.raises(ValueError, match="positive"):
        warp_back(np.zeros((2, 2)), np.eye(3), (0, 3))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        warp_back(np.zeros(4), np.eye(3), (2, 2))


def test_warp_back_is_the_inverse_of_a_crop_and_resize():
    original = _blob(_ramp(90, 120), (70.3, 41.6))
    x0, y0 = 20, 15
    crop = original[y0:y0 + 60, x0:x0 + 90]
    small = cv2.resize(crop, (45, 30), interpolation=cv2.INTER_AREA)
    matrix = resize_matrix(crop.shape, small.shape) @ translation_matrix(-x0, -y0)
    assert np.allclose(_blob_center(small, map_points(matrix, (70.3, 41.6))), map_points(matrix, (70.3, 41.6)),
                       atol=0.2)
    back = warp_back(small, matrix, original.shape, fill=-1)
    assert back.shape == original.shape
    assert (back[:, :x0 - 1] == -1).all() and (back[:y0 - 1] == -1).all() and (back[:, x0 + 91:] == -1).all()
    assert np.allclose(_blob_center(back, (70, 42)), (70.3, 41.6), atol=0.5)
    # Colour maps come back per channel.
    assert warp_back(np.dstack([small] * 3), matrix, original.shape).shape == (90, 120, 3)


# --------------------------------------------------------------------------- steps


def _fov_image():
    image = np.zeros((100, 130), np.float32)
    image[12:88, 9:121] = _ramp(76, 112)[:, :] + 0.3
    return _blob(image, (80.4, 30.7)), (80.4, 30.7)


def _disc_image():
    image = np.zeros((140, 150), np.float32)
    disc = cv2.circle(np.zeros(image.shape, np.uint8), (80, 66), 55, 1, -1) > 0
    image[disc] = 0.5
    return _blob(image, (95.2, 50.5)), (95.2, 50.5)


def _collimated_image():
    rng = np.random.default_rng(0)
    image = np.full((110, 120), 0.9, np.float32)  # uniform collimator bands on every side
    body = cv2.GaussianBlur(rng.random((80, 96)).astype(np.float32), (0, 0), 2) * 0.2 + 0.35
    image[14:94, 11:107] = body
    return _blob(image, (50.6, 40.2), amplitude=0.5), (50.6, 40.2)


def _knee_crop(tmp_path):
    weights = KneeLocalizer(np.random.default_rng(0).normal(size=N_FEATURES), 0.1).save(tmp_path / "knee.npz")
    return KneeCrop(weights=str(weights), size_px=80, knees=1)


@pytest.mark.parametrize("make_step, make_image", [
    (lambda _: Resize(longest=64), _fov_image),
    (lambda _: Resize(width=50, height=70), _fov_image),   # non-uniform scale
    (lambda _: Resize(longest=260), _disc_image),          # enlarging
    (lambda _: PadSquare(), _fov_image),
    (lambda _: FOVCrop(), _fov_image),
    (lambda _: CircleCrop(), _disc_image),
    (lambda _: FundusCrop(), _disc_image),
    (lambda _: CleanBackground(), _collimated_image),
    (_knee_crop, _disc_image),
    (lambda _: CLAHE(), _fov_image),                       # pixels stay put: identity
])
def test_each_step_reports_where_pixels_went(tmp_path, make_step, make_image):
    step = make_step(tmp_path)
    image, center = make_image()
    out, matrix = step.apply_with_geometry(image)
    assert np.array_equal(out, step(image))  # same result as the plain call
    target = map_points(matrix, center)
    if isinstance(step, CLAHE):  # intensities change (so would a blob's centroid), positions do not
        assert np.array_equal(matrix, np.eye(3))
        return
    if isinstance(step, (FOVCrop, CircleCrop, FundusCrop, CleanBackground, KneeCrop)):
        assert np.allclose(matrix[:2, :2], np.eye(2))  # crops translate by whole pixels
        assert matrix[:2, 2].tolist() == [round(v) for v in matrix[:2, 2]]
    if isinstance(step, (FOVCrop, CircleCrop, FundusCrop, CleanBackground)):
        assert out.shape != image.shape  # the fixture really was cropped
    if 0 <= target[0] < out.shape[1] and 0 <= target[1] < out.shape[0]:
        assert np.allclose(_blob_center(out, target), target, atol=0.35)
        back = warp_back(out, matrix, image.shape)
        assert np.allclose(_blob_center(back, center), center, atol=0.5)
    else:  # a crop that left the blob out (the knee detector's weights are random): the map says so
        assert isinstance(step, KneeCrop)


# --------------------------------------------------------------------------- pipelines


def test_pipeline_read_maps_a_dicom_blob_back_within_a_pixel(tmp_path):
    image, center = _fov_image()
    path = write_phantom_dicom(tmp_path / "f.dcm", np.clip(image, 0, 1), photometric="MONOCHROME1", bits_stored=12)
    pipeline = Pipeline([Percentile(0, 100), FOVCrop(), Resize(longest=48), PadSquare()])
    model_input, matrix = pipeline.read(path, with_geometry=True)
    assert np.array_equal(model_input, pipeline.read(path)) and model_input.shape == (48, 48)
    # The composed matrix: crop at the field's corner, scale 48 / 112, pad rows to centre 33 -> 48.
    expected = translation_matrix(0, 7) @ resize_matrix((76, 112), (33, 48)) @ translation_matrix(-9, -12)
    assert np.allclose(matrix, expected)
    target = map_points(matrix, center)
    assert np.allclose(_blob_center(model_input, target, window=5), target, atol=0.35)
    back = warp_back(model_input, matrix, image.shape)
    assert np.allclose(_blob_center(back, center, window=10), center, atol=0.75)
    # trace agrees with read, stage by stage.
    stages = pipeline.trace(path, with_geometry=True)
    assert [name for name, _, _ in stages] == ["input", "percentile", "fov_crop", "resize", "pad_square"]
    assert np.array_equal(stages[-1][2], matrix) and np.array_equal(stages[1][2], np.eye(3))


def test_pipeline_trace_of_an_array_and_of_an_image_file(tmp_path):
    from radiology.io import write_image

    image, center = _disc_image()
    pipeline = Pipeline([CircleCrop(), Resize(width=40), PadSquare()])
    stages = pipeline.trace(image, with_geometry=True)
    matrix = stages[-1][2]
    assert np.array_equal(stages[-1][1], pipeline(image))
    target = map_points(matrix, center)
    assert np.allclose(_blob_center(stages[-1][1], target, window=5), target, atol=0.35)
    assert [len(stage) for stage in pipeline.trace(image)] == [2, 2, 2, 2]  # pairs without geometry
    png = write_image(tmp_path / "d.png", np.clip(image, 0, 1), bit_depth=16)
    out, from_file = pipeline.read(png, with_geometry=True)
    assert np.allclose(from_file, matrix)


@dataclass(frozen=True)
class _Halve(Step):
    """A step that shrinks the image without saying how."""

    name: ClassVar[str] = "halve_test"

    def __call__(self, image):
        return image[::2, ::2]


def test_unknown_geometry_is_an_error_not_a_guess(tmp_path):
    from radiology.io import write_image

    image = _ramp(20, 30)
    pipeline = Pipeline([_Halve(), Resize(width=8)])
    stages = pipeline.trace(image, with_geometry=True)
    assert stages[1][2] is None and stages[2][2] is None  # unknown from the step on
    png = write_image(tmp_path / "r.png", image)
    assert pipeline.read(png).shape == (5, 8)  # reading alone is fine
    with pytest.raises(PipelineError, match="halve_test.*geometry"):
        pipeline.read(png, with_geometry=True)
