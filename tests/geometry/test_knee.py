import cv2
import numpy as np
import pytest

from radiology.geometry.knee import KneeLocalizer, box_iou, crop_around, hog_features
from radiology.io import read_image
from tests.conftest import shared_path


def _toy_knee(rng, size=(240, 200)):
    """A 'joint': two bright bone blocks separated by a dark gap, at a random place."""
    image = rng.normal(0.1, 0.03, size).astype(np.float32)
    cx, cy = int(rng.integers(70, size[1] - 70)), int(rng.integers(70, size[0] - 70))
    cv2.rectangle(image, (cx - 30, cy - 60), (cx + 30, cy - 6), 0.8, -1)   # femur
    cv2.rectangle(image, (cx - 28, cy + 6), (cx + 28, cy + 60), 0.75, -1)  # tibia
    return np.clip(image, 0, 1), (cx - 45, cy - 45, 90, 90)


def test_fit_then_detect_on_a_known_toy_problem(tmp_path):
    rng = np.random.default_rng(0)
    train = [_toy_knee(rng) for _ in range(25)]
    model = KneeLocalizer.fit([im for im, _ in train], [[box] for _, box in train], seed=1,
                              scales=(0.35, 0.45, 0.55))
    test = [_toy_knee(rng) for _ in range(10)]
    ious = [box_iou(model.detect(im, knees=1)[0].box, box) for im, box in test]
    assert np.mean(ious) > 0.5 and min(ious) > 0.2
    loaded = KneeLocalizer.load(model.save(tmp_path / "knee.npz"), scales=(0.35, 0.45, 0.55))
    assert np.allclose(loaded.weights, model.weights) and loaded.bias == pytest.approx(model.bias)


def test_hog_layout_and_weights_validation():
    assert hog_features(np.zeros((64, 64), np.float32)).shape == (1764,)
    with pytest.raises(ValueError):
        KneeLocalizer(np.zeros(10))


def test_crop_around_pads_at_the_edges():
    image = np.arange(100, dtype=np.float32).reshape(10, 10)
    out = crop_around(image, (0, 0), size_px=4)
    assert out.shape == (4, 4) and out[0, 0] == 0 and out[2, 2] == image[0, 0]
    with pytest.raises(ValueError):
        crop_around(image, (5, 5))


def test_published_weights_on_real_knees():
    weights = shared_path("knee", "svm_model.npy")
    root = shared_path("knee", "radiographs")
    with pytest.raises(ValueError, match="pickled file"):  # a pickle is read only when asked to
        KneeLocalizer.load(weights)
    model = KneeLocalizer.load(weights, allow_pickle=True)
    for path in sorted(root.glob("*.jpg"))[:8]:
        image = read_image(path)
        image = image.mean(axis=2) if image.ndim == 3 else image
        found = model.detect(image)
        assert 1 <= len(found) <= 2
        for knee in found:
            x, y, w, h = knee.box
            assert 0 <= x and 0 <= y and x + w <= image.shape[1] + 1 and y + h <= image.shape[0] + 1
            assert np.isfinite(knee.score)
