"""explanation_figure on known arrays: size, colour bar, caption band, peaks scaled, interpolation."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("pytorch_grad_cam")

from radiology.explain import FIGURE_SIZE, explanation_figure, figure_layout, overlay  # noqa: E402
from radiology.explain.figure import MAX_FIGURE_SIZE, MIN_FIGURE_SIZE, check_figure_size  # noqa: E402


def _blob(shape, x, y, sigma=2.0) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)).astype(np.float32)


def _figure(original, cam, **kwargs):
    options = {"label": "lesion", "probability": 0.93, "method": "gradcam"} | kwargs
    return explanation_figure(original, cam, **options)


def _colour(value: float, colormap: str) -> np.ndarray:
    """The colormap's RGB at ``value`` (what overlay draws at alpha 1), in [0, 1]."""
    return overlay(np.zeros((1, 1)), np.full((1, 1), value), alpha=1.0, colormap=colormap)[0, 0] / 255


@pytest.mark.parametrize("shape", [(64, 48), (48, 64), (64, 64), (72, 64), (3000, 2400), (2000, 3000), (7, 300),
                                   (300, 7), (1, 1)])
@pytest.mark.parametrize("size", [FIGURE_SIZE, 400, MIN_FIGURE_SIZE])
def test_the_longest_side_is_the_requested_size(shape, size):
    figure = _figure(np.zeros(shape, np.float32), np.zeros(shape, np.float32), size=size)
    layout = figure_layout(shape, size)
    assert figure.shape == (*layout.shape, 3) and figure.dtype == np.float32
    assert max(figure.shape[:2]) == size and 0 <= figure.min() and figure.max() <= 1
    # The geometry is kept: one scale for both axes (up to rounding to whole pixels).
    assert layout.rows == max(1, round(shape[0] * layout.scale))
    assert layout.cols == max(1, round(shape[1] * layout.scale))
    assert layout.top + layout.rows <= figure.shape[0] and layout.cols < layout.bar_left
    assert layout.bar_left + layout.bar_width < figure.shape[1]
    assert layout.bar_top >= layout.top and layout.bar_top + layout.bar_rows <= figure.shape[0]


def test_native_size_keeps_the_pixels_of_overlay():
    rng = np.random.default_rng(0)
    original, cam = rng.random((72, 64), dtype=np.float32), _blob((72, 64), 20, 50, sigma=6)
    figure = _figure(original, cam, size=None)
    layout = figure_layout(original.shape, None)
    assert layout.scale == 1.0 and (layout.rows, layout.cols) == (72, 64)
    drawn = figure[layout.top:layout.top + 72, :64]
    assert np.array_equal(np.round(drawn * 255).astype(np.uint8), overlay(original, cam))
    # A film keeps its pixels too (decorations are sized from it).
    assert figure_layout((3000, 2400), None).rows == 3000


