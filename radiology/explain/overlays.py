"""Explaining a bundle's predictions on files: figure PNGs of maps on the original images, and a table.

What ``radiology explain BUNDLE INPUT --out DIR`` runs (:func:`explain_inputs`). Each PNG is an
:func:`~radiology.explain.explanation_figure`: the original image (its geometry kept, scaled
to a readable size) with its map, a caption (class, probability, method) and a colour bar.
"""

from __future__ import annotations

import json
import logging
import math
import os
import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from radiology.errors import one_line
from radiology.explain.cam import METHODS, cam_peak, cam_to_original, compute_cam, find_target_layer
from radiology.explain.figure import FIGURE_SIZE, check_figure_size, explanation_figure
from radiology.explain.pointing import GROW, grow_boxes, parse_boxes, pointing_game
from radiology.files import DICOM_SUFFIXES, IMAGE_SUFFIXES
from radiology.naming import NAME_BYTES, display_name, fit_name, sanitize_component

logger = logging.getLogger(__name__)

__all__ = ["EXPLANATION_COLUMNS", "POINTING_COLUMNS", "explain_inputs", "overlay_name", "original_view",
           "read_boxes"]

#: Columns of ``explanations.csv``.
EXPLANATION_COLUMNS = ("image", "label", "probability", "method", "overlay", "peak_x", "peak_y", "error")
#: Columns of ``pointing.csv`` (``explain_inputs(..., boxes=...)``).
POINTING_COLUMNS = ("image", "label", "method", "peak_x", "peak_y", "hit", "centre_hit", "box_share", "error")
#: What ``boxes`` of :func:`explain_inputs` may be keyed by.
BOXES_BY = ("image", "SOPInstanceUID")
# Tables of earlier versions (no probability) are read, and rewritten with an empty probability.
_EARLIER_COLUMNS = ("image", "label", "method", "overlay", "peak_x", "peak_y", "error")
_LABEL_BYTES = 60  # per label or method in an overlay name: the input's own name gets the rest


def overlay_name(image_id: str, *parts: str) -> str:
    """A safe PNG file name from an input's reference (its path or CSV value) and labels.

    Only the reference *as given* is used (never header fields): its folders and name, with
    a known image suffix dropped. Characters are kept as :func:`radiology.naming.sanitize_component`
    keeps them (letters and digits of any script, NFC); separators and leading or trailing
    dots go. The name fits a file system's 255 bytes with room for a ``-N`` suffix: a long
    reference keeps its start and a hash of the whole, labels are never cut off.

    Parameters
    ----------
    image_id : str
        The input's reference: its path or CSV value, as given.
    *parts : str
        Labels appended to the name (e.g. the explained class).

    Examples
    --------
    >>> overlay_name("train/patient 7/img.dcm", "nodule")
    'train_patient_7_img__nodule.png'
    >>> overlay_name("../x.png", "a/b")
    'x__a_b.png'
    >>> overlay_name("胸部/画像.dcm", "結節")
    '胸部_画像__結節.png'
    """
    def clean(text: str) -> str:
        return sanitize_component(str(text).replace("\\", "/").replace("/", "_")).strip("._") or "x"

    stem = str(image_id)
    if stem.lower().endswith((*DICOM_SUFFIXES, *IMAGE_SUFFIXES)):
        stem = stem.rsplit(".", 1)[0]
    tail = "".join(f"__{fit_name(clean(part), _LABEL_BYTES)}" for part in parts) + ".png"
    return fit_name(clean(stem), NAME_BYTES - 8, keep=tail)


