"""Generate the figures of the docs into docs/_generated/ (run by conf.py at build time).

Figures use the real images of ../shared/data when present (a CR MONOCHROME1 radiograph,
knee radiographs, DRIVE fundus photographs) and synthetic stand-ins otherwise, so the docs
build anywhere, offline.
"""

from pathlib import Path

import cv2
import numpy as np

from radiology.convert import dicom_to_image
from radiology.dicom import read_dicom
from radiology.geometry import KneeLocalizer, circle_crop, clean_background, crop_to_fov, fundus_crop
from radiology.intensity import clahe, enhance_contrast, minmax_scale
from radiology.io import read_image, write_image
from radiology.preview import contact_sheet
from radiology.synthetic import phantom_radiograph, write_phantom_dicom

DOCS = Path(__file__).resolve().parent
OUT = DOCS / "_generated"
SHARED = DOCS.parents[1] / "shared" / "data"
SHARED_CR = SHARED / "dicom_corpus" / "pydicom-data" / "RG1_J2KI.dcm"


def _gray(path: Path) -> np.ndarray:
    image = read_image(path)
    return image.mean(axis=2) if image.ndim == 3 else image


def _radiograph() -> tuple[np.ndarray, str]:
    if SHARED_CR.exists():
        return dicom_to_image(SHARED_CR, longest=512), "CR chest (RG1_J2KI.dcm)"
    return phantom_radiograph((512, 448)), "synthetic chest phantom"


def intensity_figure() -> Path:
    """Percentile → CLAHE (CPU), CLAHE (GPU, kornia, when installed), contrast enhancement."""
    image, label = _radiograph()
    tiles = [image, clahe(image, 2.0), enhance_contrast(image, 0.0, 1.4)]
    titles = ["percentile", "clahe (OpenCV, clip 2)", "enhance (contrast 1.4)"]
    try:
        import torch

        from radiology.augment import clahe_batch

        tiles.append(clahe_batch(torch.from_numpy(image)[None, None], 2.0)[0, 0].numpy())
        titles.append("clahe (kornia, clip 2)")
    except ImportError:
        pass
    sheet = contact_sheet([(label, tiles)], titles, tile=256)
    return write_image(OUT / "intensity_steps.png", sheet)


def _knees() -> list[tuple[str, np.ndarray]]:
    folder = SHARED / "knee" / "radiographs"
    if folder.exists():
        return [(p.name, _gray(p)) for p in sorted(folder.glob("*.jpg"))[:4]]
    return [("synthetic phantom", phantom_radiograph((400, 320), seed=s)) for s in range(2)]


def background_figure() -> Path:
    """Background cleaning: collimation crop, markers and text removed, anatomy untouched."""
    rows = [(name, [image, clean_background(image)]) for name, image in _knees()]
    return write_image(OUT / "background_cleaning.png",
                       contact_sheet(rows, ("radiograph", "clean_background"), tile=224))


def knee_figure() -> Path:
    """Knee joint boxes from the published SVM weights (or a note when they are absent)."""
    weights = SHARED / "knee" / "svm_model.npy"
    rows = []
    if weights.exists():
        model = KneeLocalizer.load(weights, allow_pickle=True)  # the published file: trusted
        for name, image in _knees():
            shown = np.repeat(image[..., None], 3, axis=2).copy()
            for knee in model.detect(image):
                x, y, w, h = knee.box
                cv2.rectangle(shown, (x, y), (x + w, y + h), (1.0, 0.2, 0.2), max(2, image.shape[1] // 150))
            rows.append((f"{name}", [shown]))
    else:
        rows.append(("knee weights not available when these docs were built", [None]))
    return write_image(OUT / "knee_localization.png", contact_sheet(rows, ("detected joints",), tile=256))


def fundus_figure() -> Path:
    """Field of view and circular crop on fundus photographs."""
    folder = SHARED / "fundus" / "chase_db1_pairs"
    if folder.exists():
        images = [(p.name, read_image(p)) for p in sorted(folder.glob("*.jpg"))[:2]]
    else:
        disc = np.zeros((300, 400, 3), np.float32)
        disc[cv2.circle(np.zeros((300, 400), np.uint8), (200, 150), 170, 1, -1) > 0] = (0.8, 0.4, 0.2)
        images = [("synthetic retina cut by the frame", disc)]
    rows = [(name, [image, crop_to_fov(image), circle_crop(image), fundus_crop(image)]) for name, image in images]
    return write_image(OUT / "fundus_crops.png",
                       contact_sheet(rows, ("photograph", "crop_to_fov", "circle_crop", "fundus_crop"), tile=224))


def augmentation_figure() -> Path:
    """Eight draws of the default radiograph augmentation (needs torch and kornia)."""
    image, label = _radiograph()
    try:
        import torch

        from radiology.augment import radiograph_augmentation
    except ImportError:
        return write_image(OUT / "augmentation.png",
                           contact_sheet([("torch/kornia not installed", [None])], tile=128))
    torch.manual_seed(0)
    augment = radiograph_augmentation(clahe_p=0.3, cutout_p=0.3)
    batch = augment(torch.from_numpy(image)[None, None].repeat(8, 1, 1, 1))
    tiles = [b[0].numpy() for b in batch]
    sheet = contact_sheet([(label + ", 8 draws", tiles[:4]), ("", tiles[4:])], tile=192)
    return write_image(OUT / "augmentation.png", sheet)


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
    for make in (monochrome1_figure, intensity_figure, background_figure, knee_figure, fundus_figure,
                 augmentation_figure):
        print(make())
