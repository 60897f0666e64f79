"""Faster CPU prediction changes no result: backends agree, decode workers give the in-process table."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

onnxruntime = pytest.importorskip("onnxruntime")

from radiology.cli import main  # noqa: E402
from radiology.models import load_bundle  # noqa: E402
from radiology.predict import Ensemble, predict_table, prediction_inputs  # noqa: E402
from radiology.synthetic import phantom_radiograph, write_phantom_dicom  # noqa: E402


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Real images (pydicom's CT, MR and RGB test files), phantoms in three encodings, and one broken file."""
    from pydicom.data import get_testdata_file

    folder = tmp_path_factory.mktemp("images")
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "SC_rgb_small_odd.dcm", "JPGExtended.dcm"):
        shutil.copy(get_testdata_file(name), folder / name)
    for i, encoding in enumerate(("explicit", "deflated", "rle")):
        write_phantom_dicom(folder / f"phantom{i}.dcm", phantom_radiograph((96, 80), seed=i), encoding=encoding)
    (folder / "broken.dcm").write_bytes(b"not a dicom")
    return folder


def _probs(table: pd.DataFrame) -> np.ndarray:
    return table[[c for c in table.columns if c.startswith("prob_")]].to_numpy(float)


def _same(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    for column in ("image", "prediction", "error"):
        assert table[column].tolist() == expected[column].tolist(), column
    np.testing.assert_allclose(_probs(table), _probs(expected), atol=1e-6, rtol=0)


def test_the_tuned_session_gives_what_a_bare_onnxruntime_session_gives(bundle_folder, images):
    bundle = load_bundle(bundle_folder, backend="onnx")
    inputs = prediction_inputs(images, progress=False)
    arrays = np.stack([bundle.load_sample(paths) for paths, error in zip(inputs.sources, inputs.errors)
                       if "broken" not in str(paths[0])])
    bare = onnxruntime.InferenceSession(str(bundle_folder / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = bare.run(None, {bare.get_inputs()[0].name: arrays})[0]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    for threads in (None, 1, 2):
        np.testing.assert_allclose(load_bundle(bundle_folder, backend="onnx", threads=threads).predict_batch(arrays),
                                   expected, atol=1e-6, rtol=0)


def test_the_session_takes_the_threads_asked_for(bundle_folder):
    from radiology.models.bundle import usable_cores

    assert load_bundle(bundle_folder, backend="onnx", threads=1)._runner.get_session_options().intra_op_num_threads == 1
    assert load_bundle(bundle_folder, backend="onnx")._runner.get_session_options().intra_op_num_threads == \
        usable_cores()
    for wrong in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads"):
            load_bundle(bundle_folder, backend="onnx", threads=wrong)


def test_onnx_and_torch_backends_agree_on_real_images(bundle_folder, images):
    inputs = prediction_inputs(images, progress=False)
    tables = {backend: predict_table(load_bundle(bundle_folder, backend=backend), inputs, batch_size=3,
                                     progress=False) for backend in ("onnx", "export", "eager")}
    assert tables["onnx"]["error"].ne("").sum() == 1 and tables["onnx"].loc[
        tables["onnx"]["image"] == "broken.dcm", "prediction"].item() == ""
    for backend in ("export", "eager"):
        for column in ("image", "prediction", "error"):
            assert tables[backend][column].tolist() == tables["onnx"][column].tolist()
        np.testing.assert_allclose(_probs(tables[backend]), _probs(tables["onnx"]), atol=1e-5, rtol=0)


def test_decode_workers_give_the_in_process_table(bundle_folder, images):
    bundle = load_bundle(bundle_folder, backend="onnx")
    inputs = prediction_inputs(images, progress=False)
    local = predict_table(bundle, inputs, batch_size=3, progress=False)
    # The sequential reference: each file read, then predicted, one at a time.
    ok = local["error"] == ""
    files = [paths for paths, good in zip(inputs.sources, ok) if good]
    np.testing.assert_allclose(_probs(local)[ok.to_numpy()], bundle.predict(files, batch_size=1), atol=1e-6, rtol=0)
    _same(predict_table(bundle, inputs, batch_size=3, progress=False, workers=2), local)
    _same(predict_table(bundle, inputs, batch_size=100, progress=False, workers=1), local)
    # An ensemble (and TTA): every member read by the workers.
    ensemble = Ensemble([bundle, load_bundle(bundle_folder, backend="export")], tta=True)
    _same(predict_table(ensemble, inputs, batch_size=4, progress=False, workers=1),
          predict_table(ensemble, inputs, batch_size=4, progress=False))


def test_workers_and_batch_size_are_checked(bundle, images):
    inputs = prediction_inputs(images, progress=False)
    for wrong in (-1, 1.5, True):
        with pytest.raises(ValueError, match="workers"):
            predict_table(bundle, inputs, workers=wrong, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        predict_table(bundle, inputs, batch_size=0, progress=False)


def test_cli_threads_and_decode_workers_write_the_same_table(bundle_folder, images, tmp_path, capsys):
    outs = {}
    for name, extra in {"default": [], "workers": ["--decode-workers", "1", "--threads", "1"]}.items():
        outs[name] = tmp_path / f"{name}.csv"
        rc = main(["predict", str(bundle_folder), str(images), "--out", str(outs[name]), "--backend", "onnx", "-q",
                   "--batch-size", "4", *extra])
        assert rc == 0, capsys.readouterr()  # the broken file fails, the others are predicted
    def read(path):
        return pd.read_csv(path).fillna({"prediction": "", "error": ""})

    _same(read(outs["workers"]), read(outs["default"]))
    with pytest.raises(SystemExit):
        main(["predict", str(bundle_folder), str(images), "--out", str(tmp_path / "x.csv"), "--decode-workers", "-1"])
