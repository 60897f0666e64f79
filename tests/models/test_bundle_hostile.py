"""Hostile bundles: every known way to make a bundle run code, read other files or lie about itself.

Each tampered bundle gets a manifest that matches its tampered files (an attacker ships both),
so what stops it is the check of the content, not the checksum; a second family leaves the
manifest as saved and expects the checksum to name the damaged file. Every payload would
create a marker file if it ran: the tests assert that it does not exist.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("onnxruntime")

from radiology.geometry.knee import N_FEATURES, KneeLocalizer  # noqa: E402
from radiology.models import (  # noqa: E402
    BACKENDS,
    BundleError,
    RadiographClassifier,
    UnsafeModelError,
    load_bundle,
    save_bundle,
    verify_bundle,
)
from radiology.pipeline import KneeCrop, Percentile, Pipeline, Resize  # noqa: E402
from radiology.synthetic import phantom_radiograph, write_phantom_dicom  # noqa: E402

SIZE = 32


class _Payload:
    """Unpickling this writes the marker file: proof that code from the bundle ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    weights = KneeLocalizer(np.random.default_rng(0).normal(size=N_FEATURES), 0.1).save(root / "knee.npz")
    pipeline = Pipeline([Percentile(), KneeCrop(weights=str(weights), size_px=48, knees=1), Resize(SIZE, SIZE)])
    torch.manual_seed(0)
    model = RadiographClassifier("resnet10t", 2, in_chans=1).eval()
    folder = save_bundle(root / "bundle", model, pipeline, {"classes": ["normal", "abnormal"]}, {}, size=SIZE)
    image = write_phantom_dicom(root / "image.dcm", phantom_radiograph((64, 64), seed=1))
    return {"folder": folder, "image": image}


@pytest.fixture
def bundle(saved, tmp_path):
    """A fresh copy to tamper with, and the marker a payload would write."""
    folder = tmp_path / "bundle"
    shutil.copytree(saved["folder"], folder)
    return folder, tmp_path / "payload_ran"


def _reseal(folder: Path) -> None:
    """Rewrite the manifest to match the (tampered) files, as an attacker shipping both would."""
    manifest = json.loads((folder / "bundle.json").read_text())
    manifest["files"] = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
                         for name in manifest["files"] if (folder / name).exists()}
    (folder / "bundle.json").write_text(json.dumps(manifest))


def _rewrite_archive(path: Path, change) -> None:
    """Rebuild a zip archive; ``change(entries)`` edits the {name: bytes} mapping in place."""
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    change(entries)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    path.write_bytes(buffer.getvalue())


def _entry(entries: dict, suffix: str) -> str:
    return next(name for name in entries if name.endswith(suffix))


def test_an_untouched_bundle_verifies_and_loads_with_every_backend(saved):
    files = verify_bundle(saved["folder"])
    assert set(files) >= {"model.pt2", "model.onnx", "weights.safetensors", "labels.json", "knee.npz"}
    probs = {backend: load_bundle(saved["folder"], backend).predict(saved["image"]) for backend in BACKENDS}
    np.testing.assert_allclose(probs["export"], probs["eager"], atol=1e-4)
    np.testing.assert_allclose(probs["onnx"], probs["eager"], atol=1e-4)


def test_no_absolute_source_paths_in_the_program(saved):
    # torch.export records stack traces with the exporting machine's absolute source paths.
    data = (saved["folder"] / "model.pt2").read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        program = archive.read(_entry({n: 0 for n in archive.namelist()}, "models/model.json")).decode()
    assert "stack_trace" not in program and str(Path(__file__).parents[2]) not in program


# ------------------------------------------------------------------ model.pt2: code hidden in the archive


