"""Knee joint localization: HOG features of joint proposals scored by a linear SVM.

The method of Tiulpin et al. (SCIA 2017, "A novel method for automatic localization of
joint area on knee plain radiographs"): candidate joint centres come from intensity
profiles (the joint space is a dark horizontal band between bright femur and tibia, so
the row profile's gradient peaks there; bone makes the column profile peak), square
windows at several scales around each candidate are resized to 64×64, described by HOG
(16×16 blocks, 8×8 stride, 8×8 cells, 9 bins: 1764 values) and scored by a linear SVM.
The best window per knee wins.

Weights: :meth:`KneeLocalizer.load` reads a ``.npz`` written by :meth:`KneeLocalizer.save`
(plain arrays); the published ``svm_model.npy`` is a pickled ``(w, b)`` pair, which it reads
only when asked to (``allow_pickle=True``: a pickle can run code, so only for a file you
trust) — convert it once with ``KneeLocalizer.load(path, allow_pickle=True).save("knee.npz")``.
:meth:`KneeLocalizer.fit` trains a linear SVM on your own annotated boxes.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from radiology.geometry.fov import Box

__all__ = ["KneeBox", "KneeLocalizer", "hog_features", "box_iou", "crop_around"]

_WINDOW = 64
N_FEATURES = 1764


@functools.lru_cache(maxsize=1)
def _hog() -> cv2.HOGDescriptor:
    if not hasattr(cv2, "HOGDescriptor"):  # OpenCV 5 moved it out of the main package
        raise ImportError(f"OpenCV {cv2.__version__} has no HOGDescriptor: install opencv-python-headless<5")
    return cv2.HOGDescriptor((_WINDOW, _WINDOW), (16, 16), (8, 8), (8, 8), 9)


def hog_features(patch: np.ndarray) -> np.ndarray:
    """HOG descriptor (1764 values) of a grayscale patch, resized to 64×64.

    Parameters
    ----------
    patch : numpy.ndarray
        ``uint8``, or float in ``[0, 1]``.

    Examples
    --------
    >>> hog_features(np.zeros((100, 80), np.uint8)).shape
    (1764,)
    """
    if patch.dtype != np.uint8:
        patch = (np.clip(patch, 0, 1) * 255 + 0.5).astype(np.uint8)
    resized = cv2.resize(patch, (_WINDOW, _WINDOW), interpolation=cv2.INTER_AREA)
    return _hog().compute(resized).ravel()


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes.

    Parameters
    ----------
    a, b : tuple of (x, y, w, h)
        The two boxes, in pixels.

    Examples
    --------
    >>> box_iou((0, 0, 10, 10), (5, 0, 10, 10))
    0.3333333333333333
    """
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    inter = max(0, min(ax1, bx1) - max(a[0], b[0])) * max(0, min(ay1, by1) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class KneeBox:
    """One detected knee joint.

    Attributes
    ----------
    side : str
        ``"image-left"`` / ``"image-right"`` (the patient's right knee is usually on the
        image left in an AP view), or ``"single"``.
    box : tuple of int
        ``(x, y, w, h)`` in pixels of the input image.
    score : float
        SVM decision value (higher = more joint-like).
    """

    side: str
    box: Box
    score: float

    @property
    def center(self) -> tuple[float, float]:
        """``(x, y)`` of the box centre."""
        x, y, w, h = self.box
        return x + w / 2, y + h / 2


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    low, high = np.percentile(image, [1, 99])
    if high <= low:
        return np.zeros(image.shape, np.uint8)
    return (np.clip((image - low) / (high - low), 0, 1) * 255 + 0.5).astype(np.uint8)


def _peaks(profile: np.ndarray, count: int, spacing: int) -> np.ndarray:
    # Greedy non-maximum suppression: strongest positions at least `spacing` apart.
    order = np.argsort(profile)[::-1]
    chosen: list[int] = []
    for index in order:
        if all(abs(int(index) - c) >= spacing for c in chosen):
            chosen.append(int(index))
            if len(chosen) == count:
                break
    return np.array(chosen, dtype=int)


@dataclass
class KneeLocalizer:
    """Linear-SVM knee joint detector on HOG features of profile-based proposals.

    Parameters
    ----------
    weights : numpy.ndarray
        1764 SVM weights.
    bias : float
        SVM bias.
    scales : tuple of float
        Window sides, as fractions of the searched region's width (one knee's half of a
        bilateral image, or the whole image for one knee).
    y_proposals, x_proposals : int
        Candidate rows (joint-space gradient peaks) and columns (bone profile peaks).
    """

    weights: np.ndarray
    bias: float = 0.0
    scales: tuple[float, ...] = (0.45, 0.55, 0.65, 0.75)
    y_proposals: int = 8
    x_proposals: int = 5
    _work_width: int = field(default=256, repr=False)

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float32).ravel()
        if self.weights.size != N_FEATURES:
            raise ValueError(f"expected {N_FEATURES} SVM weights, got {self.weights.size}")
        self.bias = float(self.bias)

    @classmethod
    def load(cls, path: str | os.PathLike, *, allow_pickle: bool = False, **kwargs) -> KneeLocalizer:
        """Load weights: a ``.npz`` from :meth:`save`, or (opted in) the published ``svm_model.npy`` pickle.

        Parameters
        ----------
        path : path
            Weights file: ``.npz`` (``weights`` and ``bias``) or, with ``allow_pickle``, the
            published ``.npy``.
        allow_pickle : bool, optional
            Read a pickled ``(w, b)`` object array, the published file's format. Unpickling can
            execute code: only for a file you trust, and once — :meth:`save` it as ``.npz``.
        **kwargs
            Detector settings (``scales``, ...).

        Raises
        ------
        ValueError
            Not a weights file, wrong number of weights, or a pickle without ``allow_pickle``.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> saved = KneeLocalizer(np.zeros(N_FEATURES), 0.5).save(folder / "knee.npz")
        >>> KneeLocalizer.load(saved).bias
        0.5
        >>> np.save(folder / "pair.npy", np.array([np.zeros(N_FEATURES), 0.5], dtype=object), allow_pickle=True)
        >>> KneeLocalizer.load(folder / "pair.npy")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: .../pair.npy: a pickled file (it could run code when read); ...
        """
        path = Path(path)
        try:
            if path.suffix != ".npz" and allow_pickle:
                pair = np.load(path, allow_pickle=True, encoding="bytes")
                if len(pair) != 2:
                    raise ValueError("expected a (w, b) pair")
                return cls(np.asarray(pair[0]), float(pair[1]), **kwargs)
            data = np.load(path, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("expected a .npz with 'weights' and 'bias'")
            with data:
                if {"weights", "bias"} - set(data.files):
                    raise ValueError("expected a .npz with 'weights' and 'bias'")
                return cls(data["weights"], float(data["bias"]), **kwargs)
        except FileNotFoundError:
            raise
        except ValueError as error:
            if "allow_pickle" in str(error):  # numpy's words for "this file holds a pickle"
                raise ValueError(f"{path}: a pickled file (it could run code when read); if you trust it, convert "
                                 "it once: KneeLocalizer.load(path, allow_pickle=True).save('knee.npz')") from error
            raise ValueError(f"{path}: {error}") from error
        except (OSError, EOFError) as error:
            raise ValueError(f"{path}: not a knee localizer weights file ({type(error).__name__})") from error

    def save(self, path: str | os.PathLike) -> Path:
        """Save weights and bias as ``.npz`` (no pickle).

        Parameters
        ----------
        path : str or os.PathLike
            Output file; NumPy adds ``.npz`` when the name lacks it.
        """
        path = Path(path)
        np.savez(path, weights=self.weights, bias=np.float32(self.bias))
        return path if path.suffix == ".npz" else path.with_suffix(path.suffix + ".npz")

    def score(self, patch: np.ndarray) -> float:
        """SVM decision value of one patch.

        Parameters
        ----------
        patch : numpy.ndarray
            Grayscale window, ``uint8`` or float in ``[0, 1]`` (resized to 64×64 for
            :func:`hog_features`).
        """
        return float(hog_features(patch) @ self.weights + self.bias)

    def _search(self, region: np.ndarray) -> tuple[Box, float]:
        rows, cols = region.shape
        profile_rows = region[:, cols // 4: 3 * cols // 4].astype(np.float32).mean(axis=1)
        profile_rows = np.convolve(profile_rows, np.ones(5) / 5, mode="same")
        gradient = np.abs(np.gradient(profile_rows))
        margin = rows // 8  # the joint is not at the very top or bottom edge
        gradient[:margin] = gradient[rows - margin:] = 0
        ys = _peaks(gradient, self.y_proposals, max(2, rows // 30))
        profile_cols = np.convolve(region.astype(np.float32).mean(axis=0), np.ones(9) / 9, mode="same")
        profile_cols[: cols // 6] = profile_cols[cols - cols // 6:] = 0
        xs = _peaks(profile_cols, self.x_proposals, max(2, cols // 12))
        best, best_score = (0, 0, cols, rows), -np.inf
        features, boxes = [], []
        for scale in self.scales:
            side = max(8, int(round(scale * cols)))
            half = side // 2
            for y in ys:
                for x in xs:
                    x0, y0 = int(x) - half, int(y) - half
                    if x0 < 0 or y0 < 0 or x0 + side > cols or y0 + side > rows:
                        continue
                    features.append(hog_features(region[y0:y0 + side, x0:x0 + side]))
                    boxes.append((x0, y0, side, side))
        if features:
            scores = np.stack(features) @ self.weights + self.bias
            index = int(np.argmax(scores))
            best, best_score = boxes[index], float(scores[index])
        return best, best_score

    def detect(self, image: np.ndarray, knees: int | None = None) -> list[KneeBox]:
        """Locate the knee joint(s) in a plain AP/PA radiograph.

        Parameters
        ----------
        image : numpy.ndarray, shape (H, W)
            Bone bright; any dtype (rescaled to 8 bits by 1/99 percentiles).
        knees : {1, 2}, optional
            Knees in the image. Default: 2 when the image is wider than 1.2× its height.

        Returns
        -------
        list of KneeBox
            One per knee, image-left first, in pixels of ``image``.
        """
        if image.ndim != 2:
            raise ValueError(f"expected a (H, W) radiograph, got shape {image.shape}")
        rows, cols = image.shape
        knees = knees or (2 if cols > 1.2 * rows else 1)
        if knees not in (1, 2):
            raise ValueError(f"knees must be 1 or 2, got {knees}")
        # Work at a fixed width per knee: proposals and HOG cost stay constant (≈ ms).
        factor = self._work_width * knees / cols
        small = cv2.resize(_to_uint8(image), (max(1, round(cols * factor)), max(1, round(rows * factor))),
                           interpolation=cv2.INTER_AREA)
        width = small.shape[1] // knees
        found = []
        for k in range(knees):
            (x, y, w, h), score = self._search(small[:, k * width:(k + 1) * width])
            box = (round((x + k * width) / factor), round(y / factor), round(w / factor), round(h / factor))
            side = "single" if knees == 1 else ("image-left" if k == 0 else "image-right")
            found.append(KneeBox(side, box, score))
        return found

    @classmethod
    def fit(
        cls,
        images: list[np.ndarray],
        boxes: list[list[Box]],
        *,
        negatives_per_image: int = 30,
        jitter: int = 4,
        c: float = 0.1,
        seed: int = 0,
        **kwargs,
    ) -> KneeLocalizer:
        """Train a linear SVM (squared hinge loss, L2) on annotated joint boxes.

        Positives are the annotated boxes and ``jitter`` shifted/scaled copies of each;
        negatives are random square windows with IoU < 0.3 to every annotated box.

        Parameters
        ----------
        images : list of numpy.ndarray
            Grayscale radiographs, bone bright.
        boxes : list of list of (x, y, w, h)
            Joint boxes per image.
        negatives_per_image, jitter : int
            Sampling sizes.
        c : float
            Inverse regularization strength.
        seed : int
            Seed of the sampling.

        Parameters
        ----------
        **kwargs
            Detector settings of the result (``scales``, ``y_proposals``, ``x_proposals``).

        Returns
        -------
        KneeLocalizer
        """
        if len(images) != len(boxes) or not images:
            raise ValueError("need one list of boxes per image, and at least one image")
        rng = np.random.default_rng(seed)
        features, labels = [], []
        for image, image_boxes in zip(images, boxes):
            pixels = _to_uint8(image)
            rows, cols = pixels.shape
            for x, y, w, h in image_boxes:
                for j in range(jitter + 1):
                    dx, dy = (0, 0) if j == 0 else rng.integers(-w // 10, w // 10 + 1, size=2)
                    s = 1.0 if j == 0 else rng.uniform(0.9, 1.1)
                    side = int(max(w, h) * s)
                    x0 = int(np.clip(x + w / 2 + dx - side / 2, 0, max(0, cols - side)))
                    y0 = int(np.clip(y + h / 2 + dy - side / 2, 0, max(0, rows - side)))
                    features.append(hog_features(pixels[y0:y0 + side, x0:x0 + side]))
                    labels.append(1.0)
            made = 0
            for _ in range(negatives_per_image * 20):
                if made == negatives_per_image:
                    break
                side = int(rng.uniform(0.15, 0.6) * min(rows, cols))
                x0, y0 = int(rng.integers(0, cols - side + 1)), int(rng.integers(0, rows - side + 1))
                if all(box_iou((x0, y0, side, side), b) < 0.3 for b in image_boxes):
                    features.append(hog_features(pixels[y0:y0 + side, x0:x0 + side]))
                    labels.append(-1.0)
                    made += 1
        x_train, y_train = np.stack(features).astype(np.float64), np.asarray(labels)
        if len(set(labels)) < 2:
            raise ValueError("fitting needs both joint boxes and background windows")

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, b = theta[:-1], theta[-1]
            margin = np.maximum(0.0, 1.0 - y_train * (x_train @ w + b))
            value = 0.5 * w @ w + c * np.sum(margin**2)
            slope = -2.0 * c * margin * y_train
            return value, np.concatenate([w + x_train.T @ slope, [slope.sum()]])

        from scipy import optimize  # only fitting needs it: keeps scipy out of conversion start-up
        result = optimize.minimize(loss, np.zeros(N_FEATURES + 1), jac=True, method="L-BFGS-B",
                                   options={"maxiter": 2000})
        return cls(result.x[:-1], float(result.x[-1]), **kwargs)


def crop_around(
    image: np.ndarray,
    center: tuple[float, float],
    *,
    size_mm: float | None = None,
    spacing_mm: float | None = None,
    size_px: int | None = None,
    fill: float = 0.0,
    return_box: bool = False,
):
    """Square crop centred on a point (e.g. a :class:`KneeBox` centre), padded at the edges.

    The side is ``size_mm / spacing_mm`` pixels when the pixel spacing is known, else
    ``size_px``. With ``return_box=True`` the result is ``(crop, (x, y, side, side))``: the
    crop's box in ``image``'s pixels (it may reach past the image edge, where ``fill`` is).

    Parameters
    ----------
    image : numpy.ndarray
        Image of shape ``(H, W)`` or ``(H, W, C)``.
    center : (float, float)
        Centre ``(x, y)`` of the crop, in pixels.
    size_mm : float, optional
        Side of the crop in millimetres; used with ``spacing_mm``.
    spacing_mm : float, optional
        Pixel spacing in millimetres.
    size_px : int, optional
        Side in pixels, used when ``size_mm`` and ``spacing_mm`` are not both given.
    fill : float
        Value of the padding where the crop reaches past the image.
    return_box : bool
        Also return the crop's box ``(x, y, side, side)``.

    Examples
    --------
    >>> crop_around(np.ones((50, 50)), (5, 5), size_px=20).shape
    (20, 20)
    >>> crop_around(np.ones((50, 50)), (5, 5), size_px=20, return_box=True)[1]
    (-5, -5, 20, 20)
    >>> crop_around(np.ones((50, 50)), (25, 25), size_mm=10, spacing_mm=0.5).shape
    (20, 20)
    """
    if size_mm is not None and spacing_mm:
        side = int(round(size_mm / spacing_mm))
    elif size_px is not None:
        side = int(size_px)
    else:
        raise ValueError("give size_mm with spacing_mm, or size_px")
    if side < 1:
        raise ValueError(f"crop size must be at least 1 pixel, got {side}")
    half = side // 2
    x0, y0 = int(round(center[0])) - half, int(round(center[1])) - half
    pad = [(side, side), (side, side)] + [(0, 0)] * (image.ndim - 2)
    padded = np.pad(image, pad, mode="constant", constant_values=fill)
    crop = padded[y0 + side: y0 + 2 * side, x0 + side: x0 + 2 * side]
    return (crop, (x0, y0, side, side)) if return_box else crop
