"""Reads back the frame index that :func:`demo.synthetic.timestamp_frame` draws (decoder tests)."""
from __future__ import annotations

import numpy as np

from demo.synthetic import (
    DATA_CELLS, GUARD_CELLS, TIMESTAMP_BACKGROUND, TIMESTAMP_BITS, TIMESTAMP_GRID, timestamp_bits,
)


def read_timestamp(frame_rgb: np.ndarray) -> int:
    """Decode the index drawn by :func:`demo.synthetic.timestamp_frame` from a (resized, centre-cropped,
    compressed) frame.

    Raises:
        ValueError: if no intact code is found (guard or check bits wrong).
    """
    gray = frame_rgb.astype(np.float32).mean(axis=2)
    extreme = np.abs(gray - TIMESTAMP_BACKGROUND) > 64
    rows, cols = extreme.sum(axis=1), extreme.sum(axis=0)
    if rows.max(initial=0) == 0:
        raise ValueError("no timestamp code in frame")
    ys = np.flatnonzero(rows >= rows.max() / 2)
    xs = np.flatnonzero(cols >= cols.max() / 2)
    top, bottom, left, right = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    cell_h, cell_w = (bottom - top) / TIMESTAMP_GRID, (right - left) / TIMESTAMP_GRID

    def cell_white(row: int, col: int) -> int:
        y0, x0 = top + row * cell_h, left + col * cell_w
        rows = slice(int(y0 + cell_h / 4), int(y0 + 3 * cell_h / 4) + 1)  # central half of the cell
        cols = slice(int(x0 + cell_w / 4), int(x0 + 3 * cell_w / 4) + 1)
        patch = gray[rows, cols]
        return int(patch.mean() > TIMESTAMP_BACKGROUND)

    if any(cell_white(r, c) != white for (r, c), white in GUARD_CELLS.items()):
        raise ValueError("timestamp guard cells do not match (code cropped or damaged)")
    bits = [cell_white(r, c) for r, c in DATA_CELLS]
    index = sum(bit << b for b, bit in enumerate(bits[:TIMESTAMP_BITS]))
    if timestamp_bits(index) != bits:
        raise ValueError("timestamp check bits do not match (code damaged)")
    return index
