"""Weak and strong views: known answers per op, exactly n ops per image, cutout, nothing read back to the host."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from radiology.semisup import (  # noqa: E402
    STRONG_OPS,
    StrongAugmentation,
    WeakAugmentation,
    strong_augmentation,
    weak_augmentation,
)
from tests.semisup.conftest import HostReadError, NoHostReads  # noqa: E402


def _shift(image, dx, dy):
    """``image`` (H, W) moved right by dx and down by dy, black where uncovered."""
    out = torch.zeros_like(image)
    height, width = image.shape
    out[max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
        image[max(-dy, 0):height - max(dy, 0), max(-dx, 0):width - max(dx, 0)]
    return out


def _one_op(name, **params):
    return StrongAugmentation(1, (name,), cutout=None, **params)


def test_weak_view_is_a_flip_and_a_whole_pixel_shift(chest_images):
    x = chest_images[0][:24]
    torch.testing.assert_close(weak_augmentation(hflip=1.0, translate=0.0)(x), x.flip(-1), rtol=0, atol=0)
    torch.manual_seed(0)
    out = WeakAugmentation(hflip=0.5, translate=0.125)(x)
    largest = round(0.125 * 32)  # 4 pixels
    flips, shifts = 0, set()
    for image, view in zip(x[:, 0], out[:, 0]):
        matches = [(flip, dx, dy) for flip in (False, True) for dx in range(-largest, largest + 1)
                   for dy in range(-largest, largest + 1)
                   if torch.allclose(_shift(image.flip(-1) if flip else image, dx, dy), view, atol=1e-5)]
        assert matches, "every weak view is the image, maybe flipped, moved by whole pixels"
        flips += matches[0][0]
        shifts.add(matches[0][1:])
    assert 0 < flips < 24 and len(shifts) > 5
    with pytest.raises(ValueError, match="hflip"):
        WeakAugmentation(hflip=2.0)
    with pytest.raises(ValueError, match="padding_mode"):
        WeakAugmentation(padding_mode="wrap")


def test_strong_view_draws_exactly_n_different_ops_per_image():
    augment = StrongAugmentation(n=2)
    torch.manual_seed(0)
    chosen = augment.chosen(6000, "cpu")
    assert chosen.shape == (6000, len(STRONG_OPS)) and bool((chosen.sum(1) == 2).all())
    # Every op equally likely: 2 / 13 of the images each.
    torch.testing.assert_close(chosen.float().mean(0), torch.full((len(STRONG_OPS),), 2 / 13), atol=0.015, rtol=0)
    assert bool((StrongAugmentation(n=0).chosen(5, "cpu") == 0).all())


def test_strong_view_keeps_shape_and_range_and_varies_per_image(chest_images):
    x = chest_images[0][:16]
    torch.manual_seed(0)
    out = strong_augmentation()(x)
    assert out.shape == x.shape and out.dtype == x.dtype and out.min() >= 0 and out.max() <= 1
    copies = strong_augmentation()(x[:1].repeat(16, 1, 1, 1))
    assert len({tuple(view.flatten().tolist()) for view in copies}) == 16
    three = strong_augmentation()(x.repeat(1, 3, 1, 1))
    assert three.shape == (16, 3, 32, 32)
    torch.testing.assert_close(_one_op("identity")(x), x, rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown ops"):
        StrongAugmentation(ops=("invert",))
    with pytest.raises(ValueError, match="n must be"):
        StrongAugmentation(n=3, ops=("identity", "equalize"))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        strong_augmentation()(x[0])


def test_intensity_ops_known_answers(chest_images):
    x = chest_images[0][:8]
    torch.manual_seed(1)
    stretched = _one_op("autocontrast")(x * 0.5 + 0.2)
    low, high = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(stretched, (x - low) / (high - low), atol=1e-5, rtol=0)

    # PIL's equalize (kornia's): with the brightest level's count left out, 255 of 340 pixels make
    # steps of one, and each level maps to the count of pixels below it. Half the pixels at level 0,
    # a quarter at 128, a quarter at 255 go to 0, 170 and 255.
    levels = torch.tensor([0.0] * 170 + [128 / 255] * 85 + [1.0] * 85).view(1, 1, 17, 20)
    torch.testing.assert_close(_one_op("equalize")(levels).flatten(),
                               torch.tensor([0.0] * 170 + [170 / 255] * 85 + [1.0] * 85))
    # And as PIL.ImageOps.equalize on a real radiograph's 8-bit levels, channel by channel.
    from PIL import Image, ImageOps

    codes = (x[:2] * 255).round().to(torch.uint8)
    expected = torch.stack([torch.from_numpy(np.array(ImageOps.equalize(Image.fromarray(image[0].numpy()))))
                            for image in codes])[:, None].float() / 255
    torch.testing.assert_close(_one_op("equalize")(codes.float() / 255), expected, atol=1e-6, rtol=0)
    flat = torch.full((1, 1, 4, 4), 0.3)
    torch.testing.assert_close(_one_op("equalize")(flat), flat)  # a constant image stays

    poster = _one_op("posterize", posterize_bits=(4, 4))(x)
    codes = poster * 255 / 16
    torch.testing.assert_close(codes, codes.round(), atol=1e-4, rtol=0)
    assert bool((poster <= x + 1e-6).all()) and bool((x - poster < 16 / 255 + 1e-6).all())

    solar = _one_op("solarize")(x)
    for image, view in zip(x, solar):
        kept = torch.isclose(view, image, atol=1e-6)
        flipped = torch.isclose(view, 1 - image, atol=1e-6)
        assert bool((kept | flipped).all())
        if (~kept).any() and kept.any():  # the inverted pixels are the brighter ones
            assert image[~kept].min() >= image[kept & ~flipped].max()

    bright = _one_op("brightness")(x)
    ratio = bright[x > 0.1] / x[x > 0.1]
    assert 0.05 - 1e-4 <= ratio.min() and ratio.max() <= 1.95 + 1e-4

    contrast = _one_op("contrast")(x)
    for image, view in zip(x, contrast):
        inside = (view > 0) & (view < 1)
        mean = image.mean()
        factor = ((view - mean)[inside] / (image - mean)[inside])
        factor = factor[(image - mean)[inside].abs() > 0.05]
        assert float(factor.max() - factor.min()) < 1e-3  # one factor per image

    sharp = _one_op("sharpness")(x)
    torch.testing.assert_close(sharp[..., 0, :], x[..., 0, :])  # PIL leaves the border
    torch.testing.assert_close(_one_op("sharpness")(flat), flat)


def test_geometric_ops_move_pixels_as_they_should():
    size = 33
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    radius = (coords[:, None] ** 2 + coords[None, :] ** 2).sqrt()
    disk = torch.sigmoid(8.0 - radius).expand(6, 1, size, size).contiguous()  # rotation-invariant
    torch.manual_seed(0)
    rotated = _one_op("rotate")(disk)
    assert float((rotated - disk).abs().max()) < 0.03
    sheared = _one_op("shear_x")(disk)
    assert float((sheared - disk).abs().amax(dim=(1, 2, 3)).max()) > 0.1
    moved = _one_op("translate_y", translate=0.2)(disk)
    # A vertical shift keeps each row's profile; the centre of mass moves by up to 0.2 × 33 pixels.
    rows = moved.sum(dim=3)[:, 0]
    centre = (rows * torch.arange(size)).sum(1) / rows.sum(1) - size // 2
    assert float(centre.abs().max()) <= 0.2 * size + 0.5 and float(centre.abs().max()) > 1


def test_cutout_box_has_the_fill_and_the_size():
    torch.manual_seed(0)
    out = StrongAugmentation(n=0, cutout=(0.25, 0.25), cutout_value=0.5)(torch.ones(200, 1, 32, 32))
    counts = (out == 0.5).flatten(1).sum(1)
    assert bool((out[out != 0.5] == 1).all())
    # An 8 × 8 box, clipped at the borders to no less than a quarter of it.
    assert int(counts.max()) == 64 and int(counts.min()) >= 16 and float((counts == 64).float().mean()) > 0.5
    assert bool((StrongAugmentation(n=0, cutout=None)(torch.ones(2, 1, 8, 8)) == 1).all())


def test_augmentations_read_nothing_back_to_the_host(chest_images):
    x = chest_images[0][:8]
    weak, strong = weak_augmentation(), strong_augmentation()
    with NoHostReads():
        for _ in range(3):
            weak(x)
            strong(x)


def test_the_guard_catches_host_reads_but_not_kornias_range_check():
    from kornia.enhance import equalize

    x = torch.rand(2, 1, 8, 8)
    with NoHostReads():
        equalize(x)  # kornia >= 0.9.2 checks the range on the host only for CPU tensors (on a GPU, on the device)
        with pytest.raises(HostReadError):
            bool((x > 0).all())
        with pytest.raises(HostReadError):
            x.sum().item()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_augmentations_do_not_synchronize_on_cuda(chest_images):
    x = chest_images[0][:8].cuda()
    weak, strong = weak_augmentation(), strong_augmentation()
    weak(x), strong(x)  # warm-up (kernel loading)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            weak(x)
            strong(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
