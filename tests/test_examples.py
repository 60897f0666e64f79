"""The scripts in examples/: they import, their --help works, they read the public data sets in their
publishers' layouts (known answers on miniature folders written here), bad layouts stop with a message
naming what is missing, and --quick needs no ../shared/data.

Their quick runs (training included) are CI steps of their own (.ci/run), not tests: here a quick run
is stopped where training would start.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("fastai")
pytest.importorskip("timm")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# _common.py and _miniature.py are the examples' shared code (``from _common import ...``), not examples.
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
LISTED = {"bodypart_unifesp.py", "chest_findings_nih.py", "chest_views.py", "fracture_fracatlas.py",
          "knee_fewlabels.py", "odir_fundus.py", "pneumonia.py"}
# Examples whose --quick this file runs up to training on their synthetic miniature.
QUICK_TO_TRAINING = ["chest_findings_nih.py", "chest_views.py", "knee_fewlabels.py", "pneumonia.py"]


def load(name: str):
    """Import an example (or a shared module) as a module (its ``main`` is not run).

    Run as ``python examples/NAME.py``, an example finds ``_common`` in its own folder; here that
    folder is put on ``sys.path`` the same way.
    """
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{Path(name).stem}", EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def image(path: Path) -> Path:
    """A small gray image at ``path`` (folders created)."""
    from radiology.io import write_image
    return write_image(path, np.full((32, 32), 0.5, np.float32))


class Stop(Exception):
    """Raised by a stand-in for training: the run got that far."""


def stop(*args, **kwargs):
    raise Stop


def test_every_example_is_listed():
    # fracture_fracatlas.py is being added beside these; every other listed example is here.
    assert set(SCRIPTS) <= LISTED and LISTED - {"fracture_fracatlas.py"} <= set(SCRIPTS)
    assert (EXAMPLES / "_common.py").is_file() and "_common.py" not in SCRIPTS
    assert (EXAMPLES / "_miniature.py").is_file() and "_miniature.py" not in SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name, capsys):
    module = load(name)
    assert module.__doc__ and "Usage" in module.__doc__
    with pytest.raises(SystemExit) as stop_:
        module.main(["--help"])
    assert stop_.value.code == 0
    text = capsys.readouterr().out
    assert "--quick" in text and "--out" in text


@pytest.mark.parametrize("name", QUICK_TO_TRAINING)
def test_without_data_or_quick_the_run_says_what_to_give(name, tmp_path):
    with pytest.raises(SystemExit, match=r"give --data PATH .*--quick"):
        load(name).main(["--out", str(tmp_path / "out")])


@pytest.mark.parametrize("name", QUICK_TO_TRAINING)
def test_data_that_is_not_a_folder_is_named(name, tmp_path):
    with pytest.raises(SystemExit, match=r"--data .*absent: not a folder"):
        load(name).main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "out")])


def test_out_inside_data_is_refused(tmp_path):
    root = load("_miniature.py").write_kermany(tmp_path / "data", patients=2)
    with pytest.raises(SystemExit, match="lies inside --data"):
        load("pneumonia.py").main(["--data", str(root), "--out", str(root / "out")])
    assert not (root / "out").exists()


@pytest.mark.parametrize("name", QUICK_TO_TRAINING)
def test_quick_needs_no_shared_data(name, tmp_path, monkeypatch, capsys):
    """``--quick`` alone writes a miniature of the layout under OUT and gets to training on it."""
    monkeypatch.setenv("RADIOLOGY_SHARED_DATA", str(tmp_path / "absent"))
    module = load(name)
    if hasattr(module, "held_out_table"):
        monkeypatch.setattr(module, "held_out_table", stop)
    elif hasattr(module, "pretrain"):
        monkeypatch.setattr(module, "pretrain", stop)
    else:
        monkeypatch.setattr(module.common, "train_predict_evaluate", stop)
    out = tmp_path / "out"
    with pytest.raises(Stop):
        module.main(["--quick", "--quiet", "--out", str(out)])
    text = capsys.readouterr().out
    assert "SYNTHETIC" in text and "skipped" not in text
    assert (out / "miniature").is_dir() and not (tmp_path / "absent").exists()
    assert str(tmp_path) not in text  # no absolute paths


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_example_reads_shared_data(name):
    """No example (nor their shared code) finds data in ``../shared``: a user's fresh clone has none."""
    for path in (EXAMPLES / name, EXAMPLES / "_common.py", EXAMPLES / "_miniature.py"):
        source = path.read_text(encoding="utf-8")
        for way in ("RADIOLOGY_SHARED_DATA", '"shared"', "'shared'"):
            assert way not in source, f"{path.name} mentions {way}"
    example = (EXAMPLES / name).read_text(encoding="utf-8")
    assert "data_root(" in example  # --data, or with --quick alone a synthetic miniature


