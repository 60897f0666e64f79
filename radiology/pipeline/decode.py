"""How a DICOM becomes raw pixels: :class:`Decode`, the first half of every pipeline (no torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from radiology.dicom import DEFAULT_MAX_PIXELS, DicomImage, read_dicom
from radiology.pipeline.validation import _fail, _flag, _integer

__all__ = ["Decode"]


@dataclass(frozen=True)
class Decode:
    """How a DICOM becomes raw pixels (the steps of :func:`radiology.dicom.read_dicom`, plus polarity).

    Parameters
    ----------
    frame : int
        Frame of multi-frame files (negative counts from the end).
    bits : bool
        Mask stored values to ``BitsStored``.
    modality_lut : bool
        Apply rescale slope/intercept or the Modality LUT.
    polarity : bool
        Show bone bright (invert MONOCHROME1 / Presentation LUT ``INVERSE``).
    color : {"gray", "keep"}
        Colour images (DICOM or image files) to BT.601 luma, or kept ``(H, W, 3)`` RGB.
    max_pixels : int or None
        Refuse DICOMs larger than this many samples before decoding
        (:data:`radiology.dicom.DEFAULT_MAX_PIXELS`; ``None``: no limit). A resource
        limit, not preprocessing: written to pipeline files only when not the default.

    Examples
    --------
    >>> Decode(color="rgb")
    Traceback (most recent call last):
    ...
    ValueError: decode: color must be 'gray' or 'keep', got 'rgb'
    """

    frame: int = 0
    bits: bool = True
    modality_lut: bool = True
    polarity: bool = True
    color: str = "gray"
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    def __post_init__(self):
        object.__setattr__(self, "frame", _integer("decode", "frame", self.frame))
        object.__setattr__(self, "max_pixels", _integer("decode", "max_pixels", self.max_pixels, optional=True, ge=1))
        for param in ("bits", "modality_lut", "polarity"):
            object.__setattr__(self, param, _flag("decode", param, getattr(self, param)))
        if self.color not in ("gray", "keep"):
            _fail("decode", f"color must be 'gray' or 'keep', got {self.color!r}")

    def read(self, source) -> DicomImage:
        """Decode one DICOM (path, bytes or binary file-like) with these settings.

        Parameters
        ----------
        source : path, bytes or binary file-like
            The DICOM to decode.
        """
        return read_dicom(source, frame=self.frame, bits=self.bits, modality_lut=self.modality_lut,
                          color=self.color, max_pixels=self.max_pixels)

    def params(self) -> dict[str, Any]:
        """Parameters as JSON-ready values (``max_pixels`` only when not the default)."""
        out = asdict(self)
        if out["max_pixels"] == DEFAULT_MAX_PIXELS:
            del out["max_pixels"]
        return out
