"""Per-round records of a federated run."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np


class History:
    """Per-round records of an iterative algorithm (one record per evaluated round).

    Each record is a dict of scalars (``round``, ``outer``, ``primal``, ``dual``, ``gap``,
    ``rel_gap``, ``wall_time``, ...) and per-node arrays (``local_steps``, ...).
    ``history["gap"]`` returns the column as an ndarray (per-node columns stack to
    ``(n_records, n_tasks)``).

    A multiclass (one-vs-rest) estimator's ``history_`` is one History too: the records of
    each class's fit in turn, each with a leading ``class_index`` column (the index into
    ``classes_``); ``round``, ``wall_time`` and ``est_time`` restart with every class.
    ``history.where("class_index", k)`` is the History of class ``k`` alone.

    Parameters
    ----------
    None
        A History starts empty; records are added with ``append(**record)``.

    Attributes
    ----------
    records : list of dict
        The records, oldest first.
    columns : list of str
        The keys of the first record (empty for an empty History).
    last : dict
        The newest record.

    Raises
    ------
    KeyError
        ``history[key]`` for a column the records do not have (or on an empty History).
    IndexError
        ``history.last`` on an empty History.

    Examples
    --------
    >>> from fmtl.federated import History
    >>> h = History()
    >>> h.append(round=1, primal=2.0, dual=1.0)
    >>> h.append(round=2, primal=1.5, dual=1.4)
    >>> h["primal"].tolist(), len(h)
    ([2.0, 1.5], 2)
    """

    def __init__(self) -> None:
        self.records: list[dict] = []

    def append(self, **record) -> None:
        self.records.append(record)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.records)

    def __getitem__(self, key: str) -> np.ndarray:
        if not self.records or key not in self.records[0]:
            raise KeyError(f"History has no column {key!r}; columns: {self.columns}")
        return np.array([r[key] for r in self.records])

    @property
    def columns(self) -> list[str]:
        return list(self.records[0]) if self.records else []

    @property
    def last(self) -> dict:
        return self.records[-1]

    def where(self, column: str, value) -> History:
        """The records whose ``column`` equals ``value``, as a new History.

        Parameters
        ----------
        column : str
            A scalar column, e.g. ``"class_index"`` or ``"outer"``.
        value
            The value to keep.

        Returns
        -------
        History
            The matching records (the same dict objects), oldest first; empty if none.

        Raises
        ------
        KeyError
            If no record has ``column``.

        Examples
        --------
        >>> from fmtl.federated import History
        >>> h = History()
        >>> for k, gap in [(0, 0.5), (0, 0.1), (1, 0.7)]:
        ...     h.append(class_index=k, gap=gap)
        >>> h.where("class_index", 0)["gap"].tolist()
        [0.5, 0.1]
        """
        if not any(column in r for r in self.records):
            raise KeyError(f"History has no column {column!r}; columns: {self.columns}")
        out = History()
        out.records = [r for r in self.records if column in r and r[column] == value]
        return out

    def scalar_columns(self) -> list[str]:
        return [k for k in self.columns if np.ndim(self.records[0][k]) == 0]

    def to_csv(self, path: str | Path) -> None:
        """Write the scalar columns, one row per record."""
        cols = self.scalar_columns()
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in self.records:
                w.writerow([r[c] for c in cols])

    def to_json(self) -> str:
        """All columns as JSON (arrays as lists)."""
        return json.dumps(
            [{k: np.asarray(v).tolist() for k, v in r.items()} for r in self.records]
        )

    def __repr__(self) -> str:
        if not self.records:
            return "History(empty)"
        last = {k: v for k, v in self.last.items() if np.ndim(v) == 0}
        return f"History({len(self)} records, last={last})"


def _one_vs_rest_history(histories: list[History]) -> History:
    """One History for a one-vs-rest fit: each class's records in turn, each with a leading
    ``class_index`` column (its position in ``histories``, i.e. in ``classes_``)."""
    out = History()
    for k, h in enumerate(histories):
        for rec in h.records:
            out.append(**{"class_index": k, **rec})
    return out