def original_view(stages: Sequence[tuple]) -> np.ndarray:
    """The image to draw an explanation on, from ``Pipeline.trace(source, with_geometry=True)``.

    The last stage still in the original image's pixel grid (same size, identity geometry):
    normalized to ``[0, 1]`` (a DICOM's raw values never), before any resize, pad or crop.

    Parameters
    ----------
    stages : sequence of tuple
        ``(name, image, matrix)`` stages of :meth:`radiology.pipeline.Pipeline.trace` with
        ``with_geometry=True``.

    Examples
    --------
    >>> from radiology.pipeline import Pipeline, MinMax, Resize
    >>> stages = Pipeline([MinMax(), Resize(width=4)]).trace(np.arange(32.0).reshape(4, 8), with_geometry=True)
    >>> original_view(stages).shape, float(original_view(stages).max())
    ((4, 8), 1.0)
    """
    if not stages:
        raise ValueError("no stages")
    shape = stages[0][1].shape[:2]
    chosen = stages[0][1]
    for index, (_, image, matrix) in enumerate(stages):
        if matrix is None or image.shape[:2] != shape or not np.allclose(matrix, np.eye(3)):
            break
        if index > 0 or image.dtype.kind == "f":
            chosen = image
    return np.clip(np.asarray(chosen, dtype=np.float32), 0, 1)


def _common_folder(inputs) -> Path | None:
    folders = [os.path.dirname(os.path.abspath(p)) for paths in inputs.sources if paths for p in paths]
    return Path(os.path.commonpath(folders)) if folders else None


def _relative_name(path, root: Path | None) -> str:
    # The file's own path under the input folder (its name alone when it lies elsewhere): overlay
    # names never echo a CSV value that may be a UID looked up in the headers.
    path = os.path.abspath(path)
    if root is not None:
        try:
            relative = os.path.relpath(path, os.path.abspath(root))
        except ValueError:  # another drive (Windows)
            relative = os.pardir
        if relative != os.pardir and not relative.startswith(os.pardir + os.sep):
            return Path(relative).as_posix()
    return os.path.basename(path)


def _view_ids(image_id: str, views: int) -> list[str]:
    parts = str(image_id).split("|")
    return parts if len(parts) == views else [f"{image_id}" for _ in range(views)]


