"""The arithmetic of FixMatch and MixMatch as pure tensor functions, and distribution alignment.

Everything here stays on the tensors' device and never reads a value back to the host, so
the callbacks built on it do not synchronize with the GPU per batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["sharpen", "mixup", "pseudo_labels", "one_hot", "soft_cross_entropy", "DistributionAlignment"]


def _check_probabilities(probs: torch.Tensor, name: str = "probs") -> None:
    if not isinstance(probs, torch.Tensor) or probs.ndim != 2:
        raise ValueError(f"{name} must be a (N, classes) tensor, got {getattr(probs, 'shape', type(probs))}")


def one_hot(targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Float one-hot rows of class indices, without the host check of ``torch.nn.functional.one_hot``.

    Parameters
    ----------
    targets : torch.Tensor, shape (N,)
        Class indices.
    n_classes : int
        Number of columns of the result.

    Examples
    --------
    >>> one_hot(torch.tensor([1, 0]), 3)
    tensor([[0., 1., 0.],
            [1., 0., 0.]])
    """
    if targets.ndim != 1:
        raise ValueError(f"targets must be 1-D class indices, got shape {tuple(targets.shape)}")
    out = torch.zeros(targets.shape[0], int(n_classes), device=targets.device)
    return out.scatter_(1, targets.long()[:, None], 1.0)


