"""Frames that carry their own index, and the reader that gets it back: decoder tests check exactly which frame
was picked. :func:`timestamp_frame` draws the code, :func:`write_timestamp_video` encodes such frames as an mp4
(through :func:`avscene.demo.synthetic.write_video`), :func:`read_timestamp` decodes the code from a resized, cropped,
compressed frame."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avscene.demo.synthetic import DEMO_AUDIO_RATE_HZ, write_video

# Timestamp code: a GRID x GRID square of black/white cells centred on a mid-grey frame. The four corner
# cells are a fixed guard pattern; the other 12 carry 10 index bits (LSB first) and 2 check bits.
TIMESTAMP_GRID = 4
TIMESTAMP_BITS = 10
TIMESTAMP_CODE_FRACTION = 0.6  # side of the code square / shorter side of the frame
TIMESTAMP_BACKGROUND = 128
GUARD_CELLS = {(0, 0): 1, (0, 3): 0, (3, 0): 0, (3, 3): 1}  # (row, col) -> white?
DATA_CELLS = [(r, c) for r in range(TIMESTAMP_GRID) for c in range(TIMESTAMP_GRID) if (r, c) not in GUARD_CELLS]


@dataclass(frozen=True)
class GeneratedMedia:
    """A generated media fixture and the call that made it (so a failing test can be reproduced)."""

    path: Path
    fps: int
    gop: int
    n_frames: int
    width: int
    height: int
    has_audio: bool
    command: str

    @property
    def duration_s(self) -> float:
        """Nominal video duration: ``n_frames / fps``."""
        return self.n_frames / self.fps


def timestamp_bits(index: int) -> list[int]:
    """10 index bits (LSB first) + 2 check bits (popcount mod 4)."""
    bits = [(index >> b) & 1 for b in range(TIMESTAMP_BITS)]
    check = sum(bits) % 4
    return bits + [check & 1, check >> 1]


def timestamp_frame(index: int, width: int, height: int) -> np.ndarray:
    """A mid-grey RGB frame with ``index`` drawn as a centred 4 x 4 grid of black/white cells.

    The code square spans 60 % of the shorter side, so it survives H.264, resizing and a centre crop
    that keeps at least that much of the shorter side.

    Args:
        index: Frame index, 0 <= index < 1024.
        width: Frame width in pixels.
        height: Frame height in pixels; cells are at least 16 px when ``min(width, height) >= 107``.

    Returns:
        uint8 ``(height, width, 3)``.
    """
    if not 0 <= index < 2**TIMESTAMP_BITS:
        raise ValueError(f"index must be in [0, {2**TIMESTAMP_BITS}), got {index}")
    frame = np.full((height, width, 3), TIMESTAMP_BACKGROUND, dtype=np.uint8)
    cell = max(1, round(TIMESTAMP_CODE_FRACTION * min(width, height) / TIMESTAMP_GRID))
    top = (height - cell * TIMESTAMP_GRID) // 2
    left = (width - cell * TIMESTAMP_GRID) // 2
    values = dict(GUARD_CELLS) | dict(zip(DATA_CELLS, timestamp_bits(index)))
    for (row, col), white in values.items():
        y, x = top + row * cell, left + col * cell
        frame[y : y + cell, x : x + cell] = 255 if white else 0
    return frame


def write_timestamp_video(
    path: Path, n_frames: int, fps: int, width: int, height: int, gop: int, with_audio: bool = False
) -> GeneratedMedia:
    """Write an mp4 whose frame ``i`` shows :func:`timestamp_frame` ``(i)``, optionally with a 440 Hz AAC tone."""
    audio = None
    if with_audio:
        t_s = np.arange(round(n_frames / fps * DEMO_AUDIO_RATE_HZ)) / DEMO_AUDIO_RATE_HZ
        audio = (0.3 * np.sin(2 * np.pi * 440.0 * t_s))[None].astype(np.float32)
    write_video(path, lambda i: timestamp_frame(i, width, height), n_frames, fps, width, height, gop, audio)
    command = (
        f"write_timestamp_video(Path({str(path)!r}), n_frames={n_frames}, fps={fps}, width={width}, "
        f"height={height}, gop={gop}, with_audio={with_audio})"
    )
    return GeneratedMedia(path, fps, gop, n_frames, width, height, with_audio, command)


def read_timestamp(frame_rgb: np.ndarray) -> int:
    """Decode the index drawn by :func:`timestamp_frame` from a (resized, centre-cropped,
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