def explain_inputs(bundle, inputs, out: str | os.PathLike, *, method: str = "gradcam", label: str | None = None,
                   target_layer=None, batch_size: int = 8, progress: bool = True,
                   root: str | os.PathLike | None = None, image_cols: Sequence[str] | str | None = None,
                   device: str | None = None, allow_outside_root: bool = False,
                   figure_size: int | None = FIGURE_SIZE, boxes: Mapping[str, object] | None = None,
                   boxes_by: str = "image", grow: float = GROW) -> pd.DataFrame:
    """Write a CAM figure PNG per input (per label, per view) and ``explanations.csv``.

    Parameters
    ----------
    bundle : radiology.models.Bundle or path
        A model bundle (its eager model is used, whatever its backend), or its folder.
    inputs : path or radiology.predict.PredictionInputs
        A folder (recursive), a file or a CSV, as :func:`radiology.predict.prediction_inputs`
        takes them, or its result.
    out : path
        Output folder (created). A run into a folder that already holds explanations
        adds to them: see Notes. An existing file, the input folder itself, or a CSV's
        image folder is refused before any bundle is loaded or image read.
    method : str, optional
        A CAM method of :data:`radiology.explain.METHODS`.
    label : str, optional
        Explain this class/label only. Default: single-label models the predicted class,
        multi-label models every label whose probability is above its threshold.
    target_layer : torch.nn.Module or str, optional
        See :func:`radiology.explain.find_target_layer`.
    batch_size : int, optional
        Inputs per forward/backward pass.
    progress : bool, optional
        Show a progress bar.
    root : path, optional
        Folder a CSV's image column is relative to (default: the CSV's folder).
    image_cols : str or sequence of str, optional
        Image column(s) of a CSV (default ``image``, or the bundle's view names for a
        multi-view model).
    device : str, optional
        torch device to load a bundle *folder* on (default ``"cpu"``); a loaded
        :class:`~radiology.models.Bundle` runs where it was loaded.
    allow_outside_root : bool, optional
        Read CSV values that point outside ``root`` (by default they get an error row, as in
        :func:`radiology.predict.prediction_inputs`).
    figure_size : int or None, optional
        Longest side of each written figure in pixels (160 to 8192; default 768): small
        originals are scaled up, large ones down, the geometry kept. None keeps the
        original's pixels. See :func:`radiology.explain.explanation_figure`.
    boxes : mapping, optional
        Finding boxes to play the pointing game with: image reference → boxes, ``(N, 4)``
        ``(x, y, w, h)`` in pixels of the stored image or a boxes cell ``"x y w h;x y w h"``
        (:func:`~radiology.explain.parse_boxes`; empty: no box). Every explained map is
        scored (:func:`~radiology.explain.pointing_game`) into ``out/pointing.csv`` and
        ``out/pointing.json``: see Notes. :func:`read_boxes` reads them from a CSV.
    boxes_by : {"image", "SOPInstanceUID"}, optional
        What the keys of ``boxes`` are: ``image``, the explained file as the table's
        ``image`` column names it (a CSV value, or a path relative to the input folder;
        ``./`` and ``\\`` do not matter), or ``SOPInstanceUID``, read from each explained
        DICOM's header (other files have none and are not scored).
    grow : float, optional
        Boxes are grown by this share of the image's longer side on every side (default 5 %).

    Returns
    -------
    pandas.DataFrame
        This run's rows of ``out/explanations.csv``, columns :data:`EXPLANATION_COLUMNS`:
        one row per input and explained label (and per view of multi-view models):
        ``image`` (the input as given; a view's own file for multi-view inputs), ``label``,
        ``probability`` (the model's probability of that label for this input: softmax, or
        sigmoid for multi-label models), ``method``, ``overlay`` (file name in ``out``, from
        input, label and method), ``peak_x``/``peak_y`` (the map's maximum in pixels of the
        *original* image, whatever the figure's size; empty for an all-zero map) and ``error``.
        An input that cannot be read gets one row with its error and the run goes on; a
        multi-label input with no label above its threshold gets one row with an empty label.
        With ``boxes``, ``table.attrs["pointing"]`` holds the summary written to
        ``pointing.json``.

    Notes
    -----
    Maps are computed on the model's input and brought back onto the original image
    through the geometry the bundle's pipeline reports for that very input
    (:meth:`radiology.pipeline.Pipeline.read` with ``with_geometry=True``), so resizing,
    padding and crops (data-dependent ones included) are undone. Overlays are drawn on the
    original image, normalized, and written as figures (:func:`~radiology.explain.explanation_figure`):
    scaled to ``figure_size``, with a caption band (the class explained, its probability,
    the method, and the view of multi-view models; never a file name or header field) and
    a colour bar labelled "relative evidence (per image)": each map is scaled to ``[0, 1]``
    on its own, so colours compare within a figure, not across figures. Overlay names come
    from each file's path relative to the input folder (a CSV's folder or ``root``), never
    from header fields, even when a CSV refers to images by SOP Instance UID: see
    :func:`overlay_name`.

    Nothing in ``out`` is lost to a later run: ``explanations.csv`` keeps the rows of
    earlier runs (another method, label or input) and only rows of the same input, method
    and label are replaced, with their overlay; a new overlay never overwrites any other
    file (it gets a ``-1`` suffix). An ``explanations.csv`` that is not such a table stops
    the run before anything is written. In a folder ``inputs``, ``out`` and the output
    folders of earlier runs (those holding their ``explanations.csv``) are not inputs; the
    files left out are counted in a warning. File names that are not UTF-8 are written with
    their undecodable bytes as ``\\xNN`` escapes, as convert's report writes them, and error
    cells name files relative to the input folder, never by an absolute path.

    The pointing game (``boxes``): each map of this run (each explained label, each view)
    whose image has at least one box gets a row of ``pointing.csv`` (columns
    :data:`POINTING_COLUMNS`): ``image`` and ``label`` as in ``explanations.csv`` (an absolute
    reference shortened to its file name), ``peak_x``/``peak_y``, ``hit`` (the peak in a
    grown box), ``centre_hit`` (the image centre in one), ``box_share`` (the share of the
    image's pixels in the grown boxes: the chance of a random peak) and ``error`` (boxes
    that lie outside the image: that map is not scored). ``pointing.json`` holds ``n``,
    ``hits``, ``hit_rate``, ``centre_hits``, ``centre_rate``, ``random_rate``, ``grow``,
    ``unscored`` (maps of images without a box), ``missing`` (of those, images absent from
    ``boxes``), ``errors`` and ``method``; both files describe this run only. Boxes are
    in pixels of the stored image, the pixels ``peak_x``/``peak_y`` are in: every resize,
    pad and crop of the pipeline is undone before the peak is taken. Explain the finding's
    class (``label``): by default a map of the predicted class is scored, which for a
    missed finding is the normal class's.

    Raises
    ------
    ValueError
        ``out`` is a file or an input folder, ``explanations.csv`` in it is not one of this
        function's tables, bad arguments (all before any work).
    FileNotFoundError
        ``inputs`` or the bundle folder does not exist.

    Examples
    --------
    Saving a bundle exports it (seconds), so this one is not run:

    >>> table = explain_inputs("runs/bundle", "new_images/", "explanations/", method="gradcampp",
    ...                        progress=False)  # doctest: +SKIP
    >>> table.columns.tolist()  # doctest: +SKIP
    ['image', 'label', 'probability', 'method', 'overlay', 'peak_x', 'peak_y', 'error']
    """
    from tqdm.auto import tqdm

    from radiology.data import input_error
    from radiology.io import atomic_write, write_image
    from radiology.models import Bundle, load_bundle
    from radiology.predict import PredictionInputs, prediction_inputs

    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    figure_size = check_figure_size(figure_size)
    out = Path(out)
    if boxes is not None:
        boxes = _check_boxes_argument(boxes, boxes_by, grow)
    # Before any bundle is loaded or image read: where this run writes must hold none of its inputs.
    _check_out(out, inputs, root)
    previous = _previous_explanations(out / "explanations.csv")
    if boxes is not None:
        _check_pointing_files(out)
    if isinstance(bundle, Bundle):
        if device is not None and str(device) != str(bundle.device):
            raise ValueError(f"device {device!r} differs from the loaded bundle's {bundle.device!r}: load it there")
    else:
        bundle = load_bundle(bundle, "eager", device=device or "cpu")
    if label is not None and label not in bundle.classes:
        raise ValueError(f"label {label!r} is not one of the model's classes {bundle.classes}")
    views = len(bundle.views)
    if isinstance(inputs, PredictionInputs):
        if root is not None or image_cols is not None:
            raise ValueError("root and image_cols apply to a CSV path, not to resolved PredictionInputs")
        names_root = _common_folder(inputs)
    else:
        source = Path(inputs)
        csv = source.is_file() and source.suffix.lower() == ".csv"
        if image_cols is None and csv and views > 1:
            image_cols = list(bundle.views)
        # An output folder inside the input folder: a second run must not explain the first one's overlays.
        inputs = prediction_inputs(source, root=root, image_cols=image_cols, progress=progress,
                                   exclude=out if source.is_dir() else None, allow_outside_root=allow_outside_root)
        if source.is_dir():
            inputs = _without_earlier_outputs(inputs, source)
        names_root = source if source.is_dir() else Path(root) if csv and root is not None else source.parent
    model = bundle.model
    layer = find_target_layer(model, target_layer)
    out.mkdir(parents=True, exist_ok=True)
    # Ids as the table shows them (undecodable bytes of file names escaped, as convert's report
    # does): the form an earlier run's rows hold, so that they are matched.
    ids = [display_name(i) for i in inputs.ids]
    # Overlays of earlier rows for these inputs and this method may be redrawn; every other file stays.
    this_run = {*ids, *(view_id for i in ids for view_id in _view_ids(i, views))}
    redrawn = previous["image"].isin(this_run) & (previous["method"] == method)
    used = {entry.name for entry in out.iterdir()} - set(previous.loc[redrawn, "overlay"])
    rows: list[dict] = []

    def unique(name: str) -> str:
        stem, n = name[:-4], 1
        while name in used:
            name, n = f"{stem}-{n}.png", n + 1
        used.add(name)
        return name

    def add(index: int, image: str, label_name: str = "", name: str = "", peak=None, error: str = "",
            probability: float | None = None, shape=None, path=None) -> None:
        rows.append({"image": image, "label": label_name,
                     "probability": None if probability is None else round(float(probability), 6),
                     "method": method, "overlay": name,
                     "peak_x": None if peak is None else peak[0], "peak_y": None if peak is None else peak[1],
                     "error": " ".join(str(error).split()), "_input": index, "_shape": shape, "_path": path})

    def failed(index: int, error: BaseException | str) -> None:
        # Error messages name files by the path they were opened with: absolute when the input was.
        add(index, ids[index], error=input_error(error, inputs.sources[index] or (), ids[index]))

    bar = tqdm(total=len(inputs.ids), disable=not progress, unit="image", desc="explain")
    for start in range(0, len(inputs.ids), batch_size):
        loaded: list[tuple[int, list[tuple[np.ndarray, np.ndarray]], np.ndarray]] = []
        for index in range(start, min(len(inputs.ids), start + batch_size)):
            paths = inputs.sources[index]
            if paths is None or inputs.errors[index]:
                failed(index, inputs.errors[index] or "input not found")
                continue
            try:
                if len(paths) != views:
                    raise ValueError(f"{len(paths)} images, the model takes {views} views {list(bundle.views)}")
                originals, samples = [], []
                for path in paths:
                    stages = bundle.pipeline.trace(path, with_geometry=True)
                    name, image, matrix = stages[-1]
                    if matrix is None:
                        raise ValueError(f"step {name!r} does not report its geometry")
                    sample = bundle.model_input(image, str(path))
                    originals.append((original_view(stages), matrix))
                    samples.append(sample)
                loaded.append((index, originals, samples[0] if views == 1 else np.stack(samples)))
            except Exception as error:  # noqa: BLE001 - one bad input gets its row, the run goes on
                failed(index, error)
        if loaded:
            batch = np.stack([sample for _, _, sample in loaded]).astype(np.float32)
            # The bundle's own decisions (argmax, or each label over its threshold), unless a label is given.
            probabilities = bundle.predict_batch(batch)
            decisions = None if label is not None else bundle.decide(probabilities)
            # (sample, class) pairs to explain, then one CAM pass per chunk of pairs.
            pairs: list[tuple[int, int]] = []
            for position in range(len(loaded)):
                if decisions is None:
                    chosen = [bundle.classes.index(label)]
                elif bundle.multi_label:
                    chosen = [int(c) for c in np.flatnonzero(decisions[position])]
                else:
                    chosen = [int(decisions[position])]
                if not chosen:
                    add(loaded[position][0], ids[loaded[position][0]])
                pairs.extend((position, c) for c in chosen)
            for chunk in range(0, len(pairs), batch_size):
                part = pairs[chunk:chunk + batch_size]
                maps = compute_cam(model, batch[[p for p, _ in part]], method=method, targets=[c for _, c in part],
                                   target_layer=layer)
                if views == 1:
                    maps = maps[:, None]
                for (position, target), sample_maps in zip(part, maps):
                    index, originals, _ = loaded[position]
                    view_ids = _view_ids(ids[index], views)
                    for view, (cam, (image, matrix)) in enumerate(zip(sample_maps, originals)):
                        back = cam_to_original(cam, matrix, image.shape)
                        class_name, probability = bundle.classes[target], float(probabilities[position, target])
                        parts = [class_name] if views == 1 else [bundle.views[view], class_name]
                        file = _relative_name(inputs.sources[index][view], names_root)
                        name = unique(overlay_name(file, *parts, method))
                        caption = class_name if views == 1 else f"{class_name} ({bundle.views[view]} view)"
                        write_image(out / name, explanation_figure(image, back, label=caption, probability=probability,
                                                                   method=method, size=figure_size))
                        add(index, view_ids[view], class_name, name, cam_peak(back), probability=probability,
                            shape=image.shape[:2], path=inputs.sources[index][view])
        bar.update(min(len(inputs.ids), start + batch_size) - start)
    bar.close()
    # Input order (failures are recorded before the CAMs of their batch); stable within an input.
    rows.sort(key=lambda row: row.pop("_input"))
    located = [(row.pop("_shape"), row.pop("_path")) for row in rows]
    table = pd.DataFrame(rows, columns=list(EXPLANATION_COLUMNS))
    for column in ("peak_x", "peak_y"):
        table[column] = table[column].astype("Int64")
    table["probability"] = table["probability"].astype("float64")
    # Earlier rows stay unless this run explained the same (input, method, label), or they
    # recorded no overlay for an input explained again, or their file name was reused.
    same = pd.MultiIndex.from_frame(previous[["image", "method", "label"]]).isin(
        pd.MultiIndex.from_frame(table[["image", "method", "label"]]))
    reused = previous["overlay"].isin(set(table["overlay"]) - {""})
    replaced = (redrawn & (same | (previous["overlay"] == ""))) | reused
    merged = pd.concat([previous[~replaced], table], ignore_index=True) if len(previous) else table
    atomic_write(out / "explanations.csv", display_name(merged.to_csv(index=False)).encode())
    if boxes is not None:
        table.attrs["pointing"] = _write_pointing(out, rows, located, boxes, boxes_by, grow, method)
    return table


