"""Spliced protocols (partial, same-class) and the localisation metrics, without a store."""
from __future__ import annotations

import numpy as np
import pytest

from vadd.localise import iou_1d, second_level_f1, segment_ap, segment_ar
from vadd.splice import (
    SPLICE_S, ClipInfo, generate_partial, generate_same_class, read_spliced_csv, same_location_items, write_spliced_csv,
)


def _infos(seconds: int = 10) -> dict[str, ClipInfo]:
    """4 classes x 2 locations x 2 clips."""
    return {f"{c}-x-{loc}-{k}": ClipInfo(c, f"{c}-x-{loc}", seconds)
            for c in ("bus", "park", "metro", "tram") for loc in (1, 2) for k in (1, 2)}


def test_partial_protocol_splices_one_contiguous_run_from_another_class():
    infos = _infos()
    items = generate_partial(infos, seed=3)
    assert items == generate_partial(infos, seed=3) and items != generate_partial(infos, seed=4)
    kinds = {i.kind for i in items}
    assert kinds == {"pristine", "swapped", "partial", "long-pristine", "long-partial"}
    assert sum(i.kind == "pristine" for i in items) == sum(i.kind in ("swapped", "partial") for i in items)
    for item in items:
        truth = item.truth_per_second()
        assert len(truth) == item.length_s
        segments = item.truth_segments()
        if item.kind in ("partial", "long-partial"):
            assert len(segments) == 1 and SPLICE_S[0] <= segments[0][1] - segments[0][0] <= SPLICE_S[1]
            assert {s.audio_label for s in item.spans if s.manipulated} - {s.video_label for s in item.spans} == \
                {s.audio_label for s in item.spans if s.manipulated}  # the donor is of another class
            assert 0 < truth.sum() < len(truth)
        elif item.kind == "swapped":
            assert segments == [(0.0, float(item.length_s))]
        else:
            assert not segments
    long = [i for i in items if i.kind == "long-partial"]
    assert len(long) == 8 and all(i.length_s == 20 for i in long)  # 8 locations of 2 clips in a row
    for item in long:  # the picture runs through the location's clips in order, second after second
        pictures = [(s.video_clip, s.video_start_s + k) for s in item.spans for k in range(s.length_s)]
        clips = sorted({c for c, _ in pictures})
        assert pictures == [(c, k) for c in clips for k in range(10)]


def test_same_class_protocol_pairs_a_class_across_locations():
    items = generate_same_class(_infos(), seed=0)
    manipulated = [i for i in items if i.manipulated]
    assert len(manipulated) == len(items) - len(manipulated) > 0
    for item in manipulated:
        (span,) = item.spans
        assert span.video_label == span.audio_label and span.video_location != span.audio_location
    assert same_location_items(items) == 0
    one_place = {f"bus-x-1-{k}": ClipInfo("bus", "bus-x-1", 5) for k in range(4)}
    assert same_location_items(generate_same_class(one_place)) == 2  # one pair, both ways, of the only location


def test_spliced_csv_round_trip_and_a_broken_row(tmp_path):
    items = generate_partial(_infos(), seed=1)
    write_spliced_csv(tmp_path / "p.csv", items)
    assert read_spliced_csv(tmp_path / "p.csv") == items
    lines = (tmp_path / "p.csv").read_text().splitlines()
    rows = [line.split(",") for line in lines]
    k = next(k for k in range(2, len(rows)) if rows[k][0] == rows[k - 1][0])  # an item's second span
    rows[k][2] = "99"
    (tmp_path / "bad.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
    with pytest.raises(ValueError, match=rf"bad.csv:{k + 1}: item {rows[k][0]}'s span starts at 99 s"):
        read_spliced_csv(tmp_path / "bad.csv")


def test_second_level_f1_follows_avvp():
    # item 1: truth 2-6, predicted 3-8 -> TP 3, FP 2, FN 1 -> 6/9; item 2: nothing true or predicted -> 1
    assert second_level_f1([[(2, 6)], []], [[(3, 8, 0.9)], []], [10, 10]) == pytest.approx((6 / 9 + 1) / 2)
    assert second_level_f1([[]], [[(0, 1, 0.5)]], [10]) == 0.0  # a false alarm on a pristine item


def test_segment_ap_and_ar_follow_the_av_deepfake1m_scorer():
    np.testing.assert_allclose(iou_1d(np.array([[0.0, 4.0]]), np.array([[2.0, 6.0], [10.0, 12.0]])), [[1 / 3, 0.0]])
    truth = [[(2, 6)], [(0, 4)], []]
    predicted = [[(2, 6, 0.9), (2, 5, 0.8)], [(5, 9, 0.7)], [(1, 3, 0.95)]]
    # ranked: 0.95 FP, 0.9 TP, 0.8 FP (segment already taken), 0.7 FP; 2 true segments
    # precision 0, 1/2, 1/3, 1/4; recall 0, 1/2, 1/2, 1/2 -> AP = 1/2 * 1/2
    assert segment_ap(truth, predicted, 0.5) == pytest.approx(0.25)
    # AR@1: item 1's best proposal has IoU 1 (> every threshold), item 2's IoU 0 -> recall 1/2
    assert segment_ar(truth, predicted, 1) == pytest.approx(0.5)
    # AR@2 adds (2, 5) on item 1, which changes nothing; IoU 0.75 with (2, 6) counts at thresholds < 0.75
    assert segment_ar(truth, predicted, 2) == pytest.approx(0.5)
    assert segment_ap([[(0, 4)]], [[]], 0.5) == 0.0 and np.isnan(segment_ap([[]], [[]], 0.5))
