"""ConvertOptions is a Pipeline plus output settings; the flat render fields are deprecated."""

import pickle
from dataclasses import replace

import numpy as np
import pydicom.data
import pytest

from radiology.convert import ConvertOptions, dicom_to_image, render_pipeline
from radiology.pipeline import (
    CLAHE,
    VOI,
    Decode,
    Histogram,
    MinMax,
    PadSquare,
    Percentile,
    Pipeline,
    Resize,
)

CT = pydicom.data.get_testdata_file("CT_small.dcm")

# Old spelling (flat fields) -> new spelling (a Pipeline): the same description.
SPELLINGS = [
    ({}, Pipeline()),
    ({"normalization": "voi", "width": 32, "pad_square": True},
     Pipeline([VOI(), Resize(width=32), PadSquare()])),
    ({"normalization": "histogram", "n_bins": 20, "longest": 50},
     Pipeline([Histogram(n_bins=20), Resize(longest=50)])),
    ({"normalization": "histogram", "bins": (-2000.0, 0.0, 500.0, 3000.0)},
     Pipeline([Histogram(bins=(-2000.0, 0.0, 500.0, 3000.0))])),
    ({"normalization": "minmax", "polarity": False, "modality_lut": False},
     Pipeline([MinMax()], Decode(polarity=False, modality_lut=False))),
    ({"low": 2, "high": 98, "frame": 0, "color": "keep", "bits": False},
     Pipeline([Percentile(2, 98)], Decode(color="keep", bits=False))),
    ({"normalization": "voi", "voi_index": 0, "low": 1, "high": 99, "max_pixels": None},
     Pipeline([VOI(index=0, low=1, high=99)], Decode(max_pixels=None))),
    ({"pipeline": Pipeline([CLAHE()]), "normalization": "minmax", "width": 40},
     Pipeline([MinMax(), CLAHE(), Resize(width=40)])),
]


@pytest.mark.parametrize("flat, pipeline", SPELLINGS, ids=lambda v: repr(v) if isinstance(v, Pipeline) else None)
def test_old_and_new_spellings_give_the_same_pipeline_and_pixels(flat, pipeline):
    flat = dict(flat)
    base = flat.pop("pipeline", None)
    if flat:
        with pytest.warns(DeprecationWarning, match=r"ConvertOptions\(.*=\.\.\.\) is deprecated.*render_pipeline"):
            old = ConvertOptions(base, **flat)
    else:
        old = ConvertOptions(base)
    new = ConvertOptions(render_pipeline(base, **flat))
    assert old == new and old.to_pipeline() == new.pipeline == pipeline
    expected = pipeline.read(CT)
    assert np.array_equal(dicom_to_image(CT, old), expected)
    assert np.array_equal(dicom_to_image(CT, new), expected)
    assert np.array_equal(dicom_to_image(CT, **flat, **({} if base is None else {"pipeline": base})), expected)


@pytest.mark.parametrize("field, value, read", [
    ("normalization", "minmax", "minmax"), ("low", 1.0, 1.0), ("high", 99.0, 99.0),
    ("n_bins", 10, 100),  # a percentile (the default normalization) has no bins: ignored, as before
    ("bins", (0.0, 1.0), (0.0, 1.0)), ("voi_index", 1, 0), ("bits", False, False), ("modality_lut", False, False),
    ("polarity", False, False), ("frame", 1, 1), ("color", "keep", "keep"), ("width", 8, 8), ("longest", 8, 8),
    ("pad_square", True, True), ("max_pixels", 1000, 1000),
])
def test_each_flat_field_warns_and_names_its_replacement(field, value, read):
    with pytest.warns(DeprecationWarning, match=rf"ConvertOptions\({field}=\.\.\.\).*render_pipeline\(pipeline, "
                                                rf"{field}=\.\.\.\)"):
        options = ConvertOptions(**{field: value})
    with pytest.warns(DeprecationWarning, match=rf"ConvertOptions\.{field} is deprecated"):
        assert getattr(options, field) == read


def test_the_new_spelling_warns_nothing(recwarn):
    options = ConvertOptions(render_pipeline(normalization="voi", width=64), fmt="jpg", naming="uid")
    assert options.extension == ".jpg" and options.decode == Decode()
    assert options.to_pipeline() is options.pipeline
    replace(options, fmt="png")
    pickle.loads(pickle.dumps(options))
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_replace_and_pickle_keep_the_options():
    options = ConvertOptions(render_pipeline(Pipeline([CLAHE()]), longest=32), bit_depth=16)
    assert pickle.loads(pickle.dumps(options)) == options
    assert hash(options) == hash(ConvertOptions(render_pipeline(Pipeline([CLAHE()]), longest=32), bit_depth=16))
    assert replace(options, naming="uid").pipeline == options.pipeline
    with pytest.warns(DeprecationWarning):
        wider = replace(options, pad_square=True)
    assert wider.pipeline.steps[-1] == PadSquare() and wider.bit_depth == 16


