"""FixMatch's memory plan: the batch arithmetic, the no-gradient weak pass, and what the callback reports."""

import logging

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastai")

from torch.utils.data import TensorDataset  # noqa: E402

from radiology.semisup import (  # noqa: E402
    FixMatch,
    memory,
    plan_fixmatch_step,
    unlabeled_batch_size,
    unlabeled_loader,
)
from radiology.semisup.memory import image_training_bytes  # noqa: E402
from tests.semisup.test_callbacks import Sizes, _fit, _learner, _split  # noqa: E402

PER_IMAGE = 1000  # bytes per image with bytes_per_pixel = 1000 - 4 at 1 px, 1 channel


def _batch(available, labeled=8, mu=7, weak_pass="no_grad", fraction=0.5):
    return unlabeled_batch_size(labeled, mu, image_size=1, channels=1, available_bytes=available,
                                bytes_per_pixel=PER_IMAGE - 4, weak_pass=weak_pass, fraction=fraction)


def test_image_training_bytes_scales_with_pixels_and_channels():
    assert image_training_bytes(1, 1, bytes_per_pixel=PER_IMAGE - 4) == PER_IMAGE
    assert image_training_bytes((2, 3), 3, bytes_per_pixel=100) == 6 * (100 + 12)
    assert image_training_bytes(224, arch="an_unknown_arch") == image_training_bytes(224)  # lite0's figure


@pytest.mark.parametrize("weak_pass, views", [("no_grad", 1), ("joint", 2)])
def test_the_largest_fitting_unlabeled_batch_at_least_one_at_most_mu_b(weak_pass, views):
    labeled, mu = 8, 7
    for available in range(0, 400_000, 1_000):
        n = _batch(available, labeled, mu, weak_pass)
        budget = 0.5 * available
        assert 1 <= n <= mu * labeled
        if n < mu * labeled:  # the next one would not fit
            assert (labeled + views * (n + 1)) * PER_IMAGE > budget
        if n > 1:  # and this one does
            assert (labeled + views * n) * PER_IMAGE <= budget
    # Known answers: 100 images fit in half of 200 kB.
    assert _batch(200_000) == 56  # mu * B = 56 <= 100 - 8
    assert _batch(80_000) == 32  # 40 images: 8 labeled + 32 strong
    assert _batch(80_000, weak_pass="joint") == 16  # 8 + 2 x 16
    assert _batch(80_000, fraction=0.25) == 12  # 20 images
    assert _batch(0) == 1


def test_not_even_the_labeled_batch_fits_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="radiology.semisup.memory"):
        assert _batch(10_000) == 1
    assert "lower the batch size" in caplog.text


def test_bad_arguments():
    with pytest.raises(ValueError, match="weak_pass"):
        _batch(1000, weak_pass="auto")
    with pytest.raises(ValueError, match="positive"):
        _batch(1000, mu=0)
    with pytest.raises(ValueError, match="fraction"):
        _batch(1000, fraction=0)
    with pytest.raises(ValueError, match="weak_pass"):
        plan_fixmatch_step(8, 7, image_size=1, weak_pass="never")


def test_the_plan_keeps_the_joint_pass_when_it_fits_and_honours_an_explicit_batch():
    kwargs = dict(image_size=1, channels=1, bytes_per_pixel=PER_IMAGE - 4)
    plan = plan_fixmatch_step(8, 7, available_bytes=2 * 120 * PER_IMAGE, **kwargs)  # 8 + 2 x 56 = 120
    assert (plan.unlabeled, plan.requested, plan.weak_pass) == (56, 56, "joint")
    assert plan.message == ("FixMatch: unlabeled batch 56 (mu 7 x batch 8) fits 0.0 GB available "
                            "(weak and strong views in one pass)")
    plan = plan_fixmatch_step(8, 7, available_bytes=2 * 119 * PER_IMAGE, **kwargs)  # joint no longer fits
    assert (plan.unlabeled, plan.weak_pass) == (56, "no_grad")
    plan = plan_fixmatch_step(8, 7, available_bytes=2 * 40 * PER_IMAGE, **kwargs)
    assert (plan.unlabeled, plan.weak_pass) == (32, "no_grad")
    plan = plan_fixmatch_step(8, 7, available_bytes=2 * 40 * PER_IMAGE, weak_pass="joint", **kwargs)
    assert (plan.unlabeled, plan.weak_pass) == (16, "joint")
    plan = plan_fixmatch_step(8, 7, available_bytes=1, unlabeled_batch=100, **kwargs)
    assert (plan.unlabeled, plan.weak_pass, plan.available_bytes) == (100, "joint", None)
    assert "as given" in plan.message


