"""Agreement with DCMTK's dcmj2pnm (Debian package dcmtk), skipped when it is absent."""

import shutil
import subprocess

import pandas as pd
import pytest

from radiology.convert import dicom_to_image
from radiology.demo import pydicom_test_files
from radiology.io import read_image
from tests.conftest import correlation, shared_path

DCMJ2PNM = shutil.which("dcmj2pnm")
pytestmark = pytest.mark.skipif(DCMJ2PNM is None, reason="dcmj2pnm (dcmtk) not installed")


def _dcmtk_render(path, out):
    # +Wm: min-max VOI window, the metadata-independent rendering closest to ours.
    result = subprocess.run([DCMJ2PNM, "+Wm", "+on", str(path), str(out)], capture_output=True, check=False)
    return read_image(out) if result.returncode == 0 and out.exists() else None


def _compare(paths, tmp_path):
    compared = 0
    for i, path in enumerate(paths):
        reference = _dcmtk_render(path, tmp_path / f"{i}.png")
        if reference is None:  # e.g. JPEG 2000, which free DCMTK cannot decode
            continue
        ours = dicom_to_image(path)
        r = correlation(ours, reference)
        assert r > 0.9, f"{path}: r={r:.3f} against dcmj2pnm"  # negative would mean wrong polarity
        compared += 1
    return compared


def test_pydicom_cr_files_match_dcmtk(tmp_path):
    crs = [p for p in pydicom_test_files() if p.parent.name.startswith("CR")]
    assert len(crs) >= 3
    assert _compare(crs, tmp_path) == len(crs)


def test_wrapped_chest_radiographs_match_dcmtk(tmp_path):
    root = shared_path("chest_xray_views")
    truth = pd.read_csv(root / "dicom_truth.csv")
    compared = _compare([root / f for f in truth.file], tmp_path)
    assert compared >= 40  # all but the JPEG 2000 files
