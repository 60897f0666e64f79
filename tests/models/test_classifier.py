"""RadiographClassifier: input conventions, normalization inside the model, multi-view fusion, config."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from radiology.models import (  # noqa: E402
    FUSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RadiographClassifier,
    create_model,
)

ARCH = "resnet10t"  # small and fast; ImageNet statistics in its timm pretrained_cfg


def _model(**kwargs) -> RadiographClassifier:
    torch.manual_seed(0)
    return RadiographClassifier(ARCH, kwargs.pop("n_outputs", 3), **kwargs).eval()


def _batch(*shape, seed=0):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_single_view_logits_shape_and_normalization_inside_the_model():
    model = _model(in_chans=1)
    x = _batch(4, 1, 32, 32)
    with torch.no_grad():
        logits = model(x)
        # The model takes [0, 1] input and normalizes it itself (gray: the RGB statistics averaged).
        mean, std = sum(IMAGENET_MEAN) / 3, sum(IMAGENET_STD) / 3
        expected = model.head(model.backbone((x - mean) / std))
    assert logits.shape == (4, 3)
    torch.testing.assert_close(logits, expected)


def test_rgb_input_uses_the_per_channel_statistics():
    model = _model(in_chans=3)
    assert model.config["mean"] == list(IMAGENET_MEAN) and model.config["std"] == list(IMAGENET_STD)
    x = _batch(2, 3, 32, 32)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.head(model.backbone((x - mean) / std)))


def test_normalization_follows_the_pretrained_cfg_of_the_arch():
    # TF-ported weights are trained on (x - 0.5) / 0.5, most others on ImageNet statistics.
    lite = create_model("tf_efficientnet_lite0", 2, pretrained=None)
    assert lite.config["mean"] == [0.5] * 3 and lite.config["std"] == [0.5] * 3
    assert torch.equal(lite.mean.flatten(), torch.tensor([0.5])) and lite.mean.shape == (1, 1, 1, 1)
    custom = RadiographClassifier(ARCH, 2, in_chans=2, mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 3.0))
    torch.testing.assert_close(custom.mean.flatten(), torch.tensor([0.2, 0.2]))
    torch.testing.assert_close(custom.std.flatten(), torch.tensor([2.0, 2.0]))
    scalar = RadiographClassifier(ARCH, 2, in_chans=3, mean=0.25, std=[0.5])
    assert scalar.config["mean"] == [0.25] * 3 and scalar.config["std"] == [0.5] * 3


def test_normalization_buffers_are_not_in_the_state_dict():
    model = _model()
    assert not {"mean", "std"} & set(model.state_dict())
    assert all(key.startswith(("backbone.", "head.")) for key in model.state_dict())


def test_config_rebuilds_the_same_model():
    model = _model(in_chans=3, views=2, fusion="mean", drop_rate=0.1, mean=(0.4, 0.4, 0.4), std=(0.3, 0.3, 0.3))
    rebuilt = RadiographClassifier(**model.config)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    assert rebuilt.config == model.config
    x = _batch(2, 2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))


@pytest.mark.parametrize("fusion", FUSIONS)
def test_multi_view_input_gives_one_row_per_sample(fusion):
    model = _model(views=3, fusion=fusion, n_outputs=4)
    features = model.num_features
    assert model.head.in_features == (3 * features if fusion == "concat" else features)
    with torch.no_grad():
        logits = model(_batch(2, 3, 1, 32, 32))
    assert logits.shape == (2, 4)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_views_share_one_backbone(fusion):
    single, multi = _model(views=1), _model(views=3, fusion=fusion)
    backbone_params = sum(p.numel() for p in single.backbone.parameters())
    assert sum(p.numel() for p in multi.backbone.parameters()) == backbone_params
    assert sum(p.numel() for p in multi.parameters()) == backbone_params + sum(
        p.numel() for p in multi.head.parameters())
    # Each view goes through the same backbone: the fused features are the per-view features of that backbone.
    x = _batch(2, 3, 1, 32, 32)
    with torch.no_grad():
        per_view = torch.stack([multi.backbone((x[:, v] - multi.mean) / multi.std) for v in range(3)], dim=1)
        fused = per_view.flatten(1) if fusion == "concat" else per_view.mean(1)
        torch.testing.assert_close(multi.forward_features(x), fused)
        torch.testing.assert_close(multi(x), multi.head(fused))


def test_mean_fusion_ignores_view_order_and_concat_does_not():
    x = _batch(2, 2, 1, 32, 32)
    swapped = x.flip(1)
    mean_model, concat_model = _model(views=2, fusion="mean"), _model(views=2, fusion="concat")
    with torch.no_grad():
        torch.testing.assert_close(mean_model(swapped), mean_model(x))
        assert not torch.allclose(concat_model(swapped), concat_model(x), atol=1e-4)


def test_single_view_model_accepts_a_view_axis_of_one():
    model = _model()
    x = _batch(3, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x[:, None]), model(x))


@pytest.mark.parametrize(("views", "shape", "message"), [
    (1, (2, 3, 32, 32), r"expected \(B, 1, H, W\)"),
    (2, (2, 1, 32, 32), r"takes 2 views"),
    (2, (2, 3, 1, 32, 32), r"expected \(B, 2, 1, H, W\)"),
    (1, (32, 32), r"4-D or 5-D"),
])
def test_wrong_input_shapes_are_reported(views, shape, message):
    model = _model(views=views)
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(shape))


def test_hidden_head_features_size_the_head():
    # MobileNetV3 has a conv_head after pooling: its features are head_hidden_size wide, not num_features.
    model = create_model("mobilenetv3_small_050", 2, pretrained=None).eval()
    with torch.no_grad():
        features = model.forward_features(_batch(1, 1, 32, 32))
    assert features.shape[1] == model.num_features == model.head.in_features
    assert model.num_features != model.backbone.num_features


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"arch": "no_such_network"}, "no_such_network"),
    ({"n_outputs": 0}, "n_outputs"),
    ({"in_chans": 0}, "in_chans"),
    ({"views": 0}, "views"),
    ({"fusion": "max"}, "fusion"),
    ({"drop_rate": 1.0}, "drop_rate"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, message):
    arguments = {"arch": ARCH, "n_outputs": 2, "pretrained": None, **kwargs}
    with pytest.raises(ValueError, match=message):
        create_model(**arguments)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mean": (0.5, 0.5)}, "mean must be 3 numbers"),
    ({"mean": "abc"}, "mean must be 3 numbers"),
    ({"std": (0.5, 0.0, 0.5)}, "std must be 3 positive numbers"),
])
def test_bad_statistics_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RadiographClassifier(ARCH, 2, **kwargs)


def test_dropout_acts_in_training_mode_only():
    model = _model(drop_rate=0.5)
    x = _batch(4, 1, 32, 32)
    with torch.no_grad():
        evaluated = model(x)
        torch.testing.assert_close(model(x), evaluated)
        model.train()
        features = model.forward_features(x)
        torch.manual_seed(1)
        trained = model.head(model.dropout(features))
    assert not torch.allclose(trained, evaluated, atol=1e-4)
