"""A hostile archive: nothing may abort a batch, every input gets a row, nothing outside DST is touched."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import unicodedata
import warnings
from pathlib import Path

import pandas as pd
import pydicom
import pydicom.data
import pytest

from radiology.cli import main
from radiology.convert import REPORT_NAME, ConvertOptions, convert_folder, render_pipeline
from radiology.dicom import ImageTooLargeError, read_dicom
from radiology.synthetic import phantom_radiograph, write_phantom_dicom


def _phantom(path: Path, seed: int = 0, **kwargs) -> Path:
    return write_phantom_dicom(path, phantom_radiograph((48, 40), seed=seed), **kwargs)


def _report(dst: Path) -> pd.DataFrame:
    return pd.read_csv(dst / REPORT_NAME, keep_default_na=False, dtype=str).set_index("source")


@pytest.fixture(scope="module")
def panicking_rle() -> bytes:
    """pydicom's RLE test file with 8 body bytes changed so that the Rust RLE decoder panics."""
    path = pydicom.data.get_testdata_file("MR_small_RLE.dcm")
    raw = Path(path).read_bytes()
    body = bytes(pydicom.dcmread(path).PixelData)
    start = raw.find(body[:64])
    mutated = bytearray(raw)
    # Found by seeded fuzzing (8 random byte changes in the RLE segments).
    for offset, value in ((262, 205), (582, 113), (838, 34), (945, 202), (2033, 155), (4022, 79), (4362, 184),
                          (4600, 148)):
        mutated[start + offset] = value
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pydicom.dcmread(io.BytesIO(bytes(mutated))).pixel_array  # noqa: B018
    except Exception:  # noqa: BLE001
        pytest.skip("this RLE decoder raises an ordinary exception")
    except BaseException as error:  # noqa: BLE001 - the point: pyo3's PanicException
        assert not isinstance(error, Exception)
        return bytes(mutated)
    pytest.skip("this RLE decoder does not panic on the mutated file")


# --------------------------------------------------------------------------- section 1


@pytest.mark.parametrize("workers", [1, 2])
def test_a_panicking_codec_fails_one_file_and_the_batch_goes_on(tmp_path, panicking_rle, workers):
    src = tmp_path / "src"
    _phantom(src / "a_good.dcm")
    (src / "b_panic.dcm").write_bytes(panicking_rle)
    _phantom(src / "c_good.dcm", seed=1, encoding="rle")
    report = convert_folder(src, tmp_path / "dst", workers=workers, progress=False)
    table = report.table.set_index("source")
    assert report.summary == "2 converted, 1 failed, 0 skipped"
    assert table.loc["b_panic.dcm", "status"] == "failed" and "PanicException" in table.loc["b_panic.dcm", "reason"]


def test_a_panic_is_caught_on_any_executor_too(tmp_path, panicking_rle):
    from concurrent.futures import ThreadPoolExecutor

    src = tmp_path / "src"
    _phantom(src / "a.dcm")
    (src / "p.dcm").write_bytes(panicking_rle)
    with ThreadPoolExecutor(1) as executor:
        report = convert_folder(src, tmp_path / "dst", executor=executor, progress=False)
    assert report.summary == "1 converted, 1 failed, 0 skipped"


def test_a_gdcm_abort_fails_only_that_file(tmp_path):
    """A real native crash: GDCM calls abort() on this mutated baseline JPEG (found by seeded fuzzing)."""
    path = pydicom.data.get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")
    raw = Path(path).read_bytes()
    start = raw.find(bytes(pydicom.dcmread(path).PixelData)[:64])
    mutated = bytearray(raw)
    for offset, value in ((31, 209), (484, 228), (507, 113), (603, 213), (980, 246), (1366, 132)):
        mutated[start + offset] = value
    src = tmp_path / "src"
    src.mkdir()
    (src / "abort.dcm").write_bytes(mutated)
    _phantom(src / "good.dcm")
    probe = subprocess.run([sys.executable, "-c", "import sys, pydicom; pydicom.dcmread(sys.argv[1]).pixel_array",
                            str(src / "abort.dcm")], capture_output=True)
    if probe.returncode >= 0:
        pytest.skip("this GDCM/pylibjpeg build does not crash on the mutated stream")
    report = convert_folder(src, tmp_path / "dst", progress=False)
    table = report.table.set_index("source")
    assert table.loc["good.dcm", "status"] == "ok"
    assert table.loc["abort.dcm", "status"] == "failed"
    assert "crashed its worker process (killed by SIGABRT)" in table.loc["abort.dcm", "reason"]


