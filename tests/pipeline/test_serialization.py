"""Pipeline files: JSON and YAML, versions, errors naming the file, step and parameter, referenced files."""

import json
import shutil

import numpy as np
import pytest

from radiology.pipeline import (
    CLAHE,
    CleanBackground,
    Decode,
    Enhance,
    FundusCrop,
    Histogram,
    KneeCrop,
    Percentile,
    Pipeline,
    PipelineError,
    Resize,
)
from radiology.synthetic import write_phantom_dicom


def test_json_and_yaml_round_trip(tmp_path):
    pipe = Pipeline([Histogram.fit([np.arange(1000, dtype=np.uint16)], n_bins=8), CleanBackground(fill=0.1),
                     CLAHE(3.0, (4, 4)), Enhance(0.05, 1.2), Resize(width=64), FundusCrop(threshold=0.2)])
    for name in ("p.json", "p.yaml"):
        assert Pipeline.load(pipe.save(tmp_path / name)) == pipe
    assert Pipeline.from_json(pipe.to_json()).steps[0].bins == pipe.steps[0].bins


def test_bad_pipelines_are_rejected():
    with pytest.raises(ValueError, match="must come first"):
        Pipeline([CLAHE(), Percentile()])
    with pytest.raises(ValueError, match="unknown step"):
        Pipeline.from_dict({"format": "radiology.pipeline", "version": 1, "steps": [{"name": "sharpen"}]})
    with pytest.raises(ValueError, match="unknown parameters"):
        Pipeline.from_dict({"format": "radiology.pipeline", "version": 1, "steps": [{"name": "clahe", "clip": 1}]})
    with pytest.raises(ValueError, match="not a radiology pipeline"):
        Pipeline.from_dict({"steps": []})


def test_version_2_dict_and_version_1_still_loads():
    pipe = Pipeline([Percentile(1, 99), Resize(width=8)], Decode(frame=-1, polarity=False, color="keep"))
    data = pipe.to_dict()
    assert data["version"] == 2
    assert data["decode"] == {"frame": -1, "bits": True, "modality_lut": True, "polarity": False, "color": "keep"}
    assert Pipeline.from_dict(json.loads(json.dumps(data))) == pipe
    v1 = {"format": "radiology.pipeline", "version": 1, "steps": [{"name": "percentile", "low": 1, "high": 99}]}
    assert Pipeline.from_dict(v1) == Pipeline([Percentile(1, 99)])
    assert Pipeline.from_dict(v1).decode == Decode()
    with pytest.raises(ValueError, match="unknown keys"):
        Pipeline.from_dict({**v1, "decode": {}})
    with pytest.raises(ValueError, match="version 3"):
        Pipeline.from_dict({**data, "version": 3})
    with pytest.raises(ValueError, match=r"decode: color must be"):
        Pipeline.from_dict({**data, "decode": {"color": "rgb"}})
    with pytest.raises(ValueError, match=r"decode: unknown parameters \['colour'\]"):
        Pipeline.from_dict({**data, "decode": {"colour": "keep"}})


@pytest.mark.parametrize("step, message", [
    ({"name": "clahe", "clip_limit": 0}, r"step 0 \(clahe\): clip_limit must be > 0, got 0"),
    ({"name": "clahe", "tile_grid": [8]}, r"step 0 \(clahe\): tile_grid must be 2 positive integers"),
    ({"name": "percentile", "low": 99, "high": 1}, r"step 0 \(percentile\): low must be < high"),
    ({"name": "histogram", "bins": [3, 2, 1]}, r"step 0 \(histogram\): bins must hold"),
    ({"name": "histogram", "n_bins": 1}, r"step 0 \(histogram\): n_bins must be >= 2"),
    ({"name": "resize"}, r"step 0 \(resize\): give width"),
    ({"name": "resize", "width": "big"}, r"step 0 \(resize\): width must be an integer"),
    ({"name": "enhance", "brightness": 3}, r"step 0 \(enhance\): brightness must be <= 1"),
    ({"name": "fov_crop", "threshold": 1.5}, r"step 0 \(fov_crop\): threshold must be < 1"),
    ({"name": "clean_background", "crop_collimation": "yes"},
     r"step 0 \(clean_background\): crop_collimation must be true or false"),
    ({"name": "knee_crop", "knees": 3}, r"step 0 \(knee_crop\): knees must be 1, 2 or null"),
    ({"name": "voi", "index": -1}, r"step 0 \(voi\): index must be >= 0"),
])
def test_bad_parameters_fail_at_load_naming_step_and_parameter(tmp_path, step, message):
    data = {"format": "radiology.pipeline", "version": 2, "steps": [step]}
    with pytest.raises(ValueError, match=message):
        Pipeline.from_dict(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PipelineError, match="bad.json: " + message) as info:
        Pipeline.load(path)
    assert "\n" not in str(info.value)


def test_load_names_the_file_on_syntax_errors(tmp_path):
    (tmp_path / "p.yaml").write_text("steps: [unclosed\n  - x: {")
    with pytest.raises(PipelineError, match=r"p.yaml: not valid YAML") as info:
        Pipeline.load(tmp_path / "p.yaml")
    assert "\n" not in str(info.value)
    (tmp_path / "p.json").write_text("{")
    with pytest.raises(PipelineError, match=r"p.json: not valid JSON"):
        Pipeline.load(tmp_path / "p.json")
    with pytest.raises(ValueError, match="clip_limit must be > 0"):
        CLAHE(clip_limit=-1)


def test_knee_crop_pipeline_with_copied_files_moves_as_a_folder(tmp_path, toy_knee):
    weights, image = toy_knee
    dicom = write_phantom_dicom(tmp_path / "knee.dcm", image)
    pipe = Pipeline([Percentile(0, 100), KneeCrop(weights=str(weights), size_px=40, knees=1), Resize(width=32)])
    assert pipe.files() == [weights]
    folder_a = tmp_path / "a"
    folder_a.mkdir()
    pipe.save(folder_a / "pipeline.json", copy_files=True)
    assert (folder_a / "toy.npz").read_bytes() == weights.read_bytes()
    assert json.loads((folder_a / "pipeline.json").read_text())["steps"][1]["weights"] == "toy.npz"
    folder_b = tmp_path / "elsewhere" / "b"
    shutil.copytree(folder_a, folder_b)
    shutil.rmtree(folder_a)
    weights.unlink()
    moved = Pipeline.load(folder_b / "pipeline.json")
    assert moved.files() == [folder_b / "toy.npz"]
    expected = Pipeline([Percentile(0, 100)]).read(dicom)
    assert np.array_equal(moved.read(dicom), Pipeline(moved.steps[1:])(expected))
    assert moved.read(dicom).shape == (32, 32)


def test_save_without_copy_keeps_references_valid(tmp_path, monkeypatch):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "k.npz").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    pipe = Pipeline([KneeCrop(weights="w/k.npz")])
    saved = pipe.save(tmp_path / "conf" / "p.yaml")  # relative to the cwd, not to conf/
    assert Pipeline.load(saved).files() == [(tmp_path / "w" / "k.npz").absolute()]
    inside = pipe.save(tmp_path / "p.json")
    assert json.loads(inside.read_text())["steps"][0]["weights"] == "w/k.npz"
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        Pipeline([KneeCrop(weights="missing.npz")]).save(tmp_path / "x.json", copy_files=True)
