"""Class activation maps: target layers, shapes and ranges, views, targets, and peaks on a known lesion."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
pytest.importorskip("pytorch_grad_cam")

from radiology.explain import METHODS, cam_peak, cam_to_original, compute_cam, find_target_layer, overlay  # noqa: E402
from radiology.geometry import resize_matrix, translation_matrix  # noqa: E402
from radiology.models import RadiographClassifier  # noqa: E402
from tests.explain.conftest import ARCH, LAYER, PIPELINE, SIZE, lesion_image  # noqa: E402

RNG = np.random.default_rng(0)


def _near(peak, center, radius: float) -> bool:
    """A peak inside the blob, with a margin of half its radius plus two pixels (maps are coarse)."""
    return peak is not None and np.hypot(peak[0] - center[0], peak[1] - center[1]) <= 1.5 * radius + 2


# --------------------------------------------------------------------------- target layer


@pytest.mark.parametrize("arch, expected", [
    ("resnet10t", "layer4"),
    ("test_efficientnet", "bn2"),      # conv_head + bn2 after the blocks
    ("test_convnext", "stages"),       # the head's norm comes after pooling; norm_pre is an Identity
])
def test_find_target_layer_is_the_last_spatial_layer(arch, expected):
    model = RadiographClassifier(arch, 2)
    assert find_target_layer(model) is model.backbone.get_submodule(expected)
    # A plain timm classifier (no .backbone) is searched as a whole: its pooled head is skipped.
    plain = timm.create_model(arch, num_classes=3, in_chans=1)
    assert find_target_layer(plain) is plain.get_submodule(expected)


def test_find_target_layer_overrides_and_errors():
    model = RadiographClassifier(ARCH, 2)
    assert find_target_layer(model, "layer3") is model.backbone.layer3
    assert find_target_layer(model, "backbone.layer2") is model.backbone.layer2
    assert find_target_layer(model, model.backbone.layer1) is model.backbone.layer1
    with pytest.raises(ValueError, match="no layer named 'layer9'"):
        find_target_layer(model, "layer9")
    with pytest.raises(ValueError, match="not a module of the model"):
        find_target_layer(model, torch.nn.Conv2d(1, 1, 1))
    with pytest.raises(TypeError, match="target_layer"):
        find_target_layer(model, 3)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        find_target_layer("resnet", None)
    with pytest.raises(ValueError, match="vision transformer"):
        find_target_layer(RadiographClassifier("test_vit", 2))


def test_find_target_layer_skips_modules_called_twice():
    # One activation module shared by two convolutions: hooking it would record two activations.
    class Shared(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 4, 3)
            self.act = torch.nn.ReLU()
            self.pool, self.fc = torch.nn.AdaptiveAvgPool2d(1), torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.pool(self.act(self.conv2(self.act(self.conv1(x))))).flatten(1))

    model = Shared()
    assert find_target_layer(model) is model.conv2


# --------------------------------------------------------------------------- maps


@pytest.mark.parametrize("method", sorted(METHODS))
def test_compute_cam_shape_and_range(method):
    torch.manual_seed(0)
    model = RadiographClassifier(ARCH, 3, in_chans=1).eval()
    x = RNG.random((2, 1, 48, 40), dtype=np.float32)
    maps = compute_cam(model, x, method=method, target_layer="layer2")
    assert maps.shape == (2, 48, 40) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    assert all(m.max() == pytest.approx(1) or m.max() == 0 for m in maps)  # scaled one by one
    # A tensor input gives the same maps as the array.
    assert np.allclose(compute_cam(model, torch.from_numpy(x), method=method, target_layer="layer2"), maps,
                       atol=1e-5)


def test_compute_cam_leaves_the_model_as_it_was():
    model = RadiographClassifier(ARCH, 2, in_chans=3)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compute_cam(model, RNG.random((1, 3, 64, 64), dtype=np.float32))
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics untouched


def test_compute_cam_validates():
    model = RadiographClassifier(ARCH, 2).eval()
    x = RNG.random((2, 1, 64, 64), dtype=np.float32)
    with pytest.raises(ValueError, match="method must be one of"):
        compute_cam(model, x, method="gradcam3")
    with pytest.raises(ValueError, match=r"expected a batch of shape \(B, C, H, W\)"):
        compute_cam(model, x[0])
    with pytest.raises(ValueError, match="class indices in"):
        compute_cam(model, x, targets=2)
    with pytest.raises(ValueError, match="2 class indices"):
        compute_cam(model, x, targets=[0])
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        compute_cam(model, x.tolist())
    with pytest.raises(ValueError, match=r"\(B, 2, C, H, W\)"):
        compute_cam(RadiographClassifier(ARCH, 2, views=2), x)
    # At 32 px the last stage of a ResNet is 1 x 1: refused, not an all-zero map.
    small = x[:, :, :32, :32]
    with pytest.raises(ValueError, match="32x32 px the target layer's output is 1 x 1"):
        compute_cam(model, small)
    assert compute_cam(model, small, method="eigencam", target_layer="layer2").max() == pytest.approx(1)
    model.unused = torch.nn.Conv2d(1, 1, 1)
    with pytest.raises(ValueError, match="not used"):
        compute_cam(model, x, target_layer="unused")


def test_compute_cam_default_target_is_the_prediction(lesion_model):
    lesion = lesion_image(np.random.default_rng(3), True)
    x = PIPELINE(lesion.image)[None, None]
    with torch.no_grad():
        predicted = int(lesion_model(torch.from_numpy(x)).argmax(1))
    assert predicted == 1
    default = compute_cam(lesion_model, x, target_layer=LAYER)
    assert np.allclose(default, compute_cam(lesion_model, x, targets=1, target_layer=LAYER))
    assert not np.allclose(default, compute_cam(lesion_model, x, targets=0, target_layer=LAYER))


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "hirescam"])
def test_cam_peaks_inside_the_lesion_in_the_original_image(lesion_model, method):
    # Model input -> map -> back through the crop/resize/pad geometry -> peak on the original blob.
    rng = np.random.default_rng(11)
    lesions = [lesion_image(rng, True) for _ in range(8)]
    stages = [PIPELINE.trace(lesion.image, with_geometry=True)[-1] for lesion in lesions]
    maps = compute_cam(lesion_model, np.stack([image[None] for _, image, _ in stages]), method=method,
                       targets=1, target_layer=LAYER)
    hits = 0
    for lesion, (_, _, matrix), cam in zip(lesions, stages, maps):
        back = cam_to_original(cam, matrix, lesion.image.shape)
        assert back.shape == lesion.image.shape
        hits += _near(cam_peak(back), lesion.center, lesion.radius)
    assert hits >= 7, f"{method}: the peak is on the lesion in {hits} of 8 images"


def test_scorecam_peaks_inside_the_lesion(lesion_model):
    rng = np.random.default_rng(12)
    lesions = [lesion_image(rng, True) for _ in range(3)]
    stages = [PIPELINE.trace(lesion.image, with_geometry=True)[-1] for lesion in lesions]
    maps = compute_cam(lesion_model, np.stack([image[None] for _, image, _ in stages]), method="scorecam",
                       targets=1, target_layer=LAYER)
    peaks = [cam_peak(cam_to_original(cam, matrix, lesion.image.shape))
             for lesion, (_, _, matrix), cam in zip(lesions, stages, maps)]
    assert sum(_near(p, lesion.center, lesion.radius) for p, lesion in zip(peaks, lesions)) >= 2


def test_multi_view_maps_follow_the_lesion_view(lesion_model):
    # The trained backbone and head in a two-view, mean-fusion model: the lesion is in view 1 only,
    # so only view 1's map has it, and view 1's map peaks on it.
    two = RadiographClassifier(ARCH, 2, in_chans=1, views=2, fusion="mean", drop_rate=0.0)
    two.load_state_dict(lesion_model.state_dict())
    two.eval()
    rng = np.random.default_rng(13)
    normal, sick = lesion_image(rng, False), lesion_image(rng, True)
    (_, x0, _), (_, x1, matrix) = (PIPELINE.trace(lesion.image, with_geometry=True)[-1] for lesion in (normal, sick))
    x = np.stack([x0, x1])[None, :, None]  # (1, 2, 1, H, W)
    for method in ("gradcam", "hirescam"):
        maps = compute_cam(two, x, method=method, targets=1, target_layer=LAYER)
        assert maps.shape == (1, 2, SIZE, SIZE) and 0 <= maps.min() and maps.max() <= 1
        assert _near(cam_peak(cam_to_original(maps[0, 1], matrix, sick.image.shape)), sick.center, sick.radius)
    # ScoreCAM masks one sample's view at a time; it agrees on where the lesion is.
    maps = compute_cam(two, x, method="scorecam", targets=1, target_layer=LAYER)
    assert _near(cam_peak(cam_to_original(maps[0, 1], matrix, sick.image.shape)), sick.center, sick.radius)
    # A one-view model takes (B, 1, C, H, W) too.
    assert compute_cam(lesion_model, x[:, 1:], targets=1, target_layer=LAYER).shape == (1, SIZE, SIZE)


# --------------------------------------------------------------------------- back to the original, overlay


def test_cam_to_original_undoes_resize_and_crop():
    cam = np.zeros((20, 20), np.float32)
    cam[5, 12] = 1
    # The model input is a 2x downscale of the original's crop at (30, 10).
    matrix = resize_matrix((40, 40), (20, 20)) @ translation_matrix(-30, -10)
    back = cam_to_original(cam, matrix, (80, 100))
    assert back.shape == (80, 100) and back.min() >= 0 and back.max() <= 1
    x, y = cam_peak(back)
    assert abs(x - (30 + 12.5 * 2 - 0.5)) <= 1 and abs(y - (10 + 5.5 * 2 - 0.5)) <= 1
    assert back[:, :30].max() == 0 and back[:10].max() == 0  # never seen by the model
    with pytest.raises(ValueError, match="one"):
        cam_to_original(np.zeros((2, 4, 4)), np.eye(3), (4, 4))


def test_cam_peak():
    assert cam_peak(np.zeros((3, 3))) is None
    cam = np.zeros((5, 7))
    cam[4, 1] = 0.5
    assert cam_peak(cam) == (1, 4)
    with pytest.raises(ValueError):
        cam_peak(np.zeros(4))


def test_overlay_blends_a_colormap():
    image = np.full((6, 8), 0.5, np.float32)
    cam = np.zeros((6, 8), np.float32)
    cam[:, 4:] = 1
    out = overlay(image, cam, alpha=0.5)
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    # jet: the hot half is red-dominated, the cold half blue-dominated.
    assert out[0, 6, 0] > out[0, 6, 2] and out[0, 1, 2] > out[0, 1, 0]
    assert np.array_equal(overlay(image, cam, alpha=0.0), np.full((6, 8, 3), 128, np.uint8))
    assert overlay(np.zeros((6, 8, 3), np.uint8), cam, colormap="inferno").shape == (6, 8, 3)
    with pytest.raises(ValueError, match="differs"):
        overlay(image, cam[:, :4])
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, cam, alpha=2)
    with pytest.raises(ValueError, match="colormap"):
        overlay(image, cam, colormap="rainbow-ish")
