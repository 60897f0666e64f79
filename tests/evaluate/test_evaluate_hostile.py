"""Scoring that cannot silently lie: label tables and prediction files that used to give wrong numbers.

Each table is built by hand, so every expected number is known.
"""

from __future__ import annotations

import json
from hashlib import sha256

import pandas as pd
import pytest

from radiology.cli import USAGE_ERROR, main
from radiology.errors import RadiologyError
from radiology.evaluate import evaluate_predictions


def _predictions(rows: dict[str, tuple[str, list[float]]], classes: list[str]) -> pd.DataFrame:
    """A prediction table as ``radiology predict`` writes it: image, prediction, prob_<class>..., error."""
    table = pd.DataFrame({"image": list(rows), "prediction": [shown for shown, _ in rows.values()]})
    for index, name in enumerate(classes):
        table[f"prob_{name}"] = [probs[index] for _, probs in rows.values()]
    table["error"] = ""
    return table


# Sigmoid outputs of a multi-label model over B, C and D: rows do not sum to 1.
MULTI = _predictions({
    "a.dcm": ("B|C", [0.9, 0.8, 0.1]),
    "b.dcm": ("C", [0.2, 0.7, 0.3]),
    "c.dcm": ("D", [0.1, 0.2, 0.9]),
    "d.dcm": ("B|D", [0.8, 0.1, 0.6]),
}, ["B", "C", "D"])

# Softmax outputs of a single-label model: rows sum to 1, the prediction is the most probable class.
SINGLE = _predictions({
    "a.dcm": ("B", [0.7, 0.2, 0.1]),
    "b.dcm": ("C", [0.1, 0.8, 0.1]),
    "c.dcm": ("D", [0.2, 0.2, 0.6]),
    "d.dcm": ("B", [0.5, 0.3, 0.2]),
}, ["B", "C", "D"])


def _labels(values: list[str], column: str = "label") -> pd.DataFrame:
    return pd.DataFrame({"image": ["a.dcm", "b.dcm", "c.dcm", "d.dcm"][:len(values)], column: values})


def test_spaced_tokens_score_as_training_reads_them():
    # The predictions are perfect; "B | C" used to be read as the unknown labels "B " and " C" (macro F1 0.444).
    labels = _labels(["B | C", " C", "D ", "B |D"])
    metrics = evaluate_predictions(MULTI, labels)
    assert metrics["multi_label"] is True
    assert metrics["macro_f1"] == 1.0 and metrics["subset_accuracy"] == 1.0
    assert metrics["support"] == {"B": 2, "C": 2, "D": 2}


def test_unknown_tokens_are_refused_naming_them(tmp_path):
    csv = tmp_path / "labels.csv"
    _labels(["B|C", "C", "D|Fracture", "B|D|Effusion"]).to_csv(csv, index=False)
    with pytest.raises(ValueError, match=r"\['Effusion', 'Fracture'\].*first: .*labels.csv line 4") as caught:
        evaluate_predictions(MULTI, csv)
    assert len(str(caught.value).splitlines()) == 1


def test_multi_label_predictions_are_never_scored_as_single_label():
    # One label per image, each the most probable: read as single-label this scored accuracy 1.000,
    # though B is also predicted for a.dcm and D for d.dcm.
    labels = _labels(["B", "C", "D", "B"])
    metrics = evaluate_predictions(MULTI, labels)
    assert metrics["multi_label"] is True and "accuracy" not in metrics
    # Per label: B found twice, no false alarm (F1 1); C and D each found once with one false alarm (F1 2/3).
    assert metrics["f1"] == pytest.approx({"B": 1.0, "C": 2 / 3, "D": 2 / 3})
    assert metrics["macro_f1"] == pytest.approx(7 / 9)


def test_a_declared_kind_that_disagrees_with_the_predictions_is_refused():
    with pytest.raises(ValueError, match=r"multi_label=True but predictions are single-label \(every probability"):
        evaluate_predictions(SINGLE, _labels(["B", "C", "D", "B"]), multi_label=True)
    with pytest.raises(ValueError, match=r"multi_label=False but predictions are multi-label"):
        evaluate_predictions(MULTI, _labels(["B", "C", "D", "B"]), multi_label=False)
    # Agreeing declarations score as before.
    assert evaluate_predictions(SINGLE, _labels(["B", "C", "D", "B"]), multi_label=False)["accuracy"] == 1.0


def test_multi_label_values_against_single_label_predictions_are_refused(tmp_path):
    csv = tmp_path / "labels.csv"
    _labels(["B", "C", "C|D", "B"]).to_csv(csv, index=False)
    with pytest.raises(ValueError, match=r"labels.csv line 4: multi-label value 'C\|D'.*predictions are single-label"):
        evaluate_predictions(SINGLE, csv)
    two_columns = pd.DataFrame({"image": ["a.dcm"], "B": ["1"], "C": ["0"]})
    with pytest.raises(ValueError, match=r"several label columns \['B', 'C'\] are multi-label"):
        evaluate_predictions(SINGLE, two_columns, label_cols="B,C")