def _check_out(out: Path, inputs, root) -> None:
    """Refuse an output folder that is a file, or an input folder itself (before any work)."""
    from radiology.io import check_output_folders
    from radiology.predict import PredictionInputs

    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: is a file; out is a folder for overlays and explanations.csv "
                         "(a file is never replaced by one)")
    check_output_folders(out)
    if isinstance(inputs, PredictionInputs) or not out.is_dir():
        return
    source = Path(inputs)
    folders = [source] if source.is_dir() else []
    if source.is_file() and source.suffix.lower() == ".csv":
        folders.append(Path(root) if root is not None else source.parent)
    for folder in folders:
        if folder.is_dir() and os.path.samefile(out, folder):
            raise ValueError(f"{out}: is the input folder; overlays go to a folder of their own (a new one, "
                             "or one inside it)")


def _without_earlier_outputs(inputs, source: Path):
    """``inputs`` less the files inside folders an earlier explain run wrote (ones holding its
    ``explanations.csv``): overlays of overlays explain nothing."""
    from radiology.predict import PredictionInputs

    headers = {",".join(EXPLANATION_COLUMNS), ",".join(_EARLIER_COLUMNS)}
    holds_table: dict[Path, bool] = {}

    def written_by_explain(folder: Path) -> bool:
        while folder != source and folder != folder.parent:
            if folder not in holds_table:
                try:
                    with open(folder / "explanations.csv", encoding="utf-8", errors="replace") as handle:
                        holds_table[folder] = handle.readline().strip() in headers
                except OSError:
                    holds_table[folder] = False
            if holds_table[folder]:
                return True
            folder = folder.parent
        return False

    keep = [i for i, paths in enumerate(inputs.sources) if paths is None or not written_by_explain(paths[0].parent)]
    if len(keep) < len(inputs.ids):
        outputs = [folder for folder, own in list(holds_table.items()) if own]
        topmost = sorted(f.relative_to(source).as_posix() for f in outputs if not written_by_explain(f.parent))
        logger.warning("left out %d file(s) in earlier explain output folder(s): %s",
                       len(inputs.ids) - len(keep), ", ".join(topmost))
    if not keep:
        raise ValueError(f"{source}: no files to explain outside earlier explain output folders")
    return PredictionInputs([inputs.ids[i] for i in keep], [inputs.sources[i] for i in keep],
                            [inputs.errors[i] for i in keep])


