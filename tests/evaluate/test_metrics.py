"""Known-answer tests for radiology.evaluate.metrics and radiology.evaluate.reports."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

pytest.importorskip("sklearn")

from radiology.evaluate import (  # noqa: E402
    accuracy,
    balanced_accuracy,
    best_thresholds,
    classification_metrics,
    classification_report,
    macro_auc,
    macro_f1,
    odir_score,
    quadratic_kappa,
    roc_auc_per_class,
)
from tests.conftest import shared_path  # noqa: E402

ODIR_LABELS = list("NDGCAHMO")


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def single():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, 60)
    probs = _softmax(rng.normal(size=(60, 4)) + 1.5 * np.eye(4)[targets])
    return targets, probs


@pytest.fixture
def multi():
    rng = np.random.default_rng(1)
    targets = (rng.random((80, 5)) < [0.5, 0.3, 0.1, 0.05, 0.2]).astype(np.float32)
    probs = 1 / (1 + np.exp(-(rng.normal(size=(80, 5)) + 2.0 * (targets - 0.5))))
    return targets, probs


def test_simple_metrics_match_sklearn(single):
    targets, probs = single
    labels = probs.argmax(1)
    assert accuracy(targets, probs) == pytest.approx(skm.accuracy_score(targets, labels))
    assert accuracy(targets, labels) == accuracy(targets, probs)
    assert balanced_accuracy(targets, probs) == pytest.approx(skm.balanced_accuracy_score(targets, labels))
    assert macro_f1(targets, probs) == pytest.approx(skm.f1_score(targets, labels, average="macro"))
    assert isinstance(accuracy(targets, probs), float)


def test_balanced_accuracy_of_majority_vote():
    assert balanced_accuracy([0] * 9 + [1], [0] * 10) == 0.5
    assert accuracy([0] * 9 + [1], [0] * 10) == 0.9


def test_multi_label_macro_f1_uses_strict_threshold():
    truth = np.array([[1, 0], [0, 1], [1, 1]])
    probs = np.array([[0.5, 0.1], [0.2, 0.9], [0.8, 0.6]])
    # 0.5 is not > 0.5: label 0 gets tp=1, fn=1 -> F1 2/3; label 1 is perfect.
    assert macro_f1(truth, probs) == pytest.approx((2 / 3 + 1) / 2)


def test_multi_label_f1_leaves_out_labels_neither_present_nor_predicted():
    # Perfect decisions; label C is never present and never predicted: its F1 is undefined, not 0
    # (counted as 0 it made perfect predictions score macro F1 2/3).
    truth = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    probs = np.array([[0.9, 0.1, 0.2], [0.3, 0.8, 0.1], [0.7, 0.6, 0.4]])
    assert macro_f1(truth, probs) == 1.0
    result = classification_metrics(truth, probs, ["A", "B", "C"], multi_label=True)
    assert result["macro_f1"] == 1.0 and result["f1"] == {"A": 1.0, "B": 1.0, "C": None}
    json.dumps(result, allow_nan=False)
    report = classification_report(truth, probs, ["A", "B", "C"], multi_label=True).splitlines()
    assert ["C", "0", "n/a", "n/a", "0.500"] in [line.split() for line in report]
    # A label predicted but never present, or present but never predicted, still counts as F1 0.
    assert macro_f1(truth, np.where(np.arange(3) == 2, 0.9, probs)) == pytest.approx(2 / 3)
    assert macro_f1(truth, np.where(np.arange(3) == 1, 0.1, probs)) == pytest.approx(1 / 2)
    assert np.isnan(macro_f1(np.zeros((2, 2)), np.zeros((2, 2))))


def _qwk_by_hand(a, b, n):
    observed = np.zeros((n, n))
    for i, j in zip(a, b):
        observed[i, j] += 1
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    weights = np.array([[(i - j) ** 2 for j in range(n)] for i in range(n)]) / (n - 1) ** 2
    return 1 - (weights * observed).sum() / (weights * expected).sum()


def test_quadratic_kappa_known_answer():
    # Observed weighted disagreement 2 * (1/4) / 4 = 1/8; expected 22/64; kappa = 1 - (1/8)/(22/64) = 7/11.
    assert quadratic_kappa([0, 1, 2, 2], [0, 2, 2, 1]) == pytest.approx(7 / 11)
    assert quadratic_kappa([0, 1, 2, 2], [0, 2, 2, 1]) == pytest.approx(
        skm.cohen_kappa_score([0, 1, 2, 2], [0, 2, 2, 1], weights="quadratic")
    )


def test_quadratic_kappa_keeps_distances_when_a_grade_is_absent():
    # Grades 0 and 2 only, grade 1 in neither array: the 0<->2 distance is 2, not 1.
    targets, predictions = [0, 2, 2, 0, 2], [0, 2, 0, 2, 2]
    assert quadratic_kappa(targets, predictions, n_classes=3) == pytest.approx(_qwk_by_hand(targets, predictions, 3))
    assert quadratic_kappa(targets, predictions) == pytest.approx(_qwk_by_hand(targets, predictions, 3))
    # Absent top grades (3, 4) only matter through n_classes.
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    assert quadratic_kappa(a, b, n_classes=5) == pytest.approx(_qwk_by_hand(a, b, 5))
    assert quadratic_kappa([1, 1], [1, 1]) != quadratic_kappa([1, 1], [1, 1])  # undefined: nan, no crash
    with pytest.raises(ValueError, match="n_classes"):
        quadratic_kappa([0, 3], [0, 1], n_classes=3)


def test_auc_per_class_single_label_matches_sklearn(single):
    targets, probs = single
    expected = skm.roc_auc_score(targets, probs, multi_class="ovr", average=None)
    np.testing.assert_allclose(roc_auc_per_class(targets, probs), expected)
    assert macro_auc(targets, probs) == pytest.approx(skm.roc_auc_score(targets, probs, multi_class="ovr"))


def test_auc_is_nan_for_a_class_without_both_outcomes():
    # Class 2 never occurs: sklearn's roc_auc_score would raise; we give nan and average the rest.
    targets = np.array([0, 1, 0, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auc = roc_auc_per_class(targets, probs)
        assert np.isnan(auc[2]) and np.allclose(auc[:2], 1.0)
        assert macro_auc(targets, probs) == 1.0
        # Multi-label: an all-positive and an all-negative label.
        truth = np.array([[1, 0, 1], [1, 0, 0], [1, 0, 1]])
        per_label = roc_auc_per_class(truth, np.full((3, 3), 0.5))
        assert np.isnan(per_label[:2]).all() and per_label[2] == 0.5
        assert np.isnan(macro_auc(truth[:, :2], np.full((3, 2), 0.5)))


def test_odir_score_is_the_flattened_computation(multi):
    truth, probs = multi
    flat_truth, flat_probs = truth.ravel(), probs.ravel()
    kappa = skm.cohen_kappa_score(flat_truth, flat_probs > 0.5)
    f1 = skm.f1_score(flat_truth, flat_probs > 0.5, average="micro")
    auc = skm.roc_auc_score(flat_truth, flat_probs)
    result = odir_score(truth, probs)
    assert result == pytest.approx({"kappa": kappa, "f1": f1, "auc": auc, "score": (kappa + f1 + auc) / 3})
    # Micro F1 of a flattened 0/1 vector is its accuracy.
    assert result["f1"] == pytest.approx(np.mean((flat_probs > 0.5) == flat_truth))
    assert odir_score(truth, probs, threshold=0.3)["kappa"] == pytest.approx(
        skm.cohen_kappa_score(flat_truth, flat_probs > 0.3)
    )


def test_odir_prevalence_baseline_matches_the_data_readme():
    labels = shared_path("fundus", "odir", "labels.csv")
    import pandas as pd

    truth = pd.read_csv(labels)[ODIR_LABELS].to_numpy()
    probs = np.broadcast_to(truth.mean(axis=0), truth.shape)
    result = odir_score(truth, probs)
    # README: kappa 0, F1 0.86, AUC 0.76, score 0.54.
    assert result["kappa"] == 0.0
    assert result["f1"] == pytest.approx(0.86, abs=0.005)
    assert result["auc"] == pytest.approx(0.76, abs=0.01)
    assert result["score"] == pytest.approx(0.54, abs=0.005)


def _f1_at(truth, scores, threshold):
    predicted = scores > threshold
    return 2 * np.sum(predicted & (truth == 1)) / (truth.sum() + predicted.sum())


def test_best_thresholds_maximize_f1(multi):
    truth, probs = multi
    thresholds = best_thresholds(truth, probs)
    assert thresholds.shape == (5,)
    grid = np.linspace(0, 1, 401)
    for column in range(5):
        assert _f1_at(truth[:, column], probs[:, column], 0.37) == pytest.approx(
            skm.f1_score(truth[:, column], probs[:, column] > 0.37))
        best = _f1_at(truth[:, column], probs[:, column], thresholds[column])
        assert best >= max(_f1_at(truth[:, column], probs[:, column], t) for t in grid) - 1e-12


def test_best_thresholds_known_answer_and_edge_cases():
    # Halfway between 0.3 (last positive) and 0.2 (first negative).
    assert best_thresholds([[1], [1], [0], [0]], [[0.9], [0.3], [0.2], [0.1]])[0] == pytest.approx(0.25)
    # A label without positives keeps the default; tied scores are never split.
    result = best_thresholds([[0, 1], [0, 0], [0, 1]], [[0.9, 0.6], [0.1, 0.6], [0.2, 0.6]], default=0.4)
    assert result[0] == 0.4
    assert result[1] < 0.6  # all three share 0.6: the only useful cut predicts all positive


def test_classification_metrics_single_label():
    targets = np.array([0, 0, 1, 1, 2])
    probs = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7]])
    classes = ["KL0", "KL1", "KL2"]
    result = classification_metrics(targets, probs, classes, multi_label=False, ordinal=True)
    assert result["n"] == 5
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert result["recall"] == {"KL0": 0.5, "KL1": 1.0, "KL2": 1.0}
    assert result["balanced_accuracy"] == pytest.approx(2.5 / 3)
    assert result["support"] == {"KL0": 2, "KL1": 2, "KL2": 1}
    assert result["quadratic_kappa"] == pytest.approx(quadratic_kappa(targets, probs))
    assert set(result["auc"]) == set(classes)
    json.dumps(result, allow_nan=False)
    # Unordered classes (the default): no kappa, which would weigh errors by index distance.
    assert "quadratic_kappa" not in classification_metrics(targets, probs, classes, multi_label=False)
    assert "quadratic_kappa" not in classification_report(targets, probs, classes, multi_label=False)
    assert "quadratic_kappa" in classification_report(targets, probs, classes, multi_label=False, ordinal=True)


def test_classification_metrics_json_ready_with_missing_class():
    targets = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    result = classification_metrics(targets, probs, ["a", "b", "c"], multi_label=False)
    assert result["auc"]["c"] is None and result["recall"]["c"] is None
    assert result["support"]["c"] == 0
    json.dumps(result, allow_nan=False)


def test_classification_metrics_multi_label(multi):
    truth, probs = multi
    classes = list("ABCDE")
    thresholds = best_thresholds(truth, probs)
    result = classification_metrics(truth, probs, classes, multi_label=True, thresholds=thresholds)
    decisions = probs > thresholds
    assert result["micro_f1"] == pytest.approx(skm.f1_score(truth, decisions, average="micro"))
    assert result["macro_f1"] == pytest.approx(skm.f1_score(truth, decisions, average="macro"))
    assert result["thresholds"] == pytest.approx(list(thresholds))
    assert result["odir"] == pytest.approx(odir_score(truth, probs))  # always at 0.5, as the challenge
    assert result["macro_auc"] == pytest.approx(skm.roc_auc_score(truth, probs, average="macro"))
    assert list(result["auc"]) == classes
    json.dumps(result, allow_nan=False)
    default = classification_metrics(truth, probs, classes, multi_label=True)
    assert default["thresholds"] == [0.5] * 5


def test_classification_report_is_readable(single, multi):
    targets, probs = single
    text = classification_report(targets, probs, ["a", "b", "c", "d"], multi_label=False)
    assert "balanced_accuracy" in text and "confusion matrix" in text
    assert all(f"\n{name} " in text for name in "abcd")
    text = classification_report(*multi, list("ABCDE"), multi_label=True)
    assert "odir" in text and "threshold" in text


def test_validation_errors(single):
    targets, probs = single
    with pytest.raises(ValueError, match="class names"):
        classification_metrics(targets, probs, ["a", "b"], multi_label=False)
    with pytest.raises(ValueError, match="negative"):
        accuracy([-1, 0], [0, 0])
    with pytest.raises(ValueError, match="0 and 1"):
        odir_score([[2, 0]], [[0.1, 0.2]])
    with pytest.raises(ValueError, match="shape"):
        odir_score([[1, 0]], [[0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match="NaN"):
        macro_auc([0, 1], [[np.nan, 0.5], [0.5, 0.5]])
