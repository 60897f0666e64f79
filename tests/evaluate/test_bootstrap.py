"""Known-answer tests for radiology.evaluate.bootstrap: patient-level bootstrap confidence intervals."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sklearn")

from radiology.cli import main  # noqa: E402
from radiology.evaluate import bootstrap as bootstrap_module  # noqa: E402
from radiology.evaluate import (  # noqa: E402
    bootstrap_intervals,
    classification_metrics,
    evaluate_predictions,
    weighted_metrics,
)
from radiology.evaluate.bootstrap import interval_key  # noqa: E402


def _binary(n, seed=0):
    """Two-class softmax rows with some signal, rounded so that ties occur."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 2, n)
    positive = np.clip(0.5 + 0.35 * (targets - 0.5) * 2 * rng.random(n) + 0.15 * rng.normal(size=n), 0, 1)
    positive = np.round(positive, 2)
    return targets, np.c_[1 - positive, positive]


def _width(interval):
    return interval[1] - interval[0]


# ----------------------------------------------------------------------------- known answers


def test_accuracy_interval_matches_the_normal_approximation():
    # 400 rows, 300 right: p = 0.75, the 95 % interval p +- 1.96 sqrt(p (1 - p) / n) = [0.7076, 0.7924].
    targets = np.zeros(400, np.int64)
    probs = np.tile([[0.2, 0.8]], (400, 1))
    probs[:300] = [0.8, 0.2]
    result = bootstrap_intervals(targets, probs, n_boot=2000, seed=0)
    low, high = result["interval"]["accuracy"]
    half = 1.96 * math.sqrt(0.75 * 0.25 / 400)
    assert low == pytest.approx(0.75 - half, abs=0.01) and high == pytest.approx(0.75 + half, abs=0.01)
    assert low < 0.75 < high
    assert (result["replicates"], result["used"]["accuracy"], result["groups"], result["unit"]) == (
        2000, 2000, 400, "image")


def test_patients_with_two_identical_images_count_once():
    targets, probs = _binary(300, seed=1)
    patients = np.arange(300)
    twice = np.repeat(np.arange(300), 2)  # every patient's image twice, rows of a patient together
    dedup = bootstrap_intervals(targets, probs, n_boot=1000, seed=3)
    patient_level = bootstrap_intervals(targets[twice], probs[twice], groups=patients[twice], n_boot=1000, seed=3)
    image_level = bootstrap_intervals(targets[twice], probs[twice], n_boot=1000, seed=3)
    assert patient_level["unit"] == "patient" and patient_level["groups"] == 300 and image_level["groups"] == 600
    for name in ("accuracy", "macro_auc", "sensitivity"):
        right = _width(patient_level["interval"][name])
        assert right == pytest.approx(_width(dedup["interval"][name]), rel=0.15)
        # Counting each patient twice shrinks the interval by about 1/sqrt(2): wrongly confident.
        assert _width(image_level["interval"][name]) < 0.85 * right


def test_same_seed_same_intervals_and_another_seed_others():
    targets, probs = _binary(200, seed=2)
    first = bootstrap_intervals(targets, probs, n_boot=300, seed=7)
    assert bootstrap_intervals(targets, probs, n_boot=300, seed=7) == first
    assert bootstrap_intervals(targets, probs, n_boot=300, seed=8)["interval"] != first["interval"]


def test_chunking_does_not_change_the_draws(monkeypatch):
    targets, probs = _binary(100, seed=4)
    whole = bootstrap_intervals(targets, probs, n_boot=250, seed=5)
    monkeypatch.setattr(bootstrap_module, "_CELLS_PER_CHUNK", 700)  # chunks of 7 replicates
    assert bootstrap_intervals(targets, probs, n_boot=250, seed=5) == whole


def test_undefined_replicates_are_dropped_and_counted():
    # One positive in 30 images: about (29/30)^30 = 36 % of the resamples miss it, and their AUC is undefined.
    targets = np.zeros(30, np.int64)
    targets[0] = 1
    probs = np.tile([[0.7, 0.3]], (30, 1))
    probs[0] = [0.1, 0.9]
    result = bootstrap_intervals(targets, probs, n_boot=1000, seed=0)
    used = result["used"]
    assert used["accuracy"] == 1000
    assert 550 < used["macro_auc"] < 740 and used["sensitivity"] == used["macro_auc"]
    assert result["interval"]["macro_auc"] == [1.0, 1.0] and result["interval"]["sensitivity"] == [1.0, 1.0]
    # Never defined: no interval rather than a made-up one.
    none = bootstrap_intervals([0, 0, 0], [[0.9, 0.1]] * 3, n_boot=50)
    assert none["interval"]["macro_auc"] is None and none["used"]["macro_auc"] == 0