def _killer_read(original):
    def read(self, source):
        if "killer" in os.fspath(source):
            os.kill(os.getpid(), signal.SIGKILL)  # what a native abort / OOM kill looks like
        return original(self, source)
    return read


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_killed_by_a_file_fails_only_that_file(tmp_path, monkeypatch, workers):
    from radiology.pipeline import Decode

    monkeypatch.setattr(Decode, "read", _killer_read(Decode.read))  # inherited by the forked workers
    src = tmp_path / "src"
    for name in ("a.dcm", "b_killer.dcm", "c.dcm", "d_killer.dcm", "e.dcm"):
        _phantom(src / name)
    report = convert_folder(src, tmp_path / "dst", workers=workers, progress=False)
    table = report.table.set_index("source")
    assert report.summary == "3 converted, 2 failed, 0 skipped"
    for name in ("b_killer.dcm", "d_killer.dcm"):
        assert "crashed its worker process (killed by SIGKILL)" in table.loc[name, "reason"]
    assert not list((tmp_path / "dst").glob(".radiology-tmp-*"))


def test_a_decoded_size_is_checked_before_decoding(tmp_path):
    small = _phantom(tmp_path / "small.dcm")
    with pytest.raises(ImageTooLargeError, match="image too large: 48 x 40 x 1 samples x 1 frame"):
        read_dicom(small, max_pixels=1000)
    assert read_dicom(small, max_pixels=48 * 40).pixels.shape == (48, 40)
    # A header that lies: 16384 x 16384 declared, a few bytes stored.
    ds = pydicom.dcmread(small)
    ds.Rows = ds.Columns = 16384
    ds.save_as(tmp_path / "bomb.dcm")
    with pytest.raises(ImageTooLargeError, match="268,435,456 exceeds max_pixels 100,000,000"):
        read_dicom(tmp_path / "bomb.dcm")
    # Deflated: refused while inflating, before pydicom inflates the whole file.
    deflated = _phantom(tmp_path / "deflated.dcm", encoding="deflated")
    with pytest.raises(ImageTooLargeError, match="inflates to more than"):
        read_dicom(deflated, max_pixels=100)
    from radiology.pipeline import Decode

    with pytest.raises(ImageTooLargeError):
        Decode(max_pixels=1000).read(small)
    with pytest.raises(ValueError, match="max_pixels"):
        Decode(max_pixels=0)


def test_a_max_pixels_fails_the_file_with_a_reason_in_the_report(tmp_path, capsys):
    src = tmp_path / "src"
    _phantom(src / "a.dcm")
    write_phantom_dicom(src / "big.dcm", phantom_radiograph((128, 128)))
    assert main(["convert", str(src), str(tmp_path / "dst"), "-q", "--max-pixels", "5000"]) == 0
    table = _report(tmp_path / "dst")
    assert table.loc["a.dcm", "status"] == "ok"
    assert table.loc["big.dcm", "status"] == "failed" and "exceeds max_pixels 5,000" in table.loc["big.dcm", "reason"]


def test_a_names_too_long_for_the_file_system_are_shortened(tmp_path):
    src = tmp_path / "src"
    long_a, long_b = "x" * 251 + "a", "x" * 251 + "b"  # 256 bytes with ".png": too long
    _phantom(src / long_a)
    _phantom(src / long_b, seed=1)
    report = convert_folder(src, tmp_path / "dst", progress=False)
    table = report.table.set_index("source")
    assert report.summary == "2 converted, 0 failed, 0 skipped"
    outputs = {table.loc[long_a, "output"], table.loc[long_b, "output"]}
    assert len(outputs) == 2 and all(len(o.encode()) <= 255 and o.endswith(".png") for o in outputs)
    assert all((tmp_path / "dst" / o).is_file() for o in outputs)


