"""Names that moved out of radiology.train (to radiology.predict / radiology.evaluate) keep working for a release."""

import importlib

import pytest

pytest.importorskip("fastai")

import radiology.train  # noqa: E402
from radiology.train import _MOVED  # noqa: E402


@pytest.mark.parametrize("name", sorted(_MOVED))
def test_moved_name_warns_and_is_the_same_object(name):
    with pytest.warns(DeprecationWarning, match=f"radiology.train.{name} moved to {_MOVED[name]}.{name}"):
        old = getattr(radiology.train, name)
    assert old is getattr(importlib.import_module(_MOVED[name]), name)


def test_unknown_names_still_fail():
    with pytest.raises(AttributeError, match="no attribute 'predict_tables'"):
        radiology.train.predict_tables  # noqa: B018
