"""The pointing game: boxes, peaks, baselines (known answers), peaks mapped back through the pipeline, and the CLI."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("pytorch_grad_cam")

from radiology.cli import main  # noqa: E402
from radiology.explain import (  # noqa: E402
    GROW,
    POINTING_COLUMNS,
    boxes_mask,
    cam_peak,
    cam_to_original,
    explain_inputs,
    grow_boxes,
    parse_boxes,
    point_in_boxes,
    pointing_game,
    read_boxes,
)
from radiology.io import write_image  # noqa: E402
from radiology.models import save_bundle  # noqa: E402
from radiology.pipeline import FOVCrop, PadSquare, Percentile, Pipeline, Resize  # noqa: E402
from radiology.synthetic import write_phantom_dicom  # noqa: E402
from tests.explain.conftest import CLASSES, LAYER, PIPELINE, lesion_image, make_bundle  # noqa: E402

# --------------------------------------------------------------------------- boxes cells


def test_parse_boxes_reads_the_labels_csv_format():
    assert parse_boxes("260.7 357.8 27.6 27.3").tolist() == [[260.7, 357.8, 27.6, 27.3]]
    assert parse_boxes(" 1 2 3 4 ; 5,6,7,8 ;").tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    for empty in ("", "  ", ";", None, float("nan")):
        assert parse_boxes(empty).shape == (0, 4)
    for bad, words in [("1 2 3", "is 'x y w h'"), ("1 2 3 4 5", "is 'x y w h'"), ("a b c d", "four numbers"),
                       ("1 2 -3 4", ">= 0"), ("1 2 inf 4", "finite")]:
        with pytest.raises(ValueError, match=words):
            parse_boxes(bad)
    with pytest.raises(TypeError):
        parse_boxes(3)


def test_read_boxes_joins_an_images_rows_and_names_bad_lines(tmp_path):
    path = tmp_path / "labels.csv"
    pd.DataFrame({"file": ["dicom/a.dcm", "dicom/b.dcm", "dicom/a.dcm", ""],
                  "boxes": ["1 2 3 4", "", "5 6 7 8", "9 9 9 9"]}).to_csv(path, index=False)
    boxes = read_boxes(path, image_col="file")
    assert boxes["dicom/a.dcm"].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]] and boxes["dicom/b.dcm"].shape == (0, 4)
    assert set(boxes) == {"dicom/a.dcm", "dicom/b.dcm"}  # a row without an image is no image
    with pytest.raises(ValueError, match="no column 'image'"):
        read_boxes(path)
    pd.DataFrame({"image": ["a.png", "b.png"], "boxes": ["1 2 3 4", "1 2 3"]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"labels.csv: line 3 \(image 'b.png'\)"):
        read_boxes(path)


# --------------------------------------------------------------------------- geometry of a hit


def test_grow_boxes_by_a_share_of_the_longer_side_clipped():
    shape = (100, 80)  # rows, cols: 5 % of the longer side is 5 px
    assert grow_boxes([(10, 20, 10, 10)], shape).tolist() == [[5, 15, 25, 35]]
    assert grow_boxes([(0, 0, 5, 5)], shape).tolist() == [[0, 0, 10, 10]]  # clipped at the border
    assert grow_boxes([(70, 90, 10, 10)], shape, grow=0.1).tolist() == [[60, 80, 80, 100]]
    assert grow_boxes("10 20 10 10", shape, grow=0).tolist() == [[10, 20, 20, 30]]
    assert GROW == 0.05
    with pytest.raises(ValueError, match="outside the 80 x 100 image"):
        grow_boxes([(200, 20, 10, 10)], shape)  # boxes of another image's pixels
    with pytest.raises(ValueError, match="grow"):
        grow_boxes([(10, 20, 10, 10)], shape, grow=-0.1)
    with pytest.raises(ValueError, match="rows, cols"):
        grow_boxes([(10, 20, 10, 10)], (0, 80))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        grow_boxes(np.zeros((2, 3)), shape)


def test_a_peak_scores_by_its_pixel_centre():
    shape = (100, 80)
    box = [(10, 20, 10, 10)]  # covers the pixels 10-19 x 20-29 (corner coordinates, COCO's convention)

    def peak_at(x, y):  # a hand-made map peaking at (x, y), a lower bump at the image centre
        cam = np.zeros(shape, np.float32)
        cam[y, x] = 1.0
        cam[50, 40] = 0.5
        return cam_peak(cam)

    inside, margin, outside = peak_at(15, 25), peak_at(24, 34), peak_at(60, 80)
    assert inside == (15, 25) and margin == (24, 34) and outside == (60, 80)
    assert point_in_boxes(inside, box, shape) and point_in_boxes(margin, box, shape)  # in the grown box only
    assert not point_in_boxes(margin, box, shape, grow=0.0) and not point_in_boxes(outside, box, shape)
    # Exactly the box's pixels at grow=0: 10-19 in, 9 and 20 out.
    assert [point_in_boxes((x, 25), box, shape, grow=0) for x in (9, 10, 19, 20)] == [False, True, True, False]
    assert not point_in_boxes(None, box, shape) and not point_in_boxes((np.nan, np.nan), box, shape)  # no peak
    assert point_in_boxes((15, 25), [(0, 0, 1, 1), (10, 20, 10, 10)], shape, grow=0)  # any box
    with pytest.raises(ValueError, match="outside the 80 x 100 image"):
        point_in_boxes((80, 5), box, shape)


def test_boxes_mask_is_the_union_and_agrees_with_every_point():
    shape = (23, 31)
    boxes = [(2.3, 4.6, 7.1, 3.2), (6.0, 5.5, 4.4, 9.9), (25.2, 0.0, 10.0, 2.5)]  # overlapping, one clipped
    for grow in (0.0, 0.05, 0.2):
        mask = boxes_mask(boxes, shape, grow)
        assert mask.shape == shape and mask.dtype == bool
        every = np.array([[point_in_boxes((x, y), boxes, shape, grow) for x in range(shape[1])]
                          for y in range(shape[0])])
        assert (mask == every).all()
    # A union: overlapping boxes are not counted twice.
    assert boxes_mask([(0, 0, 6, 4), (3, 0, 6, 4)], (10, 10), grow=0).sum() == 9 * 4
    assert boxes_mask([], (4, 4)).sum() == 0


# --------------------------------------------------------------------------- the game


def test_pointing_game_known_answers():
    shape = (100, 80)
    box, centre_box = [(10, 20, 10, 10)], [(35, 45, 10, 10)]  # the second holds the image centre (39.5, 49.5)
    game = pointing_game([(15, 25), (60, 80), (40, 50), None, (1, 1)],
                         [box, box, centre_box, "10 20 10 10", ""], [shape] * 5)
    assert (game.n, game.hits, game.centre_hits, game.unscored) == (4, 2, 1, 1)
    assert game.hit_rate == pytest.approx(2 / 4) and game.centre_rate == pytest.approx(1 / 4)
    assert game.hit.tolist() == [True, False, True, False, False]
    assert game.centre_hit.tolist() == [False, False, True, False, False]
    assert game.scored.tolist() == [True, True, True, True, False]
    # Random point: the grown 10 x 10 boxes are 20 x 20 pixels of 8000, in every scored image.
    assert game.random_rate == pytest.approx(400 / 8000)
    assert np.isnan(game.area[4]) and game.area[:4] == pytest.approx([0.05] * 4)
    summary = game.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary == {"n": 4, "hits": 2, "hit_rate": 0.5, "centre_hits": 1, "centre_rate": 0.25,
                       "random_rate": 0.05, "grow": 0.05, "unscored": 1}
    empty = pointing_game([], [], [])
    assert empty.n == 0 and empty.hit_rate is None and empty.random_rate is None


def test_random_rate_is_the_exact_chance_of_a_uniform_peak():
    rng = np.random.default_rng(3)
    shapes = [(int(r), int(c)) for r, c in rng.integers(20, 60, (6, 2))]
    boxes = [[(rng.uniform(0, c - 8), rng.uniform(0, r - 8), rng.uniform(1, 8), rng.uniform(1, 8))
              for _ in range(int(rng.integers(1, 4)))] for r, c in shapes]
    game = pointing_game([None] * len(shapes), boxes, shapes, grow=0.03)
    # Every pixel as the peak, each image weighted equally: the exact expectation of a random peak.
    expected = np.mean([np.mean([point_in_boxes((x, y), b, s, 0.03) for y in range(s[0]) for x in range(s[1])])
                        for b, s in zip(boxes, shapes)])
    assert game.random_rate == pytest.approx(expected, abs=1e-12)
    assert game.hits == 0  # None peaks miss


def test_pointing_game_validates_and_names_the_input():
    with pytest.raises(ValueError, match="differ in length"):
        pointing_game([(1, 1)], [], [(10, 10)])
    with pytest.raises(ValueError, match="input 1: .*outside"):
        pointing_game([(1, 1), (2, 2)], ["0 0 2 2", "50 50 2 2"], [(10, 10)] * 2)
    with pytest.raises(ValueError, match="input 0: a point is"):
        pointing_game([(1, 2, 3)], ["0 0 2 2"], [(10, 10)])
    with pytest.raises(ValueError, match="grow"):
        pointing_game([], [], [], grow=float("nan"))


# --------------------------------------------------------------------------- peaks back in stored pixels


@pytest.mark.parametrize("pipeline", [Pipeline([Percentile(), Resize(longest=64), PadSquare()]), PIPELINE],
                         ids=["resize_pad", "crop_resize_pad"])
@pytest.mark.parametrize("shape", [(150, 97), (61, 203)])
def test_a_map_peaking_on_the_finding_in_the_model_input_hits_its_box_in_stored_pixels(pipeline, shape):
    """A bright square at a known place: a hand-made CAM on the model input (the input itself, blurred)
    comes back, through every resize, pad and crop, on the square's stored pixels, with no box growth."""
    rng = np.random.default_rng(sum(shape))
    rows, cols = shape
    image = np.zeros(shape, np.float32)
    image[4:-5, 6:-3] = 0.3 + 0.05 * rng.random((rows - 9, cols - 9))  # a field in a black frame (FOVCrop)
    side = 9
    x, y = int(rng.integers(10, cols - side - 10)), int(rng.integers(10, rows - side - 10))
    image[y:y + side, x:x + side] = 1.0
    stages = pipeline.trace(image, with_geometry=True)
    _, model_input, matrix = stages[-1]
    assert model_input.shape == (64, 64)
    cam = cv2.GaussianBlur(model_input, (0, 0), 1.5)
    cam = cam / cam.max()  # peaks on the square's centre as the model sees it
    back = cam_to_original(cam, matrix, shape)
    peak = cam_peak(back)
    assert point_in_boxes(peak, [(x, y, side, side)], shape, grow=0), (peak, (x, y))
    assert np.hypot(peak[0] - (x + side / 2 - 0.5), peak[1] - (y + side / 2 - 0.5)) <= max(shape) / 64 + 1
    game = pointing_game([peak], [[(x, y, side, side)]], [shape], grow=0)
    assert game.hit_rate == 1.0 and game.random_rate == pytest.approx(side * side / (rows * cols))


