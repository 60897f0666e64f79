"""Predictions matched to labels without guessing: on ``image`` or ``SOPInstanceUID``, and Kaggle submissions.

Every table is built by hand (or taken from the real UNIFESP / fracture label files), so every
expected number is known.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radiology.cli import USAGE_ERROR, main
from radiology.evaluate import decision_metrics, evaluate_predictions

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _table(images, uids, shown, classes=("neg", "pos")) -> pd.DataFrame:
    """A table as ``radiology predict`` writes it now: image, SOPInstanceUID, prediction, prob_..., error."""
    table = pd.DataFrame({"image": images, "SOPInstanceUID": uids, "prediction": shown})
    for name in classes:
        table[f"prob_{name}"] = [0.8 if s == name else 0.2 / (len(classes) - 1) for s in shown]
    table["error"] = ""
    return table


PREDICTIONS = _table(["scans/p1/a.dcm", "scans/p1/b.dcm", "scans/p2/c.dcm", "x.png"],
                     ["1.1", "1.2", "1.3", ""], ["pos", "neg", "pos", "neg"])


def test_labels_keyed_by_uid_only_are_matched_on_the_uid_column():
    # As ../shared/data/fracture/labels.csv: a file column that is not the predictions' image, and the UID.
    labels = pd.DataFrame({"file": ["dicom/1.dcm", "dicom/2.dcm", "dicom/3.dcm", "other.png"],
                           "SOPInstanceUID": ["1.1", "1.2", "1.3", ""], "label": ["pos", "pos", "pos", "neg"]})
    metrics = evaluate_predictions(PREDICTIONS, labels, n_boot=0)
    # The image file's empty UID is no key: the label row without a UID is not matched to it.
    assert (metrics["matched_on"], metrics["n"], metrics["missing"]) == ("SOPInstanceUID", 3, 1)
    assert metrics["accuracy"] == pytest.approx(2 / 3)


def test_when_both_could_match_image_is_used_unless_the_uid_is_named():
    labels = pd.DataFrame({"image": ["scans/p1/a.dcm", "scans/p1/b.dcm", "scans/p2/c.dcm"],
                           "SOPInstanceUID": ["1.2", "1.1", "1.3"], "label": ["pos", "neg", "pos"]})
    by_image = evaluate_predictions(PREDICTIONS, labels, n_boot=0)
    assert (by_image["matched_on"], by_image["accuracy"]) == ("image", 1.0)
    by_uid = evaluate_predictions(PREDICTIONS, labels, image_cols="SOPInstanceUID", n_boot=0)
    assert by_uid["matched_on"] == "SOPInstanceUID" and by_uid["accuracy"] == pytest.approx(1 / 3)
    named_image = evaluate_predictions(PREDICTIONS, labels, image_cols="image", n_boot=0)
    assert named_image["accuracy"] == 1.0


def test_an_earlier_table_without_uids_still_matches_a_named_uid_column_on_image():
    # Predicted from a CSV of UIDs before the column existed: the image values are the UIDs.
    earlier = PREDICTIONS.drop(columns=["SOPInstanceUID"]).assign(image=["1.1", "1.2", "1.3", "x.png"])
    labels = pd.DataFrame({"SOPInstanceUID": ["1.1", "1.2", "1.3"], "label": ["pos", "neg", "neg"]})
    metrics = evaluate_predictions(earlier, labels, image_cols="SOPInstanceUID", n_boot=0)
    assert (metrics["matched_on"], metrics["accuracy"]) == ("image", pytest.approx(2 / 3))


def test_no_shared_column_is_one_error_naming_each_tables_columns():
    labels = pd.DataFrame({"file": ["a.dcm"], "uid": ["1.1"], "label": ["pos"]})
    with pytest.raises(ValueError, match=r"predictions has \['image', 'SOPInstanceUID', 'prediction'.*labels has "
                                         r"\['file', 'uid', 'label'\]") as raised:
        evaluate_predictions(PREDICTIONS, labels, n_boot=0)
    assert "\n" not in str(raised.value)
    with pytest.raises(ValueError, match=r"no column 'path' \(image_cols\); columns are \['file', 'uid', 'label'\]"):
        evaluate_predictions(PREDICTIONS, labels, image_cols="path", n_boot=0)


def test_nothing_matching_is_an_error_not_a_score_of_no_rows():
    labels = pd.DataFrame({"SOPInstanceUID": ["9.9", "9.8"], "label": ["pos", "neg"]})
    with pytest.raises(ValueError, match=r"no labeled image of labels has a prediction in predictions: none of its "
                                         r"2 labeled rows' 'SOPInstanceUID' values is among the 3 'SOPInstanceUID'"):
        evaluate_predictions(PREDICTIONS, labels, n_boot=0)
    only_images = PREDICTIONS.assign(SOPInstanceUID="")
    with pytest.raises(ValueError, match="no row without an error has a 'SOPInstanceUID' value"):
        evaluate_predictions(only_images, labels, n_boot=0)


@pytest.mark.skipif(not (DATA / "fracture" / "labels.csv").is_file(), reason="../shared/data absent")
def test_real_fracture_labels_match_on_their_uids():
    labels = pd.read_csv(DATA / "fracture" / "labels.csv", dtype=str, keep_default_na=False).head(40)
    flipped = {"normal": "fracture", "fracture": "normal"}
    shown = [flipped[v] if i < 6 else v for i, v in enumerate(labels["label"])]
    # The predictions name the files otherwise (another folder), and come in another order.
    table = _table([f"elsewhere/{i}.dcm" for i in range(40)], labels["SOPInstanceUID"].tolist(), shown,
                   classes=("fracture", "normal")).iloc[::-1]
    metrics = evaluate_predictions(table, labels, n_boot=0)
    assert (metrics["matched_on"], metrics["n"], metrics["accuracy"]) == ("SOPInstanceUID", 40, 34 / 40)


# ----------------------------------------------------------------------------- Kaggle submissions


def _submission(uids, targets) -> pd.DataFrame:
    return pd.DataFrame({"SOPInstanceUID": uids, "Target": targets})


def test_a_single_label_submission_scores_decisions_only(tmp_path):
    submission = _submission(["1.1", "1.2", "1.3", "1.4", "1.5"], ["3", "11", "3", "13", ""])
    labels = _submission(["1.4", "1.3", "1.2", "1.1", "1.5", "1.6"], ["13", "11", "11", "3", "3", ""])
    metrics = evaluate_predictions(submission, labels, out=tmp_path, n_boot=0)
    assert (metrics["n"], metrics["missing"], metrics["unlabeled"]) == (4, 1, 1)  # 1.5: an empty target
    assert metrics["multi_label"] is False and metrics["probabilities"] is False
    assert metrics["accuracy"] == 0.75 and metrics["balanced_accuracy"] == pytest.approx(2.5 / 3)
    assert metrics["f1"] == pytest.approx({"3": 2 / 3, "11": 2 / 3, "13": 1.0})
    assert metrics["recall"] == {"3": 1.0, "11": 0.5, "13": 1.0}
    assert metrics["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]  # classes as numbers: 3, 11, 13
    assert not {"macro_auc", "auc", "ece"} & set(metrics)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion_matrix.png", "metrics.json", "report.txt"]
    report = (tmp_path / "report.txt").read_text()
    assert "no probabilities: AUC, calibration and ROC are not computed" in report and "macro_auc" not in report


def test_a_multi_label_submission_scores_subset_accuracy_and_f1():
    submission = _submission(["1", "2", "3", "4"], ["3", "3", "3 13", "11 13"])
    labels = _submission(["1", "2", "3", "4"], ["3", "11", "3 13", "13"])
    metrics = evaluate_predictions(submission, labels, n_boot=0)
    assert metrics["multi_label"] is True and metrics["subset_accuracy"] == 0.5
    assert metrics["f1"] == pytest.approx({"3": 0.8, "11": 0.0, "13": 1.0})
    assert metrics["macro_f1"] == pytest.approx(0.6) and metrics["micro_f1"] == pytest.approx(8 / 11)  # tp 4 fp 2 fn 1
    with pytest.raises(ValueError, match="labels row 2: several classes in 'Target'.*multi_label=False"):
        evaluate_predictions(submission, labels, multi_label=False, n_boot=0)
    with pytest.raises(ValueError, match="thresholds: predictions is a Kaggle submission"):
        evaluate_predictions(submission, labels, thresholds=[0.5, 0.5, 0.5], n_boot=0)


def test_a_multi_label_submission_that_predicts_nothing_is_scored_not_dropped():
    # An empty Target predicts no label and an empty label cell is an image with no finding, as Kaggle scores them:
    # dropping the rows would hide every image the model called clear (here the miss of row 2).
    submission = _submission(["1", "2", "3", "4"], ["3 13", "", "3", ""])
    labels = _submission(["1", "2", "3", "4"], ["3 13", "13", "3", ""])
    metrics = evaluate_predictions(submission, labels, n_boot=0)
    assert (metrics["n"], metrics["missing"], metrics["unlabeled"]) == (4, 0, 0)
    assert metrics["subset_accuracy"] == 0.75  # rows 1, 3 and 4 exact; row 2 missed its 13
    assert metrics["micro_f1"] == pytest.approx(6 / 7)  # tp 3, fp 0, fn 1


def test_a_submission_gets_intervals_of_decision_metrics_only():
    rng = np.random.default_rng(0)
    truth = rng.choice(["3", "11"], 60)
    shown = np.where(rng.random(60) < 0.8, truth, np.where(truth == "3", "11", "3"))
    uids = [f"1.{i}" for i in range(60)]
    metrics = evaluate_predictions(_submission(uids, shown), _submission(uids, truth), n_boot=100)
    assert set(metrics["ci95"]) == {"accuracy", "balanced_accuracy", "macro_f1", "sensitivity", "specificity"}
    low, high = metrics["ci95"]["accuracy"]
    assert low < metrics["accuracy"] < high and metrics["accuracy"] == float(np.mean(truth == shown))


def test_decision_metrics_match_hand_counts_and_refuse_bad_shapes():
    result = decision_metrics([0, 1, 1, 2], [0, 1, 2, 2], ["3", "11", "13"], multi_label=False)
    assert result["accuracy"] == 0.75 and result["recall"] == {"3": 1.0, "11": 0.5, "13": 1.0}
    with pytest.raises(ValueError, match="decisions must be"):
        decision_metrics([0, 1], [0, 1, 1], ["a", "b"], multi_label=False)
    with pytest.raises(ValueError, match="class index 2 but only 2 classes"):
        decision_metrics([0, 1], [0, 2], ["a", "b"], multi_label=False)


@pytest.mark.skipif(not (DATA / "unifesp_layout" / "test_labels.csv").is_file(), reason="../shared/data absent")
def test_cli_scores_a_submission_against_the_real_unifesp_labels(tmp_path, capsys):
    labels = DATA / "unifesp_layout" / "test_labels.csv"
    truth = pd.read_csv(labels, dtype=str, keep_default_na=False)
    other = {"3": "11", "11": "3"}
    submission = truth.assign(Target=[other[t] if i < 3 else t for i, t in enumerate(truth["Target"])]).iloc[::-1]
    path = tmp_path / "submission.csv"
    submission.to_csv(path, index=False)
    assert main(["evaluate", "--predictions", str(path), "--labels", str(labels), "--out", str(tmp_path / "e"),
                 "--bootstrap", "0"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"{len(truth)} scored (0 without prediction): accuracy {1 - 3 / len(truth):.3f}")
    assert printed[1] == "scored as single-label, matched on SOPInstanceUID; 0 unlabeled label rows skipped"
    assert printed[2] == "scores: decisions only, no probabilities: AUC, calibration and ROC are not computed"
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(1 - 3 / len(truth)) and metrics["probabilities"] is False


def test_cli_no_shared_column_is_one_line(tmp_path, capsys):
    predictions, labels = tmp_path / "p.csv", tmp_path / "l.csv"
    PREDICTIONS.to_csv(predictions, index=False)
    pd.DataFrame({"file": ["a.dcm"], "label": ["pos"]}).to_csv(labels, index=False)
    code = main(["evaluate", "--predictions", str(predictions), "--labels", str(labels), "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert code == USAGE_ERROR and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "['file', 'label']" in err and "'SOPInstanceUID'" in err and "--image-col" in err
    assert not (tmp_path / "e").exists()
