"""Generate the figures of the docs into docs/_generated/ (run by conf.py at build time).

The MONOCHROME1 figure uses a real CR radiograph from ../shared/data when present
(pydicom-data's ``RG1_J2KI.dcm``), else a synthetic MONOCHROME1 phantom, so the docs build
anywhere, offline.
"""

from pathlib import Path

import numpy as np

from radiology.convert import dicom_to_image
from radiology.dicom import read_dicom
from radiology.intensity import minmax_scale
from radiology.io import write_image
from radiology.preview import contact_sheet
from radiology.synthetic import phantom_radiograph, write_phantom_dicom

DOCS = Path(__file__).resolve().parent
OUT = DOCS / "_generated"
SHARED_CR = DOCS.parents[1] / "shared" / "data" / "dicom_corpus" / "pydicom-data" / "RG1_J2KI.dcm"


def monochrome1_figure() -> Path:
    """Stored values vs percentile-normalized vs histogram-scaled, for a MONOCHROME1 image."""
    if SHARED_CR.exists():
        source, label = SHARED_CR, "CR MONOCHROME1, JPEG 2000 (RG1_J2KI.dcm)"
    else:
        source = write_phantom_dicom(OUT / "phantom_mono1.dcm", phantom_radiograph((512, 448)),
                                     photometric="MONOCHROME1", bits_stored=12)
        label = "synthetic CR MONOCHROME1 phantom"
    stored = read_dicom(source, modality_lut=False).pixels.astype(np.float32)
    tiles = [
        minmax_scale(stored),
        dicom_to_image(source, longest=512),
        dicom_to_image(source, longest=512, normalization="histogram"),
    ]
    sheet = contact_sheet([(label, tiles)], ("stored values", "percentile 0.5/99.5", "histogram (100 bins)"),
                          tile=320)
    return write_image(OUT / "monochrome1_before_after.png", sheet)


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    print(monochrome1_figure())
