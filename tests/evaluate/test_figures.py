"""Figures and tables for papers: the binary ROC with its operating point, calibration, kappa only for
ordinal grades, and confusion matrices by class name."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

pytest.importorskip("sklearn")

from radiology.cli import main  # noqa: E402
from radiology.evaluate import (  # noqa: E402
    calibration_bins,
    classification_metrics,
    classification_report,
    evaluate_predictions,
    expected_calibration_error,
    operating_point,
    plot_calibration,
    plot_roc,
)


def _is_png(path):
    with Image.open(path) as image:
        return image.format == "PNG" and min(image.size) > 100


# ----------------------------------------------------------------------------- operating point and binary ROC


def test_operating_point_known_answer():
    # 4 positives: 3 above 0.5; 6 negatives: 2 above 0.5. A tie (0.5, 0.5) is negative, as argmax decides.
    positive = np.array([0.9, 0.8, 0.6, 0.5, 0.7, 0.55, 0.4, 0.3, 0.2, 0.1])
    targets = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    point = operating_point(targets, np.c_[1 - positive, positive])
    assert point["sensitivity"] == 0.75
    assert point["specificity"] == pytest.approx(4 / 6) and point["false_positive_rate"] == pytest.approx(2 / 6)
    metrics = classification_metrics(targets, np.c_[1 - positive, positive], ["normal", "finding"], multi_label=False)
    assert (metrics["positive_class"], metrics["sensitivity"]) == ("finding", 0.75)
    assert metrics["specificity"] == pytest.approx(4 / 6) and metrics["recall"]["finding"] == 0.75
    assert np.isnan(operating_point([0, 0], [[0.9, 0.1], [0.2, 0.8]])["sensitivity"])
    with pytest.raises(ValueError, match="2 columns"):
        operating_point([0, 1], [[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])


def test_binary_roc_is_one_curve_with_the_operating_point(tmp_path):
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, 80)
    positive = np.clip(0.3 + 0.4 * targets + 0.25 * rng.normal(size=80), 0, 1)
    probs = np.c_[1 - positive, positive]
    path = plot_roc(targets, probs, ["normal", "finding"], tmp_path / "roc.png")
    assert _is_png(path)
    # The same drawing with the classes swapped mirrors the curve: a different image, not two overlaid curves.
    swapped = plot_roc(1 - targets, probs[:, ::-1], ["finding", "normal"], tmp_path / "swapped.png")
    assert path.read_bytes() != swapped.read_bytes()
    assert _is_png(plot_roc([0, 0, 0], [[0.9, 0.1]] * 3, ["a", "b"], tmp_path / "one_class.png"))


# ----------------------------------------------------------------------------- calibration


def test_expected_calibration_error_known_answers():
    # 0.9 said for every case, half of them positive: |0.9 - 0.5| = 0.4.
    targets = np.array([0, 1] * 50)
    assert expected_calibration_error(targets, np.tile([[0.1, 0.9]], (100, 1))) == pytest.approx(0.4)
    assert expected_calibration_error(targets.reshape(50, 2), np.full((50, 2), 0.9)) == pytest.approx(0.4)
    # Outcomes drawn with the stated probability: calibrated, ECE near 0.
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    calibrated = (rng.random(200_000) < p).astype(np.int64)
    assert expected_calibration_error(calibrated, np.c_[1 - p, p]) < 0.01
    assert expected_calibration_error(1 - calibrated, np.c_[1 - p, p]) > 0.4  # reversed: badly calibrated
    # Two bins, by hand: bin [0, 0.5) holds 0.2 (negative); bin [0.5, 1] holds 0.8 (positive) and 1.0 (negative).
    bins = calibration_bins([0, 1, 0], [[0.8, 0.2], [0.2, 0.8], [0.0, 1.0]], n_bins=2)
    assert bins["count"].tolist() == [1, 2] and bins["positive_rate"].tolist() == [0.0, 0.5]
    assert expected_calibration_error([0, 1, 0], [[0.8, 0.2], [0.2, 0.8], [0.0, 1.0]], n_bins=2) == pytest.approx(
        (0.2 + 2 * abs(0.9 - 0.5)) / 3)
    with pytest.raises(ValueError, match="two classes"):
        expected_calibration_error([0, 2], [[0.5, 0.3, 0.2]] * 2)
    with pytest.raises(ValueError, match="n_bins must be a positive integer"):
        expected_calibration_error([0, 1], [[0.5, 0.5]] * 2, n_bins=0)


def test_calibration_png_binary_and_multi_label(tmp_path):
    rng = np.random.default_rng(1)
    p = rng.random(300)
    targets = (rng.random(300) < p).astype(np.int64)
    assert _is_png(plot_calibration(targets, np.c_[1 - p, p], ["normal", "finding"], tmp_path / "binary.png"))
    truth = (rng.random((60, 4)) < 0.3).astype(np.int64)
    assert _is_png(plot_calibration(truth, rng.random((60, 4)), list("NDGC"), tmp_path / "multi.png", n_bins=5))
    with pytest.raises(ValueError, match="two classes"):
        plot_calibration([0, 1, 2], np.full((3, 3), 1 / 3), list("abc"), tmp_path / "three.png")
    with pytest.raises(ValueError, match=r"\.png"):
        plot_calibration(targets, np.c_[1 - p, p], ["a", "b"], tmp_path / "binary.svg")


def test_evaluate_writes_calibration_and_ece_for_binary_and_multi_label(tmp_path):
    binary = pd.DataFrame({"image": list("abcd"), "prob_x": [0.9, 0.2, 0.4, 0.3], "prob_y": [0.1, 0.8, 0.6, 0.7]})
    labels = pd.DataFrame({"image": list("abcd"), "label": ["x", "y", "x", "y"]})
    metrics = evaluate_predictions(binary, labels, out=tmp_path / "binary", n_boot=0)
    # Positive class y at 0.1, 0.8, 0.6, 0.7, outcomes 0, 1, 0, 1: bins 0.1 | 0.6 | 0.7, 0.8 -> (0.1 + 0.6 + 0.5) / 4.
    assert metrics["ece"] == pytest.approx(0.3)
    assert (tmp_path / "binary" / "calibration.png").is_file()
    multi = pd.DataFrame({"image": ["a", "b"], "prob_B": [0.9, 0.2], "prob_C": [0.8, 0.7]})
    metrics = evaluate_predictions(multi, pd.DataFrame({"image": ["a", "b"], "label": ["B|C", "C"]}),
                                   out=tmp_path / "multi", n_boot=0)
    assert metrics["multi_label"] and metrics["ece"] == pytest.approx((0.1 + 0.2 + 0.2 + 0.3) / 4)
    assert (tmp_path / "multi" / "calibration.png").is_file()
    three = pd.DataFrame({"image": list("abc"), "prob_a": [0.8, 0.1, 0.1], "prob_b": [0.1, 0.8, 0.1],
                          "prob_c": [0.1, 0.1, 0.8]})
    metrics = evaluate_predictions(three, pd.DataFrame({"image": list("abc"), "label": list("abc")}),
                                   out=tmp_path / "three", n_boot=0)
    assert "ece" not in metrics and not (tmp_path / "three" / "calibration.png").exists()


# ----------------------------------------------------------------------------- kappa only for ordinal grades


GRADES = pd.DataFrame({"image": list("abcde"),
                       "prob_0": [0.8, 0.3, 0.2, 0.1, 0.1], "prob_1": [0.1, 0.6, 0.7, 0.8, 0.2],
                       "prob_2": [0.1, 0.1, 0.1, 0.1, 0.7]})
GRADE_LABELS = pd.DataFrame({"image": list("abcde"), "label": ["0", "0", "1", "1", "2"]})


def test_kappa_only_for_ordinal_grades(tmp_path):
    unordered = evaluate_predictions(GRADES, GRADE_LABELS, out=tmp_path / "unordered", n_boot=50)
    assert "quadratic_kappa" not in unordered and "quadratic_kappa" not in unordered["ci95"]
    assert "kappa" not in (tmp_path / "unordered" / "report.txt").read_text()
    ordinal = evaluate_predictions(GRADES, GRADE_LABELS, ordinal=True, out=tmp_path / "ordinal", n_boot=50)
    # Confusion [[1, 1, 0], [0, 2, 0], [0, 0, 1]]: kappa = 1 - sum(w O) / sum(w E), w the squared grade distance.
    confusion = np.array(ordinal["confusion_matrix"], float)
    cost = (np.arange(3)[:, None] - np.arange(3)[None, :]) ** 2
    expected = np.outer(confusion.sum(1), confusion.sum(0)) / confusion.sum()
    assert ordinal["quadratic_kappa"] == pytest.approx(1 - (cost * confusion).sum() / (cost * expected).sum())
    assert len(ordinal["ci95"]["quadratic_kappa"]) == 2
    assert "quadratic_kappa" in (tmp_path / "ordinal" / "report.txt").read_text()
    multi = pd.DataFrame({"image": ["a", "b"], "prob_B": [0.9, 0.2], "prob_C": [0.8, 0.7]})
    with pytest.raises(ValueError, match="ordinal=True but predictions are multi-label"):
        evaluate_predictions(multi, pd.DataFrame({"image": ["a", "b"], "label": ["B|C", "C"]}), ordinal=True)
    with pytest.raises(ValueError, match="ordinal=True needs single-label classes"):
        evaluate_predictions(GRADES, GRADE_LABELS, ordinal=True, multi_label=True)


def test_cli_ordinal_switch(tmp_path, capsys):
    GRADES.to_csv(tmp_path / "p.csv", index=False)
    GRADE_LABELS.to_csv(tmp_path / "l.csv", index=False)
    args = ["evaluate", "--predictions", str(tmp_path / "p.csv"), "--labels", str(tmp_path / "l.csv"),
            "--bootstrap", "0"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "quadratic_kappa" not in capsys.readouterr().out
    assert main([*args, "--ordinal", "--out", str(tmp_path / "b")]) == 0
    assert "quadratic_kappa" in capsys.readouterr().out
    assert "quadratic_kappa" in json.loads((tmp_path / "b" / "metrics.json").read_text())


# ----------------------------------------------------------------------------- confusion matrix by class name


def test_report_confusion_matrix_is_labelled_by_class_name():
    # Classes "2", "5", "8": an index header (0 1 2) would read as classes; names only.
    targets = [0, 1, 2, 2, 2]
    probs = np.eye(3)[[0, 1, 1, 2, 0]]  # one "8" read as "5", one as "2"
    report = classification_report(targets, probs, ["2", "5", "8"], multi_label=False)
    lines = report.split("confusion matrix (rows: truth, columns: prediction)\n")[1].splitlines()
    assert lines[0].split()[-3:] == ["2", "5", "8"]
    assert [line.split() for line in lines[1:4]] == [["2", "1", "0", "0"], ["5", "0", "1", "0"],
                                                     ["8", "1", "1", "1"]]
    assert not any(token in {"0", "1"} for token in lines[0].split()[-3:])
