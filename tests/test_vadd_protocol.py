"""Generated VADD protocols and scoring on hand-built predictions with a known answer."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from vadd.protocol import ProtocolItem, generate_protocol, read_protocol_csv, write_protocol_csv
from vadd.score import ModalityPredictions, score_items, vadd_metrics

SCENES = ["airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
          "street_pedestrian", "street_traffic", "tram"]


def test_generated_protocol_is_balanced_reproducible_and_swaps_differ():
    ids = [f"clip{i}" for i in range(100)]
    scenes = [SCENES[i % 10] for i in range(100)]
    for n_classes in (10, 3):
        items = generate_protocol(ids, scenes, n_classes, seed=3)
        assert items == generate_protocol(ids, scenes, n_classes, seed=3)
        assert items != generate_protocol(ids, scenes, n_classes, seed=4)
        manipulated = [i for i in items if i.manipulated]
        assert len(manipulated) == len(items) - len(manipulated) >= 40
        assert all(i.video_label != i.audio_label for i in manipulated)
        assert all(i.video_clip == i.audio_clip for i in items if not i.manipulated)
        used_video = Counter(i.video_clip for i in items)
        used_audio = Counter(i.audio_clip for i in items)
        assert max(used_video.values()) == 1 and max(used_audio.values()) == 1
        pairs = {(i.video_clip, i.audio_clip) for i in manipulated}
        assert all((b, a) in pairs for a, b in pairs)  # swaps are mutual


def test_protocol_csv_round_trip_and_malformed_line(tmp_path):
    items = generate_protocol([f"c{i}" for i in range(20)], [SCENES[i % 10] for i in range(20)], 10)
    write_protocol_csv(tmp_path / "p.csv", items)
    assert read_protocol_csv(tmp_path / "p.csv") == items
    lines = (tmp_path / "p.csv").read_text().splitlines()
    lines[3] = "a,b,park"
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bad.csv:4"):
        read_protocol_csv(tmp_path / "bad.csv")


def one_hot(classes: list[int], k: int = 3, seconds: int = 4) -> np.ndarray:
    out = np.zeros((seconds, k))
    out[:, classes] = 1.0  # the same class every second
    return out


def test_scoring_hand_built_known_answer():
    # 4 items: pristine agree, pristine disagree (false alarm), manipulated disagree (hit), manipulated agree (miss)
    visual = ModalityPredictions({"a": one_hot([0]), "b": one_hot([1]), "c": one_hot([2]), "d": one_hot([0])},
                                 {k: np.ones(4, bool) for k in "abcd"})
    audio = ModalityPredictions({"a": one_hot([0]), "b": one_hot([2]), "c": one_hot([1]), "d": one_hot([1])},
                                {k: np.ones(4, bool) for k in "abcd"})
    items = [
        ProtocolItem("a", "a", "x", "x", False),
        ProtocolItem("b", "b", "y", "y", False),
        ProtocolItem("c", "a", "z", "x", True),  # visual 2 vs audio 0 -> detected
        ProtocolItem("d", "a", "x", "w", True),  # visual 0 vs audio 0 -> missed
    ]
    scores = score_items(items, visual, audio)
    assert scores.predicted.tolist() == [False, True, True, False]
    assert scores.mismatch.tolist() == [0.0, 1.0, 1.0, 0.0]
    m = vadd_metrics(scores, ("p", "q", "r"))
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["f1"] == 0.5 and m["accuracy"] == 0.5
    assert m["roc_auc"] == 0.5
    assert m["false_alarm_class_pairs"] == [{"visual": "q", "audio": "r", "count": 1}]


def test_scoring_aligns_on_the_shorter_clip():
    visual = ModalityPredictions({"a": one_hot([0])}, {"a": np.array([True, True, False, False])})
    audio_probs = one_hot([0])
    audio_probs[2:] = [0, 1, 0]  # would disagree on seconds the video does not have
    audio = ModalityPredictions({"b": audio_probs}, {"b": np.ones(4, bool)})
    scores = score_items([ProtocolItem("a", "b", "x", "y", True)], visual, audio)
    assert scores.predicted.tolist() == [False] and len(scores.per_second[0]) == 2


def test_missing_clip_is_a_clear_error():
    visual = ModalityPredictions({}, {})
    with pytest.raises(ValueError, match="no embeddings"):
        score_items([ProtocolItem("a", "a", "x", "x", False)], visual, visual)
