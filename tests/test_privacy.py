"""No output of any command names the patient: not the folder the images came from, not the DICOM header.

The inputs sit in a patient-named folder and every DICOM header carries a name, an ID and a birth
date. Each command runs as a user would run it (``radiology.cli.main``), with a failing input so that
error cells are written too; then every file under the outputs is read whole (and every member of a
ZIP archive, as ``model.pt2`` is) and searched for the patient's traces and for the
absolute path of the test folder.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pandas as pd
import pydicom
import pytest

pytest.importorskip("fastai")
pytest.importorskip("timm")
pytest.importorskip("onnxruntime")

from radiology.cli import main  # noqa: E402
from radiology.synthetic import write_findings_dataset  # noqa: E402

NAME, PATIENT_ID, BIRTH_DATE = "Doe^John", "PID12345", "19700101"
FOLDER = f"Doe^John_{BIRTH_DATE}"
# Three- and four-letter names occur by chance in megabytes of weights: binary files are searched for
# the longer traces only, text files also for each name on its own ("Doe" but not "Does").
SHORT = re.compile(r"(?<![A-Za-z])(Doe|John)(?![a-z])")


def _plant_phi(folder: Path) -> Path:
    """Phantoms and their labels in a patient-named folder, every header naming the patient; returns the CSV."""
    labels = write_findings_dataset(folder, 16, size=(48, 48), seed=7)
    for path in sorted((folder / "images").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, PATIENT_ID, BIRTH_DATE
        ds.save_as(path)
    (folder / "images" / "empty.dcm").write_bytes(b"")  # a folder input that fails: an error cell
    return labels


def _members(path: Path, root: Path) -> list[tuple[str, bytes]]:
    """The file's bytes, and each member of it when it is a ZIP archive (stored or deflated), by name."""
    name = path.relative_to(root).as_posix()
    found = [(name, path.read_bytes())]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            found += [(f"{name}:{member}", archive.read(member)) for member in archive.namelist()]
    return found


def _leaks(data: bytes, traces: tuple[str, ...]) -> list[str]:
    """The traces found in one file's bytes."""
    found = [trace for trace in traces if trace.encode() in data]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return found
    return found + sorted(set(SHORT.findall(text)))


def test_no_output_names_the_patient(tmp_path, monkeypatch, capsys):
    source = tmp_path / FOLDER
    labels = _plant_phi(source)
    out = tmp_path / "out"
    monkeypatch.setenv("RADIOLOGY_CACHE", str(out / "cache"))  # the default cache is an output too
    images = source / "images"
    table = pd.read_csv(labels, dtype=str)
    missing = pd.DataFrame([{"file": "images/missing.dcm", "label": "normal", "patient": "P9"}])
    listed = source / "to_predict.csv"  # a CSV input with a file that does not exist: an error cell
    pd.concat([table, missing]).to_csv(listed, index=False)
    bundle = out / "bundle"

    commands = {
        "convert": ["convert", str(source), str(out / "converted"), "-q"],
        "metadata": ["metadata", str(images), "-o", str(out / "metadata.csv")],
        "train": ["train", "--csv", str(labels), "--image-col", "file", "--label-col", "label", "--group-col",
                  "patient", "--arch", "resnet10t", "--pretrained", "none", "--size", "64", "--epochs", "1",
                  "--head-epochs", "1", "--batch-size", "4", "--out", str(bundle), "-q"],
        "predict folder": ["predict", str(bundle), str(images), "--out", str(out / "folder.csv"), "--backend", "onnx",
                           "-q"],
        "predict CSV": ["predict", str(bundle), str(listed), "--image-col", "file", "--root", str(source),
                        "--out", str(out / "listed.csv"), "--backend", "onnx", "-q"],
        "evaluate": ["evaluate", "--predictions", str(out / "listed.csv"), "--labels", str(listed),
                     "--image-col", "file", "--label-col", "label", "--out", str(out / "evaluation")],
        "explain": ["explain", str(bundle), str(images), "--out", str(out / "cams"), "--device", "cpu", "-q"],
    }
    for name, args in commands.items():
        assert main(args) == 0, f"{name}: {capsys.readouterr().err}"
    # The failing inputs reached the outputs as rows, so their error cells are searched too.
    for table in ("folder.csv", "listed.csv", "cams/explanations.csv", "metadata.csv"):
        assert (pd.read_csv(out / table, keep_default_na=False)["error"] != "").sum() == 1, table

    traces = (NAME, PATIENT_ID, BIRTH_DATE, "1970-01-01", str(tmp_path))
    written = sorted(p for p in out.rglob("*") if p.is_file() and not p.is_symlink())
    assert len(written) > 20  # bundle, predictions, evaluation, overlays, converted images, cache
    leaks = [f"{label}: {', '.join(found)}".replace(str(tmp_path), "<tmp_path>")
             for path in written for label, data in _members(path, out) if (found := _leaks(data, traces))]
    assert not leaks, "outputs naming the patient or the input folder:\n" + "\n".join(leaks)
