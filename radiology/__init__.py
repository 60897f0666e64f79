"""radiology: DICOM radiographs to training-ready images, with pluggable models.

The package reads as the pipeline: :mod:`radiology.dicom` (decode) →
:mod:`radiology.intensity` → :mod:`radiology.geometry` → :mod:`radiology.io` /
:mod:`radiology.convert`. Importing it never imports torch.

Conventions, kept everywhere:

- A CPU image is a ``numpy.ndarray`` of shape ``(H, W)`` or ``(H, W, 3)``; after
  normalization it is ``float32`` in ``[0, 1]`` with bone bright.
- Raw decoded pixels keep their native dtype until normalization.
- Boxes are ``(x, y, w, h)`` in pixels of the image they refer to.
- Errors raised on purpose derive from :class:`radiology.RadiologyError`.
"""

from radiology.errors import RadiologyError

__version__ = "0.1.0"

__all__ = ["RadiologyError", "__version__"]