def sharpen(probs: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """MixMatch's sharpening: ``p ** (1 / T)`` renormalized over the classes.

    ``T`` → 0 tends to the one-hot argmax; ``T`` = 1 changes nothing.

    Parameters
    ----------
    probs : torch.Tensor
        ``(N, classes)`` probabilities.
    temperature : float
        ``T``, > 0.

    Examples
    --------
    >>> sharpen(torch.tensor([[0.6, 0.4]]), 0.5)
    tensor([[0.6923, 0.3077]])
    """
    _check_probabilities(probs)
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    # In log space: p ** (1 / T) underflows for small T, the softmax of log(p) / T does not.
    probs = probs.float()
    return torch.softmax(probs.clamp_min(torch.finfo(probs.dtype).tiny).log() / float(temperature), dim=1)


def mixup(inputs: torch.Tensor, targets: torch.Tensor, other_inputs: torch.Tensor, other_targets: torch.Tensor,
          lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MixMatch's mixup: ``λ' x + (1 − λ') x_other`` with ``λ' = max(λ, 1 − λ)`` per sample.

    Taking the larger weight keeps every mixed sample closer to ``inputs`` than to its
    partner, so the mixed batch still splits into a labeled and an unlabeled part.

    Parameters
    ----------
    inputs, other_inputs : torch.Tensor
        ``(N, ...)`` batches of the same shape.
    targets, other_targets : torch.Tensor
        ``(N, classes)`` soft targets.
    lam : torch.Tensor
        ``(N,)`` mixing weights in ``[0, 1]`` (MixMatch draws them from ``Beta(α, α)``).

    Returns
    -------
    mixed_inputs, mixed_targets : torch.Tensor

    Examples
    --------
    >>> x, y = torch.zeros(2, 1, 4, 4), torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    >>> mixed_x, mixed_y = mixup(x, y, torch.ones(2, 1, 4, 4), torch.tensor([[0.0, 1.0]] * 2), torch.tensor([0.2, 0.9]))
    >>> mixed_x[:, 0, 0, 0], mixed_y[:, 0]
    (tensor([0.2000, 0.1000]), tensor([0.8000, 0.9000]))
    """
    if inputs.shape != other_inputs.shape:
        raise ValueError(f"inputs {tuple(inputs.shape)} and other_inputs {tuple(other_inputs.shape)} differ")
    if targets.shape != other_targets.shape or targets.ndim != 2 or targets.shape[0] != inputs.shape[0]:
        raise ValueError(f"targets must be (N, classes) soft targets for N={inputs.shape[0]} inputs, got "
                         f"{tuple(targets.shape)} and {tuple(other_targets.shape)}")
    if lam.shape != (inputs.shape[0],):
        raise ValueError(f"lam must have shape ({inputs.shape[0]},), got {tuple(lam.shape)}")
    lam = torch.maximum(lam, 1 - lam).to(inputs.dtype)
    weight_x = lam.view(-1, *([1] * (inputs.ndim - 1)))
    mixed_inputs = weight_x * inputs + (1 - weight_x) * other_inputs
    weight_y = lam.to(targets.dtype)[:, None]
    return mixed_inputs, weight_y * targets + (1 - weight_y) * other_targets


def pseudo_labels(logits: torch.Tensor, threshold: float = 0.95, *, temperature: float = 1.0,
                  alignment: DistributionAlignment | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """FixMatch's pseudo-labels: the argmax of ``softmax(logits / T)`` and where it is confident enough.

    Parameters
    ----------
    logits : torch.Tensor
        ``(N, classes)`` logits of the weakly augmented images (no gradient is taken).
    threshold : float
        A pseudo-label counts where its probability is ``>= threshold``.
    temperature : float, optional
        Divides the logits before the softmax; below 1 it makes more images pass the threshold.
    alignment : DistributionAlignment, optional
        Rescales the probabilities (and records them) before the threshold.

    Returns
    -------
    labels : torch.LongTensor
        ``(N,)`` class indices.
    mask : torch.Tensor
        ``(N,)`` float, 1 where the pseudo-label is used, else 0.

    Examples
    --------
    >>> logits = torch.log(torch.tensor([[0.96, 0.04], [0.30, 0.70]]))
    >>> pseudo_labels(logits, 0.95)
    (tensor([0, 1]), tensor([1., 0.]))
    """
    _check_probabilities(logits, "logits")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    with torch.no_grad():
        probs = torch.softmax(logits.detach().float() / float(temperature), dim=1)
        if alignment is not None:
            probs = alignment(probs)
        confidence, labels = probs.max(dim=1)
        return labels, (confidence >= threshold).float()


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``(N, classes)`` logits against soft target rows (in float32).

    Parameters
    ----------
    logits : torch.Tensor, shape (N, C)
        Model outputs.
    targets : torch.Tensor, shape (N, C)
        Target probabilities; each row sums to 1.

    Examples
    --------
    >>> float(soft_cross_entropy(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])))  # -log(1/2)
    0.6931471824645996
    """
    _check_probabilities(logits, "logits")
    return -(targets.float() * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


class DistributionAlignment:
    """ReMixMatch's distribution alignment: ``p ← normalize(p · prior / running mean of p)``.

    A model trained on imbalanced labels predicts the majority class on the unlabeled images
    more than the labels justify, and confidence-thresholded pseudo-labels amplify that
    (the minority class rarely passes 0.95). Alignment divides each prediction by the
    running mean of the model's predictions on unlabeled images and multiplies it by the
    class prior, so the pseudo-labels follow the prior on average.

    Both running means are exponential with bias correction (as Adam's moments), so the
    first update already gives the batch mean rather than a value pulled towards the
    uniform start. Updates and alignment stay on the device.

    Parameters
    ----------
    n_classes : int
        Number of classes.
    momentum : float, optional
        Weight of the past in the running means (0.999 ≈ the last ~1000 batches).
    prior : sequence of float, optional
        A fixed class prior (e.g. the known class frequencies of the unlabeled pool). By
        default the running mean of the labeled targets (:meth:`update_prior`): with a
        class-balanced sampler that is a balanced prior.

    Examples
    --------
    >>> align = DistributionAlignment(2, prior=[0.5, 0.5])
    >>> align(torch.tensor([[0.8, 0.2], [0.8, 0.2]]))  # the model's mean is 0.8/0.2
    tensor([[0.5000, 0.5000],
            [0.5000, 0.5000]])
    """

    def __init__(self, n_classes: int, *, momentum: float = 0.999, prior=None):
        if int(n_classes) < 2:
            raise ValueError(f"distribution alignment needs at least 2 classes, got {n_classes}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.n_classes, self.momentum = int(n_classes), float(momentum)
        self.fixed_prior = None
        if prior is not None:
            fixed = torch.as_tensor(prior, dtype=torch.float32).flatten()
            if fixed.numel() != self.n_classes or not torch.isfinite(fixed).all() or (fixed <= 0).any():
                raise ValueError(f"prior must be {self.n_classes} positive numbers, got {prior!r}")
            self.fixed_prior = fixed / fixed.sum()
        self._prior_sum: torch.Tensor | None = None
        self._model_sum: torch.Tensor | None = None
        self._prior_steps = self._model_steps = 0  # host-side counters for the bias correction

    def _ema(self, total: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
        value = value.detach().float()
        if total is None or total.device != value.device:
            total = torch.zeros_like(value)
        return total.mul_(self.momentum).add_(value, alpha=1 - self.momentum)

    def update_prior(self, targets: torch.Tensor) -> None:
        """Add a batch of labeled class indices ``(N,)`` to the running class prior.

        Parameters
        ----------
        targets : torch.Tensor, shape (N,)
            Class indices of a labeled batch.
        """
        if self.fixed_prior is None:
            self._prior_sum = self._ema(self._prior_sum, one_hot(targets, self.n_classes).mean(dim=0))
            self._prior_steps += 1

    def update_model(self, probs: torch.Tensor) -> None:
        """Add a batch of model probabilities ``(N, classes)`` on unlabeled images to the running mean.

        Parameters
        ----------
        probs : torch.Tensor, shape (N, C)
            The model's probabilities on an unlabeled batch.
        """
        _check_probabilities(probs)
        self._model_sum = self._ema(self._model_sum, probs.mean(dim=0))
        self._model_steps += 1

    def _corrected(self, total: torch.Tensor | None, steps: int, device) -> torch.Tensor:
        if total is None:
            return torch.full((self.n_classes,), 1.0 / self.n_classes, device=device)
        return total.to(device) / (1 - self.momentum ** steps) if self.momentum else total.to(device)

    def prior(self, device=None) -> torch.Tensor:
        """The class prior the pseudo-labels are aligned to (uniform before any labeled batch).

        Parameters
        ----------
        device : str or torch.device, optional
            Where the result is wanted; by default where the running mean is kept (the CPU before
            any batch).
        """
        if self.fixed_prior is not None:
            if device is not None and self.fixed_prior.device != torch.device(device):
                self.fixed_prior = self.fixed_prior.to(device)  # once: no host copy per batch
            return self.fixed_prior
        return self._corrected(self._prior_sum, self._prior_steps, device)

    def model_mean(self, device=None) -> torch.Tensor:
        """The running mean of the model's probabilities on unlabeled images (uniform before any).

        Parameters
        ----------
        device : str or torch.device, optional
            Where the result is wanted; by default where the running mean is kept (the CPU before
            any batch).
        """
        return self._corrected(self._model_sum, self._model_steps, device)

    def __call__(self, probs: torch.Tensor, *, update: bool = True) -> torch.Tensor:
        """Aligned probabilities; with ``update`` the batch first joins the model's running mean."""
        _check_probabilities(probs)
        probs = probs.detach().float()
        if update:
            self.update_model(probs)
        eps = 1e-6
        ratio = self.prior(probs.device) / self.model_mean(probs.device).clamp_min(eps)
        aligned = probs * ratio
        return aligned / aligned.sum(dim=1, keepdim=True).clamp_min(eps)