def _bundle(folder, **record):
    """A bundle folder as evaluate reads it: labels.json, listed with its sha256 in the manifest (bundle.json)."""
    folder.mkdir()
    data = json.dumps(record).encode()
    (folder / "labels.json").write_bytes(data)
    manifest = {"format": "radiology.bundle", "version": 1, "files": {"labels.json": sha256(data).hexdigest()}}
    (folder / "bundle.json").write_text(json.dumps(manifest))
    return folder


def test_the_bundle_decides_the_kind_and_must_match_the_predictions(tmp_path):
    multi = _bundle(tmp_path / "multi", classes=["B", "C", "D"], multi_label=True, thresholds=[0.85, 0.5, 0.5])
    labels = _labels(["B | C", "C", "D", "B|D"])
    metrics = evaluate_predictions(MULTI, labels, bundle=multi)
    assert metrics["thresholds"] == [0.85, 0.5, 0.5]
    assert metrics["f1"]["B"] == pytest.approx(2 / 3)  # at 0.85, d.dcm's B (0.8) is missed
    # The thresholds given win over the bundle's.
    assert evaluate_predictions(MULTI, labels, bundle=multi, thresholds=[0.5] * 3)["macro_f1"] == 1.0

    single = _bundle(tmp_path / "single", classes=["B", "C", "D"], multi_label=False)
    with pytest.raises(ValueError, match=r"single.labels.json says single-label but predictions are multi-label"):
        evaluate_predictions(MULTI, labels, bundle=single)
    with pytest.raises(ValueError, match=r"multi.labels.json says multi-label but predictions are single-label"):
        evaluate_predictions(SINGLE, _labels(["B", "C", "D", "B"]), bundle=multi)
    other = _bundle(tmp_path / "other", classes=["B", "C", "E"], multi_label=True)
    with pytest.raises(ValueError, match=r"other.labels.json has classes \['B', 'C', 'E'\] but predictions"):
        evaluate_predictions(MULTI, labels, bundle=other)
    broken = _bundle(tmp_path / "broken", classes=["B", "C", "D"])
    with pytest.raises(ValueError, match=r"broken.labels.json: needs 'classes' \(a list\) and 'multi_label'"):
        evaluate_predictions(MULTI, labels, bundle=broken)
    with pytest.raises(FileNotFoundError, match=r"absent: no such bundle folder"):
        evaluate_predictions(MULTI, labels, bundle=tmp_path / "absent")


def test_a_bundle_changed_since_saving_is_refused(tmp_path):
    # A ValueError and RadiologyError with verify_bundle's one line (test_scoring.py compares them).
    bundle = _bundle(tmp_path / "multi", classes=["B", "C", "D"], multi_label=True, thresholds=[0.5, 0.5, 0.5])
    labels = _labels(["B | C", "C", "D", "B|D"])
    assert evaluate_predictions(MULTI, labels, bundle=bundle)["macro_f1"] == 1.0
    # Thresholds lowered by hand to flatter the scores: the manifest no longer matches.
    (bundle / "labels.json").write_text(json.dumps({"classes": ["B", "C", "D"], "multi_label": True,
                                                    "thresholds": [0.05, 0.05, 0.05]}))
    with pytest.raises(ValueError, match=r"labels.json: sha256 does not match bundle.json") as caught:
        evaluate_predictions(MULTI, labels, bundle=bundle)
    assert isinstance(caught.value, RadiologyError)
    (bundle / "bundle.json").unlink()
    with pytest.raises(ValueError, match=r"bundle.json: missing"):
        evaluate_predictions(MULTI, labels, bundle=bundle)


def test_unlabeled_rows_are_skipped_and_counted():
    # Empty single-label cells are unlabeled, as training reads them (this used to raise "labels ['']").
    metrics = evaluate_predictions(SINGLE, _labels(["B", "", " ", "B"]))
    assert (metrics["n"], metrics["unlabeled"], metrics["missing"]) == (2, 2, 0)
    assert metrics["accuracy"] == 1.0

    # Several 0/1 columns: a row with every cell empty is unlabeled; a half-filled one is an error.
    columns = pd.DataFrame({"image": ["a.dcm", "b.dcm", "c.dcm"], "B": ["1", "", "0"], "C": ["1", "", "0"],
                            "D": ["0", "", "1"]})
    metrics = evaluate_predictions(MULTI, columns, label_cols="B,C,D")
    assert (metrics["n"], metrics["unlabeled"]) == (2, 1) and metrics["subset_accuracy"] == 1.0
    columns.loc[1, ["B", "C", "D"]] = ["1", "yes", "0"]
    with pytest.raises(ValueError, match=r"labels row 1: label column 'C' holds 'yes'; 0/1 label columns take 0"):
        evaluate_predictions(MULTI, columns, label_cols="B,C,D")
    columns.loc[1, ["B", "C", "D"]] = ["1", "", "0"]
    with pytest.raises(ValueError, match=r"labels row 1: label column 'C' holds ''"):
        evaluate_predictions(MULTI, columns, label_cols="B,C,D")