@pytest.mark.parametrize("pipeline", [Pipeline([Resize(longest=64), PadSquare()]),
                                      Pipeline([FOVCrop(), Resize(longest=64), PadSquare()]),
                                      Pipeline([FOVCrop(), Resize(longest=200), PadSquare()])],
                         ids=["shrink_pad", "crop_shrink_pad", "crop_enlarge_pad"])
def test_the_pipeline_geometry_is_exact_to_a_tenth_of_a_pixel(pipeline):
    """No half-pixel slip: the square's intensity centroid in the model input, mapped back through the
    pipeline's matrix, is the square's centre in stored pixels (a matrix without the half-pixel terms of
    pixel-centre alignment misses it by about one stored pixel at these scales)."""
    from radiology.geometry import map_points

    for seed in range(8):
        rng = np.random.default_rng(seed)
        rows, cols = (int(v) for v in rng.integers(60, 220, 2))
        image = np.zeros((rows, cols), np.float32)
        image[4:-5, 6:-3] = 0.3
        x, y = int(rng.integers(10, cols - 19)), int(rng.integers(10, rows - 19))
        image[y:y + 9, x:x + 9] = 0.9
        _, model_input, matrix = pipeline.trace(image, with_geometry=True)[-1]
        excess = np.clip(model_input - 0.3, 0, None)
        yy, xx = np.indices(excess.shape)
        centroid = ((excess * xx).sum() / excess.sum(), (excess * yy).sum() / excess.sum())
        back = map_points(np.linalg.inv(matrix), centroid)
        assert np.abs(back - (x + 4, y + 4)).max() < 0.2, (seed, back, (x + 4, y + 4))


