import numpy as np
import pandas as pd
import pytest

from radiology.demo import PHANTOMS, run_demo
from radiology.io import read_image
from radiology.preview import contact_sheet


def test_contact_sheet_layout():
    sheet = contact_sheet([("a", [np.zeros((10, 20)), np.ones((5, 5, 3))]), ("b", [None])], ("x", "y"), tile=32)
    assert sheet.shape == (18 + 2 * (32 + 20), 64, 3)
    assert sheet.dtype == np.float32 and sheet.max() <= 1.0
    with pytest.raises(ValueError):
        contact_sheet([])



def test_pipeline_preview_options_are_deprecated_and_keep_their_decoding():
    from pydicom.data import get_testdata_file

    from radiology.convert import ConvertOptions, render_pipeline
    from radiology.pipeline import CLAHE, Pipeline
    from radiology.preview import pipeline_preview

    path = get_testdata_file("CT_small.dcm")
    flipped = render_pipeline(Pipeline([CLAHE()]), polarity=False)
    with pytest.warns(DeprecationWarning, match="pipeline_preview"):
        old = pipeline_preview([path], Pipeline([CLAHE()]), ConvertOptions(render_pipeline(polarity=False)), tile=32)
    assert np.array_equal(old, pipeline_preview([path], flipped, tile=32))

def test_demo_runs_offline(tmp_path):
    result = run_demo(tmp_path, progress=False)
    table = pd.read_csv(result.report.path, keep_default_na=False)
    assert len(table) >= 95 + len(PHANTOMS)
    assert result.report.count("ok") >= 89 + len(PHANTOMS)
    assert (table[table.source.str.startswith("phantoms/")].status == "ok").all()
    assert (table.status == "failed").sum() <= 6 and (table.reason[table.status == "failed"] != "").all()
    sheet = read_image(result.contact_sheet)
    assert sheet.ndim == 3 and sheet.shape[0] > 1000
    # All phantoms carry the same picture: whatever the encoding and polarity, outputs agree.
    outputs = [read_image(result.images / f"phantoms/{name}.png") for name in PHANTOMS]
    for image in outputs[1:]:
        assert np.corrcoef(image.ravel(), outputs[0].ravel())[0, 1] > 0.99


def test_explain_demo_writes_overlays_of_the_nodule_output(tmp_path):
    pytest.importorskip("timm")
    pytest.importorskip("pytorch_grad_cam")
    from radiology.demo import explain_demo
    from radiology.explain import figure_layout
    from radiology.models import Bundle, RadiographClassifier
    from radiology.synthetic import write_findings_dataset
    from radiology.train import default_pipeline

    test_csv = write_findings_dataset(tmp_path / "test", 4, size=(72, 64), seed=2)
    model = RadiographClassifier("resnet10t", 2).eval()  # untrained: the files and names are the point
    bundle = Bundle(folder=tmp_path, backend="eager", classes=["nodule", "normal"], multi_label=False,
                    thresholds=None, views=("image",), channels=1, size=(64, 64), pipeline=default_pipeline(64),
                    _model=model)
    csv = explain_demo(bundle, test_csv, tmp_path / "explanations", count=3, method="eigencam", progress=False)
    table = pd.read_csv(csv, keep_default_na=False, dtype={"peak_x": int, "peak_y": int})
    files = pd.read_csv(test_csv).file.tolist()
    assert table.image.tolist() == files[:3] and (table.label == "nodule").all() and (table.error == "").all()
    for row in table.itertuples():
        assert row.overlay == f"{row.image.split('/')[-1][:-4]}__nodule__eigencam.png"
        # A readable figure (768 px on its longest side) of the 72 x 64 phantom, with caption and colour bar.
        assert read_image(tmp_path / "explanations" / row.overlay).shape == (*figure_layout((72, 64)).shape, 3)
        assert 0 <= row.peak_x < 64 and 0 <= row.peak_y < 72
    with pytest.raises(ValueError, match="count"):
        explain_demo(bundle, test_csv, tmp_path / "x", count=0)


@pytest.mark.slow
def test_model_demo_end_to_end(tmp_path):
    pytest.importorskip("fastai")
    pytest.importorskip("pytorch_grad_cam")
    from radiology.demo import run_model_demo

    result = run_model_demo(tmp_path, progress=False, epochs=1, train_count=48, test_count=12)
    assert result.bundle.is_dir() and result.predictions.is_file() and result.evaluation.is_dir()
    table = pd.read_csv(result.explanations, keep_default_na=False)
    assert len(table) == 12 and (table.error == "").all() and (table.label == "nodule").all()
    assert all((result.explanations.parent / name).is_file() for name in table.overlay)
    assert "SYNTHETIC" in (tmp_path / "README.txt").read_text()
