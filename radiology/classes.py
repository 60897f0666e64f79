"""Class names: the one order every dataset, bundle and score uses.

Training sorts the label values it finds, and two-class metrics call the *second* class the
positive one (sensitivity, the ROC curve, the operating point, calibration). Alphabetical
order alone would make ``normal`` the positive class of ``fracture`` vs ``normal``, and a
sensitivity computed for normal images is not what a clinician asks; so a two-class task
whose one class is named as the absence of a finding puts that class first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["NEGATIVE_NAMES", "class_order", "plain_name"]

#: Class names (lower case, letters and digits only) that say "no finding": in a two-class task
#: such a class comes first, so that the other one is the positive class.
NEGATIVE_NAMES = frozenset({
    "normal", "negative", "nofinding", "nofindings", "healthy", "none", "absent", "benign", "no", "false",
    "nonfractured", "nofracture", "notfractured", "nonfracture",
})
_INTEGER = re.compile(r"^[+-]?\d+$")


def plain_name(name: str) -> str:
    """A name as it is compared: lower case, letters and digits only (``"No Finding"`` → ``"nofinding"``).

    Parameters
    ----------
    name : str
        A class or column name.

    Returns
    -------
    str

    Examples
    --------
    >>> plain_name("Non_fractured"), plain_name("Patient ID")
    ('nonfractured', 'patientid')
    """
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def class_order(names: Iterable[str]) -> list[str]:
    """The order of a task's classes: sorted, a "no finding" class first in a two-class task.

    Integer codes (UNIFESP's ``Target`` 0..21, KL grades) sort as numbers, so ``"10"`` comes
    after ``"9"``; other names sort as text, except that with exactly two classes of which
    exactly one is in :data:`NEGATIVE_NAMES` (compared lower-cased, letters and digits only:
    ``NORMAL``, ``No Finding``, ``Non_fractured``), that one comes first. The second class is
    the positive one of two-class metrics.

    Parameters
    ----------
    names : iterable of str
        The class names, in any order, repeats allowed.

    Returns
    -------
    list of str
        Each name once.

    Examples
    --------
    >>> class_order(["normal", "fracture", "normal"])
    ['normal', 'fracture']
    >>> class_order(["PNEUMONIA", "NORMAL"]), class_order(["10", "9", "0"])
    (['NORMAL', 'PNEUMONIA'], ['0', '9', '10'])
    >>> class_order(["PA", "AP"])  # no class says "no finding": text order
    ['AP', 'PA']
    """
    names = sorted({str(n) for n in names})
    if names and all(_INTEGER.match(n) for n in names):
        return sorted(names, key=int)
    if len(names) == 2:
        negative = [plain_name(n) in NEGATIVE_NAMES for n in names]
        if negative == [False, True]:
            return names[::-1]
    return names
