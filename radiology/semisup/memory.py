"""How many unlabeled images a FixMatch step can hold: a memory model measured on the default backbone.

A training step keeps, for every image that takes part in the backward pass, its activations
until the backward pass frees them; that memory grows with the image's pixel count. Measured
with ``bench/semisup_memory.py`` (``tf_efficientnet_lite0``, float32, CPU, fastai
:func:`~radiology.train.make_learner`): about 1.9 kB per input pixel per image at 64 px and
1.6 kB at 224 px (80 MB per 224 px image). :data:`BYTES_PER_PIXEL` rounds that up to 2 kB.
Images in a no-gradient pass (FixMatch's weak views with ``weak_pass="no_grad"``,
MixMatch's guesses) free their activations layer by layer and are not counted.

FixMatch's step holds ``B + 2 n`` images with gradients when its weak views share the
forward pass (``weak_pass="joint"``, the paper), ``B + n`` when they get a separate
no-gradient pass (``n`` = unlabeled images per step, ``mu * B`` in the paper).
:func:`unlabeled_batch_size` returns the largest ``n ≤ mu * B`` whose estimated activations
stay under ``fraction`` of the memory available; :func:`plan_fixmatch_step` also picks the
weak pass (the paper's joint pass when it fits at ``mu * B``, the no-gradient pass otherwise).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

__all__ = ["BYTES_PER_PIXEL", "available_memory", "image_training_bytes", "unlabeled_batch_size",
           "plan_fixmatch_step", "FixMatchPlan", "WEAK_PASSES"]

logger = logging.getLogger(__name__)

#: Training memory (activations kept for the backward pass, their gradients, allocator slack)
#: per input pixel of one image, by backbone; measured on the CPU in float32, rounded up.
BYTES_PER_PIXEL = {"tf_efficientnet_lite0": 2048}
#: Used for a backbone not in :data:`BYTES_PER_PIXEL` (give ``bytes_per_pixel`` for a better one).
DEFAULT_ARCH = "tf_efficientnet_lite0"
#: FixMatch's weak-view passes: ``auto`` (chosen from memory), ``joint`` (one forward pass over
#: labeled, weak and strong images, as in the paper) or ``no_grad`` (the weak views apart, without gradient).
WEAK_PASSES = ("auto", "joint", "no_grad")


def available_memory(device=None) -> int:
    """Bytes a training step can still allocate on ``device`` (CPU: the host's available memory).

    CUDA: the driver's free memory plus what PyTorch's caching allocator holds without using.

    Parameters
    ----------
    device : str or torch.device, optional
        The device; default the CPU.
    """
    import torch

    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(cached, 0))
    import psutil

    return int(psutil.virtual_memory().available)


def _pixels(image_size) -> int:
    if isinstance(image_size, int):
        return image_size * image_size
    height, width = image_size
    return int(height) * int(width)


def image_training_bytes(image_size, channels: int = 1, *, arch: str | None = None,
                         bytes_per_pixel: float | None = None) -> int:
    """Estimated training-step memory of one image that takes part in the backward pass.

    ``image_size`` is ``S`` or ``(H, W)``. The input itself (float32, ``channels``) is added to
    the backbone's per-pixel cost (:data:`BYTES_PER_PIXEL`; ``tf_efficientnet_lite0``'s for an
    unknown ``arch``).

    Parameters
    ----------
    image_size : int or (int, int)
        Model input side ``S`` or ``(H, W)``.
    channels : int
        Input channels.
    arch : str, optional
        timm backbone name whose cost :data:`BYTES_PER_PIXEL` gives (``tf_efficientnet_lite0``'s
        when it has none).
    bytes_per_pixel : float, optional
        Backbone cost per input pixel, instead of the one of ``arch``.

    Examples
    --------
    >>> image_training_bytes(224) // 2**20
    98
    """
    per_pixel = bytes_per_pixel if bytes_per_pixel is not None else BYTES_PER_PIXEL.get(
        arch or DEFAULT_ARCH, BYTES_PER_PIXEL[DEFAULT_ARCH])
    return int(_pixels(image_size) * (per_pixel + 4 * int(channels)))


def unlabeled_batch_size(labeled_batch: int, mu: int, *, image_size, channels: int = 1,
                         available_bytes: int | None = None, arch: str | None = None,
                         weak_pass: str = "no_grad", fraction: float = 0.5, device=None,
                         bytes_per_pixel: float | None = None) -> int:
    """The largest number of unlabeled images per FixMatch step that fits, at most ``mu * labeled_batch``.

    The step's images with gradients (``labeled_batch + 2 n`` with ``weak_pass="joint"``,
    ``labeled_batch + n`` with ``"no_grad"``) times :func:`image_training_bytes` must stay
    within ``fraction`` of ``available_bytes`` (default :func:`available_memory` of
    ``device``). Never below 1: when not even the labeled batch fits, a smaller labeled
    batch is the only remedy (a warning says so).

    Parameters
    ----------
    labeled_batch : int
        Labeled images per step (``B``).
    mu : int
        Unlabeled images wanted per labeled image.
    image_size : int or (int, int)
        Model input side ``S`` or ``(H, W)``.
    channels : int
        Input channels.
    available_bytes : int, optional
        Memory the step may use; default :func:`available_memory` of ``device``.
    arch : str, optional
        timm backbone name whose cost :data:`BYTES_PER_PIXEL` gives (``tf_efficientnet_lite0``'s
        when it has none).
    weak_pass : {"joint", "no_grad"}
        Whether the weak views are in the forward pass with gradients or in a separate pass without.
    fraction : float
        Share of ``available_bytes`` the step's images may take.
    device : str or torch.device, optional
        Device whose memory is measured when ``available_bytes`` is not given; default the CPU.
    bytes_per_pixel : float, optional
        Backbone cost per input pixel, instead of the one of ``arch``.

    Examples
    --------
    >>> mb = image_training_bytes(64, 1)
    >>> unlabeled_batch_size(8, 7, image_size=64, available_bytes=2 * 100 * mb)  # 100 images fit
    56
    >>> unlabeled_batch_size(8, 7, image_size=64, available_bytes=2 * 40 * mb)
    32
    >>> unlabeled_batch_size(8, 7, image_size=64, available_bytes=2 * 40 * mb, weak_pass="joint")
    16
    """
    labeled_batch, mu = int(labeled_batch), int(mu)
    if labeled_batch < 1 or mu < 1:
        raise ValueError(f"labeled_batch and mu must be positive, got {labeled_batch} and {mu}")
    if weak_pass not in ("joint", "no_grad"):
        raise ValueError(f"weak_pass must be 'joint' or 'no_grad', got {weak_pass!r}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if available_bytes is None:
        available_bytes = available_memory(device)
    per_image = image_training_bytes(image_size, channels, arch=arch, bytes_per_pixel=bytes_per_pixel)
    images = int(fraction * available_bytes // per_image)  # with gradients, labeled ones included
    views = 2 if weak_pass == "joint" else 1
    fitting = (images - labeled_batch) // views
    if fitting < 1:
        logger.warning("a labeled batch of %d images at %s px needs about %.1f GB for training, more than %.0f %% "
                       "of the %.1f GB available: lower the batch size", labeled_batch, image_size,
                       labeled_batch * per_image / 1e9, 100 * fraction, available_bytes / 1e9)
    return max(1, min(mu * labeled_batch, fitting))


@dataclass(frozen=True)
class FixMatchPlan:
    """What a FixMatch step holds: ``unlabeled`` images per step (of ``requested``), the weak pass, why.

    Parameters
    ----------
    unlabeled : int
        Unlabeled images per step chosen.
    requested : int
        Unlabeled images per step asked for: ``mu * labeled_batch``.
    weak_pass : {"joint", "no_grad"}
        The weak pass chosen.
    available_bytes : int or None
        The memory the choice was made for; ``None`` when it was not checked.
    message : str
        One line saying what was chosen and why.
    """

    unlabeled: int
    requested: int
    weak_pass: str
    available_bytes: int | None
    message: str


def plan_fixmatch_step(labeled_batch: int, mu: int, *, image_size, channels: int = 1,
                       weak_pass: str = "auto", unlabeled_batch: int = 0, available_bytes: int | None = None,
                       arch: str | None = None, fraction: float = 0.5, device=None,
                       bytes_per_pixel: float | None = None) -> FixMatchPlan:
    """Choose FixMatch's weak pass and unlabeled images per step from the memory at hand.

    - ``weak_pass="auto"``: the paper's joint pass when ``mu * labeled_batch`` unlabeled images
      fit with it, else the weak views in a separate no-gradient pass (about 40 % less memory);
    - then the unlabeled images are capped by :func:`unlabeled_batch_size`;
    - an explicit ``unlabeled_batch`` (> 0) is used as given, whatever the memory.

    The plan's ``message`` says what was chosen (logged by :class:`~radiology.semisup.FixMatch`).

    Parameters
    ----------
    labeled_batch : int
        Labeled images per step (``B``).
    mu : int
        Unlabeled images wanted per labeled image.
    image_size : int or (int, int)
        Model input side ``S`` or ``(H, W)``.
    channels : int
        Input channels.
    weak_pass : {"auto", "joint", "no_grad"}
        The weak pass to use, or ``auto`` to choose it as described above.
    unlabeled_batch : int
        Unlabeled images per step, used as given when > 0.
    available_bytes : int, optional
        Memory the step may use; default :func:`available_memory` of ``device``.
    arch : str, optional
        timm backbone name whose cost :data:`BYTES_PER_PIXEL` gives (``tf_efficientnet_lite0``'s
        when it has none).
    fraction : float
        Share of ``available_bytes`` the step's images may take.
    device : str or torch.device, optional
        Device whose memory is measured when ``available_bytes`` is not given; default the CPU.
    bytes_per_pixel : float, optional
        Backbone cost per input pixel, instead of the one of ``arch``.

    Examples
    --------
    >>> mb = image_training_bytes(64, 1)
    >>> plan = plan_fixmatch_step(8, 7, image_size=64, available_bytes=2 * 40 * mb)
    >>> plan.unlabeled, plan.weak_pass
    (32, 'no_grad')
    >>> plan.message.split(" (weak")[0]
    'FixMatch: unlabeled batch 56 (mu 7 x batch 8) -> reduced to 32 to fit 0.7 GB available'
    """
    if weak_pass not in WEAK_PASSES:
        raise ValueError(f"weak_pass must be one of {list(WEAK_PASSES)}, got {weak_pass!r}")
    requested = int(mu) * int(labeled_batch)
    if unlabeled_batch > 0:
        chosen = "joint" if weak_pass == "auto" else weak_pass
        return FixMatchPlan(int(unlabeled_batch), requested, chosen, None,
                            f"FixMatch: unlabeled batch {int(unlabeled_batch)} as given (unlabeled_batch; "
                            f"mu {mu} x batch {labeled_batch} = {requested}), {_describe(chosen)}, memory not checked")
    if available_bytes is None:
        available_bytes = available_memory(device)
    common = dict(image_size=image_size, channels=channels, available_bytes=available_bytes, arch=arch,
                  fraction=fraction, bytes_per_pixel=bytes_per_pixel)
    chosen = weak_pass
    if chosen == "auto":
        joint = unlabeled_batch_size(labeled_batch, mu, weak_pass="joint", **common)
        chosen = "joint" if joint == requested else "no_grad"
    n = unlabeled_batch_size(labeled_batch, mu, weak_pass=chosen, **common)
    gb = f"{available_bytes / 1e9:.1f} GB available"
    if n < requested:
        message = (f"FixMatch: unlabeled batch {requested} (mu {mu} x batch {labeled_batch}) -> reduced to {n} "
                   f"to fit {gb} ({_describe(chosen)})")
    else:
        message = f"FixMatch: unlabeled batch {n} (mu {mu} x batch {labeled_batch}) fits {gb} ({_describe(chosen)})"
    return FixMatchPlan(n, requested, chosen, int(available_bytes), message)


def _describe(weak_pass: str) -> str:
    return ("weak views in a separate no-gradient pass" if weak_pass == "no_grad"
            else "weak and strong views in one pass")