def test_thresholds_follow_label_columns_in_another_order():
    # Label columns D, B (another order than the prob_ columns): each label keeps its own threshold.
    predictions = _predictions({"a.dcm": ("B", [0.5, 0.1, 0.6]), "b.dcm": ("B|D", [0.95, 0.1, 0.15])},
                               ["B", "C", "D"])
    labels = pd.DataFrame({"image": ["a.dcm", "b.dcm"], "D": ["1", "1"], "B": ["0", "1"]})
    metrics = evaluate_predictions(predictions, labels, label_cols="D,B", thresholds=[0.9, 0.5, 0.1])
    assert metrics["thresholds"] == [0.1, 0.9]
    assert metrics["subset_accuracy"] == 1.0


def test_failed_and_repeated_prediction_rows_are_not_scored():
    predictions = pd.concat([SINGLE, SINGLE.iloc[[0]].assign(prediction="C", prob_B=0.1, prob_C=0.8)],
                            ignore_index=True)
    predictions.loc[1, ["prediction", "prob_B", "prob_C", "prob_D", "error"]] = ["", None, None, None, "unreadable"]
    metrics = evaluate_predictions(predictions, _labels(["B", "C", "D", "B"]))
    assert (metrics["n"], metrics["missing"], metrics["accuracy"]) == (3, 1, 1.0)  # a.dcm's first row counts


# ----------------------------------------------------------------------------- the command line


def _write(tmp_path, predictions: pd.DataFrame, labels: pd.DataFrame):
    paths = tmp_path / "predictions.csv", tmp_path / "labels.csv"
    predictions.to_csv(paths[0], index=False)
    labels.to_csv(paths[1], index=False)
    return paths


def test_cli_prints_the_counts_and_the_kind(tmp_path, capsys):
    predictions, labels = _write(tmp_path, SINGLE, _labels(["B", "", "D", "B"]))
    code = main(["evaluate", "--predictions", str(predictions), "--labels", str(labels), "--out", str(tmp_path / "e")])
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("3 scored (0 without prediction): accuracy 1.000")
    assert printed[1] == "scored as single-label; 1 unlabeled label rows skipped"
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["unlabeled"] == 1


def test_cli_refuses_a_kind_mismatch_in_one_line(tmp_path, capsys):
    predictions, labels = _write(tmp_path, SINGLE, _labels(["B", "C", "D", "B"]))
    code = main(["evaluate", "--predictions", str(predictions), "--labels", str(labels), "--multi-label",
                 "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert code == USAGE_ERROR and len(err.strip().splitlines()) == 1
    assert "--multi-label but" in err and "single-label" in err and "Traceback" not in err
    assert not (tmp_path / "e").exists()  # refused before anything was written


def test_cli_never_replaces_a_file_unasked(tmp_path, capsys):
    predictions, labels = _write(tmp_path, SINGLE, _labels(["B", "C", "D", "B"]))
    out = tmp_path / "results"
    out.mkdir()
    (out / "report.txt").write_text("my own report")
    (out / "notes.txt").write_text("my notes")
    args = ["evaluate", "--predictions", str(predictions), "--labels", str(labels), "--out", str(out)]
    assert main(args) == USAGE_ERROR
    err = capsys.readouterr().err
    assert "already holds report.txt" in err and "--overwrite" in err
    assert (out / "report.txt").read_text() == "my own report" and not (out / "metrics.json").exists()
    assert main([*args, "--overwrite"]) == 0
    assert (out / "report.txt").read_text().startswith("samples") and (out / "notes.txt").read_text() == "my notes"
    # --out that is a file (here the label table itself) is refused, however asked.
    assert main([*args[:-1], str(labels), "--overwrite"]) == USAGE_ERROR
    assert "is a file" in capsys.readouterr().err
    assert pd.read_csv(labels, keep_default_na=False)["label"].tolist() == ["B", "C", "D", "B"]


def test_views_are_matched_on_their_joined_image_columns():
    predictions = _predictions({"a-l.dcm|a-r.dcm": ("B", [0.8, 0.2]), "b-l.dcm|b-r.dcm": ("C", [0.3, 0.7])}, ["B", "C"])
    labels = pd.DataFrame({"left": ["b-l.dcm", "a-l.dcm"], "right": ["b-r.dcm", "a-r.dcm"], "label": ["C", "C"]})
    metrics = evaluate_predictions(predictions, labels, image_cols="left,right")
    assert (metrics["n"], metrics["accuracy"], metrics["confusion_matrix"]) == (2, 0.5, [[0, 0], [1, 1]])
