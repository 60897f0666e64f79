"""Shards of a prediction run: which inputs shard ``I`` of ``N`` predicts, and joining the shard tables.

An array job runs ``radiology predict ... --shard I/N`` once per ``I`` (each writes its own
table, e.g. ``preds.shard-I-of-N.csv``); ``radiology predict merge SHARD.csv... --out OUT``
joins them into the table one run over every input would have written, in the input order.

- :func:`shard_of` (:func:`radiology.files.shard_of`): the shard of an input id (a hash of
  the id, stable across machines, runs and Python versions; convert's ``--shard`` uses it too).
- :func:`shard_inputs`: the inputs of one shard, with their places among all inputs.
- :func:`merge_tables`: shard tables (from :func:`~radiology.predict.predict_table` with
  ``shard=``) back into one table, refusing a duplicated, missing or foreign shard.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from radiology.files import shard_of  # re-exported: the one shard rule of convert and predict
from radiology.predict.inputs import PredictionInputs

__all__ = ["SHARD_COLUMNS", "shard_of", "shard_inputs", "merge_tables"]

#: Columns a shard table has after ``error``: its shard (``"I/N"``) and each row's place among all inputs.
SHARD_COLUMNS = ("shard", "position")


def _check_shard(index: int, count: int) -> None:
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    if not isinstance(index, int) or not 0 <= index < count:
        raise ValueError(f"index must be in 0..{count - 1}, got {index!r}")


def shard_inputs(inputs: PredictionInputs, index: int, count: int) -> PredictionInputs:
    """The inputs of shard ``index`` of ``count`` (:func:`shard_of` their ids), in order.

    Parameters
    ----------
    inputs : radiology.predict.PredictionInputs
        Every input (from :func:`~radiology.predict.prediction_inputs`).
    index : int
        Which shard, ``0 <= index < count``.
    count : int
        Number of shards.

    Returns
    -------
    PredictionInputs
        The shard's inputs, with ``positions`` set to their places in ``inputs`` (an input
        that could not be found is in its shard too: it gets its error row there).

    Raises
    ------
    ValueError
        ``index`` or ``count`` out of range.

    Examples
    --------
    >>> inputs = PredictionInputs(["a.dcm", "b.dcm", "c.dcm"], [None] * 3, ["gone"] * 3)
    >>> [shard_inputs(inputs, i, 2).ids for i in (0, 1)]
    [['c.dcm'], ['a.dcm', 'b.dcm']]
    >>> shard_inputs(inputs, 1, 2).positions
    [0, 1]
    """
    _check_shard(index, count)
    places = inputs.positions if inputs.positions is not None else range(len(inputs.ids))
    rows = [row for row, name in enumerate(inputs.ids) if shard_of(name, count) == index]
    return PredictionInputs([inputs.ids[r] for r in rows], [inputs.sources[r] for r in rows],
                            [inputs.errors[r] for r in rows], [places[r] for r in rows])


def merge_tables(tables: Sequence[pd.DataFrame], names: Sequence[str] | None = None) -> pd.DataFrame:
    """Join the tables of shards ``0..N-1`` of one run into one table, in the input order.

    Parameters
    ----------
    tables : sequence of pandas.DataFrame
        Shard tables (:func:`~radiology.predict.predict_table` with ``shard=``; read back from
        CSV with ``dtype=str, keep_default_na=False`` the merged CSV is byte for byte what one
        run writes), each with the :data:`SHARD_COLUMNS` ``shard`` (``"I/N"``) and ``position``.
    names : sequence of str, optional
        What errors call each table (file names); default ``table 0``, ``table 1``, ...

    Returns
    -------
    pandas.DataFrame
        The rows of every shard ordered by ``position``, without the shard columns.

    Raises
    ------
    ValueError
        No table, a table that is not a shard table, tables with different columns or shard
        counts, a shard given twice or missing, or rows that are duplicated or missing.

    Examples
    --------
    >>> a = pd.DataFrame({"image": ["b", "c"], "error": ["", ""], "shard": ["1/2"] * 2, "position": [1, 2]})
    >>> b = pd.DataFrame({"image": ["a"], "error": [""], "shard": ["0/2"], "position": [0]})
    >>> merge_tables([a, b])["image"].tolist()
    ['a', 'b', 'c']
    >>> merge_tables([a, a])
    Traceback (most recent call last):
    ValueError: tables: shard 1/2 given twice (table 0, table 1)
    """
    tables = list(tables)
    names = list(names) if names is not None else [f"table {i}" for i in range(len(tables))]
    if not tables:
        raise ValueError("tables: no shard table to merge")
    if len(names) != len(tables):
        raise ValueError(f"names: {len(names)} names for {len(tables)} tables")
    shards: dict[int, str] = {}
    count = None
    columns = None
    for table, name in zip(tables, names):
        if any(c not in table.columns for c in SHARD_COLUMNS):
            raise ValueError(f"tables: {name} is not a shard table (no shard and position columns; "
                             "predict with shard=(I, N))")
        values = {str(v) for v in table["shard"]}
        if len(values) > 1:
            raise ValueError(f"tables: {name} mixes shards {sorted(values)}")
        if not values:  # an empty shard: nothing says which it is, and nothing is lost
            continue
        try:
            index, total = (int(v) for v in values.pop().split("/"))
        except ValueError:
            raise ValueError(f"tables: {name} has a shard value that is not I/N") from None
        if count is not None and total != count:
            raise ValueError(f"tables: {name} is a shard of {total}, others of {count}")
        count = total
        if index in shards:
            raise ValueError(f"tables: shard {index}/{total} given twice ({shards[index]}, {name})")
        shards[index] = name
        if columns is not None and list(table.columns) != columns:
            raise ValueError(f"tables: {name} has other columns than {next(iter(shards.values()))}")
        columns = list(table.columns)
    empty = sum(1 for t in tables if len(t) == 0)
    missing = [i for i in range(count or 0) if i not in shards]
    if count is None:
        raise ValueError("tables: every shard table is empty")
    if len(missing) > empty:
        raise ValueError(f"tables: shard {missing[0]}/{count} missing ({len(shards)} of {count} given)")
    joined = pd.concat([t for t in tables if len(t)], ignore_index=True)
    try:
        places = pd.to_numeric(joined["position"], errors="raise").astype(int)
    except (ValueError, TypeError):
        raise ValueError("tables: a position that is not a row number") from None
    if places.duplicated().any():
        raise ValueError(f"tables: row {int(places[places.duplicated()].iloc[0])} appears twice "
                         "(shards of different runs?)")
    expected = set(range(len(joined)))
    if set(places) != expected:
        gap = min(expected - set(places))
        raise ValueError(f"tables: row {gap} is missing (shards of different runs?)")
    order = places.argsort(kind="stable")
    return joined.iloc[order.to_numpy()].drop(columns=list(SHARD_COLUMNS)).reset_index(drop=True)
