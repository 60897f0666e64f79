"""FixMatch and MixMatch inside fastai: batch layout, masking, loss, validation untouched, errors, host reads, GPU."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastai")

from fastai.callback.core import Callback  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from radiology.semisup import FixMatch, MixMatch, semisup_callback, unlabeled_loader  # noqa: E402
from radiology.train import make_learner  # noqa: E402
from tests.semisup.conftest import TinyCNN, guarded, make_dls, timm_model  # noqa: E402


def _silent(*args, **kwargs):
    return None


def _learner(x, y, model=None, *, batch_size=8, loss=None, wd=1e-2, device="cpu"):
    learn = make_learner(make_dls(x, y, batch_size, device), model if model is not None else TinyCNN(),
                         loss if loss is not None else torch.nn.CrossEntropyLoss(), wd=wd)
    learn.logger = _silent
    return learn


def _fit(learn, epochs, lr=3e-3, cbs=()):
    with learn.no_bar():
        learn.fit(epochs, lr, cbs=list(cbs))


def _split(chest_images, per_class):
    """``per_class`` labeled images of each class, the rest of the 64 as unlabeled."""
    x, y = chest_images
    labeled = torch.cat([torch.arange(per_class), 32 + torch.arange(per_class)])
    rest = torch.ones(64, dtype=torch.bool)
    rest[labeled] = False
    return x[labeled], y[labeled], x[rest]


class Sizes(Callback):
    """Batch sizes the model sees, split by training and validation."""

    order = 100

    def before_fit(self):
        self.training_sizes, self.valid_sizes = [], []
        self.hook = self.learn.model.register_forward_hook(
            lambda module, inputs, output: (self.training_sizes if module.training else self.valid_sizes).append(
                inputs[0].shape[0]))

    def after_fit(self):
        self.hook.remove()


class CleanLoss(Callback):
    """Cross-entropy of each clean labeled training batch before its step, with batch statistics.

    Measured before FixMatch/MixMatch change the batch; batch-norm momentum is set to 0 for
    the probe so the running statistics are not touched.
    """

    order = 4

    def before_fit(self):
        self.losses = []

    def before_batch(self):
        if not self.training:
            return
        norms = [m for m in self.learn.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.momentum = 0.0
        with torch.no_grad():
            logits = self.learn.model(self.learn.xb[0])
            self.losses.append(float(torch.nn.functional.cross_entropy(logits.float(), self.learn.yb[0])))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


def test_fixmatch_batch_layout_and_threshold_mask(chest_images):
    x, y, unlabeled = _split(chest_images, 8)
    torch.manual_seed(0)
    sizes, seen = Sizes(), []

    class Spy(FixMatch):
        def after_pred(self):
            seen.append(self.learn.pred.detach().clone())
            super().after_pred()
            assert self.learn.pred.shape == (8, 2)  # the labeled logits, for learn.loss_func

    learn = _learner(x, y)
    fixmatch = Spy(unlabeled_loader(TensorDataset(unlabeled), 16), mu=2, threshold=0.55,
                   distribution_alignment=False, teacher="model")  # the paper's single pass
    _fit(learn, 1, cbs=[fixmatch, sizes])
    assert sizes.training_sizes == [8 + 2 * 16] * 2  # labeled, weak, strong in one pass
    assert sizes.valid_sizes == [16]
    # The recorded mask rate is the fraction of weak views with max probability >= threshold.
    expected = np.mean([float((torch.softmax(p[8:24], 1).amax(1) >= 0.55).float().mean()) for p in seen])
    assert fixmatch.history[0]["mask_rate"] == pytest.approx(expected, abs=1e-6)
    for threshold, rate in ((0.0, 1.0), (1.0, 0.0)):
        callback = FixMatch(unlabeled_loader(TensorDataset(unlabeled), 16), mu=2, threshold=threshold)
        _fit(_learner(x, y), 1, cbs=[callback])
        assert callback.history[0]["mask_rate"] == rate
    assert np.isfinite(list(fixmatch.history[0].values())).all()


def test_mixmatch_batch_layout_and_loss(chest_images):
    x, y, unlabeled = _split(chest_images, 8)
    torch.manual_seed(0)
    sizes, seen = Sizes(), {}

    class Spy(MixMatch):
        def after_pred(self):
            seen["targets"] = self._targets.clone()
            super().after_pred()
            seen["weight"] = self.current_lambda_u()

        def after_loss(self):
            super().after_loss()
            seen["loss"], seen["parts"] = float(self.learn.loss), (float(self.labeled_loss), float(self.unsup_loss))

    learn = _learner(x, y)
    mixmatch = Spy(unlabeled_loader(TensorDataset(unlabeled), 8), rampup_epochs=4)
    _fit(learn, 2, cbs=[mixmatch, sizes])
    # Per step: a no-gradient guess over k B = 16 views, then the mixed (1 + k) B = 24 images.
    assert sizes.training_sizes == [16, 24] * 4
    assert sizes.valid_sizes == [16, 16]
    assert seen["targets"].shape == (24, 2)
    torch.testing.assert_close(seen["targets"].sum(1), torch.ones(24))
    assert mixmatch.history[0]["lambda_u"] < mixmatch.history[1]["lambda_u"] < 75.0  # the ramp
    assert seen["weight"] == pytest.approx(75.0 * (1 + 1 / 2) / 4)  # epoch 1, step 1 of 2, over 4 epochs
    labeled, unsup = seen["parts"]
    assert seen["loss"] == pytest.approx(labeled + seen["weight"] * unsup, rel=1e-5)
    assert mixmatch.unsup_loss.shape == ()


def test_callbacks_leave_validation_and_prediction_untouched(chest_images):
    x, y, unlabeled = _split(chest_images, 8)
    for callback in (FixMatch(unlabeled_loader(TensorDataset(unlabeled), 16), mu=2),
                     MixMatch(unlabeled_loader(TensorDataset(unlabeled), 8))):
        torch.manual_seed(0)
        learn = _learner(x, y)
        metrics = list(learn.metrics)
        _fit(learn, 1, cbs=[callback])
        assert list(learn.metrics) == metrics  # the log columns are gone after the fit
        learn.add_cb(callback)
        seen = []
        hook = learn.model.register_forward_hook(lambda module, inputs, output, seen=seen: seen.append(inputs[0]))
        with_cb = learn.get_preds(dl=learn.dls.valid, with_loss=True)
        valid_with = learn.validate()
        hook.remove()
        learn.remove_cb(callback)
        without = learn.get_preds(dl=learn.dls.valid, with_loss=True)
        for a, b in zip(with_cb, without):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert valid_with == learn.validate()
        assert len(callback.history) == 1  # prediction kept the training history
        # The model saw the validation images, unchanged, and nothing else.
        assert len(seen) == 2 and all(torch.equal(batch, x) for batch in seen)


@pytest.mark.parametrize("method", ["fixmatch", "mixmatch"])
def test_a_few_steps_lower_the_loss(chest_images, method):
    # 32 labeled (4 steps per epoch) and 32 unlabeled radiographs at 32 px, from scratch.
    # FixMatch: the paper's defaults. MixMatch: its unlabeled weight ramps over the whole run
    # to 10: with random weights its label guesses are noise, and 16 steps at the paper's 75
    # (ramped over its first 16 000 steps) let the consistency term swamp 32 labels.
    x, y, unlabeled = _split(chest_images, 16)
    torch.manual_seed(0)
    learn = _learner(x, y)
    params = {"rampup_epochs": 4, "lambda_u": 10.0} if method == "mixmatch" else {}
    callback = semisup_callback(method, TensorDataset(unlabeled), 8, **params)
    probe = CleanLoss()
    _fit(learn, 4, cbs=[callback, probe])
    losses = probe.losses
    assert len(losses) == 16
    # Averages over a third of the steps, against the noise of single batches.
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.01
    assert all(np.isfinite(list(epoch.values())).all() for epoch in callback.history)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fixmatch", "mixmatch"])
def test_a_few_steps_lower_the_loss_of_a_timm_model(chest_images, method):
    x, y, unlabeled = _split(chest_images, 8)
    torch.manual_seed(0)
    learn = _learner(x, y, timm_model())
    params = {"mu": 3} if method == "fixmatch" else {"rampup_epochs": 4}
    probe = CleanLoss()
    _fit(learn, 4, cbs=[semisup_callback(method, TensorDataset(unlabeled), 8, **params), probe])
    assert np.mean(probe.losses[-3:]) < np.mean(probe.losses[:3]) - 0.01


def test_the_unlabeled_term_alone_trains_the_model(chest_images):
    x, y, unlabeled = _split(chest_images, 8)

    def no_labeled_loss(logits, targets):
        return logits.sum() * 0.0

    changed = {}
    for lambda_u in (0.0, 1.0):
        torch.manual_seed(0)
        learn = _learner(x, y, loss=no_labeled_loss, wd=0.0)
        before = [p.detach().clone() for p in learn.model.parameters()]
        callback = FixMatch(unlabeled_loader(TensorDataset(unlabeled), 16), mu=2, threshold=0.0,
                            lambda_u=lambda_u)
        _fit(learn, 1, cbs=[callback])
        changed[lambda_u] = any(not torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))
        assert callback.history[0]["mask_rate"] == 1.0
    assert changed == {0.0: False, 1.0: True}


def test_the_ema_teacher_labels_the_weak_views_and_averages_the_weights(chest_images):
    x, y, unlabeled = _split(chest_images, 8)
    torch.manual_seed(0)
    sizes, calls = Sizes(), []

    class Spy(FixMatch):
        def before_fit(self):
            super().before_fit()
            self.ema_model.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))

    class Weights(Callback):
        order = 6  # after FixMatch's own after_step

        def before_fit(self):
            self.steps = [[p.detach().clone() for p in self.learn.model.parameters()]]

        def after_step(self):
            self.steps.append([p.detach().clone() for p in self.learn.model.parameters()])

    learn, weights = _learner(x, y), Weights()
    fixmatch = Spy(unlabeled_loader(TensorDataset(unlabeled), 16), mu=2, teacher="ema", ema_decay=0.75)
    _fit(learn, 1, cbs=[fixmatch, sizes, weights])
    assert fixmatch.plan.weak_pass == "no_grad"
    assert calls == [16, 16]  # the teacher labels every weak view...
    assert sizes.training_sizes == [8 + 16] * 2  # ...and the model sees labeled + strong only
    # After each step: teacher = 0.75 teacher + 0.25 model, starting from the model the fit began with.
    expected = weights.steps[0]
    for step in weights.steps[1:]:
        expected = [0.75 * mean + 0.25 * now for mean, now in zip(expected, step)]
    for mean, want in zip(fixmatch.ema_model.parameters(), expected):
        torch.testing.assert_close(mean, want)
    assert not any(torch.equal(a, b) for a, b in zip(expected, weights.steps[-1]) if a.numel() > 1)
    assert not fixmatch.ema_model.training and not any(p.requires_grad for p in fixmatch.ema_model.parameters())


def test_distribution_alignment_tracks_the_labeled_prior(chest_images):
    x, y = chest_images
    imbalanced = torch.cat([torch.arange(14), 32 + torch.arange(2)])  # 14 normal, 2 pneumonia
    torch.manual_seed(0)
    callback = FixMatch(unlabeled_loader(TensorDataset(x[16:32]), 16), mu=2)
    _fit(_learner(x[imbalanced], y[imbalanced]), 1, cbs=[callback])
    torch.testing.assert_close(callback.alignment.prior(), torch.tensor([0.875, 0.125]), atol=2e-3, rtol=0)
    assert callback.alignment.model_mean().sum() == pytest.approx(1.0)


def test_errors_on_multi_label_multi_view_and_mismatched_images(chest_images):
    x, y, unlabeled = _split(chest_images, 8)
    loader = unlabeled_loader(TensorDataset(unlabeled), 8)
    multi_label = torch.stack([y, 1 - y], 1).float()
    with pytest.raises(ValueError, match="single-label"):
        _fit(_learner(x, multi_label, TinyCNN(2), loss=torch.nn.BCEWithLogitsLoss()), 1, cbs=[MixMatch(loader)])
    views = torch.stack([x, x.flip(-1)], 1)
    with pytest.raises(ValueError, match="multi-view"):
        _fit(_learner(views, y), 1, cbs=[FixMatch(loader, mu=1)])
    with pytest.raises(ValueError, match="differ in shape"):
        _fit(_learner(x.repeat(1, 3, 1, 1), y, TinyCNN(in_chans=3)), 1, cbs=[FixMatch(loader, mu=1)])
    with pytest.raises(ValueError, match="method"):
        semisup_callback("meanteacher", TensorDataset(unlabeled), 8)
    with pytest.raises(ValueError, match="threshold"):
        FixMatch(loader, threshold=1.5)
    with pytest.raises(ValueError, match="alpha"):
        MixMatch(loader, alpha=0.0)


def test_semisup_callback_builds_the_loader_and_logs_its_columns(chest_images, tmp_path):
    from fastai.callback.progress import CSVLogger

    x, y, unlabeled = _split(chest_images, 8)
    fixmatch = semisup_callback("FixMatch", TensorDataset(unlabeled), 8, threshold=0.9)
    mixmatch = semisup_callback("mixmatch", TensorDataset(unlabeled), 8, k=3)
    assert isinstance(fixmatch, FixMatch) and fixmatch.stream.loader.bs == 56 and fixmatch.threshold == 0.9
    assert isinstance(mixmatch, MixMatch) and mixmatch.stream.loader.bs == 8 and mixmatch.k == 3
    assert (fixmatch.mu, fixmatch.lambda_u, mixmatch.temperature, mixmatch.alpha) == (7, 1.0, 0.5, 0.75)
    torch.manual_seed(0)
    learn = _learner(x, y)
    learn.path = tmp_path
    _fit(learn, 1, cbs=[semisup_callback("fixmatch", TensorDataset(unlabeled), 8, mu=1),
                        CSVLogger("history.csv")])
    header = (tmp_path / "history.csv").read_text().splitlines()[0].split(",")
    assert {"labeled_loss", "unsup_loss", "mask_rate"} <= set(header)


@pytest.mark.parametrize("method", ["fixmatch", "mixmatch"])
def test_no_value_is_read_back_to_the_host_per_batch(chest_images, method):
    x, y, unlabeled = _split(chest_images, 8)
    torch.manual_seed(0)
    batches = [unlabeled[:8], unlabeled[8:16]]  # a plain list: only the callback's own work is guarded
    callback = guarded(FixMatch(batches, mu=1) if method == "fixmatch" else MixMatch(batches))
    _fit(_learner(x, y), 1, cbs=[callback])
    assert len(callback.history) == 1


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
@pytest.mark.parametrize("method", ["fixmatch", "mixmatch"])
def test_no_host_synchronization_on_cuda(chest_images, method):
    x, y, unlabeled = _split(chest_images, 8)
    torch.manual_seed(0)
    callback = semisup_callback(method, TensorDataset(unlabeled), 8, **({"mu": 2} if method == "fixmatch" else {}))
    for event in ("before_batch", "after_pred", "after_loss"):
        method_ = getattr(callback, event)

        def strict(method_=method_, event=event):
            if callback.iter == 0:  # the first batch loads kernels and starts the loader
                return method_()
            torch.cuda.set_sync_debug_mode("error")
            try:
                method_()
            finally:
                torch.cuda.set_sync_debug_mode("default")

        setattr(callback, event, strict)
    learn = _learner(x, y, TinyCNN().cuda(), device="cuda")
    _fit(learn, 2, cbs=[callback])
    assert len(callback.history) == 2


@needs_cuda
@pytest.mark.parametrize("method", ["fixmatch", "mixmatch"])
def test_mixed_precision_on_cuda(chest_images, method):
    x, y, unlabeled = _split(chest_images, 16)
    torch.manual_seed(0)
    learn = _learner(x, y, TinyCNN().cuda(), device="cuda").to_fp16()
    params = {"rampup_epochs": 4} if method == "mixmatch" else {}
    probe = CleanLoss()
    callback = semisup_callback(method, TensorDataset(unlabeled), 8, **params)
    _fit(learn, 4, cbs=[callback, probe])
    assert all(np.isfinite(list(epoch.values())).all() for epoch in callback.history)
    assert np.mean(probe.losses[-5:]) < np.mean(probe.losses[:5])


def test_settings_from_files_or_flags_are_checked_by_the_callbacks_rules():
    from radiology.semisup import validate_semisup_params

    assert validate_semisup_params("MixMatch", {"lambda_u": 10, "rampup_epochs": 0, "k": 3}) == {
        "lambda_u": 10, "rampup_epochs": 0, "k": 3}
    assert validate_semisup_params("fixmatch", {}) == {}
    assert validate_semisup_params("fixmatch", {"weak_pass": "no_grad", "unlabeled_batch": 24}) == {
        "weak_pass": "no_grad", "unlabeled_batch": 24}
    assert validate_semisup_params("fixmatch", {"teacher": "model", "weak_pass": "joint"}) == {
        "teacher": "model", "weak_pass": "joint"}
    cases = [
        ("fixmatch", {"thresh": 0.9}, "unknown fixmatch setting 'thresh'; known: ['distribution_alignment', "
                                      "'ema_decay', 'lambda_u', 'memory_fraction', 'mu', 'teacher', 'temperature', "
                                      "'threshold', 'unlabeled_batch', 'weak_pass']"),
        ("fixmatch", {"teacher": "mean"}, "teacher must be one of ['model', 'ema']"),
        ("fixmatch", {"ema_decay": 1.0}, "ema_decay must be in (0, 1)"),
        ("fixmatch", {"teacher": "ema", "weak_pass": "joint"}, "or teacher='model' for 'joint'"),
        ("fixmatch", {"threshold": 2, "thresh": 1}, "unknown fixmatch setting 'thresh'"),  # names first
        ("fixmatch", {"weak_pass": "none"}, "weak_pass must be one of ['auto', 'joint', 'no_grad']"),
        ("fixmatch", {"weak_pass": 1}, "weak_pass=1: expected a name"),
        ("fixmatch", {"unlabeled_batch": -1}, "unlabeled_batch must be >= 0"),
        ("fixmatch", {"memory_fraction": 0}, "memory_fraction must be in (0, 1]"),
        ("fixmatch", {"weak": None}, "unknown fixmatch setting 'weak'"),  # modules are not settings
        ("fixmatch", {"threshold": 1.5}, "threshold must be in [0, 1]"),
        ("fixmatch", {"mu": 2.5}, "mu=2.5: expected an integer"),
        ("fixmatch", {"threshold": "0.9"}, "expected a number"),
        ("mixmatch", {"distribution_alignment": 1}, "expected true or false"),
        ("mixmatch", {"lambda_u": True}, "expected a number"),
        ("mixmatch", {"temperature": 0}, "temperature must be positive"),
        ("pseudolabel", {}, "method must be one of"),
    ]
    for method, params, message in cases:
        with pytest.raises(ValueError) as error:
            validate_semisup_params(method, params)
        assert message in str(error.value)