# --------------------------------------------------------------------------- explain_inputs(boxes=...)


def _lesions(folder, seed: int, count: int, dicom: bool = False):
    """Lesion originals (PNG, or DICOM with a known SOP Instance UID); {name: (lesion, uid)}."""
    rng = np.random.default_rng(seed)
    written = {}
    for index in range(count):
        lesion = lesion_image(rng, True)
        name = f"sub/case{index}.{'dcm' if dicom else 'png'}"
        uid = f"1.2.826.0.1.3680043.8.498.{seed}{index + 1}"
        if dicom:
            (folder / "sub").mkdir(parents=True, exist_ok=True)
            write_phantom_dicom(folder / name, lesion.image, sop_instance_uid=uid)
        else:
            write_image(folder / name, lesion.image)
        written[name] = (lesion, uid)
    return written


def _box(lesion):
    (cx, cy), r = lesion.center, lesion.radius
    return f"{cx - r:.2f} {cy - r:.2f} {2 * r:.2f} {2 * r:.2f}"


def test_explain_inputs_plays_the_pointing_game(lesion_model, tmp_path):
    written = _lesions(tmp_path / "in", seed=31, count=6)
    names = sorted(written)
    boxes = {f"./{name}": _box(written[name][0]) for name in names[:5]}  # ./ does not matter
    boxes[names[5]] = ""  # no box: not scored
    bundle = make_bundle(lesion_model, tmp_path)
    table = explain_inputs(bundle, tmp_path / "in", tmp_path / "out", label="lesion", target_layer=LAYER,
                           progress=False, boxes=boxes)
    summary = table.attrs["pointing"]
    assert json.loads((tmp_path / "out" / "pointing.json").read_text()) == summary
    assert (summary["n"], summary["unscored"], summary["missing"], summary["errors"]) == (5, 1, 0, 0)
    assert summary["method"] == "gradcam" and summary["grow"] == GROW
    scored = pd.read_csv(tmp_path / "out" / "pointing.csv", keep_default_na=False)
    assert list(scored.columns) == list(POINTING_COLUMNS)
    assert scored.image.tolist() == names[:5] and (scored.label == "lesion").all()
    # The peaks are explanations.csv's, scored against the lesion's box: the model finds the blob.
    peaks = table.set_index("image").loc[names[:5], ["peak_x", "peak_y"]]
    assert scored.peak_x.tolist() == peaks.peak_x.tolist() and scored.peak_y.tolist() == peaks.peak_y.tolist()
    assert summary["hits"] == scored.hit.sum() >= 4 and summary["hit_rate"] == pytest.approx(scored.hit.mean())
    shapes = [written[name][0].image.shape for name in names[:5]]
    expected = np.mean([boxes_mask(boxes[f"./{n}"], s).mean() for n, s in zip(names[:5], shapes)])
    assert summary["random_rate"] == pytest.approx(expected, abs=1e-6)
    assert summary["random_rate"] < summary["hit_rate"]
    centre = [point_in_boxes(((s[1] - 1) / 2, (s[0] - 1) / 2), boxes[f"./{n}"], s) for n, s in zip(names[:5], shapes)]
    assert scored.centre_hit.tolist() == [int(c) for c in centre]


