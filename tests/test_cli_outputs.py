"""No model command destroys a file it did not create; exit codes; names and error cells in the outputs.

``predict --out`` and ``explain --out`` are checked before any bundle is loaded (the tests
make loading a bundle fail the test) and never replace an input; outputs honour the umask;
file names that are not UTF-8 get their row, escaped as convert's report escapes them.
"""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("onnxruntime")
pytest.importorskip("pytorch_grad_cam")

import radiology.models  # noqa: E402
from radiology.cli import USAGE_ERROR, build_parser, main  # noqa: E402
from radiology.errors import RadiologyError  # noqa: E402
from radiology.io import read_image, write_image  # noqa: E402
from radiology.models import RadiographClassifier, save_bundle  # noqa: E402
from radiology.pipeline import PadSquare, Percentile, Pipeline, Resize  # noqa: E402
from radiology.synthetic import phantom_radiograph  # noqa: E402

SIZE = 32
BAD_NAME = os.fsdecode(b"bad\xff.png")  # a file name that is not UTF-8 (a surrogate escape in Python)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A tiny two-class bundle (untrained resnet10t, 32 px): what it predicts does not matter here."""
    import torch

    torch.manual_seed(0)
    model = RadiographClassifier("resnet10t", 2, in_chans=1)
    pipeline = Pipeline([Percentile(), Resize(longest=SIZE), PadSquare()])
    return save_bundle(tmp_path_factory.mktemp("bundle") / "bundle", model, pipeline, {"classes": ["a", "b"]},
                       size=SIZE)


@pytest.fixture
def data(tmp_path):
    """``images/`` (two PNGs, one in a subfolder), ``labels.csv`` beside it; returns the paths."""
    images = tmp_path / "images"
    write_image(images / "one.png", phantom_radiograph((40, 36), seed=1))
    write_image(images / "sub" / "two.png", phantom_radiograph((44, 40), seed=2))
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"image": ["one.png", "sub/two.png"], "label": ["a", "b"]}).to_csv(csv, index=False)
    return {"images": images, "csv": csv, "one": images / "one.png", "two": images / "sub" / "two.png"}


@pytest.fixture
def no_loading(monkeypatch):
    """Loading a bundle fails the test: a refused command must stop before any work."""

    def refuse(*args, **kwargs):
        raise AssertionError("a bundle was loaded")

    monkeypatch.setattr(radiology.models, "load_bundle", refuse)


def _snapshot(*paths) -> dict:
    return {path: path.read_bytes() for path in paths}


def _predict(bundle, source, out, *extra) -> int:
    return main(["predict", str(bundle), str(source), "--out", str(out), "-q", *extra])


def _explain(bundle, source, out, *extra) -> int:
    # At 32 px the last stage of resnet10t is 1 x 1: layer2 (4 x 4) has a map to draw.
    return main(["explain", str(bundle), str(source), "--out", str(out), "--device", "cpu", "--target-layer", "layer2",
                 "-q", *extra])


def _one_error_line(capsys, command: str, *words: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"radiology {command}: error: "), lines
    assert all(word in lines[0] for word in words), lines[0]
    return lines[0]


# --------------------------------------------------------------------------- predict --out


def test_predict_refuses_an_out_that_is_a_folder(bundle, data, tmp_path, capsys, no_loading):
    folder = tmp_path / "results"
    folder.mkdir()
    assert _predict(bundle, data["images"], folder) == USAGE_ERROR
    _one_error_line(capsys, "predict", "is a folder")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)], ids=["plain", "overwrite"])
@pytest.mark.parametrize("case", ["csv", "file", "in_folder", "referenced"])
def test_predict_never_replaces_an_input(bundle, data, case, overwrite, capsys, no_loading):
    before = _snapshot(data["csv"], data["one"], data["two"])
    source, out, extra = {
        "csv": (data["csv"], data["csv"], ["--root", str(data["images"])]),
        "file": (data["one"], data["one"], []),
        "in_folder": (data["images"], data["two"], []),
        "referenced": (data["csv"], data["two"], ["--root", str(data["images"])]),
    }[case]
    assert _predict(bundle, source, out, *extra, *overwrite) == USAGE_ERROR
    _one_error_line(capsys, "predict", "input")
    assert _snapshot(data["csv"], data["one"], data["two"]) == before