def _pickled_constant(marker):
    def change(entries):
        config = _entry(entries, "data/constants/model_constants_config.json")
        table = {"config": {"evil": {"path_name": "tensor_0", "is_param": False, "use_pickle": True,
                                     "tensor_meta": None}}}
        entries[config] = json.dumps(table).encode()
        entries[config.replace("model_constants_config.json", "tensor_0")] = pickle.dumps(_Payload(marker))
    return change


def _opaque_object(marker):
    def change(entries):
        config = _entry(entries, "data/constants/model_constants_config.json")
        entries[config.replace("model_constants_config.json", "opaque_obj_0")] = pickle.dumps(_Payload(marker))
    return change


def _pickled_sample_inputs(marker):
    def change(entries):
        entries[_entry(entries, "data/sample_inputs/model.pt")] = pickle.dumps(_Payload(marker))
    return change


def _program_edit(edit):
    def factory(marker):
        def change(entries):
            name = _entry(entries, "models/model.json")
            program = json.loads(entries[name])
            edit(program, marker)
            entries[name] = json.dumps(program).encode()
        return change
    return factory


def _guard_code(program, marker):
    program["guards_code"] = [f"open({str(marker)!r}, 'w').write('ran') is None"]


def _shape_expression(program, marker):
    program["range_constraints"] = {f"exec(\"open({str(marker)!r}, 'w')\")": {"min_val": 1, "max_val": None}}


def _symbol_expression(program, marker):
    program["graph_module"]["graph"]["sym_int_values"]["evil"] = {
        "as_expr": {"expr_str": "exec(chr(111)+chr(112)) + Symbol('s77', positive=True)"}}


def _power_expression(program, marker):
    # Not code, but a computation without end: sympy would evaluate 10**(10**12).
    program["graph_module"]["graph"]["sym_int_values"]["evil"] = {
        "as_expr": {"expr_str": "Pow(Integer(10), Integer(1000000000000))"}}


def _deep_program(marker):
    def change(entries):
        entries[_entry(entries, "models/model.json")] = b"[" * 100_000 + b"]" * 100_000
    return change


def _node_target(program, marker):
    program["graph_module"]["graph"]["nodes"][0]["target"] = "torch.serialization.load"


def _file_reading_operator(program, marker):
    program["graph_module"]["graph"]["nodes"][0]["target"] = "torch.ops.aten.from_file.default"


def _legacy_pickled_weights(marker):
    def change(entries):
        top = next(iter(entries)).split("/")[0]
        entries[f"{top}/data/weights/model.pt"] = pickle.dumps(_Payload(marker))
    return change


@pytest.mark.parametrize(("tamper", "message"), [
    (_pickled_constant, "as a pickle"),
    (_opaque_object, "opaque_obj_0"),
    (_pickled_sample_inputs, "sample inputs"),
    (_program_edit(_guard_code), "guard code"),
    (_program_edit(_shape_expression), "range constraints"),
    (_program_edit(_symbol_expression), "shape expression"),
    (_program_edit(_node_target), "torch.serialization.load"),
    (_program_edit(_power_expression), "shape expression"),
    (_deep_program, "not a readable program"),
    (_program_edit(_file_reading_operator), "from_file"),
    (_legacy_pickled_weights, "data/weights/model.pt"),
], ids=["pickled-constant", "opaque-object", "sample-inputs", "guards-code", "range-constraint", "sym-expr",
        "node-target", "power", "deep-json", "from-file", "legacy-weights"])
def test_code_in_model_pt2_never_runs(bundle, tamper, message):
    folder, marker = bundle
    _rewrite_archive(folder / "model.pt2", tamper(marker))
    _reseal(folder)
    with pytest.raises(UnsafeModelError, match="model.pt2") as caught:
        load_bundle(folder, "export")
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not marker.exists()


def test_the_payload_would_run_without_the_check(bundle):
    # The test above means something: torch itself unpickles the tampered constant.
    folder, marker = bundle
    _rewrite_archive(folder / "model.pt2", _pickled_constant(marker))
    with pytest.raises(Exception):  # noqa: B017 - torch fails after the payload ran
        torch.export.load(folder / "model.pt2")
    assert marker.exists()


