"""Weak and strong views of unlabeled radiographs for consistency training, made on the batch's device.

Both modules take ``(B, C, H, W)`` float batches in ``[0, 1]`` (``C`` = 1 or 3) and draw
every random parameter per sample with ``torch.rand(..., device=batch.device)``; the pixel
work is done by kornia's functional ops (:mod:`kornia.enhance`, :mod:`kornia.geometry`),
which take those per-sample tensors as they are. Every choice is a ``torch.where`` gate:
no value is read back to the host and no parameter is copied from it, so a CUDA stream
never waits for them. kornia's augmentation *classes* are not used because they draw their
parameters on the CPU and copy them to the device, per op.
"""

from __future__ import annotations

import torch
from kornia.enhance import (
    adjust_brightness_accumulative,
    adjust_contrast_with_mean_subtraction,
    equalize,
    normalize_min_max,
    posterize,
    sharpness,
    solarize,
)
from kornia.geometry.bbox import bbox_to_mask
from kornia.geometry.transform import get_affine_matrix2d, get_translation_matrix2d, hflip, warp_affine
from torch import nn

__all__ = ["WeakAugmentation", "StrongAugmentation", "weak_augmentation", "strong_augmentation", "STRONG_OPS"]

#: The ops :class:`StrongAugmentation` draws from (FixMatch's RandAugment list without the colour op).
STRONG_OPS = ("identity", "autocontrast", "equalize", "posterize", "solarize", "brightness", "contrast",
              "sharpness", "rotate", "shear_x", "shear_y", "translate_x", "translate_y")
_GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")


def _check_batch(batch: torch.Tensor) -> None:
    if not isinstance(batch, torch.Tensor) or batch.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) tensor, got {getattr(batch, 'shape', type(batch).__name__)}")
    if not batch.is_floating_point():
        raise ValueError(f"expected a float batch in [0, 1], got {batch.dtype}")


def _uniform(low: float, high: float, n: int, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, device=device)


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _warp(batch: torch.Tensor, matrix: torch.Tensor, padding_mode: str) -> torch.Tensor:
    """Warp ``batch`` by the ``(B, 3, 3)`` input → output ``matrix`` in pixel coordinates (centres at integers)."""
    # align_corners=False: reflection mirrors about the image edge, as F.grid_sample's default.
    return warp_affine(batch, matrix[:, :2], tuple(batch.shape[-2:]), mode="bilinear", padding_mode=padding_mode,
                       align_corners=False)


