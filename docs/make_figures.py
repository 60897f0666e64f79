"""Generate the figures of the docs into docs/_generated/ (run by conf.py at build time).

Every figure comes from data a fresh clone has — DICOM files shipped in pydicom's wheel
(``pydicom.data.get_testdata_file``) and the synthetic phantoms of
:mod:`radiology.synthetic` or of this file — so every checkout builds the same docs,
offline. Nothing is read from outside the repository.
"""

from pathlib import Path

import cv2
import numpy as np
from pydicom.data import get_testdata_file

from radiology.convert import dicom_to_image
from radiology.dicom import read_dicom
from radiology.geometry import KneeLocalizer, circle_crop, clean_background, crop_to_fov, fundus_crop
from radiology.intensity import clahe, enhance_contrast, minmax_scale
from radiology.io import write_image
from radiology.preview import contact_sheet
from radiology.synthetic import add_findings, phantom_radiograph, write_phantom_dicom

DOCS = Path(__file__).resolve().parent
OUT = DOCS / "_generated"
#: A real CT slice shipped with pydicom (JPEG 2000, 12 bits, brain window in the header).
PYDICOM_CT = "J2K_pixelrep_mismatch.dcm"


def knee_phantom(shape=(360, 300), seed=0, *, knees=1, collimation=True, labels=True):
    """A knee-radiograph-like phantom, bone bright: soft tissue, femur with condyles, joint
    space, tibial plateau, tibia and fibula per knee; optionally bright collimation bands and
    burned-in labels ("L", "STANDING"). Returns ``(image, boxes)``: the joint boxes ``(x, y, w, h)``."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    image = np.full(shape, 0.05, np.float32)
    width = cols // knees
    boxes = []
    for k in range(knees):
        cx = int(k * width + width * rng.uniform(0.45, 0.55))
        cy = int(rows * rng.uniform(0.45, 0.55))
        s = width / 300 * rng.uniform(0.9, 1.1)

        def ax(v: float, s: float = s) -> int:
            return max(1, int(round(v * s)))

        cv2.ellipse(image, (cx, cy), (ax(88), int(rows * 0.75)), 0, 0, 360, 0.3, -1)              # soft tissue
        cv2.rectangle(image, (cx - ax(38), 0), (cx + ax(38), cy - ax(30)), 0.72, -1)              # femur
        for side in (-1, 1):                                                                      # condyles
            cv2.ellipse(image, (cx + side * ax(32), cy - ax(22)), (ax(34), ax(24)), 0, 0, 360, 0.78, -1)
        cv2.rectangle(image, (cx - ax(66), cy + ax(8)), (cx + ax(66), cy + ax(34)), 0.74, -1)     # plateau
        cv2.rectangle(image, (cx - ax(34), cy + ax(8)), (cx + ax(34), rows), 0.7, -1)             # tibia
        out = 1 if k == 0 else -1
        cv2.rectangle(image, (cx + out * ax(48), cy + ax(30)), (cx + out * ax(60), rows), 0.62, -1)  # fibula
        half = ax(72)
        boxes.append((cx - half, cy - half, 2 * half, 2 * half))
    image = cv2.GaussianBlur(image, (0, 0), 2.0)
    image += rng.normal(0, 0.015, shape).astype(np.float32)
    if labels:
        scale = cols / 600
        cv2.putText(image, "L", (int(0.02 * cols), int(0.14 * rows)), cv2.FONT_HERSHEY_SIMPLEX, 1.3 * scale, 1.0,
                    max(1, int(3 * scale)), cv2.LINE_AA)
        cv2.putText(image, "STANDING", (int(0.41 * cols), int(0.96 * rows)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5 * scale, 1.0, max(1, int(1.5 * scale)), cv2.LINE_AA)
    image = np.clip(image, 0, 1)
    if collimation:
        band_y, band_x = int(rows * 0.06), int(cols * 0.05)
        framed = np.full((rows + 2 * band_y, cols + 2 * band_x), 0.92, np.float32)
        framed[band_y:band_y + rows, band_x:band_x + cols] = image
        image = framed
        boxes = [(x + band_x, y + band_y, w, h) for x, y, w, h in boxes]
    return image, boxes


def fundus_phantom(shape=(300, 400), seed=0, *, center=None, radius=None):
    """A fundus-photograph-like RGB image in ``[0, 1]``: an orange retina with vignetting, an
    optic disc, a darker macula and vessels leaving the disc, dim stray light around it and an
    eye label in a corner; a ``radius`` larger than half the height lets the frame cut the
    disc at the top and bottom, as cameras do."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    cx, cy = center or (cols // 2, rows // 2)
    radius = radius or int(0.56 * rows)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    d = np.hypot(x - cx, y - cy) / radius
    image = np.clip(1.0 - 0.45 * d ** 2, 0, 1)[..., None] * np.array([0.85, 0.38, 0.16], np.float32)
    ox, oy = int(cx + 0.45 * radius), int(cy - 0.05 * radius)                                     # optic disc
    disc = np.clip(1 - np.hypot(x - ox, y - oy) / (0.13 * radius), 0, 1) ** 0.5
    image = image + disc[..., None] * np.array([0.15, 0.45, 0.35], np.float32)
    macula = np.exp(-(np.hypot(x - (cx - 0.15 * radius), y - cy) / (0.12 * radius)) ** 2)
    image *= (1 - 0.35 * macula)[..., None]
    vessels = np.zeros(shape, np.float32)
    for k in range(10):                                                                           # vessels
        t = np.linspace(0, 1, 60)
        theta = rng.uniform(0, 2 * np.pi) + rng.uniform(-1.2, 1.2) * t
        points = np.stack([ox + 1.3 * radius * t * np.cos(theta), oy + 1.3 * radius * t * np.sin(theta)], 1)
        cv2.polylines(vessels, [points.astype(np.int32)], False, 1.0, max(1, int(radius / (60 if k < 4 else 120))),
                      cv2.LINE_AA)
    image *= (1 - 0.45 * cv2.GaussianBlur(vessels, (0, 0), 1.0))[..., None]
    image += rng.normal(0, 0.01, image.shape).astype(np.float32)
    image[d > 1] = 0.07  # dim stray light around the retina, below the FOV threshold
    cv2.putText(image, "OD", (8, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0.9, 0.9, 0.9), 2, cv2.LINE_AA)  # eye label
    return np.clip(image, 0, 1).astype(np.float32)


