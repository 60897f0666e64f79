"""The class order: sorted, integer codes as numbers, and in a two-class task the "no finding" class first."""

import pytest

from radiology.classes import class_order


@pytest.mark.parametrize("names, order", [
    (["normal", "fracture"], ["normal", "fracture"]),  # FracAtlas fixture: the fracture is the positive class
    (["Non_fractured", "Fractured"], ["Non_fractured", "Fractured"]),  # FracAtlas folders
    (["PNEUMONIA", "NORMAL"], ["NORMAL", "PNEUMONIA"]),  # Kermany: already in text order
    (["No Finding", "Effusion"], ["No Finding", "Effusion"]),
    (["nodule", "normal", "effusion"], ["effusion", "nodule", "normal"]),  # three classes: no positive one
    (["normal", "healthy"], ["healthy", "normal"]),  # both say "no finding": text order
    (["AP", "PA"], ["AP", "PA"]),
    (["11", "3", "0", "3"], ["0", "3", "11"]),
    (["1", "0"], ["0", "1"]),
])
def test_class_order(names, order):
    assert class_order(names) == order


def test_training_and_bundles_take_that_order(tmp_path):
    import numpy as np

    from radiology.data import from_csv, from_folder
    from radiology.io import write_image

    for index, label in enumerate(["normal", "fracture", "normal"]):
        write_image(tmp_path / label / f"{index}.png", np.zeros((4, 4), np.float32))
    (tmp_path / "labels.csv").write_text("file,label\nnormal/0.png,normal\nfracture/1.png,fracture\n")
    assert from_folder(tmp_path).classes == ["normal", "fracture"]
    items = from_csv(tmp_path / "labels.csv", tmp_path, "file", "label", progress=False)
    assert items.classes == ["normal", "fracture"] and items.targets.tolist() == [0, 1]