class WeakAugmentation(nn.Module):
    """FixMatch's weak view: a random horizontal flip, then a shift by a whole number of pixels.

    Shifts are drawn per sample, uniformly up to ``translate`` of the width and of the height,
    and rounded to whole pixels, so the view is the image moved, not resampled; uncovered
    borders are filled as ``padding_mode`` says.

    Parameters
    ----------
    hflip : float, optional
        Flip probability. Set 0 where laterality matters to the label.
    translate : float, optional
        Largest shift, as a fraction of the size (0.125 in the paper).
    padding_mode : {"zeros", "border", "reflection"}, optional
        ``"zeros"``: black, as the padding of :class:`radiology.pipeline.PadSquare`.

    Examples
    --------
    >>> x = torch.rand(4, 1, 32, 32)
    >>> WeakAugmentation()(x).shape
    torch.Size([4, 1, 32, 32])
    >>> bool((WeakAugmentation(hflip=1.0, translate=0.0)(x) == x.flip(-1)).all())
    True
    """

    def __init__(self, hflip: float = 0.5, translate: float = 0.125, padding_mode: str = "zeros"):
        super().__init__()
        if not 0.0 <= hflip <= 1.0:
            raise ValueError(f"hflip must be a probability, got {hflip}")
        if not 0.0 <= translate < 1.0:
            raise ValueError(f"translate must be in [0, 1), got {translate}")
        if padding_mode not in ("zeros", "border", "reflection"):
            raise ValueError(f"padding_mode must be 'zeros', 'border' or 'reflection', got {padding_mode!r}")
        self.hflip, self.translate, self.padding_mode = float(hflip), float(translate), padding_mode

    def extra_repr(self) -> str:
        return f"hflip={self.hflip}, translate={self.translate}, padding_mode={self.padding_mode!r}"

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The augmented batch, of the same shape.

        Parameters
        ----------
        batch : torch.Tensor, shape (B, C, H, W)
            Float images in ``[0, 1]``.
        """
        _check_batch(batch)
        n, device = batch.shape[0], batch.device
        height, width = batch.shape[-2:]
        flipped = torch.rand(n, device=device) < self.hflip
        batch = torch.where(_per_sample(flipped), hflip(batch), batch)
        if self.translate == 0:
            return batch
        # Output pixel p samples input pixel p - shift: whole pixels keep the values exact.
        shift_x = torch.round(_uniform(-self.translate, self.translate, n, device) * width)
        shift_y = torch.round(_uniform(-self.translate, self.translate, n, device) * height)
        matrix = get_translation_matrix2d(torch.stack([shift_x, shift_y], 1))
        return _warp(batch.float(), matrix, self.padding_mode).to(batch.dtype)


class StrongAugmentation(nn.Module):
    """FixMatch's strong view for radiographs: ``n`` RandAugment ops per image with random magnitudes, then cutout.

    Every image gets exactly ``n`` different ops drawn from ``ops`` (the paper's
    RandAugment variant: random op choice *and* random magnitude per image). Each op is
    computed for the whole batch and kept for the images that drew it; the geometric ops
    are composed into one affine warp about the image centre (shear, rotation, then shift)
    applied first, then the intensity ops follow in the order of ``ops``. The ops are
    kornia's, with PIL's definitions as FixMatch's list has them. Op ranges:

    ========================  ==============================================================
    ``identity``              nothing (so some images get fewer than ``n`` changes)
    ``autocontrast``          stretch each channel to ``[0, 1]`` (a constant one stays)
    ``equalize``              PIL's histogram equalization of the 8-bit levels, per channel
    ``posterize``             keep 4–8 bits of the 8-bit levels
    ``solarize``              invert the pixels at or above a threshold in ``[0, 1]``
    ``brightness``            multiply by a factor in ``1 ± enhance``
    ``contrast``              scale the distance to the image's gray mean by ``1 ± enhance``
    ``sharpness``             blend with a smoothed copy by ``1 ± enhance`` (PIL's kernel)
    ``rotate``                ``± degrees``
    ``shear_x``, ``shear_y``  shear factor ``± shear``
    ``translate_x``, ``_y``   ``± translate`` of the size
    ========================  ==============================================================

    The colour op is left out (radiographs are gray). A square cutout box (side a fraction in
    ``cutout`` of the shorter side, centre anywhere, clipped at the borders) filled with
    ``cutout_value`` is applied to every image last, as in the paper.

    Parameters
    ----------
    n : int, optional
        Ops per image (2); 0 keeps only the cutout.
    ops : sequence of str, optional
        A subset of :data:`STRONG_OPS`.
    degrees, shear, translate, enhance : float, optional
        Largest magnitudes of the ops, as in the table above.
    posterize_bits : (int, int), optional
        Range of the bits ``posterize`` keeps.
    cutout : (float, float) or None, optional
        Side range of the cutout box as a fraction of the shorter side; ``None``: no cutout.
    cutout_value : float, optional
        Gray fill (0.5, as the paper's 127).
    padding_mode : {"zeros", "border", "reflection"}, optional
        Fill of the borders the geometric ops uncover.

    Examples
    --------
    >>> out = StrongAugmentation()(torch.rand(4, 1, 32, 32))
    >>> out.shape, bool(out.min() >= 0), bool(out.max() <= 1)
    (torch.Size([4, 1, 32, 32]), True, True)
    """

    def __init__(self, n: int = 2, ops=STRONG_OPS, *, degrees: float = 30.0, shear: float = 0.3,
                 translate: float = 0.3, enhance: float = 0.95, posterize_bits: tuple[int, int] = (4, 8),
                 cutout: tuple[float, float] | None = (0.0, 0.5), cutout_value: float = 0.5,
                 padding_mode: str = "zeros"):
        super().__init__()
        ops = tuple(ops)
        unknown = sorted(set(ops) - set(STRONG_OPS))
        if unknown:
            raise ValueError(f"unknown ops {unknown}; choose from {list(STRONG_OPS)}")
        if len(set(ops)) != len(ops):
            raise ValueError(f"ops must not repeat, got {list(ops)}")
        if not 0 <= int(n) <= len(ops) or int(n) != n:
            raise ValueError(f"n must be an integer in [0, {len(ops)}], got {n}")
        if not 0.0 <= enhance < 1.0:
            raise ValueError(f"enhance must be in [0, 1), got {enhance}")
        if not 0.0 <= translate < 1.0 or not 0.0 <= shear < 1.0 or not 0.0 <= degrees <= 180.0:
            raise ValueError(f"need translate, shear in [0, 1) and degrees in [0, 180], got {translate}, {shear}, "
                             f"{degrees}")
        low_bits, high_bits = (int(b) for b in posterize_bits)
        if not 1 <= low_bits <= high_bits <= 8:
            raise ValueError(f"posterize_bits must be a range inside [1, 8], got {posterize_bits}")
        if cutout is not None and not 0.0 <= cutout[0] <= cutout[1] <= 1.0:
            raise ValueError(f"cutout must be a side range inside [0, 1], got {cutout}")
        if not 0.0 <= cutout_value <= 1.0:
            raise ValueError(f"cutout_value must be in [0, 1], got {cutout_value}")
        if padding_mode not in ("zeros", "border", "reflection"):
            raise ValueError(f"padding_mode must be 'zeros', 'border' or 'reflection', got {padding_mode!r}")
        self.n, self.ops = int(n), ops
        self.degrees, self.shear, self.translate, self.enhance = float(degrees), float(shear), float(translate), \
            float(enhance)
        self.posterize_bits = (low_bits, high_bits)
        self.cutout = None if cutout is None else (float(cutout[0]), float(cutout[1]))
        self.cutout_value, self.padding_mode = float(cutout_value), padding_mode

    def extra_repr(self) -> str:
        return f"n={self.n}, ops={list(self.ops)}, cutout={self.cutout}"

    def chosen(self, n_images: int, device) -> torch.Tensor:
        """A ``(n_images, len(ops))`` boolean gate with exactly ``n`` ops per row, uniformly drawn.

        Parameters
        ----------
        n_images : int
            Number of rows (images).
        device : str or torch.device
            Where the gate is made.
        """
        ranks = torch.rand(n_images, len(self.ops), device=device).argsort(dim=1).argsort(dim=1)
        return ranks < self.n

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The augmented batch, of the same shape.

        Parameters
        ----------
        batch : torch.Tensor, shape (B, C, H, W)
            Float images in ``[0, 1]``.
        """
        _check_batch(batch)
        dtype, x = batch.dtype, batch.float()
        n, device = x.shape[0], x.device
        gate = {}
        if self.n:
            chosen = self.chosen(n, device)
            gate = {name: chosen[:, i] for i, name in enumerate(self.ops) if name != "identity"}

        if any(name in gate for name in _GEOMETRIC):
            x = self._geometric(x, gate)
        # The intensity ops in the fixed order of ``ops``: a static graph, and with two ops per image
        # the order hardly matters.
        for name in self.ops:
            if name in gate and name not in _GEOMETRIC:
                x = torch.where(_per_sample(gate[name]), getattr(self, f"_{name}")(x), x)
        if self.cutout is not None:
            x = self._cutout(x)
        return x.clamp(0.0, 1.0).to(dtype)

    # -- geometric ------------------------------------------------------------------------------
    def _geometric(self, x: torch.Tensor, gate: dict[str, torch.Tensor]) -> torch.Tensor:
        n, device = x.shape[0], x.device
        height, width = x.shape[-2:]

        def amount(name: str, limit: float) -> torch.Tensor:
            value = _uniform(-limit, limit, n, device)
            return torch.where(gate[name], value, 0.0) if name in gate else torch.zeros(n, device=device)

        angle = amount("rotate", self.degrees)
        shear_x, shear_y = amount("shear_x", self.shear), amount("shear_y", self.shear)
        shift = torch.stack([amount("translate_x", self.translate) * width,
                             amount("translate_y", self.translate) * height], 1)
        centre = torch.stack([torch.full((n,), (width - 1) / 2, device=device),
                              torch.full((n,), (height - 1) / 2, device=device)], 1)
        # Input → output map about the centre: shear_x, shear_y, rotation, then the shift. kornia
        # takes shears as angles (x' = x - tan(s) y): atan of the factor; ranges are symmetric.
        matrix = get_affine_matrix2d(shift, centre, torch.ones(n, 2, device=device), angle,
                                     torch.atan(shear_x), torch.atan(shear_y))
        moved = torch.zeros(n, dtype=torch.bool, device=device)
        for name in _GEOMETRIC:
            if name in gate:
                moved = moved | gate[name]
        # Untouched images keep their exact values (an identity warp would round them).
        return torch.where(_per_sample(moved), _warp(x, matrix, self.padding_mode), x)

    # -- intensity (each on the whole batch, in [0, 1]) ----------------------------------------------
    def _factor(self, x: torch.Tensor) -> torch.Tensor:
        return _uniform(1 - self.enhance, 1 + self.enhance, x.shape[0], x.device)

    def _autocontrast(self, x: torch.Tensor) -> torch.Tensor:
        span = x.amax(dim=(-2, -1), keepdim=True) - x.amin(dim=(-2, -1), keepdim=True)
        # kornia maps a constant plane to 0; PIL (and this op) leaves it as it is.
        return torch.where(span > 0, normalize_min_max(x, 0.0, 1.0, eps=1e-12), x)

    def _equalize(self, x: torch.Tensor) -> torch.Tensor:
        return equalize(x)

    def _posterize(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.posterize_bits
        return posterize(x, torch.randint(low, high + 1, (x.shape[0],), device=x.device))

    def _solarize(self, x: torch.Tensor) -> torch.Tensor:
        return solarize(x, torch.rand(x.shape[0], device=x.device))

    def _brightness(self, x: torch.Tensor) -> torch.Tensor:
        return adjust_brightness_accumulative(x, self._factor(x))

    def _contrast(self, x: torch.Tensor) -> torch.Tensor:
        return adjust_contrast_with_mean_subtraction(x, self._factor(x))

    def _sharpness(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 3:  # no inner pixel to smooth (kornia's 3 × 3 kernel needs one)
            return x
        return sharpness(x, self._factor(x))

    def _cutout(self, x: torch.Tensor) -> torch.Tensor:
        n, device = x.shape[0], x.device
        height, width = x.shape[-2:]
        half = _uniform(*self.cutout, n, device) * min(height, width) / 2
        centre_x, centre_y = torch.rand(n, device=device) * width, torch.rand(n, device=device) * height
        # The centre is drawn over [0, size), where pixel k's centre is k + 0.5; bbox_to_mask tests the
        # indices k, so the box moves by -0.5. Corners: top-left, top-right, bottom-right, bottom-left.
        left, right = centre_x - half - 0.5, centre_x + half - 0.5
        top, bottom = centre_y - half - 0.5, centre_y + half - 0.5
        boxes = torch.stack([torch.stack([left, top], 1), torch.stack([right, top], 1),
                             torch.stack([right, bottom], 1), torch.stack([left, bottom], 1)], 1)
        inside = bbox_to_mask(boxes, width, height) > 0
        return torch.where(inside[:, None], torch.full_like(x, self.cutout_value), x)


def weak_augmentation(*, hflip: float = 0.5, translate: float = 0.125, padding_mode: str = "zeros") -> WeakAugmentation:
    """FixMatch's weak view (flip + whole-pixel shift): a :class:`WeakAugmentation` with the paper's defaults.

    Parameters
    ----------
    hflip : float
        Flip probability.
    translate : float
        Largest shift, as a fraction of the size.
    padding_mode : {"zeros", "border", "reflection"}
        Fill of the uncovered borders.

    Examples
    --------
    >>> weak_augmentation()(torch.rand(4, 1, 32, 32)).shape
    torch.Size([4, 1, 32, 32])
    """
    return WeakAugmentation(hflip=hflip, translate=translate, padding_mode=padding_mode)


def strong_augmentation(*, n: int = 2, **params) -> StrongAugmentation:
    """FixMatch's strong view (RandAugment-like, random magnitudes, + cutout): a :class:`StrongAugmentation`.

    ``params`` are those of :class:`StrongAugmentation`.

    Parameters
    ----------
    n : int
        Ops per image.
    **params
        Other settings of :class:`StrongAugmentation`.

    Examples
    --------
    >>> out = strong_augmentation()(torch.rand(4, 1, 32, 32))
    >>> out.shape, bool(out.min() >= 0), bool(out.max() <= 1)
    (torch.Size([4, 1, 32, 32]), True, True)
    """
    return StrongAugmentation(n=n, **params)