@pytest.mark.parametrize("flat, message", [
    ({"low": 60, "high": 50}, "percentile: low must be < high, got low=60, high=50"),
    ({"normalization": "voi", "voi_index": -1}, "voi: index must be >= 0, got -1"),
    ({"normalization": "histogram", "n_bins": 1}, "histogram: n_bins must be >= 2, got 1"),
    ({"width": 0}, "resize: width must be >= 1, got 0"),
    ({"width": 5, "longest": 5}, "resize: longest cannot be combined with width or height"),
    ({"color": "rgb"}, "decode: color must be 'gray' or 'keep', got 'rgb'"),
    ({"max_pixels": 0}, "decode: max_pixels must be >= 1, got 0"),
    ({"polarity": "yes"}, "decode: polarity must be true or false, got 'yes'"),
    ({"normalization": "zscore"}, "normalization must be one of ('percentile', 'histogram', 'minmax', 'voi'), "
                                  "got 'zscore'"),
])
def test_invalid_values_fail_in_the_steps_own_validation(flat, message):
    with pytest.raises(ValueError) as new:
        render_pipeline(**flat)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError) as old:
        ConvertOptions(**flat)
    for error in (new, old):
        assert str(error.value) == message and "\n" not in str(error.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"fmt": "gif"}, "fmt must be one of"),
    ({"bit_depth": 12}, "bit_depth must be 8 or 16"),
    ({"fmt": "jpeg", "bit_depth": 16}, "8-bit only"),
    ({"naming": "id"}, "naming must be 'path' or 'uid'"),
    ({"source_names": "anon"}, "source_names must be"),
])
def test_output_settings_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConvertOptions(**kwargs)


def test_unknown_arguments_and_wrong_types_are_type_errors():
    with pytest.raises(TypeError, match="'sharpen'"):
        ConvertOptions(sharpen=True)
    with pytest.raises(TypeError, match="'fmt'"):
        render_pipeline(fmt="png")
    with pytest.raises(TypeError, match="Pipeline"):
        ConvertOptions({"steps": []})


def test_a_normalizing_pipeline_wins_over_normalization_and_keeps_its_decode():
    own = Pipeline([VOI(index=1)], Decode(color="keep"))
    assert render_pipeline(own, normalization="minmax", low=1) == own
    assert render_pipeline(own, polarity=False, width=16) == Pipeline([VOI(index=1), Resize(width=16)],
                                                                      Decode(color="keep", polarity=False))
    assert render_pipeline(bins=(0.0, 1.0, 2.0)) == Pipeline([Histogram(bins=(0.0, 1.0, 2.0))])


def test_cli_flags_and_pipeline_file_give_the_pipeline_they_gave_before(tmp_path):
    from radiology.cli import build_parser
    from radiology.cli.convert import _render_options, _render_pipeline

    parse = build_parser().parse_args
    plain = tmp_path / "plain.yaml"
    Pipeline([CLAHE()], Decode(polarity=False, color="keep")).save(plain)
    normalizing = tmp_path / "voi.json"
    Pipeline([VOI(index=1), CLAHE()], Decode(frame=1)).save(normalizing)
    flags = ["--normalization", "voi", "--low", "1", "--no-modality-lut", "--frame", "0", "--max-pixels", "0"]
    # What ConvertOptions(flat fields from the flags, decode taken apart from the file) built before.
    cases = [
        (["convert", "x", "d", "--pipeline", str(plain), *flags, "--width", "64", "--pad-square"],
         Pipeline([VOI(low=1), CLAHE(), Resize(width=64), PadSquare()],
                  Decode(frame=0, modality_lut=False, polarity=False, color="keep", max_pixels=None))),
        (["convert", "x", "d", "--pipeline", str(normalizing), *flags, "--longest", "32"],
         Pipeline([VOI(index=1), CLAHE(), Resize(longest=32)], Decode(frame=0, modality_lut=False, max_pixels=None))),
        (["preview", "x", "s.png", "--pipeline", str(normalizing), "--color", "keep", "--no-polarity"],
         Pipeline([VOI(index=1), CLAHE()], Decode(frame=1, color="keep", polarity=False))),
        (["convert", "x", "d", "--normalization", "histogram", "--n-bins", "16", "--max-pixels", "1000"],
         Pipeline([Histogram(n_bins=16)], Decode(max_pixels=1000))),
        (["preview", "x", "s.png"], Pipeline()),
    ]
    for argv, expected in cases:
        args = parse(argv)
        assert _render_pipeline(args) == expected, argv
        assert _render_options(args).pipeline == expected


def test_cli_bad_render_flag_exits_2_with_the_steps_message(tmp_path, capsys):
    from radiology.cli import main

    for argv, message in ((["--low", "60", "--high", "50"], "percentile: low must be < high, got low=60, high=50"),
                          (["--normalization", "voi", "--voi-index", "-1"], "voi: index must be >= 0, got -1")):
        assert main(["convert", str(tmp_path), str(tmp_path / "out"), "-q", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
