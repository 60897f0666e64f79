"""Model bundles: save once per module, then eager / torch.export / ONNX agree on real preprocessed files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("onnxruntime")

from pydicom.data import get_testdata_file  # noqa: E402

from radiology.geometry.knee import N_FEATURES, KneeLocalizer  # noqa: E402
from radiology.models import BACKENDS, Bundle, BundleError, RadiographClassifier, load_bundle, save_bundle  # noqa: E402
from radiology.models.bundle import BUNDLE_FILES  # noqa: E402
from radiology.models.export import _labels_record  # noqa: E402
from radiology.pipeline import KneeCrop, PadSquare, Percentile, Pipeline, Resize  # noqa: E402
from radiology.synthetic import phantom_radiograph, write_phantom_dicom  # noqa: E402

ARCH = "resnet10t"
SIZE = 64
TRAIN_INFO = {"epochs": 3, "metrics": {"auc": np.float32(0.75)}, "n_train": np.int64(12)}


def _spread_head(model: RadiographClassifier) -> RadiographClassifier:
    # A random-init head gives near-uniform probabilities; larger weights make the comparisons meaningful.
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    return model


def _inputs(bundle_or_pipeline, sources, views=1):
    """The preprocessed batch the model sees, built independently of Bundle.load_sample."""
    pipeline = bundle_or_pipeline
    if views == 1:
        return np.stack([pipeline.read(path)[None] for path in sources]).astype(np.float32)
    return np.stack([np.stack([pipeline.read(path)[None] for path in sample]) for sample in sources])


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """A single-view, single-label bundle whose pipeline refers to a file (KneeCrop weights)."""
    root = tmp_path_factory.mktemp("single")
    weights = KneeLocalizer(np.random.default_rng(0).normal(size=N_FEATURES), 0.1).save(root / "knee.npz")
    pipeline = Pipeline([Percentile(), KneeCrop(weights=str(weights), size_px=96, knees=1),
                         Resize(longest=SIZE), PadSquare()])
    sources = [write_phantom_dicom(root / f"phantom{seed}.dcm", phantom_radiograph((160 + 16 * seed, 128), seed=seed))
               for seed in range(3)] + [get_testdata_file("CT_small.dcm")]
    expected_input = _inputs(pipeline, sources)
    torch.manual_seed(0)
    model = _spread_head(RadiographClassifier(ARCH, 3, in_chans=1))  # left in training mode on purpose
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(expected_input))
    model.train()
    folder = save_bundle(root / "bundle", model, pipeline, {"classes": ["normal", "fracture", "implant"]},
                         TRAIN_INFO, size=SIZE)
    weights.unlink()  # the bundle must not need the original file
    return {"folder": folder, "sources": sources, "model": model, "input": expected_input,
            "probs": torch.softmax(logits, 1).numpy()}


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    """A two-view (concat), three-channel, multi-label bundle with per-label thresholds."""
    root = tmp_path_factory.mktemp("multi")
    pipeline = Pipeline([Percentile(), Resize(longest=48), PadSquare()])
    paths = [write_phantom_dicom(root / f"view{seed}.dcm", phantom_radiograph((96, 80 + 8 * seed), seed=seed))
             for seed in range(4)]
    sources = [(paths[0], paths[1]), (paths[2], paths[3]), (paths[1], paths[0])]
    gray = _inputs(pipeline, sources, views=2)
    expected_input = np.repeat(gray, 3, axis=2)  # gray repeated on the three channels
    torch.manual_seed(0)
    model = _spread_head(RadiographClassifier(ARCH, 3, in_chans=3, views=2, fusion="concat")).eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(expected_input))
    labels = {"classes": ["nodule", "effusion", "cardiomegaly"], "multi_label": True, "thresholds": [0.3, 0.5, 0.7],
              "views": ["frontal", "lateral"]}
    folder = save_bundle(root / "bundle", model, pipeline, labels, size=(48, 48))
    return {"folder": folder, "sources": sources, "input": expected_input, "probs": torch.sigmoid(logits).numpy()}


# --------------------------------------------------------------------------- single view


def test_bundle_files_and_records(single):
    folder = single["folder"]
    assert all((folder / name).is_file() for name in BUNDLE_FILES)
    labels = json.loads((folder / "labels.json").read_text())
    assert labels == {"classes": ["normal", "fracture", "implant"], "multi_label": False, "activation": "softmax",
                      "thresholds": None, "views": ["image"], "channels": 1, "size": [SIZE, SIZE]}
    train = json.loads((folder / "train.json").read_text())
    assert train["epochs"] == 3 and train["metrics"] == {"auc": 0.75} and train["n_train"] == 12
    assert {"radiology", "torch", "timm"} <= set(train["versions"])
    model_record = json.loads((folder / "model.json").read_text())
    assert model_record["config"] == single["model"].config
    # The caller's model is left as it was (training mode).
    assert single["model"].training


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_give_the_model_probabilities_on_files(single, backend):
    bundle = load_bundle(single["folder"], backend)
    assert isinstance(bundle, Bundle) and bundle.backend == backend
    probs = bundle.predict(single["sources"], batch_size=3)  # two batches: 3 + 1
    assert probs.shape == (4, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(probs, single["probs"], atol=1e-4)
    # Different images, different answers: the comparison above is not between constants.
    assert np.ptp(probs[:, 0]) > 1e-3
    np.testing.assert_array_equal(bundle.decide(probs), probs.argmax(axis=1))


@pytest.mark.parametrize("backend", ["export", "onnx"])
def test_exported_programs_take_any_batch_size(single, backend):
    bundle = load_bundle(single["folder"], backend)
    x = single["input"]
    np.testing.assert_allclose(bundle.predict_batch(x[:1]), single["probs"][:1], atol=1e-4)
    np.testing.assert_allclose(bundle.predict_batch(x[1:4]), single["probs"][1:4], atol=1e-4)
    # A view axis of one is accepted for a single-view model, by every backend.
    np.testing.assert_allclose(bundle.predict_batch(x[:2, None]), single["probs"][:2], atol=1e-4)


def test_predict_on_one_path_and_load_sample(single):
    bundle = load_bundle(single["folder"])
    path = single["sources"][3]
    sample = bundle.load_sample(path)
    assert sample.shape == (1, SIZE, SIZE) and sample.dtype == np.float32
    np.testing.assert_allclose(sample, single["input"][3])
    image = single["input"][3][0]
    np.testing.assert_array_equal(bundle.model_input(image), sample)  # what load_sample does per view
    np.testing.assert_allclose(bundle.model_input(np.dstack([image] * 3)), sample, atol=1e-6)  # colour made gray
    with pytest.raises(ValueError, match="the model takes"):
        bundle.model_input(image[:-1])
    probs = bundle.predict(path)
    assert probs.shape == (1, 3)
    np.testing.assert_allclose(probs[0], single["probs"][3], atol=1e-5)
    assert bundle.predict([]).shape == (0, 3)


def test_bundle_attributes_and_eager_model(single):
    bundle = load_bundle(single["folder"], "onnx")
    assert bundle.classes == ["normal", "fracture", "implant"]
    assert bundle.multi_label is False and bundle.thresholds is None
    assert bundle.views == ("image",) and bundle.channels == 1 and bundle.size == (SIZE, SIZE)
    assert bundle.train["epochs"] == 3
    model = bundle.model  # eager model, also for other backends
    assert isinstance(model, RadiographClassifier) and not model.training
    for key, tensor in single["model"].state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor), key


def test_bundle_with_file_reference_is_self_contained(single, tmp_path):
    # The KneeCrop weights were copied into the bundle and are referred to by name.
    record = json.loads((single["folder"] / "pipeline.json").read_text())
    knee = next(step for step in record["steps"] if step["name"] == "knee_crop")
    assert knee["weights"] == "knee.npz" and (single["folder"] / "knee.npz").is_file()
    first, moved = tmp_path / "first", tmp_path / "elsewhere" / "moved"
    shutil.copytree(single["folder"], first)
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    bundle = load_bundle(moved)
    step = next(step for step in bundle.pipeline.steps if isinstance(step, KneeCrop))
    assert str(step.weights).startswith(str(moved))
    np.testing.assert_allclose(bundle.predict(single["sources"]), single["probs"], atol=1e-5)


@pytest.mark.parametrize(("backend", "needed"), [
    ("eager", "weights.safetensors"), ("export", "model.pt2"), ("onnx", "model.onnx")])
def test_missing_bundle_files_are_named(single, tmp_path, backend, needed):
    for name in ("labels.json", "pipeline.json", "model.json", "train.json", "knee.npz", "bundle.json"):
        shutil.copy(single["folder"] / name, tmp_path / name)
    with pytest.raises(BundleError, match=rf"{needed}: missing"):
        load_bundle(tmp_path, backend)
    with pytest.raises(FileNotFoundError, match="no such bundle folder"):
        load_bundle(tmp_path / "absent", backend)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match=r"bundle\.json: missing"):
        load_bundle(tmp_path / "empty", backend)


def test_unknown_backend_is_a_value_error(single):
    with pytest.raises(ValueError, match="tensorrt"):
        load_bundle(single["folder"], "tensorrt")


def test_unusable_device_is_a_value_error(single):
    with pytest.raises(ValueError, match="not a torch device"):
        load_bundle(single["folder"], device="banana")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            load_bundle(single["folder"], device="cuda:0")


@pytest.mark.parametrize("shape", [(2, 3, SIZE, SIZE), (2, 1, 32, 32), (2, 2, 1, SIZE, SIZE), (0, 1, SIZE, SIZE)])
def test_predict_batch_rejects_wrong_shapes(single, shape):
    bundle = load_bundle(single["folder"])
    with pytest.raises(ValueError, match=r"expected a batch of shape \(B, 1, 64, 64\)"):
        bundle.predict_batch(np.zeros(shape, np.float32))


def test_predict_rejects_the_wrong_number_of_views(single):
    bundle = load_bundle(single["folder"])
    with pytest.raises(ValueError, match="takes 1 views"):
        bundle.predict([tuple(single["sources"][:2])])
    with pytest.raises(ValueError, match="batch_size"):
        bundle.predict(single["sources"], batch_size=0)


# --------------------------------------------------------------------------- multi-view, multi-label


@pytest.mark.parametrize("backend", BACKENDS)
def test_multi_view_multi_label_backends_agree(multi, backend):
    bundle = load_bundle(multi["folder"], backend)
    assert bundle.views == ("frontal", "lateral") and bundle.channels == 3 and bundle.multi_label
    probs = bundle.predict(multi["sources"])
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs, multi["probs"], atol=1e-4)
    assert ((probs > 0) & (probs < 1)).all()
    # Independent sigmoids, not a softmax: rows need not sum to one (they do not here).
    assert not np.allclose(probs.sum(axis=1), 1, atol=1e-3)
    # Swapped views (sample 2 is sample 0 swapped) give another answer: the order reaches the model.
    assert not np.allclose(probs[0], probs[2], atol=1e-4)
    if backend != "eager":  # dynamic batch on the exported programs
        np.testing.assert_allclose(bundle.predict_batch(multi["input"][:1]), multi["probs"][:1], atol=1e-4)
        np.testing.assert_allclose(bundle.predict_batch(multi["input"]), multi["probs"], atol=1e-4)


def test_multi_view_single_sample_and_thresholds(multi):
    bundle = load_bundle(multi["folder"])
    sample = multi["sources"][1]
    probs = bundle.predict(sample)  # one tuple of view paths is one sample
    assert probs.shape == (1, 3)
    np.testing.assert_allclose(probs[0], multi["probs"][1], atol=1e-5)
    assert bundle.load_sample(sample).shape == (2, 3, 48, 48)
    assert bundle.thresholds == [0.3, 0.5, 0.7]
    decisions = bundle.decide(multi["probs"])
    np.testing.assert_array_equal(decisions, (multi["probs"] > np.array([0.3, 0.5, 0.7])).astype(int))
    np.testing.assert_array_equal(bundle.decide(np.array([[0.31, 0.49, 0.7]])), [[1, 0, 0]])
    with pytest.raises(ValueError, match="takes 2 views"):
        bundle.predict(sample[0])


# --------------------------------------------------------------------------- labels (no export needed)


def _model(n_outputs=2, views=1):
    return RadiographClassifier(ARCH, n_outputs, views=views)


def test_multi_label_thresholds_default_to_one_half_and_broadcast():
    assert _labels_record({"classes": ["a", "b"], "multi_label": True}, _model(), (32, 32))["thresholds"] == [0.5, 0.5]
    record = _labels_record({"classes": ["a", "b"], "multi_label": True, "thresholds": 0.2}, _model(), (32, 32))
    assert record["thresholds"] == [0.2, 0.2] and record["activation"] == "sigmoid"
    assert _labels_record({"classes": ["a", "b", "c"]}, _model(3, views=2), (8, 16))["views"] == ["view0", "view1"]


@pytest.mark.parametrize(("labels", "size", "message"), [
    ({"names": ["a", "b"]}, SIZE, "classes"),
    ({"classes": ["a", "b", "c"]}, SIZE, "3 classes, the model has 2"),
    ({"classes": ["a", "b"], "views": ["x", "y"]}, SIZE, "takes 1"),
    ({"classes": ["a", "b"]}, (SIZE, 0), "size must be positive"),
    ({"classes": ["a", "b"]}, "64", "size must be"),
])
def test_save_bundle_rejects_labels_that_do_not_fit(tmp_path, labels, size, message):
    with pytest.raises(ValueError, match=message):
        save_bundle(tmp_path / "bundle", _model(), Pipeline([Percentile()]), labels, size=size)
    assert not (tmp_path / "bundle").exists()


def test_save_bundle_rejects_other_modules(tmp_path):
    with pytest.raises(ValueError, match="RadiographClassifier"):
        save_bundle(tmp_path, torch.nn.Linear(2, 2), Pipeline(), {"classes": ["a", "b"]}, size=SIZE)