def test_a_file_and_folder_output_clash_fails_that_file_only(tmp_path):
    src = tmp_path / "src"
    _phantom(src / "a.dcm")
    _phantom(src / "a.png" / "x.dcm")
    _phantom(src / "b.dcm")
    _phantom(src / "c.dcm")
    dst = tmp_path / "dst"
    (dst / "c.png").mkdir(parents=True)  # left in DST by someone else
    report = convert_folder(src, dst, progress=False)
    table = report.table.set_index("source")
    assert table.loc["a.dcm", "status"] == table.loc["b.dcm", "status"] == "ok"
    assert table.loc["a.png/x.dcm", "status"] == "failed" and "a.png" in table.loc["a.png/x.dcm", "reason"]
    assert table.loc["c.dcm", "status"] == "failed" and "exists as a folder" in table.loc["c.dcm", "reason"]


def test_a_non_utf8_file_names_get_a_row_and_the_report_is_written(tmp_path):
    src = tmp_path / "src"
    _phantom(src / "good.dcm")
    raw = os.path.join(os.fsencode(src), b"bad\xff.dcm")
    with open(raw, "wb") as file:
        file.write((src / "good.dcm").read_bytes())
    assert main(["convert", str(src), str(tmp_path / "dst"), "-q"]) == 0
    table = _report(tmp_path / "dst")
    assert table.loc["bad\\xff.dcm", "status"] == "ok" and table.loc["bad\\xff.dcm", "output"] == "bad_.png"
    assert (tmp_path / "dst" / "bad_.png").is_file()