def test_explain_inputs_joins_boxes_on_the_dicom_uid(lesion_model, tmp_path):
    written = _lesions(tmp_path / "in", seed=32, count=3, dicom=True)
    boxes = {uid: _box(lesion) for lesion, uid in written.values()}
    boxes["1.2.3.4"] = "1 1 2 2"  # an image not explained: ignored
    bundle = make_bundle(lesion_model, tmp_path)
    table = explain_inputs(bundle, tmp_path / "in", tmp_path / "out", label="lesion", target_layer=LAYER,
                           progress=False, boxes=boxes, boxes_by="SOPInstanceUID")
    assert (table.error == "").all()
    summary = table.attrs["pointing"]
    assert summary["n"] == 3 and summary["hits"] >= 2
    scored = pd.read_csv(tmp_path / "out" / "pointing.csv", keep_default_na=False)
    assert sorted(scored.image) == sorted(written)  # named as explained, never by UID
    # Keyed by image names instead, nothing matches: all explained, none scored.
    again = explain_inputs(bundle, tmp_path / "in", tmp_path / "out", label="lesion", target_layer=LAYER,
                           progress=False, boxes=boxes)
    assert again.attrs["pointing"]["n"] == 0 and again.attrs["pointing"]["missing"] == 3


def test_explain_inputs_boxes_outside_the_image_are_an_error_row(lesion_model, tmp_path):
    written = _lesions(tmp_path / "in", seed=33, count=2)
    names = sorted(written)
    boxes = {names[0]: _box(written[names[0]][0]), names[1]: "5000 5000 10 10"}
    table = explain_inputs(make_bundle(lesion_model, tmp_path), tmp_path / "in", tmp_path / "out", label="lesion",
                           target_layer=LAYER, progress=False, boxes=boxes)
    assert table.attrs["pointing"]["n"] == 1 and table.attrs["pointing"]["errors"] == 1
    scored = pd.read_csv(tmp_path / "out" / "pointing.csv", keep_default_na=False).set_index("image")
    assert "outside" in scored.loc[names[1], "error"] and scored.loc[names[1], "hit"] == ""