def _previous_explanations(path: Path) -> pd.DataFrame:
    """The rows of an earlier run's ``explanations.csv`` (none when there is none)."""
    columns = list(EXPLANATION_COLUMNS)
    if not path.exists():
        return pd.DataFrame({name: pd.Series(dtype="Int64" if name.startswith("peak_") else
                                             "float64" if name == "probability" else str) for name in columns})
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        if list(table.columns) == list(_EARLIER_COLUMNS):  # a table of an earlier version: no probabilities
            table.insert(columns.index("probability"), "probability", "")
        if list(table.columns) != columns:
            raise ValueError(f"columns {list(table.columns)}")
        for name in ("peak_x", "peak_y"):
            table[name] = pd.to_numeric(table[name].mask(table[name] == "")).astype("Int64")
        table["probability"] = pd.to_numeric(table["probability"].mask(table["probability"] == "")).astype("float64")
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not an explanations table of radiology explain ({one_line(error)}); "
                         "choose another output folder") from error
    return table


def read_boxes(table, image_col: str = "image", boxes_col: str = "boxes") -> dict[str, np.ndarray]:
    """Finding boxes by image from a CSV (or a DataFrame), for ``explain_inputs(..., boxes=...)``.

    Parameters
    ----------
    table : path or pandas.DataFrame
        A table with an image column and a boxes column whose cells are ``"x y w h;x y w h"``
        in pixels of the stored image (:func:`~radiology.explain.parse_boxes`), as the
        fracture ``labels.csv`` holds them.
    image_col : str, optional
        The column naming the image: a path as the explained input names it, or (for
        ``boxes_by="SOPInstanceUID"``) the SOP Instance UID.
    boxes_col : str, optional
        The column of boxes (empty: the image has none).

    Returns
    -------
    dict of str to numpy.ndarray
        ``(N, 4)`` boxes by image (all of an image's rows together; images without a box
        keep an empty ``(0, 4)`` entry, so that they count as seen).

    Raises
    ------
    ValueError
        A missing column, or a cell that is not boxes (the message names the CSV line).

    Examples
    --------
    >>> frame = pd.DataFrame({"file": ["a.dcm", "b.dcm", "a.dcm"], "boxes": ["1 2 3 4", "", "5 6 7 8"]})
    >>> {key: value.tolist() for key, value in read_boxes(frame, "file").items()}
    {'a.dcm': [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], 'b.dcm': []}
    """
    name = "the table"
    if not isinstance(table, pd.DataFrame):
        name = Path(table).name
        try:
            table = pd.read_csv(table, dtype=str, keep_default_na=False, encoding="utf-8")
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
            raise ValueError(f"{name}: not a CSV table ({one_line(error)})") from None
    missing = [column for column in (image_col, boxes_col) if column not in table.columns]
    if missing:
        raise ValueError(f"{name}: no column {', '.join(map(repr, missing))} (columns: {', '.join(table.columns)})")
    found: dict[str, list[np.ndarray]] = {}
    for line, (image, cell) in enumerate(zip(table[image_col], table[boxes_col]), start=2):
        image = "" if image is None or (isinstance(image, float) and math.isnan(image)) else str(image).strip()
        if not image:
            continue
        try:
            found.setdefault(image, []).append(parse_boxes(cell if cell is None or isinstance(cell, (str, float))
                                                           else str(cell)))
        except ValueError as error:
            raise ValueError(f"{name}: line {line} ({image_col} {image!r}): {error}") from None
    return {image: np.concatenate(parts) for image, parts in found.items()}