@pytest.mark.parametrize("text, fragment", [
    ("format: radiology.pipeline\nversion: 2\nsteps:\n  - {name: clahe, clip_limit: -1}\n",
     "step 0 (clahe): clip_limit must be > 0, got -1"),
    ("format: radiology.pipeline\nversion: 2\nsteps:\n  - {name: clahe, clip_limit: -1\n", "not valid YAML"),
])
def test_a_broken_pipeline_file_stops_before_any_input_is_touched(tmp_path, capsys, text, fragment):
    src = tmp_path / "src"
    _phantom(src / "a.dcm")
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    for command in (["convert", str(src), str(tmp_path / "dst"), "-q"], ["preview", str(src), str(tmp_path / "s.png")]):
        assert main([*command, "--pipeline", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "bad.yaml" in err and fragment in err, err
    assert not (tmp_path / "dst").exists() and not (tmp_path / "s.png").exists()


# --------------------------------------------------------------------------- section 2


def test_b_hidden_files_and_linked_folders_get_rows_and_loops_end(tmp_path):
    src = tmp_path / "src"
    _phantom(src / "a.dcm")
    _phantom(src / ".hidden.dcm")
    _phantom(src / ".cache" / "b.dcm")
    _phantom(tmp_path / "elsewhere" / "c.dcm")
    (src / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (src / "loop").symlink_to(src, target_is_directory=True)
    report = convert_folder(src, tmp_path / "dst", progress=False)
    table = report.table.set_index("source")
    assert set(table.index) == {"a.dcm", ".hidden.dcm", ".cache/b.dcm", "linked/c.dcm", "loop"}
    assert report.count("ok") == 4
    assert table.loc[".hidden.dcm", "output"] == "_hidden.png"  # outputs are never hidden
    assert table.loc["loop", "status"] == "skipped" and "loops back" in table.loc["loop", "reason"]


def test_b_link_loops_and_second_links_get_a_skipped_row_with_the_reason(tmp_path):
    src = tmp_path / "src"
    _phantom(src / "study" / "x.dcm")
    (src / "study" / "deep").mkdir()
    (src / "study" / "deep" / "up").symlink_to(src / "study", target_is_directory=True)  # a loop, one level down
    (src / "study" / "deep" / "top").symlink_to(src, target_is_directory=True)  # a loop to SRC itself
    twin = src / os.fsdecode(b"tw\xffin")  # the same folder again, no loop; a name that is not UTF-8
    twin.symlink_to(src / "study", target_is_directory=True)
    report = convert_folder(src, tmp_path / "dst", progress=False)
    table = report.table.set_index("source")
    assert report.summary == "1 converted, 0 failed, 3 skipped"
    for loop in ("study/deep/up", "study/deep/top"):
        assert table.loc[loop, "status"] == "skipped"
        assert table.loc[loop, "reason"] == "linked folder loops back to a folder it is in; not followed again"
    assert table.loc["tw\\xffin", "status"] == "skipped" and "reached earlier" in table.loc["tw\\xffin", "reason"]
    assert table.loc["study/x.dcm", "status"] == "ok"  # the real folder is the one converted
    assert report.images == 1  # the rows passed over are not images
    again = convert_folder(src, tmp_path / "dst", skip_existing=True, progress=False)
    assert again.summary == "0 converted, 0 failed, 4 skipped" and again.images == 1
    assert _report(tmp_path / "dst").loc["study/deep/up", "status"] == "skipped"  # in the CSV too


def test_b_a_file_already_inside_a_dst_inside_src_gets_a_skipped_row(tmp_path):
    src = tmp_path / "src"
    _phantom(src / "a.dcm")
    dst = src / "converted"
    _phantom(dst / "old" / "b.dcm")  # a DICOM someone left in the output folder
    (dst / "notes.txt").write_text("mine")
    (src / "z_alias").symlink_to(dst, target_is_directory=True)  # a second path to DST: one row, not its files
    first = convert_folder(src, dst, progress=False)
    again = convert_folder(src, dst, progress=False)
    for report in (first, again):  # the second run: outputs and the report of the first are not inputs
        table = report.table.set_index("source")
        assert sorted(table.index) == ["a.dcm", "converted/notes.txt", "converted/old/b.dcm", "z_alias"]
        assert table.loc["a.dcm", "status"] == "ok"
        assert table.loc["z_alias", "status"] == "skipped" and "reached earlier" in table.loc["z_alias", "reason"]
        for name in ("converted/old/b.dcm", "converted/notes.txt"):
            assert table.loc[name, "status"] == "skipped" and "inside dst" in table.loc[name, "reason"]
            assert table.loc[name, "output"] == ""
    assert (dst / "notes.txt").read_text() == "mine" and not (dst / "old" / "b.png").exists()


def _looped_tree(src: Path) -> Path:
    """SRC holding a DICOM, a link loop, and a DST inside it with a DICOM of its own; returns DST."""
    _phantom(src / "Doe^John" / "a.dcm")
    (src / "Doe^John" / "loop").symlink_to(src, target_is_directory=True)
    _phantom(src / "out" / "Doe^John.dcm")
    return src / "out"


def test_b_passed_over_rows_follow_hashed_names(tmp_path):
    dst = _looped_tree(tmp_path / "src")
    report = convert_folder(tmp_path / "src", dst, ConvertOptions(source_names="hashed"), progress=False)
    assert report.summary == "1 converted, 0 failed, 2 skipped"
    assert "Doe" not in (dst / REPORT_NAME).read_text()


def test_b_passed_over_rows_land_in_exactly_one_shard(tmp_path):
    from radiology.convert import merge_reports

    dst = _looped_tree(tmp_path / "src")
    for i in range(3):
        convert_folder(tmp_path / "src", dst, shard=(i, 3), progress=False)
    merged = merge_reports(dst).table.set_index("source")
    assert sorted(merged.index) == ["Doe^John/a.dcm", "Doe^John/loop", "out/Doe^John.dcm"]
    assert list(merged.loc[["Doe^John/loop", "out/Doe^John.dcm"], "status"]) == ["skipped", "skipped"]


def test_b_several_source_folders(tmp_path, capsys):
    for name in ("s1", "s2"):
        _phantom(tmp_path / name / "a.dcm")
    assert main(["convert", str(tmp_path / "s1"), str(tmp_path / "s2"), str(tmp_path / "dst"), "-q"]) == 0
    assert capsys.readouterr().out.startswith("2 converted, 0 failed")
    table = _report(tmp_path / "dst")
    assert list(table.index) == ["s1/a.dcm", "s2/a.dcm"] and list(table.output) == ["s1/a.png", "s2/a.png"]


def test_codec_messages_stay_off_the_terminal(tmp_path):
    # OpenJPEG prints to file descriptor 2 on this broken file; the report holds the reason instead.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("JPEG2000-embedded-sequence-delimiter.dcm", "CT_small.dcm"):
        (src / name).write_bytes(Path(pydicom.data.get_testdata_file(name)).read_bytes())
    command = [sys.executable, "-m", "radiology.cli", "convert", str(src), str(tmp_path / "dst"), "-q"]
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and quiet.stderr.strip() == "", quiet.stderr
    report = pd.read_csv(tmp_path / "dst" / REPORT_NAME, keep_default_na=False)
    assert sorted(report["status"]) == ["failed", "ok"]
    verbose = subprocess.run(command[:3] + ["-v"] + command[3:] + ["--skip-existing"], capture_output=True,
                             text=True, timeout=120)
    assert "tiles" in verbose.stderr  # with -v the codec's own words stay visible


def test_b_no_dicom_found_exits_non_zero(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("hello")
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "dst"), "-q"]) == 1
    assert "no DICOM image found" in capsys.readouterr().err
    # Rows for what the walk passes over (a link loop, a file left inside DST) are not images found.
    (tmp_path / "src" / "loop").symlink_to(tmp_path / "src", target_is_directory=True)
    (tmp_path / "src" / "dst").mkdir()
    (tmp_path / "src" / "dst" / "old.dcm").write_bytes(b"left here")
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "src" / "dst"), "-q"]) == 1
    assert "no DICOM image found" in capsys.readouterr().err
    report = pd.read_csv(tmp_path / "src" / "dst" / REPORT_NAME, keep_default_na=False)
    # notes.txt is not an input (radiology.files); the loop and the file left inside DST are passed over.
    assert sorted(report["status"]) == ["skipped", "skipped", "skipped"]
    (tmp_path / "empty").mkdir()
    assert main(["convert", str(tmp_path / "empty"), str(tmp_path / "dst2"), "-q"]) == 1


