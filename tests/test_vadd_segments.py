"""Segments found in per-second mismatch scores: known answers, and the detection score agrees with the finder."""
from __future__ import annotations

import numpy as np
import pytest

from vadd.segments import Segment, SegmentParams, detection_score, find_segments, parameter_grid, smooth, with_threshold


def test_a_step_gives_one_segment_with_its_bounds_and_peak():
    scores = np.zeros(20)
    scores[8:14] = 5.0
    assert find_segments(scores, SegmentParams(2.0)) == [Segment(8.0, 14.0, 5.0)]
    # a centred 3-s average spreads the step by a second each side at a low level; hysteresis 0.5 keeps it
    assert find_segments(scores, SegmentParams(3.0, smoothing_s=3)) == [Segment(8.0, 14.0, 5.0)]
    assert find_segments(scores, SegmentParams(3.0, smoothing_s=3, hysteresis=0.5)) == [Segment(7.0, 15.0, 5.0)]
    assert find_segments(scores, SegmentParams(6.0)) == []
    assert find_segments(scores, SegmentParams(2.0, min_duration_s=7)) == []
    assert find_segments(scores, SegmentParams(2.0), hop_s=0.5) == [Segment(4.0, 7.0, 5.0)]


def test_minimum_duration_drops_isolated_seconds_and_hysteresis_bridges_dips():
    scores = np.array([0, 4, 0, 0, 4, 4, 2, 4, 4, 0], float)
    assert [s.start_s for s in find_segments(scores, SegmentParams(3.0))] == [1.0, 4.0, 7.0]
    assert find_segments(scores, SegmentParams(3.0, min_duration_s=2)) == [Segment(4.0, 6.0, 4.0), Segment(7.0, 9.0, 4.0)]
    assert find_segments(scores, SegmentParams(3.0, min_duration_s=2, hysteresis=0.5)) == [Segment(4.0, 9.0, 4.0)]


def test_a_video_shorter_than_the_minimum_duration_can_still_be_flagged():
    assert find_segments(np.array([5.0, 5.0]), SegmentParams(1.0, min_duration_s=3)) == [Segment(0.0, 2.0, 5.0)]
    assert find_segments(np.zeros(0), SegmentParams(1.0)) == [] and detection_score(np.zeros(0), SegmentParams(1.0)) == -np.inf


def test_smoothing_is_a_centred_mean_truncated_at_the_ends():
    np.testing.assert_allclose(smooth(np.array([3.0, 0, 0, 6]), 3), [1.5, 1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="odd"):
        SegmentParams(1.0, smoothing_s=2)
    with pytest.raises(ValueError, match="hysteresis"):
        SegmentParams(1.0, hysteresis=0.0)


def test_detection_score_is_the_largest_threshold_with_a_segment():
    rng = np.random.default_rng(0)
    for trial in range(300):
        scores = rng.exponential(1.0, size=int(rng.integers(1, 25))) * (rng.random() < 0.5 or 3.0)
        params = parameter_grid()[trial % len(parameter_grid())]
        best = detection_score(scores, params)
        for threshold in (best * 0.999 - 1e-9, best * 1.001 + 1e-9, *rng.uniform(0, 2 * best + 1, 5)):
            found = find_segments(scores, with_threshold(params, threshold))
            assert bool(found) == (best >= threshold), (scores, params, threshold, best)
            assert all(s.score >= threshold and s.duration_s >= min(params.min_duration_s, len(scores)) for s in found)


def test_segment_iou():
    assert Segment(8.0, 14.0, 1.0).iou(8.0, 14.0) == 1.0
    assert Segment(8.0, 14.0, 1.0).iou(11.0, 17.0) == pytest.approx(3 / 9)
    assert Segment(0.0, 2.0, 1.0).iou(5.0, 6.0) == 0.0