def test_explain_inputs_validates_boxes_before_any_work(tmp_path):
    for boxes, kwargs, words in [({"a.png": "1 2 3"}, {}, "boxes of 'a.png'"), ({}, {"boxes_by": "uid"}, "boxes_by"),
                                 ({}, {"grow": -1}, "grow"), (["a.png"], {}, "mapping")]:
        with pytest.raises((ValueError, TypeError), match=words):
            explain_inputs(tmp_path / "no-bundle", tmp_path, tmp_path / "out", boxes=boxes, progress=False, **kwargs)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "pointing.csv").write_text("mine\n")
    with pytest.raises(ValueError, match="not a pointing table"):
        explain_inputs(tmp_path / "no-bundle", tmp_path / "in", tmp_path / "out", boxes={}, progress=False)
    assert (tmp_path / "out" / "pointing.csv").read_text() == "mine\n"
    (tmp_path / "out" / "pointing.csv").unlink()
    (tmp_path / "out" / "pointing.json").write_text('{"my": "notes"}')
    with pytest.raises(ValueError, match="not a pointing summary"):
        explain_inputs(tmp_path / "no-bundle", tmp_path / "in", tmp_path / "out", boxes={}, progress=False)
    assert (tmp_path / "out" / "pointing.json").read_text() == '{"my": "notes"}'


# --------------------------------------------------------------------------- radiology explain --boxes


def test_cli_explain_boxes_writes_and_prints_the_pointing_game(lesion_model, tmp_path, capsys):
    bundle = save_bundle(tmp_path / "bundle", lesion_model, PIPELINE, {"classes": CLASSES}, size=64)
    written = _lesions(tmp_path / "data", seed=34, count=4, dicom=True)
    names = sorted(written)
    labels = pd.DataFrame({"file": names, "SOPInstanceUID": [written[n][1] for n in names],
                           "boxes": [_box(written[n][0]) for n in names[:3]] + [""]})
    labels.to_csv(tmp_path / "data" / "labels.csv", index=False)
    out = tmp_path / "cams"
    common = ["explain", str(bundle), "--device", "cpu", "--target-layer", LAYER, "--label", "lesion", "-q"]
    # The labels table is both the input and the boxes: joined on --image-col.
    assert main([*common[:2], str(tmp_path / "data" / "labels.csv"), *common[2:], "--image-col", "file",
                 "--out", str(out), "--boxes", str(tmp_path / "data" / "labels.csv")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads((out / "pointing.json").read_text())
    assert line.startswith("pointing game on 3 maps with boxes (grown by 5% of the longer side): hit rate ")
    assert "image centre" in line and "random point" in line and "1 explained without boxes, not scored" in line
    assert summary["n"] == 3 and summary["unscored"] == 1 and summary["hits"] >= 2
    pointing = (out / "pointing.csv").read_text()
    assert str(tmp_path) not in pointing and str(tmp_path) not in (out / "pointing.json").read_text()
    assert pd.read_csv(out / "pointing.csv").image.tolist() == names[:3]
    # A folder input: ids are file names, the CSV has no such column: joined on the DICOMs' UIDs.
    assert main([*common[:2], str(tmp_path / "data" / "sub"), *common[2:], "--out", str(tmp_path / "uid"),
                 "--boxes", str(tmp_path / "data" / "labels.csv")]) == 0
    assert json.loads((tmp_path / "uid" / "pointing.json").read_text())["n"] == 3
    capsys.readouterr()
    # A malformed boxes file stops the command before any work.
    bad = tmp_path / "bad.csv"
    bad.write_text("image,boxes\na.dcm,1 2 3\n")
    assert main([*common[:2], str(tmp_path / "data" / "sub"), *common[2:], "--out", str(tmp_path / "bad"),
                 "--boxes", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "--boxes" in err and "line 2" in err and not (tmp_path / "bad").exists()
    assert main([*common[:2], str(tmp_path / "data" / "sub"), *common[2:], "--out", str(tmp_path / "bad"),
                 "--boxes", str(bad), "--boxes-col", "nope"]) == 2
    assert "no column 'nope'" in capsys.readouterr().err