def test_b_dst_that_is_a_file_is_a_usage_error(tmp_path, capsys):
    _phantom(tmp_path / "src" / "a.dcm")
    (tmp_path / "dst").write_text("x")
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "dst"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a folder" in err
    assert (tmp_path / "dst").read_text() == "x"


def test_b_outputs_never_overwrite_inputs(tmp_path):
    src = tmp_path / "dst" / "s"  # DST is an ancestor of SRC
    _phantom(src / "a.png")  # a DICOM that happens to be called a.png
    _phantom(src / "s" / "a", seed=1)  # its output would be dst/s/a.png = that input
    before = (src / "a.png").read_bytes()
    report = convert_folder(src, tmp_path / "dst", progress=False)
    table = report.table.set_index("source")
    assert table.loc["s/a", "status"] == "failed" and "overwrite an input" in table.loc["s/a", "reason"]
    assert (src / "a.png").read_bytes() == before


def test_b_nothing_is_written_through_links_inside_dst(tmp_path):
    src = tmp_path / "src"
    _phantom(src / "study" / "x.dcm")
    _phantom(src / "y.dcm")
    outside = tmp_path / "outside"
    outside.mkdir()
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "study").symlink_to(outside, target_is_directory=True)
    (dst / "y.png").symlink_to(outside / "y.png")
    report = convert_folder(src, dst, progress=False)
    table = report.table.set_index("source")
    assert table.loc["study/x.dcm", "status"] == "failed" and "symbolic link" in table.loc["study/x.dcm", "reason"]
    assert table.loc["y.dcm", "status"] == "failed" and "symbolic link" in table.loc["y.dcm", "reason"]
    assert list(outside.iterdir()) == []


def test_b_non_ascii_names_are_kept_nfc(tmp_path):
    src = tmp_path / "src"
    decomposed = unicodedata.normalize("NFD", "Müller Åsa.dcm")
    _phantom(src / decomposed)
    report = convert_folder(src, tmp_path / "dst", progress=False)
    assert list(report.table.output) == ["Müller_Åsa.png"]
    assert report.table.source[0] == unicodedata.normalize("NFC", "Müller Åsa.dcm")
    assert (tmp_path / "dst" / "Müller_Åsa.png").is_file()


