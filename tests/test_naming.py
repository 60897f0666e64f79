"""Output-name rules: NFC, the 255-byte fit, sanitizing, collisions."""

import unicodedata

import pytest

from radiology.naming import NAME_BYTES, display_name, fit_name, nfc, output_name, sanitize_component


def test_names_are_nfc():
    decomposed = "Rontgen".replace("o", "o\u0308")  # o + combining diaeresis, as macOS hands it over
    assert decomposed != "Röntgen" and nfc(decomposed) == "Röntgen"
    assert sanitize_component(decomposed) == "Röntgen"
    assert display_name(f"a/{decomposed}.dcm") == "a/Röntgen.dcm"
    assert output_name(f"{decomposed}/b.dcm", ".png") == output_name("Röntgen/b.dcm", ".png") == "Röntgen/b.png"


def test_display_name_escapes_undecodable_bytes():
    assert display_name("b\udcff.dcm") == "b\\xff.dcm"
    display_name("b\udcff.dcm").encode("utf-8")  # writable to a UTF-8 report


@pytest.mark.parametrize("char", ["x", "é", "€", "日", "😀"])  # 1, 2, 3, 3 and 4 bytes
def test_fit_keeps_255_bytes_and_whole_characters(char):
    name = char * 300
    fitted = fit_name(name, keep=".png")
    assert len(fitted.encode()) <= NAME_BYTES == 255 and fitted.endswith(".png")
    assert fitted.encode().decode() == fitted  # no character cut in half
    stem = fitted[: -len(".png")].rsplit("-", 1)[0]
    assert set(stem) == {char} and len(stem.encode()) >= 255 - 4 - 13 - 3
    assert fit_name(char * 10, keep=".png") == char * 10 + ".png"  # short names are kept as they are


def test_fit_tells_long_names_with_one_prefix_apart():
    a, b = fit_name("é" * 200 + "a"), fit_name("é" * 200 + "b")
    assert a != b and len(a.encode()) <= 255 and len(b.encode()) <= 255
    assert fit_name("x" * 40, limit=20, keep=".npy").endswith(".npy")
    with pytest.raises(ValueError, match="keep="):
        fit_name("x" * 40, limit=10, keep=".a-very-long-suffix")
    with pytest.raises(ValueError, match="limit"):
        fit_name("x", limit=0)


@pytest.mark.parametrize("text, expected", [
    ("..", "__"),
    (".", "_"),
    ("", "_"),
    ("../x", "_._x"),
    ("../../etc/passwd", "_._.._etc_passwd"),
    (".hidden", "_hidden"),
    ("a/b\\c", "a_b_c"),
    ("tab\there\nnew\x00line\x7f", "tab_here_new_line_"),
    ("  spaced name  ", "spaced_name"),
    ("1.2.840.10008", "1.2.840.10008"),
])
def test_sanitize_component(text, expected):
    cleaned = sanitize_component(text)
    assert cleaned == expected
    assert "/" not in cleaned and "\\" not in cleaned and cleaned not in (".", "..", "")
    assert all(unicodedata.category(c) != "Cc" for c in cleaned)


def test_output_names_collide_where_the_converter_must_rename():
    # a.dcm and a (DICOM suffixes are dropped), and names equal after sanitizing or NFC, share an output:
    # convert_folder gives the later one a _2 suffix (tests/convert).
    assert output_name("a.dcm", ".png") == output_name("a", ".png") == output_name("a.DCM", ".png") == "a.png"
    assert output_name("x y.dcm", ".png") == output_name("x_y.dcm", ".png") == "x_y.png"
    assert output_name("cafe\u0301.dcm", ".png") == output_name("café.dcm", ".png")
    assert output_name("1.2.3.4", ".png") == "1.2.3.4.png"  # a UID's last part is no suffix
    assert output_name(".dcm", ".png") == "_dcm.png"  # a hidden name, not an empty stem
    long = output_name("d/" + "é" * 300 + ".dcm", ".png")
    assert long.startswith("d/") and len(long.split("/")[1].encode()) == 255 and long.endswith(".png")
    with pytest.raises(ValueError, match="empty input path"):
        output_name("", ".png")