def _box_key(reference: str) -> str:
    """A path as a key: ``/`` separators, no ``./``, normalized (a UID is its own key)."""
    text = str(reference).strip().replace("\\", "/")
    return posixpath.normpath(text) if text else text


def _check_boxes_argument(boxes, boxes_by: str, grow) -> dict[str, np.ndarray]:
    from radiology.explain.pointing import _check_boxes, _check_grow

    if boxes_by not in BOXES_BY:
        raise ValueError(f"boxes_by must be one of {list(BOXES_BY)}, got {boxes_by!r}")
    _check_grow(grow)
    if not isinstance(boxes, Mapping):
        raise TypeError(f"boxes must be a mapping of image reference to boxes, got {type(boxes).__name__}")
    checked = {}
    for key, value in boxes.items():
        try:
            checked[_box_key(key) if boxes_by == "image" else str(key).strip()] = _check_boxes(value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"boxes of {key!r}: {error}") from None
    return checked


def _check_pointing_files(out: Path) -> None:
    """Refuse a ``pointing.csv`` or ``pointing.json`` this function did not write (before any work)."""
    for path, kind, looks_ours in ((out / "pointing.csv", "table", _is_pointing_table),
                                   (out / "pointing.json", "summary", _is_pointing_summary)):
        if not (path.exists() or path.is_symlink()):
            continue
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read(1 << 16)  # a summary is a few hundred bytes; a table's header is its first line
        except OSError as error:
            raise ValueError(f"{path}: exists and cannot be read ({error.strerror}); choose another output folder") \
                from None
        if not looks_ours(text):
            raise ValueError(f"{path}: not a pointing {kind} of radiology explain; choose another output folder")