# -- pneumonia.py: Kermany et al. ---------------------------------------------------------------------------


def kermany(root: Path) -> Path:
    for rel in ("train/PNEUMONIA/person12_bacteria_3.jpeg", "train/PNEUMONIA/person12_bacteria_4.jpeg",
                "test/PNEUMONIA/person7_virus_15.jpeg", "train/NORMAL/IM-0115-0001.jpeg",
                "train/NORMAL/IM-0115-0002.jpeg", "val/NORMAL/NORMAL2-IM-1427-0001.jpeg", "test/NORMAL/odd.jpeg"):
        image(root / "chest_xray" / rel)
    (root / "chest_xray" / "train" / "NORMAL" / ".DS_Store").write_text("not an image")
    return root


@pytest.mark.parametrize("inner", [False, True])
def test_pneumonia_reads_the_publisher_layout(tmp_path, inner):
    module = load("pneumonia.py")
    root = kermany(tmp_path / "download")
    base, table = module.read_layout(root / "chest_xray" if inner else root)
    assert base == root / "chest_xray"
    got = {Path(f).name: (label, patient) for f, label, patient in zip(table["file"], table["label"], table["patient"])}
    assert got == {
        "person12_bacteria_3.jpeg": ("PNEUMONIA", "person12_bacteria"),
        "person12_bacteria_4.jpeg": ("PNEUMONIA", "person12_bacteria"),
        "person7_virus_15.jpeg": ("PNEUMONIA", "person7_virus"),
        "IM-0115-0001.jpeg": ("NORMAL", "IM-0115"),
        "IM-0115-0002.jpeg": ("NORMAL", "IM-0115"),
        "NORMAL2-IM-1427-0001.jpeg": ("NORMAL", "NORMAL2-IM-1427"),
        "odd.jpeg": ("NORMAL", "odd"),
    }
    assert all((base / f).is_file() for f in table["file"])
    assert set(table["split"]) == {"train", "test", "val"}


def test_pneumonia_bad_layouts_are_named(tmp_path):
    module = load("pneumonia.py")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"no chest_xray/\{train,test,val\}/\{NORMAL,PNEUMONIA\} folders"):
        module.read_layout(tmp_path / "empty")
    image(tmp_path / "one" / "chest_xray" / "train" / "NORMAL" / "IM-0001-0001.jpeg")
    with pytest.raises(SystemExit, match="no images of PNEUMONIA"):
        module.read_layout(tmp_path / "one")


def test_pneumonia_miniature(tmp_path):
    base, table = load("pneumonia.py").read_layout(load("_miniature.py").write_kermany(tmp_path / "m"))
    patients = table.groupby("label")["patient"].nunique()
    assert set(patients.index) == {"NORMAL", "PNEUMONIA"} and patients.min() >= 6
    assert table.groupby("patient")["label"].nunique().max() == 1


# -- chest_views.py: ieee8023 covid-chestxray-dataset ----------------------------------------------------------


def covid(root: Path, rows) -> Path:
    root.mkdir(parents=True)
    for row in rows:
        if row["folder"] == "images" and row["filename"] != "gone.png":
            image(root / "images" / row["filename"])
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


ROWS = [
    {"patientid": "19", "view": "PA", "modality": "X-ray", "folder": "images", "filename": "a.jpg"},
    {"patientid": "19", "view": "AP", "modality": "X-ray", "folder": "images", "filename": "b.png"},
    {"patientid": "20", "view": "AP Supine", "modality": "X-ray", "folder": "images", "filename": "c.jpeg"},
    {"patientid": "20", "view": "L", "modality": "X-ray", "folder": "images", "filename": "d.png"},
    {"patientid": "21", "view": "Axial", "modality": "CT", "folder": "volumes", "filename": "e.nii.gz"},
    {"patientid": "22", "view": "PA", "modality": "X-ray", "folder": "images", "filename": "gone.png"},
]


def test_chest_views_reads_the_publisher_layout(tmp_path, capsys):
    table = load("chest_views.py").read_layout(covid(tmp_path / "covid", ROWS))
    assert table.to_dict("list") == {"file": ["images/a.jpg", "images/b.png", "images/c.jpeg"],
                                     "view": ["PA", "AP", "AP_SUPINE"], "patient": ["19", "19", "20"]}
    assert "1 of them without their file" in capsys.readouterr().out


def test_chest_views_bad_layouts_are_named(tmp_path):
    module = load("chest_views.py")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="metadata.csv not found"):
        module.read_layout(tmp_path / "empty")
    root = covid(tmp_path / "noview", [{k: v for k, v in row.items() if k != "view"} for row in ROWS])
    with pytest.raises(SystemExit, match="no column view"):
        module.read_layout(root)
    with pytest.raises(SystemExit, match="no image files of PA, AP or AP Supine"):
        module.read_layout(covid(tmp_path / "lateral", ROWS[3:5]))


