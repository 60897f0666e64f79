import numpy as np
import pandas as pd
import pytest

from radiology.demo import PHANTOMS, run_demo
from radiology.io import read_image
from radiology.preview import contact_sheet


def test_contact_sheet_layout():
    sheet = contact_sheet([("a", [np.zeros((10, 20)), np.ones((5, 5, 3))]), ("b", [None])], ("x", "y"), tile=32)
    assert sheet.shape == (18 + 2 * (32 + 20), 64, 3)
    assert sheet.dtype == np.float32 and sheet.max() <= 1.0
    with pytest.raises(ValueError):
        contact_sheet([])


def test_demo_runs_offline(tmp_path):
    result = run_demo(tmp_path, progress=False)
    table = pd.read_csv(result.report.path, keep_default_na=False)
    assert len(table) >= 95 + len(PHANTOMS)
    assert result.report.count("ok") >= 89 + len(PHANTOMS)
    assert (table[table.source.str.startswith("phantoms/")].status == "ok").all()
    assert (table.status == "failed").sum() <= 6 and (table.reason[table.status == "failed"] != "").all()
    sheet = read_image(result.contact_sheet)
    assert sheet.ndim == 3 and sheet.shape[0] > 1000
    # All phantoms carry the same picture: whatever the encoding and polarity, outputs agree.
    outputs = [read_image(result.images / f"phantoms/{name}.png") for name in PHANTOMS]
    for image in outputs[1:]:
        assert np.corrcoef(image.ravel(), outputs[0].ravel())[0, 1] > 0.99
