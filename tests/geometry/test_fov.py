import cv2
import numpy as np
import pytest

from radiology.geometry.fov import circle_crop, crop_to_fov, fit_circle, fov_mask, fundus_crop, mask_box
from radiology.io import read_image
from tests.conftest import shared_path


def _disc(shape, center, radius, value=0.7):
    image = np.zeros(shape, np.float32)
    image[cv2.circle(np.zeros(shape, np.uint8), center, radius, 1, -1) > 0] = value
    return image


def test_circle_crop_of_a_bright_disc():
    image = _disc((120, 160), (70, 60), 40)
    image += np.random.default_rng(0).normal(0, 0.01, image.shape).astype(np.float32) * (image > 0)
    out = circle_crop(image)
    assert out.shape == (81, 81)
    assert out[0, 0] == 0 and out[40, 40] > 0.6


def test_circle_is_recovered_when_the_frame_cuts_the_retina():
    # Disc of radius 60 centred in a 90-row frame: top and bottom are cut off.
    image = _disc((90, 200), (100, 45), 60)
    cx, cy, r = fit_circle(fov_mask(image))
    assert abs(cx - 100) < 1 and abs(cy - 45) < 1 and abs(r - 60.5) < 1.5
    out = circle_crop(image)
    assert out.shape[0] == 90 and abs(out.shape[1] - 121) <= 2  # cut rows stay cut; width = diameter


def test_crop_to_fov_and_box():
    image = np.zeros((40, 60), np.float32)
    image[5:30, 10:50] = 0.5
    assert mask_box(fov_mask(image)) == (10, 5, 40, 25)
    assert crop_to_fov(image).shape == (25, 40)


def test_fundus_crop_on_rgb():
    image = np.repeat(_disc((100, 150), (75, 50), 45)[..., None], 3, axis=2) * np.array([1.0, 0.5, 0.2])
    out = fundus_crop(image.astype(np.float32))
    assert out.shape == (91, 91, 3)


def test_empty_image():
    assert not fov_mask(np.zeros((10, 10))).any()
    with pytest.raises(ValueError):
        fit_circle(np.zeros((10, 10), bool))


def test_drive_fov_masks():
    root = shared_path("fundus", "drive")
    ious = []
    for path in sorted((root / "images").glob("*.png")):
        truth = read_image(root / "fov_masks" / f"{path.stem}_mask.png") > 0.5
        mask = fov_mask(read_image(path))
        ious.append((mask & truth).sum() / (mask | truth).sum())
    assert len(ious) == 30
    assert min(ious) > 0.98 and np.mean(ious) > 0.99


def test_chase_pairs_circle_crop_is_square_and_centred():
    root = shared_path("fundus", "chase_db1_pairs")
    for path in sorted(root.glob("*.jpg"))[:4]:
        image = read_image(path)
        out = fundus_crop(image)
        assert out.ndim == 3 and abs(out.shape[0] - out.shape[1]) <= 0.05 * out.shape[1]
        assert out[out.shape[0] // 2, out.shape[1] // 2].max() > 0.1  # retina in the middle