@pytest.mark.parametrize("colormap", ["jet", "inferno", "viridis"])
def test_the_colour_bar_runs_from_one_at_the_top_to_zero_at_the_bottom(colormap):
    shape = (64, 48)
    figure = _figure(np.full(shape, 0.5, np.float32), np.zeros(shape, np.float32), colormap=colormap)
    layout = figure_layout(shape)
    bar = figure[layout.bar_top:layout.bar_top + layout.bar_rows, layout.bar_left:layout.bar_left + layout.bar_width]
    assert np.allclose(bar[0], _colour(1.0, colormap), atol=1e-6)  # every column of the top row
    assert np.allclose(bar[-1], _colour(0.0, colormap), atol=1e-6)
    for row in (len(bar) // 3, len(bar) // 2, len(bar) - 5):  # linear in between
        assert np.allclose(bar[row], _colour(1 - row / (len(bar) - 1), colormap), atol=1e-6)
    # Black above and below the bar (it is the scale's whole length), nothing but the colormap in it.
    assert not figure[layout.bar_top - 1, layout.bar_left:layout.bar_left + layout.bar_width].any()
    assert not figure[layout.bar_top + layout.bar_rows, layout.bar_left:layout.bar_left + layout.bar_width].any()
    # Tick labels and the bar's label are drawn to its right.
    assert figure[layout.bar_top:layout.bar_top + layout.bar_rows, layout.bar_left + layout.bar_width:].max() > 0.9


def test_the_caption_band_is_above_the_image_and_says_what_was_explained():
    shape = (64, 64)
    original = np.full(shape, 0.5, np.float32)
    cam = _blob(shape, 32, 32, sigma=8)
    figure = _figure(original, cam)
    layout = figure_layout(shape)
    band, image = figure[:layout.top], figure[layout.top:layout.top + layout.rows, :layout.cols]
    assert layout.top >= 20
    # The band is not the image: black with white text.
    assert not np.allclose(band[:, :layout.cols].mean(), image.mean(), atol=0.05)
    assert band.max() > 0.9 and (band.max(axis=2) < 0.05).mean() > 0.5
    # Another class, probability or method changes the band only.
    for change in ({"label": "normal"}, {"probability": 0.07}, {"method": "eigencam"}, {"probability": None}):
        other = _figure(original, cam, **change)
        assert not np.array_equal(other[:layout.top], band), change
        assert np.array_equal(other[layout.top:], figure[layout.top:]), change
    # Any label can be drawn (the font has ASCII only); a long one is shortened to fit.
    for label in ("結節", "Pneumothorax (tension), left apex" * 4, "café"):
        assert _figure(original, cam, label=label, size=MIN_FIGURE_SIZE).shape[2] == 3


@pytest.mark.parametrize("shape, peak", [((64, 48), (12, 40)), ((48, 64), (50, 7)), ((1500, 2000), (1500, 300)),
                                         ((3000, 2400), (611, 2222))])
def test_a_peak_lands_at_the_scaled_location(shape, peak):
    # inferno's brightness grows with the value: the brightest overlay pixel is the map's peak.
    sigma = max(2.0, 0.01 * max(shape))
    figure = _figure(np.zeros(shape, np.float32), _blob(shape, *peak, sigma=sigma), colormap="inferno")
    layout = figure_layout(shape)
    image = figure[layout.top:layout.top + layout.rows, :layout.cols].sum(axis=2)
    y, x = np.unravel_index(int(image.argmax()), image.shape)
    scale = layout.scale
    assert abs(x - peak[0] * scale) <= scale + 1 and abs(y - peak[1] * scale) <= scale + 1, (x, y, scale)
    fx, fy = layout.to_figure(*peak)
    assert abs(fx - x) <= 2.5 and abs(fy - layout.top - y) <= 2.5


def test_films_are_downscaled_by_area_and_phantoms_upscaled_smoothly():
    # A 1-px checkerboard averages to gray: no aliasing (nearest neighbour would keep 0s and 1s).
    board = (np.indices((3000, 2400)).sum(axis=0) % 2).astype(np.float32)
    figure = _figure(board, np.zeros(board.shape, np.float32), alpha=0.0)
    layout = figure_layout(board.shape)
    drawn = figure[layout.top:layout.top + layout.rows, :layout.cols]
    assert abs(drawn.mean() - 0.5) < 0.01 and drawn.std() < 0.02
    # A 2-px phantom upscaled: linear, so values between its two pixels appear.
    tiny = np.array([[0.0, 1.0]], np.float32)
    figure = _figure(tiny, np.zeros(tiny.shape, np.float32), alpha=0.0)
    layout = figure_layout(tiny.shape)
    row = figure[layout.top, :layout.cols, 0]
    assert row[0] == 0 and row[-1] == 1 and ((row > 0.1) & (row < 0.9)).any()


def test_figure_validates():
    image, cam = np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32)
    for size in (MIN_FIGURE_SIZE - 1, MAX_FIGURE_SIZE + 1, 0, -768, 768.0, "768", True):
        with pytest.raises(ValueError, match="figure size"):
            _figure(image, cam, size=size)
    assert check_figure_size(np.int64(300)) == 300 and check_figure_size(None) is None
    with pytest.raises(ValueError, match="map shape"):
        _figure(image, cam[:4])
    with pytest.raises(ValueError, match="expected a"):
        _figure(np.zeros((8, 8, 2)), cam)
    for probability in (1.5, -0.1, float("nan"), "0.9", True):
        with pytest.raises(ValueError, match="probability"):
            _figure(image, cam, probability=probability)
    with pytest.raises(ValueError, match="label"):
        _figure(image, cam, label=" ")
    with pytest.raises(ValueError, match="method"):
        _figure(image, cam, method="")
    with pytest.raises(ValueError, match="colormap"):
        _figure(image, cam, colormap="rainbow-ish")
    with pytest.raises(ValueError, match="alpha"):
        _figure(image, cam, alpha=2)
    # RGB and uint8 originals are drawn as overlay() draws them.
    rgb = np.zeros((8, 8, 3), np.uint8)
    assert _figure(rgb, cam).shape == (*figure_layout((8, 8)).shape, 3)
