import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pydicom.data
import pytest

from radiology.convert import (
    REPORT_COLUMNS,
    ConvertOptions,
    convert_folder,
    dicom_to_image,
    fit_histogram_bins,
    output_name,
    render,
    render_pipeline,
    sanitize_component,
)
from radiology.dicom import read_dicom
from radiology.io import read_image, to_uint
from radiology.synthetic import phantom_radiograph, write_phantom_dicom
from tests.conftest import correlation


@pytest.fixture
def batch(tmp_path):
    """A folder with 4 good phantoms (2 nested), a truncated file, a text file, a file with no suffix that is not
    DICOM, and a DICOM without pixels."""
    src = tmp_path / "src"
    image = phantom_radiograph((96, 80))
    for i, (photometric, encoding) in enumerate(
        [("MONOCHROME1", "rle"), ("MONOCHROME2", "explicit"), ("MONOCHROME1", "jpeg2000"), ("MONOCHROME2", "deflated")]
    ):
        folder = src / ("study" if i % 2 else "")
        write_phantom_dicom(folder / f"im{i}.dcm", image, photometric=photometric, encoding=encoding,
                            sop_instance_uid=f"1.2.3.{i}")
    good = (src / "im0.dcm").read_bytes()
    (src / "broken.dcm").write_bytes(good[: len(good) // 2])
    (src / "notes.txt").write_text("not an image")
    (src / "IM0009").write_text("not an image either")
    shutil.copy(pydicom.data.get_testdata_file("rtplan.dcm"), src / "plan.dcm")
    return src


def test_options_are_validated():
    with pytest.raises(ValueError, match="normalization"):
        render_pipeline(normalization="zscore")
    with pytest.raises(ValueError, match="8-bit only"):
        ConvertOptions(fmt="jpg", bit_depth=16)
    with pytest.raises(ValueError, match="resize: longest cannot be combined with width"):
        render_pipeline(width=5, longest=5)
    assert ConvertOptions(fmt="JPG").extension == ".jpg"


def test_output_names_are_sanitized():
    assert output_name("a/b/c.dcm", ".png") == "a/b/c.png"
    assert output_name("1.2.840.1", ".png") == "1.2.840.1.png"
    assert sanitize_component("..") == "__"
    assert sanitize_component("../x") == "_._x"
    assert "/" not in sanitize_component("a/b\\c") and "\\" not in sanitize_component("a/b\\c")


def test_render_resizes_and_pads():
    image = read_dicom(pydicom.data.get_testdata_file("JPEG2000.dcm"))  # 1024 x 256
    out = render(image, render_pipeline(longest=128, pad_square=True))
    assert out.shape == (128, 128) and out[:, :40].max() == 0.0


def test_folder_conversion_end_to_end(batch, tmp_path):
    dst = tmp_path / "dst"
    report = convert_folder(batch, dst, progress=False)
    table = pd.read_csv(dst / "conversion_report.csv", keep_default_na=False)
    assert tuple(table.columns) == REPORT_COLUMNS
    assert len(table) == 8 and report.summary == "4 converted, 3 failed, 1 skipped"
    status = dict(zip(table.source, table.status))
    assert status["broken.dcm"] == status["IM0009"] == status["plan.dcm"] == "failed"
    reasons = dict(zip(table.source, table.reason))
    assert "truncated" in reasons["broken.dcm"] or "file ends" in reasons["broken.dcm"]
    assert reasons["IM0009"] == "not a DICOM file"
    # The package's one rule for inputs (radiology.files): a note beside the images is reported, not failed.
    assert status["notes.txt"] == "skipped" and "not an image input" in reasons["notes.txt"]
    assert reasons["plan.dcm"] == "no pixel data"
    ok = table[table.status == "ok"]
    assert sorted(ok.output) == ["im0.png", "im2.png", "study/im1.png", "study/im3.png"]
    assert set(ok.photometric) == {"MONOCHROME1", "MONOCHROME2"} and (ok.rows.astype(int) == 96).all()
    images = [read_image(dst / o) for o in ok.output]
    for image in images[1:]:  # same content whatever the polarity or encoding
        assert np.abs(image - images[0]).max() <= 1 / 255
    leftovers = [p for p in dst.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_workers_give_the_same_result(batch, tmp_path):
    one = convert_folder(batch, tmp_path / "one", progress=False).table
    two = convert_folder(batch, tmp_path / "two", workers=2, progress=False).table
    assert one.equals(two)
    for output in one.output[one.status == "ok"]:
        assert (tmp_path / "one" / output).read_bytes() == (tmp_path / "two" / output).read_bytes()


def test_skip_existing_resumes(batch, tmp_path):
    dst = tmp_path / "dst"
    convert_folder(batch, dst, progress=False)
    (dst / "im0.png").unlink()
    before = (dst / "im2.png").stat().st_mtime_ns
    report = convert_folder(batch, dst, skip_existing=True, progress=False)
    assert report.summary == "1 converted, 3 failed, 4 skipped"  # 3 resumed, and notes.txt
    assert (dst / "im0.png").exists() and (dst / "im2.png").stat().st_mtime_ns == before


def test_collisions_are_reported_not_overwritten(tmp_path):
    src = tmp_path / "src"
    write_phantom_dicom(src / "a.dcm", phantom_radiograph((64, 64), seed=1))
    write_phantom_dicom(src / "a.DICOM", phantom_radiograph((64, 64), seed=2))
    report = convert_folder(src, tmp_path / "dst", progress=False)
    table = report.table.set_index("source")
    assert table.loc["a.DICOM", "status"] == "ok" and table.loc["a.DICOM", "output"] == "a.png"
    # The later input is not lost: it gets a suffix, and the report says why.
    assert table.loc["a.dcm", "status"] == "ok" and table.loc["a.dcm", "output"] == "a_2.png"
    assert "collides with a.DICOM" in table.loc["a.dcm", "reason"]
    dst = tmp_path / "dst"
    assert correlation(read_image(dst / "a.png"), read_image(dst / "a_2.png")) < 0.999


def test_uid_naming_stays_inside_dst_and_detects_duplicates(tmp_path):
    src = tmp_path / "src"
    image = phantom_radiograph((64, 64))
    write_phantom_dicom(src / "evil.dcm", image)
    ds = pydicom.dcmread(src / "evil.dcm")
    ds.SOPInstanceUID = "../../escaped"
    ds.save_as(src / "evil.dcm")
    write_phantom_dicom(src / "x1.dcm", image, sop_instance_uid="1.2.3")
    write_phantom_dicom(src / "x2.dcm", image, sop_instance_uid="1.2.3")
    dst = tmp_path / "out" / "dst"
    report = convert_folder(src, dst, ConvertOptions(naming="uid"), workers=2, progress=False)
    table = report.table.set_index("source")
    evil = table.loc["evil.dcm", "output"]
    assert (dst / evil).resolve().parent == dst.resolve()
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path / "out" / "escaped.png").exists()
    statuses = sorted(table.loc[["x1.dcm", "x2.dcm"], "status"])
    assert statuses == ["failed", "ok"]
    assert report.count("ok") == 2 and len(list(dst.glob("*.png"))) == 2


def test_dst_inside_src_is_not_reconverted(batch):
    dst = batch / "converted"
    convert_folder(batch, dst, progress=False)
    again = convert_folder(batch, dst, progress=False)
    assert len(again.table) == 8


def test_file_list_and_usage_errors(batch, tmp_path):
    files = [batch / "im0.dcm", batch / "study" / "im1.dcm"]
    report = convert_folder(files, tmp_path / "dst", progress=False)
    assert sorted(report.table.output) == ["im0.png", "study/im1.png"]
    with pytest.raises(FileNotFoundError):
        convert_folder(tmp_path / "missing", tmp_path / "dst")
    with pytest.raises(ValueError, match="different folder"):
        convert_folder(batch, batch)


def test_16bit_output_keeps_the_detail(tmp_path):
    path = write_phantom_dicom(tmp_path / "p.dcm", phantom_radiograph((64, 64)), bits_stored=16)
    report = convert_folder([path], tmp_path / "dst", ConvertOptions(bit_depth=16), progress=False)
    written = read_image(tmp_path / "dst" / report.table.output[0])
    expected = dicom_to_image(path)
    assert np.array_equal(to_uint(written, 16), to_uint(expected, 16))
    assert len(np.unique(to_uint(written, 16))) > 256


def test_fitted_bins_drive_histogram_conversion(batch, tmp_path):
    files = sorted(batch.glob("im*.dcm"))
    bins = fit_histogram_bins(files, n_bins=16)
    options = ConvertOptions(render_pipeline(normalization="histogram", bins=bins))
    a = dicom_to_image(files[0], options)  # MONOCHROME1
    b = dicom_to_image(files[1], options)  # MONOCHROME2, same content
    assert np.allclose(a, b, atol=1e-5) and correlation(a, dicom_to_image(files[1])) > 0.9


def test_no_phi_in_outputs(tmp_path):
    src = tmp_path / "src"
    write_phantom_dicom(src / "p.dcm", phantom_radiograph((64, 64)), patient_name="Doe^Jane")
    dst = tmp_path / "dst"
    convert_folder(src, dst, progress=False)
    for path in dst.rglob("*"):
        if path.is_file():
            assert b"Doe" not in path.read_bytes()
    assert os.listdir(dst)  # something was written
    assert Path(dst / "p.png").exists()


def test_uid_naming_resume_and_missing_uid(tmp_path):
    src = tmp_path / "src"
    image = phantom_radiograph((64, 64))
    write_phantom_dicom(src / "a.dcm", image, sop_instance_uid="1.2.5")
    write_phantom_dicom(src / "b.dcm", image)
    ds = pydicom.dcmread(src / "b.dcm")
    del ds.SOPInstanceUID
    ds.save_as(src / "b.dcm", enforce_file_format=False)
    options = ConvertOptions(naming="uid")
    first = convert_folder(src, tmp_path / "dst", options, progress=False).table.set_index("source")
    assert first.loc["a.dcm", "output"] == "1.2.5.png"
    assert first.loc["b.dcm", "reason"] == "no SOPInstanceUID to name the output"
    again = convert_folder(src, tmp_path / "dst", options, skip_existing=True, progress=False).table
    assert again.set_index("source").loc["a.dcm", "status"] == "skipped"


def test_convert_options_are_one_pipeline(tmp_path):
    from radiology.pipeline import CLAHE, VOI, Decode, Histogram, PadSquare, Pipeline, Resize

    options = ConvertOptions(render_pipeline(Pipeline([CLAHE()]), normalization="histogram", n_bins=10, longest=64,
                                             pad_square=True, polarity=False, frame=0))
    assert options.to_pipeline() == Pipeline([Histogram(n_bins=10), CLAHE(), Resize(longest=64), PadSquare()],
                                             Decode(polarity=False))
    # A normalizing pipeline replaces `normalization`; the pipeline's own decode is kept.
    own = Pipeline([VOI(index=1)], Decode(color="keep"))
    assert ConvertOptions(own).to_pipeline() == own
    assert render_pipeline(own, normalization="minmax") == own
    path = write_phantom_dicom(tmp_path / "p.dcm", phantom_radiograph((64, 48)), photometric="MONOCHROME1")
    assert np.array_equal(dicom_to_image(path, options), options.to_pipeline().read(path))


def test_convert_folder_writes_what_pipeline_read_returns(batch, tmp_path):
    options = ConvertOptions(render_pipeline(normalization="minmax", width=40), bit_depth=16)
    report = convert_folder(batch, tmp_path / "out", options, progress=False)
    pipeline = options.to_pipeline()
    for row in report.table[report.table.status == "ok"].itertuples():
        written = read_image(tmp_path / "out" / row.output)
        assert np.array_equal(to_uint(written, 16), to_uint(pipeline.read(batch / row.source), 16))


def test_fit_histogram_bins_takes_a_pipeline(batch):
    from radiology.pipeline import Decode, Pipeline

    files = sorted(batch.rglob("im*.dcm"))
    assert np.array_equal(fit_histogram_bins(files, n_bins=8), fit_histogram_bins(files, Pipeline(), n_bins=8))
    unflipped = fit_histogram_bins(files, Pipeline(decode=Decode(polarity=False)), n_bins=8)
    assert unflipped.min() >= 0  # MONOCHROME1 values are no longer negated


def test_pipeline_input_of_a_colour_image_is_bt601(tmp_path):
    from radiology.convert import pipeline_input
    from radiology.io import write_image

    rgb = np.zeros((8, 8, 3), np.float32)
    rgb[..., 1] = 1.0
    path = write_image(tmp_path / "g.png", rgb)
    assert np.allclose(pipeline_input(path), 0.587, atol=1e-6)
    assert pipeline_input(path, render_pipeline(color="keep")).shape == (8, 8, 3)


@pytest.mark.parametrize("text, fragment", [
    ('{"format": "radiology.pipeline", "version": 2, "steps": [{"name": "clahe", "clip_limit": -2}]}',
     "step 0 (clahe): clip_limit must be > 0, got -2"),
    ('{"format": "radiology.pipeline", "version": 2, "steps": [{"name": "sharpen"}]}', "unknown step 'sharpen'"),
    ("{not json", "not valid JSON"),
])
def test_cli_bad_pipeline_file_exits_2_with_one_line(batch, tmp_path, capsys, text, fragment):
    from radiology.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text(text)
    commands = (["convert", str(batch), str(tmp_path / "o"), "-q"], ["preview", str(batch), str(tmp_path / "s.png")],
                ["fit-bins", str(batch), str(tmp_path / "b.json")])
    for command in commands:
        assert main([*command, "--pipeline", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "bad.json" in err and fragment in err, err
    assert main(["convert", str(batch), str(tmp_path / "o"), "--pipeline", str(tmp_path / "none.json")]) == 2
    assert "none.json" in capsys.readouterr().err


def test_cli_takes_decoding_from_the_pipeline_file(tmp_path):
    from radiology.cli import build_parser
    from radiology.cli.convert import _render_options
    from radiology.pipeline import CLAHE, Decode, Pipeline

    path = Pipeline([CLAHE()], Decode(polarity=False, color="keep")).save(tmp_path / "p.yaml")
    parse = build_parser().parse_args
    options = _render_options(parse(["preview", "x", "s.png", "--pipeline", str(path)]))
    assert isinstance(options, ConvertOptions)
    assert options.to_pipeline().decode == Decode(polarity=False, color="keep")
    options = _render_options(parse(["preview", "x", "s.png", "--pipeline", str(path), "--color", "gray"]))
    assert options.to_pipeline().decode == Decode(polarity=False)
    assert _render_options(parse(["preview", "x", "s.png"])).to_pipeline() == Pipeline()


def test_a_third_collision_in_a_folder_named_folder_gets_the_next_suffix(tmp_path):
    # Three inputs share the output a.png inside a folder whose name contains "folder": the
    # third must become a_3.png (the clash's wording once decided whether to try further).
    src = tmp_path / "src"
    for n, name in enumerate(("a.DICOM", "a.Dcm", "a.dcm"), start=1):
        write_phantom_dicom(src / "folder" / name, phantom_radiograph((64, 64), seed=n))
    report = convert_folder(src, tmp_path / "dst", progress=False)
    table = report.table.set_index("source")
    assert table.loc["folder/a.DICOM", "output"] == "folder/a.png"
    assert table.loc["folder/a.Dcm", "output"] == "folder/a_2.png"
    assert table.loc["folder/a.dcm", "status"] == "ok" and table.loc["folder/a.dcm", "output"] == "folder/a_3.png"
    assert "collides with folder/a.DICOM" in table.loc["folder/a.dcm", "reason"]