# ----------------------------------------------------------------------------- weighted metrics


@pytest.mark.parametrize("n_classes", [2, 4])
def test_weighted_metrics_are_those_of_the_repeated_table(n_classes):
    rng = np.random.default_rng(n_classes)
    targets = rng.integers(0, n_classes, 80)
    logits = rng.normal(size=(80, n_classes)) + 1.5 * np.eye(n_classes)[targets]
    probs = np.round(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), 1)  # ties
    weights = rng.integers(0, 4, (3, 80))
    classes = list("abcd")[:n_classes]
    values = weighted_metrics(targets, probs, weights, multi_label=False, ordinal=True)
    for row, w in enumerate(weights):
        expected = classification_metrics(np.repeat(targets, w), np.repeat(probs, w, axis=0), classes,
                                          multi_label=False, ordinal=True)
        for name, value in values.items():
            assert value[row] == pytest.approx(expected[name], abs=1e-9), name
    assert ("ece" in values) == (n_classes == 2)


def test_weighted_multi_label_metrics_are_those_of_the_repeated_table():
    rng = np.random.default_rng(9)
    truth = (rng.random((60, 5)) < [0.5, 0.3, 0.1, 0.05, 0.2]).astype(np.int64)
    probs = np.round(rng.random((60, 5)), 1)
    thresholds = [0.3, 0.5, 0.5, 0.6, 0.5]
    weights = rng.integers(0, 3, (3, 60))
    values = weighted_metrics(truth, probs, weights, multi_label=True, thresholds=thresholds)
    for row, w in enumerate(weights):
        expected = classification_metrics(np.repeat(truth, w, axis=0), np.repeat(probs, w, axis=0), list("ABCDE"),
                                          multi_label=True, thresholds=thresholds)
        expected.update({f"odir_{key}": value for key, value in expected["odir"].items()})
        for name, value in values.items():
            assert value[row] == pytest.approx(expected[name], abs=1e-9), name


def test_bootstrap_is_fast():
    targets, probs = _binary(1000, seed=6)
    started = time.perf_counter()
    bootstrap_intervals(targets, probs, n_boot=1000)
    assert time.perf_counter() - started < 10.0  # about 0.2 s on one core


def test_bootstrap_validation():
    targets, probs = _binary(10)
    with pytest.raises(ValueError, match="n_boot must be a positive integer"):
        bootstrap_intervals(targets, probs, n_boot=0)
    with pytest.raises(ValueError, match="level must lie between 0 and 1"):
        bootstrap_intervals(targets, probs, level=95)
    with pytest.raises(ValueError, match=r"groups must hold one id per sample \(10\)"):
        bootstrap_intervals(targets, probs, groups=["a"] * 9)
    with pytest.raises(ValueError, match="groups holds empty ids"):
        bootstrap_intervals(targets, probs, groups=["a"] * 9 + [""])
    with pytest.raises(ValueError, match="weights have 3 columns for 10 samples"):
        weighted_metrics(targets, probs, np.ones((2, 3)), multi_label=False)
    assert (interval_key(0.95), interval_key(0.8)) == ("ci95", "ci80")


# ----------------------------------------------------------------------------- evaluate_predictions and the CLI


def _tables(n_patients=60, seed=0):
    """Two images per patient (identical rows): a predictions table and a label table with a patient column."""
    targets, probs = _binary(n_patients, seed=seed)
    classes = ["normal", "finding"]
    images = [f"p{p}-{view}.dcm" for p in range(n_patients) for view in ("a", "b")]
    rows = np.repeat(np.arange(n_patients), 2)
    predictions = pd.DataFrame({"image": images, "prediction": [classes[i] for i in probs[rows].argmax(1)],
                                "prob_normal": probs[rows, 0], "prob_finding": probs[rows, 1], "error": ""})
    labels = pd.DataFrame({"image": images, "label": [classes[t] for t in targets[rows]],
                           "patient": [f"P{p:03d}" for p in rows]})
    return predictions, labels