def test_predict_replaces_only_its_own_table_and_only_with_overwrite(bundle, data, tmp_path, capsys):
    notes = tmp_path / "notes.csv"
    notes.write_text("my,own\n1,2\n")
    assert _predict(bundle, data["images"], notes) == USAGE_ERROR
    _one_error_line(capsys, "predict", "exists", "--overwrite")
    assert _predict(bundle, data["images"], notes, "--overwrite") == USAGE_ERROR
    _one_error_line(capsys, "predict", "not a predictions CSV")
    assert notes.read_text() == "my,own\n1,2\n"

    out = tmp_path / "predictions.csv"
    assert _predict(bundle, data["images"], out) == 0
    first = out.read_bytes()
    assert _predict(bundle, data["one"], out) == USAGE_ERROR  # an earlier run's table, no --overwrite
    assert out.read_bytes() == first
    assert _predict(bundle, data["one"], out, "--overwrite") == 0
    assert pd.read_csv(out)["image"].tolist() == ["one.png"]


def test_predict_into_its_input_folder_replaces_only_its_own_table(bundle, data, capsys):
    report = data["images"] / "conversion_report.csv"  # not an input (a table), but the user's
    report.write_text("source,status\none.png,ok\n")
    assert _predict(bundle, data["images"], report, "--overwrite") == USAGE_ERROR
    _one_error_line(capsys, "predict", "not a predictions CSV")
    assert report.read_text() == "source,status\none.png,ok\n"
    out = data["images"] / "predictions.csv"
    assert _predict(bundle, data["images"], out) == 0
    assert _predict(bundle, data["images"], out, "--overwrite") == 0  # its own table is not an input
    assert sorted(pd.read_csv(out)["image"]) == ["one.png", "sub/two.png"]


def test_out_under_a_file_is_refused_before_any_work(bundle, data, tmp_path, capsys, no_loading):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert _predict(bundle, data["images"], notes / "p.csv") == USAGE_ERROR
    _one_error_line(capsys, "predict", "notes.txt is a file")
    assert _explain(bundle, data["images"], notes / "cams") == USAGE_ERROR
    _one_error_line(capsys, "explain", "notes.txt is a file")
    assert notes.read_text() == "mine"


def test_predict_failure_leaves_no_out_and_no_folder(bundle, data, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "predictions.csv"
    assert _predict(bundle, data["csv"], out, "--image-col", "nothing") == USAGE_ERROR
    _one_error_line(capsys, "predict", "nothing")
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_predict_output_honours_the_umask(bundle, data, tmp_path):
    old = os.umask(0o022)
    try:
        assert _predict(bundle, data["images"], tmp_path / "p.csv") == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "p.csv").stat().st_mode) == 0o644


# --------------------------------------------------------------------------- exit codes


def test_predict_exit_codes(bundle, data, tmp_path, capsys):
    (data["images"] / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "p.csv"
    assert _predict(bundle, data["images"], out) == 0  # every input handled: the broken one has its row
    table = pd.read_csv(out, keep_default_na=False)
    assert table.loc[table.image == "broken.png", "error"].item() != ""
    assert _predict(bundle, data["images"], out, "--overwrite", "--strict") == 1
    broken = tmp_path / "broken"
    (broken / "x.png").parent.mkdir()
    (broken / "x.png").write_bytes(b"")
    (broken / "y.png").write_bytes(b"not an image")
    capsys.readouterr()
    assert _predict(bundle, broken, tmp_path / "none.csv") == 1  # nothing could be predicted
    assert "no input could be predicted" in capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "none.csv")) == 2  # still every input a row, with its reason


def test_explain_exit_codes(bundle, data, tmp_path):
    (data["images"] / "broken.png").write_bytes(b"not an image")
    assert _explain(bundle, data["images"], tmp_path / "x") == 0
    assert _explain(bundle, data["images"], tmp_path / "strict", "--strict") == 1
    assert _explain(bundle, data["images"] / "broken.png", tmp_path / "none") == 1


def test_usage_errors_print_one_line(monkeypatch, bundle, data, tmp_path, capsys):
    class Damaged(RadiologyError, ValueError):
        pass

    def damaged(*args, **kwargs):
        raise Damaged("model.pt2: damaged\n  (truncated archive)")

    monkeypatch.setattr(radiology.models, "load_bundle", damaged)
    assert _predict(bundle, data["images"], tmp_path / "p.csv") == USAGE_ERROR
    _one_error_line(capsys, "predict", "model.pt2: damaged (truncated archive)")
    assert not (tmp_path / "p.csv").exists()


# --------------------------------------------------------------------------- explain --out


