"""Geometry: resize, pad, field of view, circular crop, background cleaning, knee localization, and the
affine bookkeeping that maps pixels of a processed image back to the original (no torch)."""

from radiology.geometry.affine import map_points, resize_matrix, translation_matrix, warp_back
from radiology.geometry.background import body_mask, clean_background, collimation_box
from radiology.geometry.fov import circle_crop, crop_to_fov, fill_holes, fit_circle, fov_mask, fundus_crop, mask_box
from radiology.geometry.knee import KneeBox, KneeLocalizer, box_iou, crop_around, hog_features
from radiology.geometry.resize import pad_to_square, resize, target_size

__all__ = [
    "resize",
    "pad_to_square",
    "target_size",
    "fov_mask",
    "fill_holes",
    "mask_box",
    "crop_to_fov",
    "fit_circle",
    "circle_crop",
    "fundus_crop",
    "collimation_box",
    "body_mask",
    "clean_background",
    "KneeLocalizer",
    "KneeBox",
    "hog_features",
    "box_iou",
    "crop_around",
    "translation_matrix",
    "resize_matrix",
    "map_points",
    "warp_back",
]
