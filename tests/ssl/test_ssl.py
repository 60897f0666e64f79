"""Self-supervised pretraining: losses against direct formulas, views, callbacks, and end-to-end checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from lightly.models.utils import update_momentum
from torch.nn import functional as F

from radiology.io import read_image, write_image
from radiology.models import create_model
from radiology.ssl import (
    BYOLLoss,
    BYOLModel,
    ContrastiveModel,
    HeaderLoss,
    MetadataModel,
    NTXent,
    TwoViews,
    contrastive_augmentation,
    header_targets,
    pretrain,
    save_backbone,
)
from radiology.synthetic import phantom_radiograph, write_phantom_dicom
from tests.conftest import shared_path


def ntxent_direct(a: torch.Tensor, b: torch.Tensor, temperature: float) -> float:
    """NT-Xent written out: for each of the 2N embeddings, -log softmax of its positive among the 2N-1 others."""
    z = F.normalize(torch.cat([a, b]).double(), dim=1)
    n = len(a)
    total = 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        logits = [float(z[i] @ z[j]) / temperature for j in range(2 * n) if j != i]
        target = float(z[i] @ z[positive]) / temperature
        total += -(target - math.log(sum(math.exp(v) for v in logits)))
    return total / (2 * n)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_ntxent_matches_the_direct_formula(temperature):
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 8, generator=generator), torch.randn(4, 8, generator=generator)
    assert float(NTXent(temperature)(torch.cat([a, b]))) == pytest.approx(ntxent_direct(a, b, temperature), rel=1e-5)


def test_ntxent_ignores_targets_and_rejects_odd_batches():
    z = torch.randn(6, 4)
    assert float(NTXent()(z, torch.zeros(3))) == float(NTXent()(z))
    with pytest.raises(ValueError, match="two stacked views"):
        NTXent()(torch.randn(5, 4))
    with pytest.raises(ValueError, match="temperature"):
        NTXent(0)


def test_byol_loss_is_symmetric_negative_cosine():
    p1, p2, z1, z2 = torch.randn(4, 3, 6).unbind(0)
    expected = -0.5 * (F.cosine_similarity(p1, z2).mean() + F.cosine_similarity(p2, z1).mean())
    loss = BYOLLoss()((torch.cat([p1, p2]), torch.cat([z1, z2])))
    assert float(loss) == pytest.approx(float(expected), abs=1e-6)


def test_contrastive_views_are_random_gray_crops():
    torch.manual_seed(0)
    image = torch.from_numpy(phantom_radiograph((48, 40), seed=1))[None, None].repeat(4, 1, 1, 1)
    augment = contrastive_augmentation(32)
    first, second = augment(image), augment(image)
    assert first.shape == (4, 1, 32, 32)
    assert not torch.allclose(first, second)  # two draws, two different views
    assert not torch.allclose(first[0], first[1])  # parameters drawn per image


def test_two_views_doubles_training_batches_only():
    class Fake:
        training = True
        xb = (torch.rand(3, 1, 16, 16),)

    callback = TwoViews(contrastive_augmentation(16))
    callback.learn = Fake()
    callback.before_batch()
    views = callback.learn.xb[0]
    assert views.shape == (6, 1, 16, 16)
    assert float(views.min()) >= 0 and float(views.max()) <= 1  # noise does not leave the input range
    Fake.training, Fake.xb = False, (torch.rand(3, 1, 16, 16),)
    callback.learn = Fake()
    x = Fake.xb[0]
    callback.before_batch()
    assert torch.equal(callback.learn.xb[0], torch.cat([x, x.flip(-1)]))


def test_byol_target_follows_the_online_network_without_gradients():
    model = BYOLModel(create_model("resnet18", 2, pretrained=None), hidden_dim=16, output_dim=8)
    assert all(not p.requires_grad for p in model.target_encoder.parameters())
    online, target = model(torch.rand(4, 1, 32, 32))
    online.sum().backward()
    assert model.encoder.backbone.conv1.weight.grad is not None
    assert model.target_encoder.backbone.conv1.weight.grad is None


def test_header_loss_matches_cross_entropy_on_known_values():
    logits = torch.randn(4, 5)
    targets = torch.tensor([[0, 2], [1, -1], [-1, 0], [1, 1]])
    first = F.cross_entropy(logits[[0, 1, 3], :2], targets[[0, 1, 3], 0])
    second = F.cross_entropy(logits[[0, 2, 3], 2:], targets[[0, 2, 3], 1])
    assert float(HeaderLoss([2, 3])(logits, targets)) == pytest.approx(float((first + second) / 2), rel=1e-6)
    no_known = torch.full((4, 2), -1)
    assert float(HeaderLoss([2, 3])(logits, no_known)) == 0.0


def test_header_targets_on_real_dicoms_drops_constant_fields():
    import pydicom

    folder = shared_path("chest_xray_views", "dicom")
    paths = sorted(folder.glob("*.dcm"))[:30]
    found = header_targets(paths, ["photometric", "manufacturer"], progress=False)
    assert found.fields == ["photometric"] and found.classes["photometric"] == ["MONOCHROME1", "MONOCHROME2"]
    stored = [pydicom.dcmread(p, stop_before_pixels=True).PhotometricInterpretation for p in paths]
    assert found.targets[:, 0].tolist() == [found.classes["photometric"].index(v) for v in stored]
    assert "need 2" in found.dropped["manufacturer"]


def test_header_targets_validation():
    with pytest.raises(ValueError, match="unknown header field"):
        header_targets([], ["patient_name"])


def _write_images(folder, count: int, size: int = 48):
    for i in range(count):
        image = phantom_radiograph((size, size), seed=i)
        write_image(folder / f"{i:03d}.png", image if i % 2 else image[:, ::-1])
    return folder


def _fixed_loss(model, loss, images: torch.Tensor, seed: int = 123) -> float:
    """The loss on one fixed pair of views (same random draws before and after training)."""
    torch.manual_seed(seed)
    augment = contrastive_augmentation(images.shape[-1])
    views = torch.cat([augment(images), augment(images)])
    model.train()  # batch statistics, as in training (running averages lag behind after a few steps)
    with torch.no_grad():
        return float(loss(model(views)))


def _real_images(count: int, side: int = 40) -> torch.Tensor:
    source = shared_path("pneumonia", "images")
    files = sorted(source.glob("*.jpg"))[:count]
    return torch.stack([torch.from_numpy(read_image(p)[::4, ::4][:side, :side].copy())[None] for p in files])


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_a_few_steps_on_real_images_lower_the_loss(method):
    images = _real_images(16)
    torch.manual_seed(0)
    encoder = create_model("test_resnet", 2, pretrained=None)  # timm's tiny test net: 30 steps in ~2 s
    if method == "simclr":
        model, loss = ContrastiveModel(encoder, hidden_dim=64, output_dim=32), NTXent(0.2)
    else:
        model, loss = BYOLModel(encoder, hidden_dim=64, output_dim=32), BYOLLoss()

    def held_out_loss() -> float:  # mean over three fixed pairs of views, drawn the same before and after
        return sum(_fixed_loss(model, loss, images, seed) for seed in (1, 2, 3)) / 3

    before = held_out_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    augment = contrastive_augmentation(images.shape[-1])
    for _ in range(30):
        model.train()
        value = loss(model(torch.cat([augment(images), augment(images)])))
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        if method == "byol":
            update_momentum(model.encoder, model.target_encoder, 0.9)
            update_momentum(model.projection, model.target_projection, 0.9)
    assert held_out_loss() < before


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_pretrain_writes_a_checkpoint_that_training_loads(tmp_path, method):
    folder = _write_images(tmp_path / "unlabeled", 12)
    (folder / "broken.dcm").write_bytes(b"not a dicom")
    out = tmp_path / f"{method}.pt"
    result = pretrain(folder, out, method=method, arch="test_resnet", pretrained=None, size=32, epochs=1,
                      batch_size=4, cache="none", progress=False)
    assert result.checkpoint == out and result.images == 12
    assert [name for name, _ in result.skipped] == ["broken.dcm"]
    info = json.loads(out.with_name(out.name + ".json").read_text())
    assert info["method"] == method and len(info["history"]) == 1
    saved = torch.load(out, weights_only=True)
    model = create_model("test_resnet", 3, pretrained=out)
    for key, value in saved["state_dict"].items():
        assert torch.equal(model.backbone.state_dict()[key], value)
    # A finished pretraining is never replaced unasked; the refusal comes before any work.
    with pytest.raises(FileExistsError, match="overwrite=True"):
        pretrain(folder, out, method=method, arch="test_resnet", pretrained=None)
    assert torch.equal(torch.load(out, weights_only=True)["state_dict"][key], value)


def test_metadata_pretext_learns_header_fields(tmp_path):
    folder = tmp_path / "archive"
    for i in range(24):  # DX phantoms have a bright frame (flip- and window-invariant): a learnable header field
        image = phantom_radiograph((48, 48), seed=i)
        modality = "CR" if i % 2 else "DX"
        if modality == "DX":
            image = np.pad(image[8:-8, 8:-8], 8, constant_values=float(image.max()))
        write_phantom_dicom(folder / f"{i:02d}.dcm", image, modality=modality)
    # Files without a header are left out before any pixel is decoded: the broken PNG is never read.
    _write_images(folder / "photos", 2)
    (folder / "photos" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "meta.pt").write_bytes(b"an older file")
    result = pretrain(folder, tmp_path / "meta.pt", method="metadata", arch="test_resnet", pretrained=None, size=32,
                      epochs=6, batch_size=8, lr=3e-3, cache="none", progress=False, valid_fraction=0.25,
                      overwrite=True)
    assert result.info["fields"] == ["modality"]
    assert result.images == 24 and result.skipped == [] and result.info["without_header"] == 3
    assert result.info["classes"] == {"modality": ["CR", "DX"]}
    assert "body_part" in result.info["dropped_fields"]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.info["valid_accuracy"]["modality"] is not None
    create_model("test_resnet", 2, pretrained=result.checkpoint)


def test_pretrain_usage_errors(tmp_path):
    folder = _write_images(tmp_path / "few", 3)
    with pytest.raises(ValueError, match="method"):
        pretrain(folder, tmp_path / "x.pt", method="moco")
    with pytest.raises(ValueError, match="at least 8"):
        pretrain(folder, tmp_path / "x.pt", arch="resnet18", pretrained=None, cache="none", progress=False)
    with pytest.raises(ValueError, match="is a folder"):
        pretrain(folder, tmp_path, arch="resnet18")
    with pytest.raises(ValueError, match="unknown backbone"):
        pretrain(folder, tmp_path / "x.pt", arch="no_such_net")
    # Missing weights are found before the archive is read (which can take hours), not after.
    with pytest.raises(FileNotFoundError, match="no such file"):
        pretrain(tmp_path / "unread", tmp_path / "x.pt", arch="resnet18", pretrained=str(tmp_path / "gone.pt"))
    images_only = _write_images(tmp_path / "pngs", 10)
    with pytest.raises(ValueError, match="no header field"):
        pretrain(images_only, tmp_path / "m.pt", method="metadata", arch="resnet18", pretrained=None, size=32,
                 cache="none", progress=False)


def test_save_backbone_round_trip_and_errors(tmp_path):
    model = create_model("resnet18", 2, pretrained=None)
    path = save_backbone(model, tmp_path / "sub" / "b.pt", {"arch": "resnet18"})
    assert torch.load(path, weights_only=True)["radiology"] == {"arch": "resnet18"}
    loaded = create_model("resnet18", 2, pretrained=path)
    assert torch.equal(loaded.backbone.conv1.weight, model.backbone.conv1.weight)
    # Another backbone: the error names the recorded arch instead of listing hundreds of keys.
    with pytest.raises(ValueError, match="pretrained with arch 'resnet18', the model is 'resnet34'"):
        create_model("resnet34", 2, pretrained=path)
    with pytest.raises(TypeError):
        save_backbone(torch.nn.Linear(2, 2), tmp_path / "x.pt")
    with pytest.raises(IsADirectoryError):
        save_backbone(model, tmp_path)
    assert not list(tmp_path.glob("sub/.*.tmp"))


def test_metadata_model_and_contrastive_model_shapes():
    encoder = create_model("resnet18", 2, pretrained=None)
    assert MetadataModel(encoder, [2, 4])(torch.rand(2, 1, 32, 32)).shape == (2, 6)
    with pytest.raises(ValueError):
        MetadataModel(encoder, [1])
    for model in (ContrastiveModel, BYOLModel, lambda encoder: MetadataModel(encoder, [2])):
        with pytest.raises(TypeError, match="RadiographClassifier"):
            model(torch.nn.Linear(2, 2))
    assert np.isfinite(float(NTXent()(ContrastiveModel(encoder, output_dim=8)(torch.rand(4, 1, 32, 32)))))


def test_pretrain_uses_the_default_image_cache_unless_told_none(tmp_path, monkeypatch):
    # The documented default: cache=None means $RADIOLOGY_CACHE (str(None) == "none" once switched it off).
    folder = _write_images(tmp_path / "unlabeled", 8, size=40)
    cache = tmp_path / "cache"
    monkeypatch.setenv("RADIOLOGY_CACHE", str(cache))
    settings = dict(method="simclr", arch="test_resnet", pretrained=None, size=32, epochs=1, batch_size=4,
                    progress=False)
    pretrain(folder, tmp_path / "default.pt", **settings)
    assert len(list(cache.rglob("*.npy"))) == 8
    pretrain(folder, tmp_path / "uncached.pt", cache="none", **{**settings, "size": 40})
    assert len(list(cache.rglob("*.npy"))) == 8  # "none": nothing new was written for the other size
