import cv2
import numpy as np

from radiology.geometry.background import body_mask, clean_background, collimation_box
from radiology.io import read_image
from tests.conftest import shared_path


def _radiograph_with_text():
    rng = np.random.default_rng(0)
    image = np.full((200, 160), 0.05, np.float32)
    body = cv2.ellipse(np.zeros((200, 160), np.uint8), (80, 110), (45, 80), 0, 0, 360, 1, -1) > 0
    image[body] = 0.5 + 0.2 * rng.random(body.sum()).astype(np.float32)  # textured anatomy
    text = np.zeros((200, 160), np.uint8)
    cv2.putText(text, "R", (5, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255, 2)
    image[text > 0] = 1.0
    return image, body, text > 0


def test_text_outside_the_body_is_removed_and_anatomy_untouched():
    image, body, text = _radiograph_with_text()
    out = clean_background(image, crop_collimation=False)
    assert out.shape == image.shape
    assert (out[text] == 0).all()
    assert np.array_equal(out[body], image[body])


def test_two_limbs_are_both_kept():
    image = np.zeros((100, 200), np.float32)
    image[10:90, 20:80] = 0.6
    image[10:90, 120:170] = 0.5
    mask = body_mask(image)
    assert mask[50, 50] and mask[50, 150]


def test_collimation_band_is_cropped():
    image, _, _ = _radiograph_with_text()
    framed = np.ones((240, 200), np.float32)  # unexposed collimated border shows white
    framed[20:220, 20:180] = image
    assert collimation_box(framed) == (20, 20, 160, 200)
    assert clean_background(framed).shape == (200, 160)


def test_real_knee_radiographs_keep_the_joint():
    root = shared_path("knee", "radiographs")
    for path in sorted(root.glob("*.jpg"))[:10]:
        image = read_image(path)
        image = image.mean(axis=2) if image.ndim == 3 else image
        out = clean_background(image)
        assert out.size >= 0.5 * image.size  # collimation crop never eats most of the image
        assert (out > 0).mean() > 0.3  # the body region survives
