"""Geometry: resize and pad on numpy images (no torch)."""

from radiology.geometry.resize import pad_to_square, resize, target_size

__all__ = ["resize", "pad_to_square", "target_size"]