def test_chest_views_miniature(tmp_path):
    table = load("chest_views.py").read_layout(load("_miniature.py").write_covid_views(tmp_path / "m"))
    patients = table.groupby("view")["patient"].nunique()
    assert set(patients.index) == {"PA", "AP", "AP_SUPINE"} and patients.min() >= 4


# -- knee_fewlabels.py: Chen et al. OAI KL grades -------------------------------------------------------------


def test_knee_reads_the_publisher_layout(tmp_path):
    module = load("knee_fewlabels.py")
    base = tmp_path / "download" / "kneeKL224"
    for rel in ("train/0/9003175L.png", "train/3/9003175R.png", "val/1/9001695L.png", "test/4/9002411R.png",
                "train/2/9002411L.png"):
        image(base / rel)
    found, table = module.read_layout(tmp_path / "download")  # one level above, as unpacked
    assert found == base
    got = {f: (grade, patient) for f, grade, patient in zip(table["file"], table["kl_grade"], table["patient"])}
    assert got == {"train/0/9003175L.png": (0, "9003175"), "train/3/9003175R.png": (3, "9003175"),
                   "val/1/9001695L.png": (1, "9001695"), "test/4/9002411R.png": (4, "9002411"),
                   "train/2/9002411L.png": (2, "9002411")}


def test_knee_bad_layouts_are_named(tmp_path):
    module = load("knee_fewlabels.py")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"no \{train,val,test\}/\{0,1,2,3,4\} folders"):
        module.read_layout(tmp_path / "empty")
    image(tmp_path / "mild" / "train" / "1" / "9000001L.png")
    with pytest.raises(SystemExit, match="grades 3-4"):
        module.read_layout(tmp_path / "mild")
    with pytest.raises(SystemExit, match="both --radiographs DIR and --localizer"):
        module.main(["--quick", "--radiographs", str(tmp_path), "--out", str(tmp_path / "out")])


def test_knee_task_keeps_participants_whole(tmp_path):
    module = load("knee_fewlabels.py")
    _, source = module.read_layout(load("_miniature.py").write_oai_kl(tmp_path / "m", participants=60))
    assert source.groupby("patient").size().eq(2).all()
    assert source.groupby("patient")["split"].nunique().eq(1).all()
    task = module.make_task(source, module.QUICK, seed=0)
    assert task.groupby("patient")["severe"].nunique().eq(1).all()  # both knees on one side
    assert 0.05 < (task["severe"] == "severe").mean() < 0.25  # about 1 in 8
    assert not task["patient"].str.match(r"^\d{7}$").any()  # opaque groups, no participant ids


# -- chest_findings_nih.py: NIH ChestX-ray14 ------------------------------------------------------------------


def test_nih_finds_images_in_the_kaggle_layout(tmp_path):
    module = load("chest_findings_nih.py")
    image(tmp_path / "images_001" / "images" / "00000001_000.png")
    image(tmp_path / "images_002" / "images" / "00000002_001.png")
    assert module.image_paths(tmp_path, ["00000001_000.png", "00000002_001.png", "absent.png"]) == [
        "images_001/images/00000001_000.png", "images_002/images/00000002_001.png", None]


def test_nih_bad_layouts_are_named(tmp_path):
    module = load("chest_findings_nih.py")
    (tmp_path / "data").mkdir()
    with pytest.raises(SystemExit, match="Data_Entry_2017.csv not found"):
        module.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")])
    pd.DataFrame({"Image Index": ["x.png"], "Finding Labels": ["No Finding"], "Patient ID": ["1"]}).to_csv(
        tmp_path / "data" / "Data_Entry_2017.csv", index=False)
    with pytest.raises(SystemExit, match="none of the 1 images of Data_Entry_2017.csv found"):
        module.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")])
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["Data_Entry_2017.csv"]  # only read


def test_knee_localizer_pickles_other_than_the_published_file_are_refused(tmp_path):
    """``--localizer`` unpickles only the published svm_model.npy (by SHA-256); another pickle stops the run unread."""
    import numpy as np

    module = load("knee_fewlabels.py")
    data = load("_miniature.py").write_oai_kl(tmp_path / "data", participants=20)
    hostile = tmp_path / "svm_model.npy"
    np.save(hostile, np.array([np.zeros(3), 0.5], dtype=object), allow_pickle=True)
    with pytest.raises(SystemExit, match="not the published svm_model.npy"):
        module.main(["--data", str(data), "--out", str(tmp_path / "out"), "--quick", "--quiet",
                     "--radiographs", str(tmp_path), "--localizer", str(hostile)])
