import numpy as np
import pytest

from radiology.intensity import (
    histogram_bins,
    histogram_scale,
    load_histogram_bins,
    minmax_scale,
    normalize,
    percentile_window,
    quantiles,
    save_histogram_bins,
)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64])
def test_quantiles_match_numpy(dtype):
    rng = np.random.default_rng(1)
    image = (rng.normal(0, 1, (300, 200)) * 900).astype(dtype) if np.dtype(dtype).kind != "u" else rng.integers(
        0, np.iinfo(dtype).max, (300, 200)).astype(dtype)
    levels = [0.0, 0.001, 0.005, 0.37, 0.5, 0.995, 1.0]
    assert np.allclose(quantiles(image, levels), np.quantile(image, levels))


def test_quantiles_reject_bad_levels():
    with pytest.raises(ValueError):
        quantiles(np.arange(4), [1.5])


def test_percentile_window_clips_outliers():
    image = np.full((100, 100), 1000, np.uint16)
    image[:50] = 2000
    image[0, 0] = 65535  # one hot pixel must not squash the contrast
    out = percentile_window(image)
    assert out.dtype == np.float32
    assert out[10, 10] == 1.0 and out[80, 80] == 0.0 and out[0, 0] == 1.0


def test_percentile_window_is_symmetric_under_inversion():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 4096, (128, 128)).astype(np.uint16)
    assert np.allclose(percentile_window(-image.astype(np.int32)), 1 - percentile_window(image), atol=1e-6)


def test_constant_image_gives_zeros():
    assert not percentile_window(np.full((8, 8), 7)).any()
    assert not minmax_scale(np.full((8, 8), 7.0)).any()


@pytest.mark.parametrize("bad", [np.array([]), np.array([1.0, np.nan])])
def test_bad_input_rejected(bad):
    with pytest.raises(ValueError):
        percentile_window(bad)


def test_percentile_arguments_checked():
    with pytest.raises(ValueError, match="low < high"):
        percentile_window(np.arange(10), 60, 40)


def test_histogram_scale_equalizes():
    rng = np.random.default_rng(3)
    skewed = (rng.exponential(300, (256, 256))).astype(np.uint16)  # most pixels dark
    out = histogram_scale(skewed)
    counts, _ = np.histogram(out, bins=10, range=(0, 1))
    assert counts.min() > 0.7 * counts.max()  # close to flat
    assert np.allclose(histogram_scale(skewed.astype(np.float32)), out, atol=1e-5)  # float path agrees


def test_fitted_bins_apply_one_mapping_to_every_image(tmp_path):
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 1000, (64, 64)).astype(np.uint16) + offset for offset in (0, 500)]
    bins = histogram_bins(images, n_bins=20)
    path = save_histogram_bins(tmp_path / "bins.json", bins)
    loaded = load_histogram_bins(path)
    assert np.array_equal(loaded, bins)
    low, high = (histogram_scale(im, loaded) for im in images)
    assert high.mean() > low.mean() + 0.3  # shared bins keep the datasets' difference visible
    assert abs(histogram_scale(images[0]).mean() - histogram_scale(images[1]).mean()) < 0.02  # per-image bins erase it


def test_histogram_bins_sampling_is_seeded():
    images = [np.arange(500_000, dtype=np.int32).reshape(500, 1000)]
    a = histogram_bins(images, samples_per_image=1000, seed=5)
    assert np.array_equal(a, histogram_bins(images, samples_per_image=1000, seed=5))
    assert not np.array_equal(a, histogram_bins(images, samples_per_image=1000, seed=6))


def test_load_rejects_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"bins": [1, 2]}')
    with pytest.raises(ValueError, match="not a radiology"):
        load_histogram_bins(path)


def test_normalize_dispatch():
    image = np.arange(100, dtype=np.uint16).reshape(10, 10)
    assert np.array_equal(normalize(image, "minmax"), minmax_scale(image))
    assert np.array_equal(normalize(image, "percentile", low=1, high=99), percentile_window(image, 1, 99))
    with pytest.raises(ValueError, match="unknown normalization"):
        normalize(image, "zscore")