def _chest() -> np.ndarray:
    """A chest phantom with a nodule and an effusion, at a lower, flatter contrast than the
    phantom's own (what CLAHE and the augmentations are for)."""
    image = add_findings(phantom_radiograph((512, 448), seed=3), {"nodule", "effusion"}, seed=3)
    return 0.25 + 0.5 * image ** 1.5


def intensity_figure() -> Path:
    """Percentile → CLAHE (CPU), contrast enhancement, CLAHE (GPU, kornia, when installed), on a
    chest phantom and on a real CT slice shipped with pydicom."""
    ct = get_testdata_file(PYDICOM_CT)
    sources = [("synthetic chest phantom", _chest()), (f"CT slice ({PYDICOM_CT})", dicom_to_image(ct, longest=512))]
    titles = ["percentile", "clahe (OpenCV, clip 2)", "enhance (contrast 1.4)"]
    try:
        import torch

        from radiology.augment import clahe_batch
    except ImportError:
        clahe_batch = None
    else:
        titles.append("clahe (kornia, clip 2)")
    rows = []
    for label, image in sources:
        tiles = [image, clahe(image, 2.0), enhance_contrast(image, 0.0, 1.4)]
        if clahe_batch is not None:
            tiles.append(clahe_batch(torch.from_numpy(image)[None, None], 2.0)[0, 0].numpy())
        rows.append((label, tiles))
    return write_image(OUT / "intensity_steps.png", contact_sheet(rows, titles, tile=256))