def _is_pointing_table(text: str) -> bool:
    return text.split("\n", 1)[0].strip() == ",".join(POINTING_COLUMNS)


def _is_pointing_summary(text: str) -> bool:
    try:
        summary = json.loads(text)
    except ValueError:
        return False
    return isinstance(summary, dict) and {"n", "hit_rate", "centre_rate", "random_rate"} <= set(summary)


def _write_pointing(out: Path, rows: list[dict], located: list, boxes: dict[str, np.ndarray], boxes_by: str,
                    grow: float, method: str) -> dict:
    """Score this run's maps against ``boxes``: ``pointing.csv``, ``pointing.json``; returns the summary."""
    from radiology.io import atomic_write
    from radiology.predict import header_uid

    scored, peaks, found, shapes = [], [], [], []
    unscored = missing = 0
    for row, (shape, path) in zip(rows, located):
        if shape is None:  # an input that failed, or no label to explain: no map
            continue
        key = _box_key(row["image"]) if boxes_by == "image" else (header_uid(path) or None)
        value = boxes.get(key) if key else None
        if value is None or not len(value):
            unscored += 1
            missing += value is None
            continue
        peak = None if row["peak_x"] is None else (row["peak_x"], row["peak_y"])
        image = row["image"]
        if os.path.isabs(image) or posixpath.isabs(image.replace("\\", "/")):
            image = os.path.basename(image.replace("\\", "/"))
        entry = {"image": image, "label": row["label"], "method": method,
                 "peak_x": row["peak_x"], "peak_y": row["peak_y"], "error": ""}
        try:
            grow_boxes(value, shape, grow)
        except ValueError as error:
            entry["error"] = one_line(error)
        else:
            peaks.append(peak)
            found.append(value)
            shapes.append(shape)
        scored.append(entry)
    game = pointing_game(peaks, found, shapes, grow=grow)
    results = iter(zip(game.hit, game.centre_hit, game.area))
    for entry in scored:
        if not entry["error"]:
            hit, centre, area = next(results)
            entry.update(hit=int(hit), centre_hit=int(centre), box_share=round(float(area), 6))
    table = pd.DataFrame(scored, columns=list(POINTING_COLUMNS))
    for column in ("peak_x", "peak_y", "hit", "centre_hit"):
        table[column] = table[column].astype("Int64")
    errors = sum(bool(entry["error"]) for entry in scored)
    summary = {**game.summary(), "unscored": unscored, "missing": missing, "errors": errors, "method": method}
    atomic_write(out / "pointing.csv", display_name(table.to_csv(index=False)).encode())
    atomic_write(out / "pointing.json", (json.dumps(summary, indent=2) + "\n").encode())
    if missing == sum(shape is not None for shape, _ in located) and missing:
        logger.warning("no explained image is among the boxes' images (keyed by %s): nothing scored", boxes_by)
    return summary
