"""radiology.evaluate.plots writes valid PNG files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("sklearn")

from radiology.evaluate import plot_confusion_matrix, plot_roc  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path):
    assert path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100
    # Written atomically: no temporary file left beside it.
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def _single(n_classes=4, n=40, seed=0):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 2.0 * np.eye(n_classes)[targets]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return targets, probs


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_png(tmp_path, normalize):
    targets, probs = _single()
    out = tmp_path / "sub" / "confusion.png"
    result = plot_confusion_matrix(targets, probs.argmax(1), ["a", "b", "c", "d"], out, normalize=normalize)
    assert result == out
    _check_png(out)


def test_confusion_matrix_many_classes_and_absent_rows(tmp_path):
    # 22 UNIFESP-like classes, some never present: empty rows must not break the normalization.
    targets, probs = _single(n_classes=22, n=30, seed=1)
    classes = [f"class {i}" for i in range(22)]
    _check_png(plot_confusion_matrix(targets, probs, classes, tmp_path / "c22.png"))


def test_roc_png_single_and_multi_label(tmp_path):
    targets, probs = _single()
    _check_png(plot_roc(targets, probs, ["a", "b", "c", "d"], tmp_path / "roc.png"))
    rng = np.random.default_rng(2)
    truth = (rng.random((30, 8)) < 0.3).astype(np.float32)
    truth[:, 3] = 0  # a label without positives: listed as n/a, no crash
    scores = rng.random((30, 8))
    _check_png(plot_roc(truth, scores, list("NDGCAHMO"), tmp_path / "roc_multi.png", multi_label=True))


def test_overwrites_existing_file(tmp_path):
    out = tmp_path / "roc.png"
    out.write_bytes(b"old")
    targets, probs = _single()
    _check_png(plot_roc(targets, probs, list("abcd"), out))


def test_plot_errors(tmp_path):
    targets, probs = _single()
    with pytest.raises(ValueError, match=r"\.png"):
        plot_roc(targets, probs, list("abcd"), tmp_path / "roc.jpg")
    with pytest.raises(ValueError, match="class names"):
        plot_roc(targets, probs, list("abc"), tmp_path / "roc.png")
    with pytest.raises(ValueError, match="class index"):
        plot_confusion_matrix(targets, probs, ["a", "b"], tmp_path / "c.png")