def test_b_stale_scratch_of_a_killed_run_is_cleaned(tmp_path):
    import socket

    src = tmp_path / "src"
    _phantom(src / "a.dcm")
    dst = tmp_path / "dst"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = dst / f".radiology-tmp-{socket.gethostname()}-{int(dead.stdout)}-abc"
    stale.mkdir(parents=True)
    (stale / "3.png").write_bytes(b"partial")
    convert_folder(src, dst, progress=False)
    assert not stale.exists()


# --------------------------------------------------------------------------- section 3


@pytest.mark.parametrize("keyword", ["ModalityLUTSequence", "VOILUTSequence"])
def test_c_empty_optional_lut_items_are_ignored_with_a_warning(tmp_path, keyword):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from radiology.dicom import DicomWarning

    path = _phantom(tmp_path / "src" / "lut.dcm")
    clean = read_dicom(path).pixels
    ds = pydicom.dcmread(path)
    setattr(ds, keyword, Sequence([Dataset()]))  # an empty item, as some modalities write
    ds.save_as(path)
    with pytest.warns(DicomWarning, match=f"{keyword} empty or incomplete"):
        image = read_dicom(path)
    assert (image.pixels == clean).all() and image.warnings == [f"{keyword} empty or incomplete: ignored"]
    for normalization in ("percentile", "voi"):
        options = ConvertOptions(render_pipeline(normalization=normalization))
        report = convert_folder(tmp_path / "src", tmp_path / normalization, options, progress=False)
        row = report.table.iloc[0]
        assert row.status == "ok" and keyword in row.warnings
    assert keyword in _report(tmp_path / "voi").loc["lut.dcm", "warnings"]


