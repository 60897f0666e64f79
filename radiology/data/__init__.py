"""Data (torch): labeled image lists, on-disk cache, datasets, patient-grouped splits, samplers, loaders.

From files to training batches::

    items = from_csv("train.csv", "data", "SOPInstanceUID", "Target")   # UIDs resolved from headers
    items.groups = dicom_patient_ids(items.paths)                       # in memory only
    train_idx, valid_idx = train_valid_split(items.targets, items.groups)
    pipeline = Pipeline([Percentile(), Resize(longest=256), PadSquare()])
    cache = ImageCache()                                                # $RADIOLOGY_CACHE or ~/.cache/...
    train_ds = ImageDataset(items.subset(train_idx), pipeline, cache=cache)
    valid_ds = ImageDataset(items.subset(valid_idx), pipeline, cache=cache)
    dls = build_dataloaders(train_ds, valid_ds, batch_size=32, sampler="min_per_class",
                            augment=radiograph_augmentation())

Every image goes through :meth:`radiology.pipeline.Pipeline.read`, the same entry point
inference uses. The fastai part (:func:`build_dataloaders`, :class:`SampledDataLoader`) is
imported on first use, so datasets and splits work without paying for fastai's import.
"""

from radiology.data.cache import ImageCache, default_cache_dir, open_cache, pipeline_key
from radiology.data.dataset import (
    ImageDataset,
    data_report,
    drop_unreadable,
    input_error,
    model_input,
    output_size,
    unreadable_reason,
)
from radiology.data.labels import (
    LabeledImages,
    dicom_patient_ids,
    escapes_root,
    from_csv,
    from_folder,
    from_paths,
    from_unlabeled,
    index_dicom_uids,
    patient_column,
    resolve_images,
)
from radiology.data.sampling import MinPerClassSampler, class_weights, sample_weights
from radiology.data.splits import (
    group_overlap,
    keep_classes_in_training,
    kfold_splits,
    stratification_labels,
    train_valid_split,
    untrained_classes,
)

__all__ = [
    "LabeledImages", "from_folder", "from_csv", "from_paths", "from_unlabeled", "index_dicom_uids", "dicom_patient_ids",
    "resolve_images", "escapes_root", "patient_column",
    "ImageCache", "default_cache_dir", "pipeline_key", "open_cache",
    "ImageDataset", "model_input", "output_size", "drop_unreadable", "input_error", "unreadable_reason", "data_report",
    "train_valid_split", "kfold_splits", "group_overlap", "stratification_labels", "untrained_classes",
    "keep_classes_in_training",
    "class_weights", "sample_weights", "MinPerClassSampler",
    "build_dataloaders", "SampledDataLoader", "SAMPLERS",
]

_LAZY = {"build_dataloaders", "SampledDataLoader", "SAMPLERS"}


def __getattr__(name):
    # fastai takes seconds to import: load it only when a loader is built.
    if name in _LAZY:
        from radiology.data import loaders

        return getattr(loaders, name)
    raise AttributeError(f"module 'radiology.data' has no attribute {name!r}")