# ------------------------------------------------------------------ pipeline files, ONNX, weights


def test_a_pickled_step_file_is_refused_at_load(bundle):
    folder, marker = bundle
    np.save(folder / "knee.npy", np.array([_Payload(marker), 0.1], dtype=object), allow_pickle=True)
    record = json.loads((folder / "pipeline.json").read_text())
    record["steps"][1]["weights"] = "knee.npy"
    (folder / "pipeline.json").write_text(json.dumps(record))
    manifest = json.loads((folder / "bundle.json").read_text())
    manifest["files"]["knee.npy"] = ""
    (folder / "bundle.json").write_text(json.dumps(manifest))
    _reseal(folder)
    for backend in BACKENDS:
        with pytest.raises(UnsafeModelError, match=r"knee\.npy: not plain NumPy arrays"):
            load_bundle(folder, backend)
    # And the step itself never unpickles, even outside a bundle.
    with pytest.raises(ValueError, match="pickled file"):
        KneeCrop(weights=str(folder / "knee.npy"), size_px=48)(phantom_radiograph((64, 64)))
    assert not marker.exists()


@pytest.mark.parametrize("reference", ["/etc/passwd", "../../outside.npz"])
def test_a_step_file_outside_the_bundle_is_refused(bundle, reference):
    folder, _ = bundle
    record = json.loads((folder / "pipeline.json").read_text())
    record["steps"][1]["weights"] = reference
    (folder / "pipeline.json").write_text(json.dumps(record))
    _reseal(folder)
    with pytest.raises(BundleError, match="outside the bundle"):
        load_bundle(folder, "onnx")


def _external_data(model):
    import onnx

    tensor = model.graph.initializer[0]
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../../../etc/passwd"


def _custom_domain(model):
    model.graph.node[0].domain = "com.example.native"


@pytest.mark.parametrize(("tamper", "message"), [(_external_data, "external file"),
                                                 (_custom_domain, "com.example.native")])
def test_onnx_reaching_outside_its_bytes_is_refused(bundle, tamper, message):
    import onnx

    folder, _ = bundle
    model = onnx.load(folder / "model.onnx")
    tamper(model)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    _reseal(folder)
    with pytest.raises(UnsafeModelError, match=message):
        load_bundle(folder, "onnx")


def test_pickled_weights_are_not_read(bundle):
    # An old-style weights.pt (a pickle) under the safetensors name: not safetensors, refused unread.
    folder, marker = bundle
    (folder / "weights.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    _reseal(folder)
    with pytest.raises(BundleError, match="weights.safetensors: not readable safetensors"):
        load_bundle(folder, "eager")
    assert not marker.exists()


# ------------------------------------------------------------------ damage: truncated, swapped, inconsistent


@pytest.mark.parametrize(("name", "backend"), [
    ("model.pt2", "export"), ("model.onnx", "onnx"), ("weights.safetensors", "eager")])
def test_truncated_model_files_are_named(bundle, name, backend):
    folder, _ = bundle
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=rf"{name}: sha256 does not match bundle\.json"):
        load_bundle(folder, backend)
    _reseal(folder)  # damaged before the manifest was written: the content check names it too
    with pytest.raises(BundleError, match=name):
        load_bundle(folder, backend)


@pytest.mark.parametrize(("name", "backend"), [
    ("model.pt2", "export"), ("model.onnx", "onnx"), ("weights.safetensors", "eager")])
def test_swapped_model_files_are_refused(bundle, name, backend):
    folder, _ = bundle
    other = "model.onnx" if name != "model.onnx" else "model.pt2"
    shutil.copy(folder / other, folder / name)
    _reseal(folder)
    with pytest.raises(BundleError, match=name):
        load_bundle(folder, backend)


