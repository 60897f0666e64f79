"""explain_inputs end to end: overlays on the original images, the table, labels, views, errors, no PHI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("pytorch_grad_cam")

from pydicom.data import get_testdata_file  # noqa: E402

from radiology.explain import (  # noqa: E402
    EXPLANATION_COLUMNS,
    FIGURE_SIZE,
    cam_to_original,
    explain_inputs,
    figure_layout,
    original_view,
    overlay,
    overlay_name,
)
from radiology.io import read_image, write_image  # noqa: E402
from radiology.models import RadiographClassifier, save_bundle  # noqa: E402
from radiology.pipeline import CLAHE, Percentile, Pipeline, Resize  # noqa: E402
from radiology.predict import prediction_inputs  # noqa: E402
from radiology.synthetic import write_phantom_dicom  # noqa: E402
from tests.explain.conftest import ARCH, CLASSES, LAYER, PIPELINE, lesion_image, make_bundle  # noqa: E402


def _write_lesions(folder, seed: int, count: int, positive=True):
    """PNG originals under ``folder`` (some in a subfolder with a space); returns {relative path: Lesion}."""
    rng = np.random.default_rng(seed)
    written = {}
    for index in range(count):
        lesion = lesion_image(rng, positive if isinstance(positive, bool) else bool(index % 2))
        name = f"case {index}.png" if index % 2 else f"sub/img{index}.png"
        write_image(folder / name, lesion.image)
        written[name] = lesion
    return written


def _near(row, lesion) -> bool:
    return np.hypot(row.peak_x - lesion.center[0], row.peak_y - lesion.center[1]) <= 1.5 * lesion.radius + 2


# --------------------------------------------------------------------------- names, original view


def test_overlay_name_is_a_safe_file_name():
    assert overlay_name("sub dir/a b.dcm", "nodule") == "sub_dir_a_b__nodule.png"
    assert overlay_name("x.PNG") == "x.png"
    assert overlay_name("../../etc/passwd", "l/r") == "etc_passwd__l_r.png"
    assert overlay_name("1.2.840.10008", "a") == "1.2.840.10008__a.png"  # no known suffix: kept whole
    assert overlay_name("...", "?") == "x__x.png"
    long = overlay_name("a" * 500, "b" * 500, "gradcam")
    assert len(long.encode()) <= 255 - 8 and long.startswith("aaaa") and long.endswith("__gradcam.png")
    assert long != overlay_name("a" * 499, "b" * 500, "gradcam")  # shortened names keep a hash of the whole
    # Letters of any script are kept, NFC-normalized, as convert keeps them.
    assert overlay_name("胸部/画像.dcm", "結節") == "胸部_画像__結節.png"
    assert overlay_name("Mu\u0308ller.dcm") == "M\u00fcller.png"
    assert len(overlay_name("é" * 300, "gradcam").encode()) <= 255 - 8


def test_original_view_is_the_normalized_image_before_any_geometry(tmp_path):
    path = write_phantom_dicom(tmp_path / "a.dcm", lesion_image(np.random.default_rng(0), True).image,
                               photometric="MONOCHROME1", bits_stored=12)
    stages = PIPELINE.trace(path, with_geometry=True)
    raw = stages[0][1]
    assert raw.dtype.kind in "iu"  # decoded stored values
    view = original_view(stages)
    assert view.shape == raw.shape and view.dtype == np.float32
    assert view.min() >= 0 and view.max() <= 1
    assert np.array_equal(view, stages[1][1])  # the implied percentile stage, not the cropped one
    # An image file: the file itself, when the first step already moves pixels.
    png = write_image(tmp_path / "a.png", stages[1][1])
    stages = Pipeline([Resize(width=16), CLAHE()]).trace(png, with_geometry=True)
    assert np.array_equal(original_view(stages), stages[0][1])
    with pytest.raises(ValueError):
        original_view([])


# --------------------------------------------------------------------------- single label


def test_explain_inputs_peaks_on_the_lesion_in_original_pixels(lesion_model, tmp_path):
    written = _write_lesions(tmp_path / "in", seed=21, count=6)
    bundle = make_bundle(lesion_model, tmp_path)
    table = explain_inputs(bundle, tmp_path / "in", tmp_path / "out", label="lesion", target_layer=LAYER,
                           batch_size=4, progress=False)
    assert list(table.columns) == list(EXPLANATION_COLUMNS)
    assert sorted(table.image) == sorted(written) and (table.label == "lesion").all()
    assert (table.method == "gradcam").all() and (table.error == "").all()
    on_lesion = 0
    for row in table.itertuples():
        lesion = written[row.image]
        drawn = read_image(tmp_path / "out" / row.overlay)
        # A figure: the original's geometry at a readable size, with caption and colour bar.
        layout = figure_layout(lesion.image.shape)
        assert drawn.shape == (*layout.shape, 3) and max(drawn.shape[:2]) == FIGURE_SIZE
        on_lesion += _near(row, lesion)
    assert on_lesion >= 5, table
    # The probability of the explained label, as the bundle predicts it.
    probs = bundle.predict([tmp_path / "in" / name for name in table.image])
    assert np.allclose(table.probability, probs[:, CLASSES.index("lesion")], atol=1e-5)
    # The CSV is the table.
    saved = pd.read_csv(tmp_path / "out" / "explanations.csv", keep_default_na=False)
    assert list(saved.columns) == list(EXPLANATION_COLUMNS)
    assert saved.overlay.tolist() == table.overlay.tolist()
    assert saved.peak_x.astype(int).tolist() == table.peak_x.tolist()
    assert np.allclose(saved.probability.astype(float), table.probability, atol=1e-6)


def test_explain_inputs_native_figures_keep_the_original_pixels(lesion_model, tmp_path):
    written = _write_lesions(tmp_path / "in", seed=33, count=1)
    bundle = make_bundle(lesion_model, tmp_path)
    with pytest.raises(ValueError, match="figure size"):  # before any work
        explain_inputs(bundle, tmp_path / "in", tmp_path / "bad", figure_size=64, progress=False)
    assert not (tmp_path / "bad").exists()
    table = explain_inputs(bundle, tmp_path / "in", tmp_path / "out", label="lesion", target_layer=LAYER,
                           figure_size=None, progress=False)
    lesion, row = written["sub/img0.png"], table.iloc[0]
    drawn = read_image(tmp_path / "out" / row.overlay)
    layout = figure_layout(lesion.image.shape, None)
    assert drawn.shape == (*layout.shape, 3) and (layout.rows, layout.cols) == lesion.image.shape
    # The image part is overlay() on the original, pixel for pixel; the peak is in its pixels.
    stages = PIPELINE.trace(tmp_path / "in" / "sub" / "img0.png", with_geometry=True)
    _, image, matrix = stages[-1]
    from radiology.explain import compute_cam

    cam = compute_cam(bundle.model, bundle.model_input(image, "x")[None], targets=1, target_layer=LAYER)[0]
    original = original_view(stages)
    expected = overlay(original, cam_to_original(cam, matrix, original.shape))
    part = np.round(drawn[layout.top:layout.top + layout.rows, :layout.cols] * 255).astype(np.uint8)
    assert np.abs(part.astype(int) - expected.astype(int)).max() <= 2
    assert _near(row, lesion)
    # A smaller figure: the same peak (original pixels) in the table.
    small = explain_inputs(bundle, tmp_path / "in", tmp_path / "small", label="lesion", target_layer=LAYER,
                           figure_size=200, progress=False)
    assert max(read_image(tmp_path / "small" / small.overlay[0]).shape[:2]) == 200
    assert (small.peak_x[0], small.peak_y[0]) == (row.peak_x, row.peak_y)


def test_explain_inputs_default_label_is_the_prediction(lesion_model, tmp_path):
    _write_lesions(tmp_path / "in", seed=22, count=4, positive=None)
    bundle = make_bundle(lesion_model, tmp_path)
    table = explain_inputs(bundle, tmp_path / "in", tmp_path / "out", method="hirescam", progress=False)
    probs = bundle.predict([tmp_path / "in" / name for name in table.image])
    assert table.label.tolist() == [CLASSES[i] for i in probs.argmax(1)]
    assert set(table.label) == set(CLASSES)  # both outcomes occur (two normal, two lesion images)
    assert all(name.endswith(f"__{label}__hirescam.png") for name, label in zip(table.overlay, table.label))


def test_explain_inputs_from_a_bundle_folder(lesion_model, tmp_path):
    folder = save_bundle(tmp_path / "bundle", lesion_model, PIPELINE, {"classes": CLASSES}, size=64)
    written = _write_lesions(tmp_path / "in", seed=23, count=2)
    table = explain_inputs(folder, tmp_path / "in" / "sub" / "img0.png", tmp_path / "out", method="eigencam",
                           progress=False)
    assert table.overlay.tolist() == [f"img0__{table.label[0]}__eigencam.png"]
    assert (tmp_path / "out" / table.overlay[0]).is_file()
    assert 0 <= table.peak_x[0] < written["sub/img0.png"].image.shape[1]
    with pytest.raises(ValueError, match="device"):
        from radiology.models import load_bundle

        explain_inputs(load_bundle(folder), tmp_path / "in", tmp_path / "out", device="meta", progress=False)


# --------------------------------------------------------------------------- multi-label, views


def test_explain_inputs_multi_label_explains_each_positive_label(lesion_model, tmp_path):
    _write_lesions(tmp_path / "in", seed=24, count=2)
    files = sorted(p.relative_to(tmp_path / "in").as_posix() for p in (tmp_path / "in").rglob("*.png"))
    # Every label above a threshold of 0: a map per label and image.
    everything = make_bundle(lesion_model, tmp_path, multi_label=True, thresholds=[0.0, 0.0])
    table = explain_inputs(everything, tmp_path / "in", tmp_path / "all", target_layer=LAYER, progress=False)
    assert sorted(zip(table.image, table.label)) == sorted((f, c) for f in files for c in CLASSES)
    assert table.overlay.is_unique and all((tmp_path / "all" / name).is_file() for name in table.overlay)
    probs = everything.predict([tmp_path / "in" / name for name in table.image])  # sigmoid, per label
    assert np.allclose(table.probability, [p[CLASSES.index(c)] for p, c in zip(probs, table.label)], atol=1e-5)
    # The maps differ per label: the lesion map peaks on the lesion.
    lesion_rows = table[table.label == "lesion"].set_index("image")
    normal_rows = table[table.label == "normal"].set_index("image")
    assert any(lesion_rows.loc[f, "peak_x"] != normal_rows.loc[f, "peak_x"] or
               lesion_rows.loc[f, "peak_y"] != normal_rows.loc[f, "peak_y"] for f in files)
    # Nothing above a threshold of 1: one row per image, no label, no overlay.
    nothing = make_bundle(lesion_model, tmp_path, multi_label=True, thresholds=[1.0, 1.0])
    table = explain_inputs(nothing, tmp_path / "in", tmp_path / "none", progress=False)
    assert sorted(table.image) == files and (table.label == "").all() and (table.overlay == "").all()
    assert table.probability.isna().all()
    assert table.peak_x.isna().all() and sorted(p.name for p in (tmp_path / "none").iterdir()) == ["explanations.csv"]


def test_explain_inputs_multi_view_csv(lesion_model, tmp_path):
    two = RadiographClassifier(ARCH, 2, in_chans=1, views=2, fusion="mean", drop_rate=0.0)
    two.load_state_dict(lesion_model.state_dict())
    rng = np.random.default_rng(25)
    normal, sick = lesion_image(rng, False), lesion_image(rng, True)
    write_image(tmp_path / "in" / "n.png", normal.image)
    write_image(tmp_path / "in" / "s.png", sick.image)
    pd.DataFrame({"front": ["n.png", "n.png"], "side": ["s.png", "missing.png"]}).to_csv(
        tmp_path / "in" / "pairs.csv", index=False)
    bundle = make_bundle(two, tmp_path, views=("front", "side"))
    table = explain_inputs(bundle, tmp_path / "in" / "pairs.csv", tmp_path / "out", label="lesion",
                           target_layer=LAYER, progress=False)
    ok, failed = table[table.error == ""], table[table.error != ""]
    assert ok.image.tolist() == ["n.png", "s.png"] and ok.overlay.tolist() == ["n__front__lesion__gradcam.png",
                                                                              "s__side__lesion__gradcam.png"]
    assert _near(ok.iloc[1], sick)
    assert failed.image.tolist() == ["n.png|missing.png"] and "missing.png" in failed.error.iloc[0]
    assert failed.overlay.tolist() == [""]
    # Explicit columns, and a root the CSV is relative to.
    (tmp_path / "elsewhere").mkdir()
    pd.DataFrame({"a": ["n.png"], "b": ["s.png"]}).to_csv(tmp_path / "elsewhere" / "x.csv", index=False)
    table = explain_inputs(bundle, tmp_path / "elsewhere" / "x.csv", tmp_path / "out2", image_cols="a,b",
                           root=tmp_path / "in", label="lesion", target_layer=LAYER, progress=False)
    assert table.overlay.tolist() == ["n__front__lesion__gradcam.png", "s__side__lesion__gradcam.png"]


# --------------------------------------------------------------------------- errors, identifiers


def test_explain_inputs_records_bad_inputs_and_goes_on(lesion_model, tmp_path):
    _write_lesions(tmp_path / "in", seed=26, count=1)
    (tmp_path / "in" / "broken.dcm").write_bytes(b"DICM but not really")
    np.save(tmp_path / "in" / "volume.npy", np.zeros((2, 3, 4, 5), np.float32))
    bundle = make_bundle(lesion_model, tmp_path)
    table = explain_inputs(bundle, tmp_path / "in", tmp_path / "out", progress=False)
    assert table.image.tolist() == ["broken.dcm", "sub/img0.png", "volume.npy"]
    errors = dict(zip(table.image, table.error))
    assert errors["sub/img0.png"] == "" and errors["broken.dcm"] and errors["volume.npy"]
    assert table.set_index("image").loc["broken.dcm", "overlay"] == ""


def test_explain_inputs_into_the_same_folder_loses_nothing(lesion_model, tmp_path):
    _write_lesions(tmp_path / "in", seed=29, count=2)
    (tmp_path / "in" / "notes.txt").write_text("not an input")
    bundle = make_bundle(lesion_model, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    mine = write_image(out / "case_1__lesion__gradcam.png", np.zeros((4, 4), np.float32))  # a user's file
    mine_bytes = mine.read_bytes()
    first = explain_inputs(bundle, tmp_path / "in", out, label="lesion", target_layer=LAYER, progress=False)
    assert sorted(first.image) == ["case 1.png", "sub/img0.png"]  # notes.txt is not an input
    assert mine.read_bytes() == mine_bytes and "case_1__lesion__gradcam-1.png" in set(first.overlay)
    # Another method adds its rows and files; the same method again replaces its own rows.
    second = explain_inputs(bundle, tmp_path / "in", out, label="lesion", method="eigencam", progress=False)
    again = explain_inputs(bundle, tmp_path / "in", out, label="lesion", target_layer=LAYER, progress=False)
    assert again.overlay.tolist() == first.overlay.tolist()
    saved = pd.read_csv(out / "explanations.csv", keep_default_na=False)
    assert len(saved) == 4 and sorted(saved.method) == ["eigencam"] * 2 + ["gradcam"] * 2
    assert set(saved.overlay) == set(first.overlay) | set(second.overlay)
    assert all((out / name).is_file() for name in saved.overlay) and mine.read_bytes() == mine_bytes
    # Another file called explanations.csv is never overwritten.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "explanations.csv").write_text("patient,score\n1,2\n")
    with pytest.raises(ValueError, match="not an explanations table"):
        explain_inputs(bundle, tmp_path / "in", foreign, progress=False)
    assert (foreign / "explanations.csv").read_text() == "patient,score\n1,2\n"


def test_explain_inputs_adds_to_a_table_of_an_earlier_version(lesion_model, tmp_path):
    # explanations.csv without the probability column: read, kept, rewritten with an empty probability.
    _write_lesions(tmp_path / "in", seed=34, count=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "explanations.csv").write_text("image,label,method,overlay,peak_x,peak_y,error\n"
                                          "old.png,lesion,gradcam,old__lesion__gradcam.png,3,4,\n")
    table = explain_inputs(make_bundle(lesion_model, tmp_path), tmp_path / "in", out, progress=False)
    saved = pd.read_csv(out / "explanations.csv", keep_default_na=False)
    assert list(saved.columns) == list(EXPLANATION_COLUMNS) and saved.image.tolist() == ["old.png", "sub/img0.png"]
    assert saved.probability.tolist()[0] == "" and float(saved.probability[1]) == pytest.approx(table.probability[0])
    assert saved.peak_x.tolist()[0] == 3
    # A folder holding such a table is an earlier output folder, as one holding a current table.
    inside = tmp_path / "in" / "old_cams"
    inside.mkdir()
    (inside / "explanations.csv").write_text("image,label,method,overlay,peak_x,peak_y,error\n")
    write_image(inside / "x__lesion__gradcam.png", np.zeros((8, 8), np.float32))
    again = explain_inputs(make_bundle(lesion_model, tmp_path), tmp_path / "in", tmp_path / "out2", progress=False)
    assert again.image.tolist() == ["sub/img0.png"]


def test_explain_inputs_validates(lesion_model, tmp_path):
    bundle = make_bundle(lesion_model, tmp_path)
    _write_lesions(tmp_path / "in", seed=27, count=1)
    with pytest.raises(ValueError, match="method must be one of"):
        explain_inputs(bundle, tmp_path / "in", tmp_path / "out", method="gradcam2")
    with pytest.raises(ValueError, match="label 'fracture'"):
        explain_inputs(bundle, tmp_path / "in", tmp_path / "out", label="fracture")
    with pytest.raises(ValueError, match="batch_size"):
        explain_inputs(bundle, tmp_path / "in", tmp_path / "out", batch_size=0)
    with pytest.raises(ValueError, match="root and image_cols"):
        explain_inputs(bundle, prediction_inputs(tmp_path / "in"), tmp_path / "out", image_cols="image")
    with pytest.raises(FileNotFoundError):
        explain_inputs(bundle, tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        explain_inputs(tmp_path / "not_a_bundle", tmp_path / "in", tmp_path / "out")


def test_explain_inputs_never_writes_header_identifiers(lesion_model, tmp_path):
    # DICOMs referred to by SOP Instance UID from a CSV: names come from the files, not the headers.
    rng = np.random.default_rng(28)
    uid, patient = "1.2.826.0.1.3680043.8.498.4242", "PATIENT-ID-7731"
    write_phantom_dicom(tmp_path / "in" / "studies" / "scan.dcm", lesion_image(rng, True).image,
                        sop_instance_uid=uid, patient_id=patient, patient_name="DOE^JANE")
    pd.DataFrame({"image": [uid]}).to_csv(tmp_path / "in" / "list.csv", index=False)
    bundle = make_bundle(lesion_model, tmp_path, pipeline=Pipeline([Percentile()] + list(PIPELINE.steps)))
    table = explain_inputs(bundle, tmp_path / "in" / "list.csv", tmp_path / "out", progress=False)
    assert table.error.tolist() == [""] and table.overlay[0].startswith("studies_scan__")
    written = [p.name for p in (tmp_path / "out").iterdir()]
    for text in [*written, (tmp_path / "out" / "explanations.csv").read_text().split("\n", 1)[1]]:
        assert patient not in text and "DOE" not in text
    assert not any(uid in name for name in written)


def test_explain_inputs_on_a_real_dicom(tmp_path):
    # pydicom's CT: a 128 x 128 frame resized and padded, explained by an untrained model.
    model = RadiographClassifier(ARCH, 2, in_chans=3).eval()
    bundle = make_bundle(model, tmp_path, pipeline=Pipeline([Percentile(), Resize(width=48, height=32)]),
                         size=(32, 48))
    table = explain_inputs(bundle, get_testdata_file("CT_small.dcm"), tmp_path / "out", method="gradcampp",
                           progress=False)
    assert table.error.tolist() == [""]
    assert read_image(tmp_path / "out" / table.overlay[0]).shape == (*figure_layout((128, 128)).shape, 3)
    assert 0 <= table.probability[0] <= 1


def test_explain_inputs_skips_its_own_output_folder(lesion_model, tmp_path):
    _write_lesions(tmp_path, seed=29, count=1)
    bundle = make_bundle(lesion_model, tmp_path)
    first = explain_inputs(bundle, tmp_path, tmp_path / "explained", progress=False)
    again = explain_inputs(bundle, tmp_path, tmp_path / "explained", progress=False)
    assert first.image.tolist() == again.image.tolist() == ["sub/img0.png"]


def test_explain_inputs_skips_earlier_output_folders_inside_its_input(lesion_model, tmp_path, caplog):
    _write_lesions(tmp_path, seed=31, count=1)
    bundle = make_bundle(lesion_model, tmp_path)
    explain_inputs(bundle, tmp_path, tmp_path / "cams" / "gradcam", progress=False)
    (tmp_path / "cams" / "gradcam" / "nested").mkdir()
    write_image(tmp_path / "cams" / "gradcam" / "nested" / "copy.png", np.zeros((8, 8), np.float32))
    # A folder holding some other explanations.csv is an ordinary input folder.
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "explanations.csv").write_text("patient,comment\n")
    write_image(tmp_path / "notes" / "x.png", lesion_image(np.random.default_rng(1), True).image)
    with caplog.at_level("WARNING", logger="radiology.explain.overlays"):
        table = explain_inputs(bundle, tmp_path, tmp_path / "eigen", method="eigencam", progress=False)
    assert sorted(table.image) == ["notes/x.png", "sub/img0.png"]
    assert "left out 2 file(s) in earlier explain output folder(s): cams/gradcam" in caplog.text
    with pytest.raises(ValueError, match="no files to explain outside earlier explain output folders"):
        explain_inputs(bundle, tmp_path / "cams", tmp_path / "again", progress=False)


def test_explain_inputs_refuses_an_input_as_out_before_loading(tmp_path):
    _write_lesions(tmp_path / "in", seed=31, count=1)
    (tmp_path / "x.csv").write_text("image\nsub/img0.png\n")
    not_a_bundle = tmp_path / "not_a_bundle"  # loading it would raise FileNotFoundError: it is never loaded
    with pytest.raises(ValueError, match="is the input folder"):
        explain_inputs(not_a_bundle, tmp_path / "in", tmp_path / "in", progress=False)
    with pytest.raises(ValueError, match="is the input folder"):
        explain_inputs(not_a_bundle, tmp_path / "x.csv", tmp_path / "in", root=tmp_path / "in", progress=False)
    with pytest.raises(ValueError, match="is a file"):
        explain_inputs(not_a_bundle, tmp_path / "in", tmp_path / "in" / "sub" / "img0.png", progress=False)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "in").rglob("*")) == ["in/sub",
                                                                                               "in/sub/img0.png"]


def test_explain_inputs_error_cells_hold_no_absolute_path(lesion_model, tmp_path):
    _write_lesions(tmp_path / "in", seed=32, count=1)
    (tmp_path / "in" / "sub" / "broken.png").write_bytes(b"not an image")
    table = explain_inputs(make_bundle(lesion_model, tmp_path), (tmp_path / "in").resolve(), tmp_path / "out",
                           target_layer=LAYER, progress=False)
    error = table.set_index("image").loc["sub/broken.png", "error"]
    assert error.startswith("sub/broken.png") and str(tmp_path.resolve()) not in error
    assert str(tmp_path.resolve()) not in (tmp_path / "out" / "explanations.csv").read_text()
