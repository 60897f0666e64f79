"""Shared fixtures: synthetic phantoms with known answers, pydicom's shipped files, ../shared/data."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from radiology.synthetic import phantom_radiograph, write_phantom_dicom

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RADIOLOGY_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seeded():
    """The same random state at the start of every test, whatever ran before it.

    fastai's loaders shuffle with Python's ``random``, which nothing else seeds: without this a
    training test sees a different batch order on every run. ``RADIOLOGY_TEST_SEED=N`` checks
    that a result does not hang on one seed.
    """
    seed = int(os.environ.get("RADIOLOGY_TEST_SEED", "0"))
    random.seed(seed)
    np.random.seed(seed)
    torch = sys.modules.get("torch")  # seeded when a test module has imported it; not imported here
    if torch is not None:
        torch.manual_seed(seed)


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture(scope="session")
def phantom() -> np.ndarray:
    """The known-answer image (bone bright, [0, 1])."""
    return phantom_radiograph((192, 160), seed=3)


@pytest.fixture
def write_phantom(tmp_path, phantom):
    """Factory: write the phantom as DICOM with the given options, return the path."""

    def write(name: str = "phantom.dcm", image: np.ndarray | None = None, **kwargs) -> Path:
        return write_phantom_dicom(tmp_path / name, phantom if image is None else image, **kwargs)

    return write


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two images of the same shape."""
    return float(np.corrcoef(np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel())[0, 1])
