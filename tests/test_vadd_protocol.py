"""Generated VADD protocols and scoring on hand-built predictions with a known answer."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from extract.taxonomy import tau_recording_location, tau_taxonomy
from vadd.protocol import (
    ProtocolItem,
    generate_protocol,
    read_protocol_csv,
    validation_rows,
    write_protocol_csv,
)
from vadd.score import ItemScores, ModalityPredictions, f1_optimal_threshold, score_items, vadd_metrics

TAU = tau_taxonomy()
SCENES = ["airport", "bus", "metro", "metro_station", "park", "public_square", "shopping_mall",
          "street_pedestrian", "street_traffic", "tram"]


def test_generated_protocol_is_balanced_reproducible_and_swaps_differ():
    ids = [f"clip{i}" for i in range(100)]
    scenes = [SCENES[i % 10] for i in range(100)]
    for n_classes in (10, 3):
        items = generate_protocol(ids, scenes, TAU.class_set(n_classes), seed=3)
        assert items == generate_protocol(ids, scenes, TAU.class_set(n_classes), seed=3)
        assert items != generate_protocol(ids, scenes, TAU.class_set(n_classes), seed=4)
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
    items = generate_protocol([f"c{i}" for i in range(20)], [SCENES[i % 10] for i in range(20)], TAU.class_set("10"))
    write_protocol_csv(tmp_path / "p.csv", items)
    assert read_protocol_csv(tmp_path / "p.csv") == items
    lines = (tmp_path / "p.csv").read_text().splitlines()
    lines[3] = "a,b,park"
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bad.csv:4"):
        read_protocol_csv(tmp_path / "bad.csv")
    lines[3] = "c1,c2,park,park,0"  # a pristine row naming two clips is a swap in disguise
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bad.csv:4: a pristine row"):
        read_protocol_csv(tmp_path / "bad.csv")


def test_generated_protocol_is_balanced_per_class():
    ids = [f"clip{i}" for i in range(200)]
    scenes = [SCENES[i % 10] for i in range(200)]
    items = generate_protocol(ids, scenes, TAU.class_set("10"), seed=0)
    pristine = Counter(i.video_label for i in items if not i.manipulated)
    manipulated = Counter(i.video_label for i in items if i.manipulated)
    assert len(items) == 200 and sum(pristine.values()) == sum(manipulated.values()) == 100
    assert max(pristine.values()) - min(pristine.values()) <= 2 and set(manipulated) == set(SCENES)


def test_validation_rows_hold_out_whole_locations_reproducibly():
    ids = [f"{s}-lyon-{loc}-{seg}" for s in SCENES for loc in range(5) for seg in range(4)]
    scenes = [i.split("-")[0] for i in ids]
    held = validation_rows(ids, scenes, 0.2, seed=1, location_of=TAU.location)
    assert held.tolist() == validation_rows(ids, scenes, 0.2, seed=1, location_of=TAU.location).tolist()
    assert held.sum() == 10 * 4  # one 4-clip location of each scene: ceil(0.2 * 20) = 4
    held_locations = {tau_recording_location(i) for i, h in zip(ids, held) if h}
    assert all(h == (tau_recording_location(i) in held_locations) for i, h in zip(ids, held))
    with pytest.raises(ValueError, match="fraction"):
        validation_rows(ids, scenes, 1.0, location_of=TAU.location)


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
    rule = m["paper_rule"]
    assert rule["precision"] == 0.5 and rule["recall"] == 0.5 and rule["f1"] == 0.5 and rule["accuracy"] == 0.5
    assert m["mismatch_score"]["roc_auc"] == 0.5
    assert rule["false_alarm_class_pairs"] == [{"visual": "q", "audio": "r", "count": 1}]
    assert rule["missed_class_pairs"] == [{"video_label": "x", "audio_label": "w", "count": 1}]


def test_continuous_score_known_auc_ap_and_threshold():
    items = [ProtocolItem(f"v{i}", f"a{i}", "x", "y", t) for i, t in enumerate([False, False, True, True])]
    mismatch = np.array([0.1, 0.4, 0.35, 0.8])
    scores = ItemScores(items, np.zeros(4, int), np.zeros(4, int), np.zeros(4, bool), mismatch, [])
    # of the 4 (manipulated, pristine) pairs only (0.35, 0.4) is misordered: AUC 3/4
    threshold = f1_optimal_threshold(np.array([False, False, True, True]), mismatch)
    assert threshold == 0.35  # flags 0.35, 0.4, 0.8: precision 2/3, recall 1 -> F1 0.8, the best possible here
    m = vadd_metrics(scores, ("p",), threshold)["mismatch_score"]
    assert m["roc_auc"] == 0.75
    assert m["average_precision"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["f1"] == pytest.approx(0.8) and m["recall"] == 1.0
    with pytest.raises(ValueError, match="both pristine and manipulated"):
        f1_optimal_threshold(np.array([True, True]), np.array([0.1, 0.2]))


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
