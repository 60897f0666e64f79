"""A known-answer lesion task for the explanation tests: a small model trained to find a bright blob.

Originals are framed fields of random size (a black border around a textured region) with,
for positives, a bright disc at a random place. The model sees them through a pipeline that
crops the frame, resizes and pads (:data:`PIPELINE`), so the blob's position in the model
input differs from its position in the original: the place to check that maps come back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("pytorch_grad_cam")

from radiology.models import Bundle, RadiographClassifier  # noqa: E402
from radiology.pipeline import FOVCrop, PadSquare, Pipeline, Resize  # noqa: E402

ARCH = "resnet10t"
SIZE = 64
CLASSES = ["normal", "lesion"]
#: The model input: frame cropped, longest side to SIZE, padded square (all three move the blob).
PIPELINE = Pipeline([FOVCrop(), Resize(longest=SIZE), PadSquare()])
#: At 64 px the last stage of resnet10t is 2 x 2; layer2 (8 x 8) localizes a blob of a few pixels.
LAYER = "layer2"


@dataclass
class Lesion:
    """One original image and, for positives, its blob (centre ``(x, y)`` and radius, original pixels)."""

    image: np.ndarray
    center: tuple[float, float] | None
    radius: float


def lesion_image(rng: np.random.Generator, positive: bool) -> Lesion:
    """A framed, textured field of random size, with a bright disc when ``positive``."""
    rows, cols = (int(v) for v in rng.integers(72, 128, 2))
    top, bottom, left, right = (int(v) for v in rng.integers(3, 14, 4))
    field_rows, field_cols = rows - top - bottom, cols - left - right
    texture = cv2.GaussianBlur(rng.random((field_rows, field_cols)).astype(np.float32), (0, 0), 3)
    texture = 0.25 + 0.35 * (texture - texture.min()) / (np.ptp(texture) + 1e-6)
    field = texture + 0.05 * rng.random((field_rows, field_cols), dtype=np.float32)
    center, radius = None, 0.08 * min(field_rows, field_cols)
    if positive:
        cx = rng.uniform(radius + 2, field_cols - radius - 3)
        cy = rng.uniform(radius + 2, field_rows - radius - 3)
        yy, xx = np.mgrid[:field_rows, :field_cols]
        field = field + 0.4 * ((xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2)
        center = (cx + left, cy + top)
    image = np.zeros((rows, cols), np.float32)
    image[top:rows - bottom, left:cols - right] = np.clip(field, 0, 1)
    return Lesion(image, center, float(radius))


def lesion_batch(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` model inputs ``(count, 1, SIZE, SIZE)`` (alternately normal and lesion) and their labels."""
    labels = np.arange(count) % 2
    images = np.stack([PIPELINE(lesion_image(rng, bool(y)).image)[None] for y in labels])
    return images.astype(np.float32), labels


def make_bundle(model, folder: Path, *, pipeline: Pipeline = PIPELINE, classes=CLASSES, multi_label=False,
                thresholds=None, views=("image",), size=SIZE) -> Bundle:
    """An in-memory eager bundle around ``model`` (what load_bundle builds, without exporting)."""
    model = model.eval()
    return Bundle(folder=Path(folder), backend="eager", classes=list(classes), multi_label=multi_label,
                  thresholds=thresholds, views=tuple(views), channels=model.config["in_chans"],
                  size=(size, size) if isinstance(size, int) else tuple(size),
                  pipeline=pipeline, _model=model, _runner=model)


@pytest.fixture(scope="session")
def lesion_model():
    """resnet10t trained for a few seconds to tell lesion from normal (accuracy checked)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = RadiographClassifier(ARCH, 2, in_chans=1, drop_rate=0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    threads = torch.get_num_threads()
    # Small batches gain little from threads, and on a shared CPU extra threads cost several-fold.
    torch.set_num_threads(1)
    try:
        for _ in range(40):
            x, y = lesion_batch(rng, 16)
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    x, y = lesion_batch(np.random.default_rng(1), 32)
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    assert accuracy >= 0.9, f"the lesion model did not learn its task (accuracy {accuracy:.2f})"
    return model