def test_evaluate_predictions_writes_patient_intervals(tmp_path):
    predictions, labels = _tables()
    metrics = evaluate_predictions(predictions, labels, groups="patient", n_boot=500, seed=1, out=tmp_path)
    assert metrics["bootstrap"]["unit"] == "patient" and metrics["bootstrap"]["groups"] == 60
    assert metrics["bootstrap"]["replicates"] == 500 and metrics["bootstrap"]["used"]["accuracy"] == 500
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc", "sensitivity", "specificity", "ece"):
        low, high = metrics["ci95"][name]
        assert low <= metrics[name] <= high, name
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["ci95"] == metrics["ci95"] and written["bootstrap"]["unit"] == "patient"
    report = (tmp_path / "report.txt").read_text()
    low, high = metrics["ci95"]["macro_auc"]
    assert f"macro_auc          {metrics['macro_auc']:.3f} [{low:.3f}, {high:.3f}]" in report
    assert "1000 replicates" not in report and "500 replicates resampling 60 patients" in report
    assert "patient" not in json.dumps(written["bootstrap"]["used"]) and "P000" not in report + json.dumps(written)
    # Image level: each patient counted twice, narrower; another level names another key.
    images = evaluate_predictions(predictions, labels, n_boot=500, seed=1, level=0.9)
    assert images["bootstrap"]["unit"] == "image" and "ci95" not in images
    assert _width(images["ci90"]["accuracy"]) < _width(metrics["ci95"]["accuracy"])


def test_no_bootstrap_no_intervals(tmp_path):
    predictions, labels = _tables(10)
    metrics = evaluate_predictions(predictions, labels, n_boot=0, out=tmp_path)
    assert "ci95" not in metrics and "bootstrap" not in metrics
    assert "ci95" not in json.loads((tmp_path / "metrics.json").read_text())
    assert "[" not in (tmp_path / "report.txt").read_text().split("\n\n")[0]


def test_evaluate_predictions_checks_the_bootstrap_arguments():
    predictions, labels = _tables(10)
    with pytest.raises(ValueError, match="no column 'subject'"):
        evaluate_predictions(predictions, labels, groups="subject")
    labels.loc[3, "patient"] = " "
    with pytest.raises(ValueError, match=r"labels row 3: no patient id in column 'patient' \(groups='patient'"):
        evaluate_predictions(predictions, labels, groups="patient")
    with pytest.raises(ValueError, match="n_boot must be a whole number >= 0"):
        evaluate_predictions(predictions, labels, n_boot=-1)
    with pytest.raises(ValueError, match="level must lie between 0 and 1"):
        evaluate_predictions(predictions, labels, level=1.5)


def test_cli_prints_and_writes_the_intervals(tmp_path, capsys):
    predictions, labels = _tables(40)
    predictions.to_csv(tmp_path / "predictions.csv", index=False)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    args = ["evaluate", "--predictions", str(tmp_path / "predictions.csv"), "--labels", str(tmp_path / "labels.csv")]
    assert main([*args, "--group-col", "patient", "--bootstrap", "300", "--out", str(tmp_path / "e")]) == 0
    printed = capsys.readouterr().out.splitlines()
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert printed[2] == "95% bootstrap intervals (300 replicates over 40 patients):"
    low, high = metrics["ci95"]["macro_auc"]
    assert f"  macro_auc {metrics['macro_auc']:.3f} [{low:.3f}, {high:.3f}]" in printed
    assert metrics["bootstrap"]["unit"] == "patient" and metrics["bootstrap"]["replicates"] == 300
    assert (tmp_path / "e" / "calibration.png").is_file()
    # --bootstrap 0: no intervals; a second run needs --overwrite, calibration.png included.
    assert main([*args, "--bootstrap", "0", "--out", str(tmp_path / "e"), "--overwrite"]) == 0
    assert "bootstrap intervals" not in capsys.readouterr().out
    assert "ci95" not in json.loads((tmp_path / "e" / "metrics.json").read_text())
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "calibration.png").write_bytes(b"mine")
    assert main([*args, "--out", str(tmp_path / "f")]) == 2
    assert "already holds calibration.png" in capsys.readouterr().err


def test_cli_names_its_switches_in_errors(tmp_path, capsys):
    predictions, labels = _tables(10)
    labels.loc[0, "patient"] = ""
    predictions.to_csv(tmp_path / "predictions.csv", index=False)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    args = ["evaluate", "--predictions", str(tmp_path / "predictions.csv"), "--labels", str(tmp_path / "labels.csv"),
            "--out", str(tmp_path / "e")]
    assert main([*args, "--group-col", "patient"]) == 2
    err = capsys.readouterr().err
    assert "line 2: no patient id in column 'patient' (--group-col patient needs" in err and "groups=" not in err
    with pytest.raises(SystemExit):
        main([*args, "--bootstrap", "-5"])
    assert "not a whole number >= 0" in capsys.readouterr().err