def test_every_tampered_file_is_named_by_the_checksum(bundle):
    folder, _ = bundle
    for name in json.loads((folder / "bundle.json").read_text())["files"]:
        original = (folder / name).read_bytes()
        (folder / name).write_bytes(original + b" ")
        with pytest.raises(BundleError, match=rf"{name}: sha256 does not match"):
            verify_bundle(folder)
        (folder / name).write_bytes(original)
    verify_bundle(folder)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda labels: labels.pop("classes"), "'classes' must be"),
    (lambda labels: labels.update(classes=["a", "b", "c"]), "3 classes, the model has 2 outputs"),
    (lambda labels: labels.update(channels=3), "channels 3, the model takes 1"),
    (lambda labels: labels.update(size=[100000, 100000]), "'size' must be"),
    (lambda labels: labels.update(multi_label="yes"), "'multi_label'"),
    (lambda labels: labels.update(thresholds=[0.5]), "'thresholds'"),
    (lambda labels: labels.update(views=["a", "b"]), "'views'"),
])
def test_inconsistent_labels_are_one_line(bundle, edit, message):
    folder, _ = bundle
    labels = json.loads((folder / "labels.json").read_text())
    edit(labels)
    (folder / "labels.json").write_text(json.dumps(labels))
    _reseal(folder)
    with pytest.raises(BundleError, match=message) as caught:
        load_bundle(folder, "onnx")
    assert "labels.json" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.update(version=99), "version 99"),
    (lambda m: m.update(format="other"), "not a radiology bundle manifest"),
    (lambda m: m["files"].update({"../escape": "0" * 64}), "'files' must map"),
    (lambda m: m["files"].pop("model.onnx"), "model.onnx: not listed"),
])
def test_bad_manifests_are_refused(bundle, edit, message):
    folder, _ = bundle
    manifest = json.loads((folder / "bundle.json").read_text())
    edit(manifest)
    (folder / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        load_bundle(folder, "onnx")


@pytest.mark.parametrize("name", ["labels.json", "pipeline.json", "model.json"])
def test_deeply_nested_json_is_one_line(bundle, name):
    folder, _ = bundle
    (folder / name).write_text("[" * 100_000 + "]" * 100_000)
    _reseal(folder)
    with pytest.raises(BundleError, match=name) as caught:
        load_bundle(folder, "onnx")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("backend", ["eager", "export", "onnx"])
def test_model_config_cannot_name_a_hub_or_a_path(bundle, backend):
    folder, _ = bundle
    record = json.loads((folder / "model.json").read_text())
    for arch in ("hf-hub:someone/something", "../weights", "a b", ""):
        record["config"]["arch"] = arch
        (folder / "model.json").write_text(json.dumps(record))
        _reseal(folder)
        with pytest.raises(BundleError, match="not a model name"):
            load_bundle(folder, backend)


def test_an_arch_timm_does_not_know_fails_where_a_model_is_built(bundle):
    folder, _ = bundle
    record = json.loads((folder / "model.json").read_text())
    record["config"]["arch"] = "no_such_net"
    (folder / "model.json").write_text(json.dumps(record))
    _reseal(folder)
    with pytest.raises(BundleError, match="not a timm architecture"):
        load_bundle(folder, "eager")
    served = load_bundle(folder, "onnx")  # the ONNX graph never reads the name
    with pytest.raises(BundleError, match="not a timm architecture"):
        served.model  # noqa: B018 - the eager model is built on first use


def test_the_cli_reports_a_hostile_bundle_in_one_line_and_exit_2(bundle, saved, tmp_path):
    folder, marker = bundle
    _rewrite_archive(folder / "model.pt2", _pickled_constant(marker))
    _reseal(folder)
    out = tmp_path / "predictions.csv"
    done = subprocess.run([sys.executable, "-m", "radiology", "predict", str(folder), str(saved["image"]),
                           "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "model.pt2" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not marker.exists() and not out.exists()