def background_figure() -> Path:
    """Background cleaning: collimation crop, markers and text removed, anatomy untouched."""
    rows = []
    for seed, shape, knees in ((3, (360, 600), 2), (5, (400, 320), 1)):
        image, _ = knee_phantom(shape, seed, knees=knees)
        rows.append((f"synthetic knee phantom ({'bilateral' if knees == 2 else 'single'})",
                     [image, clean_background(image)]))
    return write_image(OUT / "background_cleaning.png",
                       contact_sheet(rows, ("radiograph", "clean_background"), tile=256))


def knee_figure() -> Path:
    """Knee joint boxes of a KneeLocalizer fitted (KneeLocalizer.fit) on 20 synthetic knees,
    on knees it never saw: detected boxes red, the phantom's true joint boxes green."""
    train = [knee_phantom((360, 300), seed, collimation=False, labels=False) for seed in range(10, 30)]
    model = KneeLocalizer.fit([image for image, _ in train], [boxes for _, boxes in train], seed=1)
    rows = []
    for seed, shape, knees in ((3, (360, 600), 2), (5, (400, 320), 1)):
        image, truth = knee_phantom(shape, seed, knees=knees)
        shown = np.repeat(image[..., None], 3, axis=2).copy()
        for x, y, w, h in truth:
            cv2.rectangle(shown, (x, y), (x + w, y + h), (0.2, 0.9, 0.2), 1)
        for knee in model.detect(image):
            x, y, w, h = knee.box
            cv2.rectangle(shown, (x, y), (x + w, y + h), (1.0, 0.2, 0.2), 3)
        rows.append((f"unseen synthetic knee, seed {seed}", [shown]))
    return write_image(OUT / "knee_localization.png",
                       contact_sheet(rows, ("detected (red) and true (green) joints",), tile=320))


def fundus_figure() -> Path:
    """Field of view and circular crop on synthetic fundus photographs."""
    images = [("retina cut by the frame", fundus_phantom((300, 400))),
              ("off-centre retina", fundus_phantom((300, 440), seed=1, center=(250, 160), radius=175))]
    rows = [(name, [image, crop_to_fov(image), circle_crop(image), fundus_crop(image)]) for name, image in images]
    return write_image(OUT / "fundus_crops.png",
                       contact_sheet(rows, ("photograph", "crop_to_fov", "circle_crop", "fundus_crop"), tile=224))


def augmentation_figure() -> Path:
    """Eight draws of the default radiograph augmentation (needs torch and kornia)."""
    image = _chest()
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
    sheet = contact_sheet([("synthetic chest phantom, 8 draws", tiles[:4]), ("", tiles[4:])], tile=192)
    return write_image(OUT / "augmentation.png", sheet)


def monochrome1_figure() -> Path:
    """Stored values vs percentile-normalized vs histogram-scaled, for a MONOCHROME1 image."""
    image = add_findings(phantom_radiograph((512, 448), seed=1), {"nodule"}, seed=1)
    source = write_phantom_dicom(OUT / "phantom_mono1.dcm", image, photometric="MONOCHROME1", bits_stored=12,
                                 encoding="jpeg2000")
    stored = read_dicom(source, modality_lut=False).pixels.astype(np.float32)
    tiles = [
        minmax_scale(stored),
        dicom_to_image(source, longest=512),
        dicom_to_image(source, longest=512, normalization="histogram"),
    ]
    sheet = contact_sheet([("synthetic CR MONOCHROME1 phantom, 12 bits, JPEG 2000", tiles)],
                          ("stored values", "percentile 0.5/99.5", "histogram (100 bins)"), tile=320)
    return write_image(OUT / "monochrome1_before_after.png", sheet)


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for make in (monochrome1_figure, intensity_figure, background_figure, knee_figure, fundus_figure,
                 augmentation_figure):
        print(make())