def test_c_warnings_go_to_the_report_not_the_terminal(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    path = _phantom(tmp_path / "src" / "lut.dcm")
    ds = pydicom.dcmread(path)
    ds.ModalityLUTSequence = Sequence([Dataset()])
    ds.save_as(path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run([sys.executable, "-m", "radiology", "convert", str(tmp_path / "src"), str(tmp_path / "dst"),
                             "-q"], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "ModalityLUTSequence" not in result.stderr, result.stderr
    assert "ModalityLUTSequence" in _report(tmp_path / "dst").loc["lut.dcm", "warnings"]


def test_c_lossy_12bit_jpeg_falls_back_to_gdcm():
    lossy = read_dicom(pydicom.data.get_testdata_file("JPEG-lossy.dcm"))  # refused by every pydicom plugin
    reference = read_dicom(pydicom.data.get_testdata_file("JPGExtended.dcm"))  # same image, decodable stream
    assert lossy.metadata.transfer_syntax == "JPEG Extended (Process 2 and 4)"
    assert lossy.pixels.shape == reference.pixels.shape == (1024, 256)
    assert abs(lossy.pixels.astype(int) - reference.pixels.astype(int)).max() <= 1


# --------------------------------------------------------------------------- section 4


def test_d_hashed_source_names_keep_folder_names_out_of_every_output(tmp_path, capsys):
    src = tmp_path / "src"
    _phantom(src / "Doe^Jane" / "Doe_Jane_chest.dcm", patient_name="Doe^Jane")
    dst = tmp_path / "dst"
    assert main(["convert", str(src), str(dst), "-q", "--source-names", "hashed"]) == 0
    assert main(["metadata", str(src), "-o", str(tmp_path / "meta.csv"), "--source-names", "hashed"]) == 0
    for path in [*dst.rglob("*"), tmp_path / "meta.csv"]:
        assert "Doe" not in path.relative_to(tmp_path).as_posix()
        if path.is_file():
            assert b"Doe" not in path.read_bytes(), path
    table = _report(dst)
    assert table.iloc[0].status == "ok" and table.index[0].endswith(".dcm")
    assert pd.read_csv(tmp_path / "meta.csv").source[0] == table.index[0]  # the same pseudonym in both
    # and the default still shows the relative path
    assert main(["convert", str(src), str(tmp_path / "plain"), "-q"]) == 0
    assert list(_report(tmp_path / "plain").index) == ["Doe^Jane/Doe_Jane_chest.dcm"]


@pytest.mark.parametrize("naming", ["path", "uid"])
def test_d_resume_with_other_options_reconverts_and_skipped_rows_keep_their_columns(tmp_path, naming):
    from radiology.io import read_image

    src = tmp_path / "src"
    _phantom(src / "a.dcm", sop_instance_uid="1.2.3.1")
    _phantom(src / "b.dcm", seed=1, sop_instance_uid="1.2.3.2", photometric="MONOCHROME1")
    dst = tmp_path / "dst"
    first = convert_folder(src, dst, ConvertOptions(render_pipeline(width=20), naming=naming), progress=False).table
    outputs = list(first.output)
    other = convert_folder(src, dst, ConvertOptions(render_pipeline(width=10), naming=naming), skip_existing=True,
                           progress=False).table
    assert list(other.status) == ["ok", "ok"] and list(other.output) == outputs
    assert all(read_image(dst / o).shape[1] == 10 for o in outputs)  # not the stale width-20 images
    again = convert_folder(src, dst, ConvertOptions(render_pipeline(width=10), naming=naming), skip_existing=True,
                           progress=False).table
    assert list(again.status) == ["skipped", "skipped"]
    columns = ["output", "rows", "columns", "photometric", "transfer_syntax", "modality", "options"]
    assert again[columns].astype(str).equals(other[columns].astype(str))
    assert set(again.options) == set(other.options) != set(first.options)


# --------------------------------------------------------------------------- section 5


@pytest.fixture
def small_batch(tmp_path):
    src = tmp_path / "src"
    for i in range(5):
        _phantom(src / ("sub" if i % 2 else "") / f"im{i}.dcm", seed=i, sop_instance_uid=f"1.2.3.{i}")
    (src / "junk").write_text("not DICOM")  # no suffix: read, and fails as not DICOM
    return src


def _same_outputs(a: Path, b: Path, table: pd.DataFrame) -> bool:
    return all((a / o).read_bytes() == (b / o).read_bytes() for o in table.output[table.status == "ok"])


def test_e_any_executor_runs_batches_of_files(small_batch, tmp_path):
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    reference = convert_folder(small_batch, tmp_path / "ref", progress=False).table

    class Counting(ThreadPoolExecutor):
        tasks = 0

        def submit(self, *args, **kwargs):
            Counting.tasks += 1
            return super().submit(*args, **kwargs)

    with Counting(2) as executor:
        threaded = convert_folder(small_batch, tmp_path / "t", executor=executor, batch_size=4, progress=False).table
    assert Counting.tasks == 2  # 6 files in batches of 4
    with ProcessPoolExecutor(2) as executor:
        processes = convert_folder(small_batch, tmp_path / "p", executor=executor, batch_size=2, progress=False).table
    for table, folder in ((threaded, "t"), (processes, "p")):
        assert table.drop(columns="options").equals(reference.drop(columns="options"))
        assert _same_outputs(tmp_path / "ref", tmp_path / folder, reference)


def test_e_dask_local_cluster_via_the_cli(small_batch, tmp_path, capsys):
    distributed = pytest.importorskip("dask.distributed")
    reference = convert_folder(small_batch, tmp_path / "ref", progress=False).table
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
    with cluster:
        address = cluster.scheduler_address
        code = main(["convert", str(small_batch), str(tmp_path / "dask"), "-q", "--scheduler", address])
        assert code == 0, capsys.readouterr().err
        table = _report(tmp_path / "dask").reset_index()
        with distributed.Client(cluster) as client:
            resumed = convert_folder(small_batch, tmp_path / "dask", executor=client.get_executor(),
                                     skip_existing=True, progress=False)
    assert table.drop(columns="options").equals(reference.drop(columns="options").astype(str))
    assert _same_outputs(tmp_path / "ref", tmp_path / "dask", reference)
    assert resumed.summary == "0 converted, 1 failed, 5 skipped"


def test_e_shards_then_merge(small_batch, tmp_path, capsys):
    reference = convert_folder(small_batch, tmp_path / "ref", progress=False).table
    dst = tmp_path / "dst"
    for i in range(3):
        assert main(["convert", str(small_batch), str(dst), "-q", "--shard", f"{i}/3"]) in (0, 1)
    sizes = [len(pd.read_csv(dst / f"conversion_report.shard-{i}-of-3.csv")) for i in range(3)]
    assert sum(sizes) == len(reference) and max(sizes) < len(reference)
    capsys.readouterr()
    assert main(["report", "merge", str(dst)]) == 0
    assert capsys.readouterr().out.startswith("5 converted, 1 failed, 0 skipped")
    merged = _report(dst).reset_index()
    expected = reference.sort_values("source").reset_index(drop=True).astype(str)
    assert merged.drop(columns="options").equals(expected.drop(columns="options"))
    (dst / "conversion_report.shard-1-of-3.csv").unlink()
    assert main(["report", "merge", str(dst)]) == 2
    assert "missing for shards [1]" in capsys.readouterr().err


# --------------------------------------------------------------------------- section 1, process isolation

_SLOW_RUN = """
import sys, time
from radiology.convert import convert_folder
from radiology.pipeline import Decode
Decode.read = lambda self, source: time.sleep(60)
convert_folder(sys.argv[1], sys.argv[2], workers=2, progress=False)
"""


def test_f_workers_die_with_the_parent_and_its_scratch_is_cleaned_next_run(tmp_path):
    psutil = pytest.importorskip("psutil")
    import time

    src = tmp_path / "src"
    for i in range(3):
        _phantom(src / f"{i}.dcm", seed=i)
    dst = tmp_path / "dst"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    parent = subprocess.Popen([sys.executable, "-c", _SLOW_RUN, str(src), str(dst)], env=env)
    try:
        deadline = time.monotonic() + 60
        while len(psutil.Process(parent.pid).children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = psutil.Process(parent.pid).children()
        assert len(workers) == 2
    finally:
        parent.kill()  # kill -9: no cleanup code runs in the parent
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers):
        time.sleep(0.1)
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    assert list(dst.glob(".radiology-tmp-*"))  # the killed run's scratch folder is still there ...
    report = convert_folder(src, dst, progress=False)
    assert report.summary == "3 converted, 0 failed, 0 skipped"
    assert not list(dst.glob(".radiology-tmp-*"))  # ... until the next run


# --------------------------------------------------------------------------- fsspec URLs


def test_g_memory_urls_as_src_and_dst(small_batch, tmp_path, capsys):
    fsspec = pytest.importorskip("fsspec")
    from radiology.io import read_image

    memory = fsspec.filesystem("memory")
    for path in small_batch.rglob("*"):
        if path.is_file():
            memory.pipe_file(f"/in-g/{path.relative_to(small_batch).as_posix()}", path.read_bytes())
    reference = convert_folder(small_batch, tmp_path / "ref", progress=False).table
    try:
        assert main(["convert", "memory://in-g", "memory://out-g", "-q", "--workers", "2"]) == 0
        data = memory.cat_file("/out-g/conversion_report.csv")
        report = pd.read_csv(io.BytesIO(data), keep_default_na=False, dtype=str)
        assert report.drop(columns="options").equals(reference.drop(columns="options").astype(str))
        for output in reference.output[reference.status == "ok"]:
            assert memory.cat_file(f"/out-g/{output}") == (tmp_path / "ref" / output).read_bytes()
        again = convert_folder("memory://in-g", "memory://out-g", skip_existing=True, progress=False)
        assert again.summary == "0 converted, 1 failed, 5 skipped"
        local = convert_folder("memory://in-g/sub", tmp_path / "local", progress=False)  # URL in, local out
        assert local.count("ok") == 2 and read_image(tmp_path / "local" / "im1.png").shape == (48, 40)
    finally:
        memory.rm("/in-g", recursive=True)
        if memory.exists("/out-g"):
            memory.rm("/out-g", recursive=True)
