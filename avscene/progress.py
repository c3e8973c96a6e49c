"""Progress bars for the loops a person waits on (extraction, training, ablation, VADD evaluation, batch checks).

A bar shows only on a terminal (tqdm's ``disable=None``) and never when the caller passes ``enabled=False``;
``TQDM_DISABLE=1`` in the environment turns every bar off.
"""
from __future__ import annotations

from typing import Iterable, TypeVar

T = TypeVar("T")


def progress_bar(iterable: Iterable[T] | None = None, *, desc: str, unit: str, total: int | None = None,
                 enabled: bool = True, leave: bool = True):
    """A tqdm bar over ``iterable`` (or one updated by hand up to ``total``); tqdm shows k of n, rate and ETA."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=None if enabled else True, leave=leave,
                dynamic_ncols=True)
