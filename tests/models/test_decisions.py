"""The one decision rule: argmax for single-label, above-threshold for multi-label, on known probabilities."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from radiology.models import decide  # noqa: E402

CLASSES = ["A", "B", "C"]


def test_single_label_decides_the_most_probable_class():
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.0, 0.0, 1.0]])
    assert decide(probs, CLASSES, multi_label=False) == ["B", "A", "C"]
    assert decide(probs, CLASSES, multi_label=False, thresholds=[0.9, 0.9, 0.9]) == ["B", "A", "C"]  # ignored
    assert decide(np.zeros((0, 3)), CLASSES, multi_label=False) == []


def test_multi_label_decides_every_label_strictly_above_its_threshold():
    probs = np.array([[0.6, 0.5, 0.2], [0.1, 0.2, 0.3], [0.9, 0.8, 0.95]])
    assert decide(probs, CLASSES, multi_label=True) == ["A", "", "A|B|C"]  # 0.5 is not above 0.5
    assert decide(probs, CLASSES, multi_label=True, thresholds=[0.7, 0.4, 0.25]) == ["B", "C", "A|B|C"]
    assert decide(probs, CLASSES, multi_label=True, thresholds=0.15) == ["A|B|C", "B|C", "A|B|C"]
    # float32 probabilities are compared in float32: one equal to its threshold is not above it.
    equal = np.array([[0.7, 0.3, 0.1]], np.float32)
    assert decide(equal, CLASSES, multi_label=True, thresholds=[0.7, 0.3, 0.1]) == [""]


def test_decide_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match=r"probs must be \(N, n_classes\)"):
        decide([0.2, 0.8], ["A", "B"], multi_label=False)
    with pytest.raises(ValueError, match="3 columns for 2 classes"):
        decide([[0.2, 0.3, 0.5]], ["A", "B"], multi_label=False)
    with pytest.raises(ValueError, match="2 thresholds for 3 classes"):
        decide([[0.2, 0.3, 0.5]], CLASSES, multi_label=True, thresholds=[0.5, 0.5])


def test_bundle_decide_follows_the_same_rule():
    from radiology.models import Bundle

    probs = np.array([[0.31, 0.49, 0.7], [0.2, 0.9, 0.1]], np.float32)
    single = Bundle(folder=None, backend="eager", classes=CLASSES, multi_label=False, thresholds=None,
                    views=("image",), channels=1, size=(8, 8), pipeline=None)
    np.testing.assert_array_equal(single.decide(probs), [2, 1])
    assert [CLASSES[i] for i in single.decide(probs)] == decide(probs, CLASSES, multi_label=False)
    multi = Bundle(folder=None, backend="eager", classes=CLASSES, multi_label=True, thresholds=[0.3, 0.5, 0.7],
                   views=("image",), channels=1, size=(8, 8), pipeline=None)
    np.testing.assert_array_equal(multi.decide(probs), [[1, 0, 0], [0, 1, 0]])
    named = ["|".join(c for c, on in zip(CLASSES, row) if on) for row in multi.decide(probs)]
    assert named == decide(probs, CLASSES, multi_label=True, thresholds=multi.thresholds)
