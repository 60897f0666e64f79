import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")

from radiology.augment import MultiView, clahe_batch, count_host_syncs, radiograph_augmentation  # noqa: E402
from radiology.intensity import clahe  # noqa: E402
from radiology.synthetic import phantom_radiograph  # noqa: E402


def _batch(n=4, size=(64, 56)):
    images = [phantom_radiograph((max(size[0], 32), max(size[1], 32)), seed=i)[: size[0], : size[1]] for i in range(n)]
    return torch.from_numpy(np.stack(images))[:, None]


def test_cpu_and_gpu_clahe_agree():
    image = phantom_radiograph((256, 256), seed=5)
    quantized = (image * 255 + 0.5).astype(np.uint8)
    cpu = clahe(quantized, 2.0).astype(np.float32) / 255
    gpu = clahe_batch(torch.from_numpy(quantized.astype(np.float32) / 255)[None, None], 2.0)[0, 0].numpy()
    difference = np.abs(cpu - gpu)
    assert difference.mean() < 0.004 and difference.max() < 0.02  # stated tolerance: ~1 and ~5 gray levels


def test_augmentation_keeps_shape_range_and_batch():
    torch.manual_seed(0)
    augment = radiograph_augmentation(crop_size=(48, 48), clahe_p=0.5, cutout_p=0.5, noise_p=0.5)
    out = augment(_batch())
    assert out.shape == (4, 1, 48, 48)
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # samples get their own parameters


def test_seeded_augmentation_is_reproducible():
    batch = _batch()
    augment = radiograph_augmentation()
    torch.manual_seed(3)
    first = augment(batch)
    torch.manual_seed(3)
    assert torch.equal(first, augment(batch))


def test_multiview_shares_parameters_across_views():
    torch.manual_seed(1)
    batch = _batch()
    views = torch.stack([batch, batch], dim=1)  # the same image twice
    out = MultiView(radiograph_augmentation(noise_p=0.0))(views)
    assert torch.allclose(out[:, 0], out[:, 1])
    independent = MultiView(radiograph_augmentation(noise_p=0.0), shared=False)(views)
    assert not torch.allclose(independent[:, 0], independent[:, 1])


def test_swap_on_hflip_keeps_left_and_right_in_place():
    batch = _batch()
    pair = torch.stack([batch, batch.flip(-1)], dim=1)  # view 0 "left", view 1 its mirror "right"
    only_flip = radiograph_augmentation(hflip=1.0, affine_p=0.0, intensity_p=0.0, noise_p=0.0)
    out = MultiView(only_flip, swap_on_hflip=True)(pair)
    assert torch.equal(out, pair)  # flipped and swapped: left is still left
    unswapped = MultiView(only_flip)(pair)
    assert torch.equal(unswapped[:, 0], pair[:, 1])


def test_bad_inputs():
    with pytest.raises(ValueError):
        MultiView(radiograph_augmentation())(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError):
        MultiView(radiograph_augmentation(), swap_on_hflip=True)(torch.rand(2, 3, 1, 8, 8))
    with pytest.raises(ValueError):
        radiograph_augmentation(hflip=0, affine_p=0, intensity_p=0, noise_p=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_synchronizations_do_not_grow_with_the_batch():
    augment = radiograph_augmentation(crop_size=(128, 128), clahe_p=0.5, cutout_p=0.5)
    small = torch.rand(4, 1, 160, 160, device="cuda")
    assert count_host_syncs(torch.nonzero, small) >= 1  # the counter does see a synchronization
    large = torch.rand(64, 1, 160, 160, device="cuda")
    augment(small)  # warm-up
    assert count_host_syncs(augment, large) <= count_host_syncs(augment, small)
    views = MultiView(augment, swap_on_hflip=True)
    views(small[:, None].repeat(1, 2, 1, 1, 1))
    assert count_host_syncs(views, large[:, None].repeat(1, 2, 1, 1, 1)) <= count_host_syncs(
        views, small[:, None].repeat(1, 2, 1, 1, 1))


def test_sync_counting_needs_cuda():
    with pytest.raises(RuntimeError):
        count_host_syncs(radiograph_augmentation(), torch.rand(1, 1, 8, 8))
