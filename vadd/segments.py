"""Manipulated segments found in time from per-second mismatch scores.

A segment is a run of seconds whose smoothed score stays at or above ``hysteresis * threshold`` and that contains a
second at or above ``threshold`` and lasts at least ``min_duration_s`` (or the whole video when it is shorter). The
smoothing is a centred moving average over ``smoothing_s`` seconds (truncated at the video's ends). A video is
manipulated when it has a segment; its :func:`detection_score` is the largest threshold at which it still has one,
so thresholding that score and asking for a segment give the same verdict.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

SMOOTHING_S = (1, 3, 5)
MIN_DURATION_S = (1, 2, 3)
HYSTERESIS = (1.0, 0.75, 0.5)


@dataclass(frozen=True)
class SegmentParams:
    """How segments are found: ``threshold`` in the score's units (nats for the mismatch score), an odd smoothing
    window, a minimum duration, and ``hysteresis`` in (0, 1] (1 = no hysteresis)."""

    threshold: float
    smoothing_s: int = 1
    min_duration_s: int = 1
    hysteresis: float = 1.0

    def __post_init__(self) -> None:
        if self.smoothing_s < 1 or self.smoothing_s % 2 == 0:
            raise ValueError(f"smoothing_s must be an odd number of seconds >= 1, got {self.smoothing_s}")
        if self.min_duration_s < 1:
            raise ValueError(f"min_duration_s must be >= 1, got {self.min_duration_s}")
        if not 0 < self.hysteresis <= 1:
            raise ValueError(f"hysteresis must be in (0, 1], got {self.hysteresis}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SegmentParams":
        return cls(**data)


@dataclass(frozen=True)
class Segment:
    """Seconds ``[start_s, end_s)`` found manipulated; ``score``: their peak smoothed score (>= the threshold)."""

    start_s: float
    end_s: float
    score: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def to_dict(self) -> dict:
        return {"start_s": self.start_s, "end_s": self.end_s, "score": self.score}

    def iou(self, start_s: float, end_s: float) -> float:
        """Temporal intersection over union with ``[start_s, end_s)``."""
        inter = max(0.0, min(self.end_s, end_s) - max(self.start_s, start_s))
        union = max(self.end_s, end_s) - min(self.start_s, start_s)
        return inter / union if union > 0 else 0.0


def smooth(per_second_scores: np.ndarray, smoothing_s: int) -> np.ndarray:
    """Centred moving average over ``smoothing_s`` seconds, over the seconds that exist at the ends; float64."""
    scores = np.asarray(per_second_scores, dtype=np.float64)
    half = smoothing_s // 2
    if half == 0 or len(scores) == 0:
        return scores
    cumulative = np.concatenate([[0.0], np.cumsum(scores)])
    index = np.arange(len(scores))
    lo, hi = np.maximum(index - half, 0), np.minimum(index + half + 1, len(scores))
    return (cumulative[hi] - cumulative[lo]) / (hi - lo)


def true_runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` index ranges of the True runs of ``flags``."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def find_segments(per_second_scores: np.ndarray, params: SegmentParams, hop_s: float = 1.0) -> list[Segment]:
    """The manipulated segments of one video, in time order (empty: consistent).

    Args:
        per_second_scores: ``(T,)`` mismatch score of each second (higher = more likely manipulated).
        params: Threshold, smoothing, minimum duration and hysteresis.
        hop_s: Seconds between consecutive scores.
    """
    smoothed = smooth(per_second_scores, params.smoothing_s)
    min_len = min(params.min_duration_s, len(smoothed))
    segments = []
    for start, end in true_runs(smoothed >= params.hysteresis * params.threshold):
        peak = float(smoothed[start:end].max())
        if end - start >= min_len and peak >= params.threshold:
            segments.append(Segment(start * hop_s, end * hop_s, peak))
    return segments


def detection_score(per_second_scores: np.ndarray, params: SegmentParams) -> float:
    """The largest threshold at which :func:`find_segments` (with ``params``' other settings) finds a segment.

    A second ``t`` seeds a segment at threshold ``θ`` iff ``smoothed[t] >= θ`` and some window of ``min_duration_s``
    seconds around ``t`` stays ``>= hysteresis * θ``; the score is the maximum over ``t`` of the largest such ``θ``.
    ``-inf`` for an empty video.
    """
    smoothed = smooth(per_second_scores, params.smoothing_s)
    n = len(smoothed)
    if n == 0:
        return float("-inf")
    width = min(params.min_duration_s, n)
    window_min = np.lib.stride_tricks.sliding_window_view(smoothed, width).min(-1)  # (n - width + 1,)
    # best window minimum among the windows containing each second t: windows starting in [t - width + 1, t]
    padded = np.concatenate([np.full(width - 1, -np.inf), window_min, np.full(width - 1, -np.inf)])
    around = np.lib.stride_tricks.sliding_window_view(padded, width).max(-1)[:n]
    return float(np.minimum(smoothed, around / params.hysteresis).max())


def with_threshold(params: SegmentParams, threshold: float) -> SegmentParams:
    """``params`` with another threshold."""
    return replace(params, threshold=float(threshold))


def parameter_grid() -> list[SegmentParams]:
    """The smoothing / minimum duration / hysteresis settings a validation protocol chooses among (threshold 0 until
    chosen), simplest first."""
    return [SegmentParams(0.0, s, m, h) for s in SMOOTHING_S for m in MIN_DURATION_S for h in HYSTERESIS]
