import subprocess
import sys

import pandas as pd
import pydicom
import pytest

from radiology.cli import main
from radiology.intensity import load_histogram_bins
from radiology.io import read_image
from radiology.synthetic import phantom_radiograph, write_phantom_dicom


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "src"
    image = phantom_radiograph((80, 64))
    write_phantom_dicom(src / "a" / "one.dcm", image, photometric="MONOCHROME1", sop_instance_uid="1.2.3.1")
    write_phantom_dicom(src / "a" / "two.dcm", image, encoding="rle", sop_instance_uid="1.2.3.2")
    ds = pydicom.dcmread(src / "a" / "two.dcm")
    ds.SOPInstanceUID = "../../../escape"
    ds.save_as(src / "evil.dcm")
    good = (src / "a" / "one.dcm").read_bytes()
    (src / "cut.dcm").write_bytes(good[: len(good) - 5000])
    (src / "junk.bin").write_bytes(b"\x00\x01garbage" * 10)
    return src


def test_convert_cli_end_to_end(folder, tmp_path, capsys):
    dst = tmp_path / "dst"
    code = main(["convert", str(folder), str(dst), "--width", "32", "--bit-depth", "16", "-q"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("3 converted, 2 failed, 0 skipped")
    table = pd.read_csv(dst / "conversion_report.csv", keep_default_na=False)
    assert len(table) == 5 and set(table.status) == {"ok", "failed"}
    for output in table.output[table.status == "ok"]:
        assert read_image(dst / output).shape == (40, 32)
    assert main(["convert", str(folder), str(dst), "--strict", "-q"]) == 1
    assert main(["convert", str(folder), str(dst), "--skip-existing", "-q"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("0 converted, 2 failed, 3 skipped")


def test_uid_naming_cannot_escape(folder, tmp_path):
    dst = tmp_path / "deep" / "dst"
    assert main(["convert", str(folder), str(dst), "--naming", "uid", "--workers", "2", "-q"]) == 0
    written = {p.name for p in dst.glob("*.png")}
    assert written == {"1.2.3.1.png", "1.2.3.2.png", "_._.._.._escape.png"}
    assert not list((tmp_path).glob("escape*")) and not list((tmp_path / "deep").glob("escape*"))


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing"), str(tmp_path / "dst")]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(tmp_path), str(tmp_path / "d"), "--bit-depth", "12"])
    assert exit_info.value.code == 2


def test_console_script_runs_as_module(folder, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "radiology", "convert", str(folder / "a"), str(tmp_path / "d"), "-q", "--strict"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2 converted, 0 failed, 0 skipped")


def test_fit_bins_then_convert(folder, tmp_path, capsys):
    bins = tmp_path / "bins.json"
    assert main(["fit-bins", str(folder / "a"), str(bins), "--n-bins", "16"]) == 0
    assert len(load_histogram_bins(bins)) > 5
    assert main(["convert", str(folder / "a"), str(tmp_path / "d"), "--histogram-bins", str(bins), "-q"]) == 0
    assert "2 converted" in capsys.readouterr().out


def test_metadata_cli_hides_phi_unless_asked(tmp_path, capsys):
    src = tmp_path / "src"
    write_phantom_dicom(src / "p.dcm", phantom_radiograph((64, 64)), patient_name="Doe^Jane")
    assert main(["metadata", str(src)]) == 0
    plain = capsys.readouterr().out
    assert "Doe" not in plain and "CR" in plain
    csv = tmp_path / "meta.csv"
    assert main(["metadata", str(src), "-o", str(csv), "--include-phi"]) == 0
    assert "Doe^Jane" in csv.read_text()


def test_preview_and_pipeline_conversion(folder, tmp_path, capsys):
    from radiology.pipeline import CLAHE, CleanBackground, Percentile, Pipeline

    pipeline = Pipeline([Percentile(), CleanBackground(), CLAHE()]).save(tmp_path / "pipe.yaml")
    sheet = tmp_path / "sheet.png"
    assert main(["preview", str(folder / "a"), str(sheet), "--pipeline", str(pipeline), "--tile", "64"]) == 0
    image = read_image(sheet)
    assert image.shape[1] == 4 * 64  # input + 3 steps
    dst = tmp_path / "d"
    assert main(["convert", str(folder / "a"), str(dst), "--pipeline", str(pipeline), "-q"]) == 0
    assert "2 converted" in capsys.readouterr().out
    assert main(["preview", str(tmp_path / "missing"), str(sheet)]) == 2