def test_explain_refuses_a_file_or_an_input_folder_as_out(bundle, data, tmp_path, capsys, no_loading):
    before = _snapshot(data["csv"], data["one"], data["two"])
    assert _explain(bundle, data["images"], data["one"]) == USAGE_ERROR  # an input file
    _one_error_line(capsys, "explain", "is a file")
    assert _explain(bundle, data["csv"], data["csv"]) == USAGE_ERROR  # the CSV
    _one_error_line(capsys, "explain", "is a file")
    assert _explain(bundle, data["images"], data["images"]) == USAGE_ERROR  # the input folder
    _one_error_line(capsys, "explain", "input folder")
    assert _explain(bundle, data["csv"], data["images"], "--root", str(data["images"])) == USAGE_ERROR
    _one_error_line(capsys, "explain", "input folder")
    assert _snapshot(data["csv"], data["one"], data["two"]) == before
    assert sorted(p.name for p in data["images"].rglob("*")) == ["one.png", "sub", "two.png"]


def test_explain_error_cells_name_inputs_relative_to_the_input(bundle, data, tmp_path):
    (data["images"] / "sub" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "explained"
    assert _explain(bundle, data["images"].resolve(), out) == 0  # an absolute INPUT
    text = (out / "explanations.csv").read_text()
    table = pd.read_csv(out / "explanations.csv", keep_default_na=False)
    error = table.loc[table.image == "sub/broken.png", "error"].item()
    assert "sub/broken.png" in error
    assert str(tmp_path) not in text and str(tmp_path.resolve()) not in text


# --------------------------------------------------------------------------- names that are not UTF-8


@pytest.fixture
def bad_name(data):
    path = data["images"] / BAD_NAME
    try:
        write_image(path, phantom_radiograph((40, 36), seed=3))
    except (OSError, UnicodeError):  # pragma: no cover - a file system that only takes UTF-8 names
        pytest.skip("this file system refuses names that are not UTF-8")
    return path


def test_predict_writes_a_row_for_a_name_that_is_not_utf8(bundle, data, bad_name, tmp_path):
    out = tmp_path / "p.csv"
    assert _predict(bundle, data["images"], out, "--strict") == 0
    table = pd.read_csv(out, keep_default_na=False, encoding="utf-8")
    assert sorted(table.image) == ["bad\\xff.png", "one.png", "sub/two.png"]
    assert (table.error == "").all() and set(table.prediction) <= {"a", "b"}


def test_explain_writes_a_row_for_a_name_that_is_not_utf8(bundle, data, bad_name, tmp_path):
    out = tmp_path / "x"
    assert _explain(bundle, data["images"], out, "--strict") == 0
    table = pd.read_csv(out / "explanations.csv", keep_default_na=False, encoding="utf-8")
    row = table[table.image == "bad\\xff.png"]
    assert len(row) == 1 and row.error.item() == ""
    assert (out / row.overlay.item()).is_file()
    # A second run recognizes the row as its own input's: replaced, not added.
    assert _explain(bundle, data["images"], out) == 0
    assert len(pd.read_csv(out / "explanations.csv", keep_default_na=False)) == len(table)


# --------------------------------------------------------------------------- train flags


def test_train_passes_the_data_flags_to_its_config(monkeypatch, tmp_path):
    import radiology.train

    seen = {}

    class Config:
        @staticmethod
        def from_dict(flags):
            seen.update(flags)
            raise ValueError("stop here")

    monkeypatch.setattr(radiology.train, "TrainConfig", Config)
    argv = ["train", "--csv", "x.csv", "--out", str(tmp_path / "b"), "--skip-unreadable", "--allow-outside-root"]
    assert main(argv) == USAGE_ERROR
    assert seen["skip_unreadable"] is True and seen["allow_outside_root"] is True
    plain = build_parser().parse_args(["train", "--out", "b"])
    assert plain.skip_unreadable is None and plain.allow_outside_root is None  # the config file's value stays


@pytest.mark.parametrize("size, pixels", [("0", None), ("200", 200)])
def test_explain_figure_size(bundle, data, tmp_path, size, pixels):
    """``--figure-size 0`` keeps the original pixels (scale 1); a size sets the figure's longest side."""
    from radiology.explain import figure_layout

    assert _explain(bundle, data["one"], tmp_path / "cams", "--figure-size", size) == 0
    table = pd.read_csv(tmp_path / "cams" / "explanations.csv", keep_default_na=False)
    figure = read_image(tmp_path / "cams" / table.overlay[0])
    layout = figure_layout((40, 36), pixels)
    assert figure.shape == (*layout.shape, 3)
    assert (layout.scale == 1.0) if pixels is None else (max(figure.shape[:2]) == pixels)
    assert 0.0 <= float(table.probability[0]) <= 1.0