def test_the_weak_pass_without_gradient(chest_images):
    x, y, unlabeled = _split(chest_images, 8)
    torch.manual_seed(0)
    calls, seen = [], {}

    class Spy(FixMatch):
        def after_pred(self):
            seen["weak"] = self._weak_logits
            super().after_pred()

    learn = _learner(x, y)
    hook = learn.model.register_forward_hook(
        lambda module, inputs, output: calls.append((inputs[0].shape[0], torch.is_grad_enabled(),
                                                     output.requires_grad)) if module.training else None)
    fixmatch = Spy(unlabeled_loader(TensorDataset(unlabeled), 16), mu=2, threshold=0.0, weak_pass="no_grad",
                   teacher="model")
    _fit(learn, 1, cbs=[fixmatch])
    hook.remove()
    # Per step: the 16 weak views without gradient, then labeled + strong (8 + 16) with it.
    assert calls == [(16, False, False), (24, True, True)] * 2
    assert seen["weak"].shape == (16, 2) and not seen["weak"].requires_grad
    assert fixmatch.plan.weak_pass == "no_grad" and fixmatch.plan.unlabeled == 16
    assert fixmatch.history[0]["mask_rate"] == 1.0  # threshold 0: every weak view gives a pseudo-label


def test_the_joint_pass_gives_no_gradient_through_the_weak_views(chest_images):
    x, y, unlabeled = _split(chest_images, 8)
    torch.manual_seed(0)
    grads = []
    learn = _learner(x, y)

    def keep_gradient(module, inputs, output):
        if module.training:
            output.register_hook(grads.append)

    hook = learn.model.register_forward_hook(keep_gradient)
    _fit(learn, 1, cbs=[FixMatch(unlabeled_loader(TensorDataset(unlabeled), 16), mu=2, teacher="model", threshold=0.0,
                                 weak_pass="joint")])
    hook.remove()
    assert len(grads) == 2 and grads[0].shape == (8 + 2 * 16, 2)
    assert all(bool((g[8:24] == 0).all()) for g in grads)  # the weak rows: no gradient
    assert all(bool((g[24:] != 0).any()) and bool((g[:8] != 0).any()) for g in grads)


def test_the_callback_reduces_the_unlabeled_batch_to_fit_and_says_so(chest_images, monkeypatch, caplog):
    x, y, unlabeled = _split(chest_images, 8)
    per_image = image_training_bytes(32, 1)
    # Half of it holds 20 images with gradients: joint (8 + 2 n) fits n = 6, no_grad (8 + n) n = 12.
    monkeypatch.setattr(memory, "available_memory", lambda device=None: 40 * per_image)
    torch.manual_seed(0)
    sizes = Sizes()
    fixmatch = FixMatch(unlabeled_loader(TensorDataset(unlabeled), 16), mu=2, teacher="model")
    with caplog.at_level(logging.INFO, logger="radiology.semisup.callbacks"):
        _fit(_learner(x, y), 1, cbs=[fixmatch, sizes])
    assert sizes.training_sizes == [12, 8 + 12] * 2
    assert (fixmatch.plan.unlabeled, fixmatch.plan.requested, fixmatch.plan.weak_pass) == (12, 16, "no_grad")
    records = [r for r in caplog.records if r.name == "radiology.semisup.callbacks"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING  # planned once per fit
    assert records[0].getMessage() == ("FixMatch: unlabeled batch 16 (mu 2 x batch 8) -> reduced to 12 to fit "
                                       "0.1 GB available (weak views in a separate no-gradient pass)")

    # Plenty of memory: the paper's single pass at mu * B, reported at INFO.
    monkeypatch.setattr(memory, "available_memory", lambda device=None: 10**12)
    caplog.clear()
    sizes = Sizes()
    with caplog.at_level(logging.INFO, logger="radiology.semisup.callbacks"):
        _fit(_learner(x, y), 1, cbs=[FixMatch(unlabeled_loader(TensorDataset(unlabeled), 16), mu=2, teacher="model"),
                                     sizes])
    assert sizes.training_sizes == [8 + 2 * 16] * 2
    assert [r.levelno for r in caplog.records if r.name == "radiology.semisup.callbacks"] == [logging.INFO]
    assert "unlabeled batch 16 (mu 2 x batch 8) fits 1000.0 GB available" in caplog.text

    # An explicit unlabeled_batch is used as given.
    sizes = Sizes()
    _fit(_learner(x, y), 1, cbs=[FixMatch(unlabeled_loader(TensorDataset(unlabeled), 16), mu=2, teacher="model",
                                          unlabeled_batch=4, weak_pass="no_grad"), sizes])
    assert sizes.training_sizes == [4, 8 + 4] * 2
