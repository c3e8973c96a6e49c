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
from vadd.rule import VerdictRule, choose_rule, midpoint_threshold, validation_sequences
from vadd.score import ItemScores, ModalityPredictions, score_items, second_mismatch, vadd_metrics
from vadd.segments import SegmentParams

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


def one_hot(classes: list[int], k: int = 3, seconds: int = 4, margin: float = 10.0) -> np.ndarray:
    """Logits ``(seconds, k)``: the same class every second, ``margin`` above the others."""
    out = np.zeros((seconds, k), np.float32)
    out[:, classes] = margin
    return out


def predictions(logits: dict[str, np.ndarray], mask: dict[str, np.ndarray] | None = None) -> ModalityPredictions:
    """Predictions from hand-built logits (float32 softmax, as a head's)."""
    probs = {c: np.exp(x) / np.exp(x).sum(-1, keepdims=True) for c, x in logits.items()}
    return ModalityPredictions(probs, mask or {c: np.ones(len(x), bool) for c, x in logits.items()}, logits)


def test_scoring_hand_built_known_answer():
    # 4 items: pristine agree, pristine disagree (false alarm), manipulated disagree (hit), manipulated agree (miss)
    visual = predictions({"a": one_hot([0]), "b": one_hot([1]), "c": one_hot([2]), "d": one_hot([0])})
    audio = predictions({"a": one_hot([0]), "b": one_hot([2]), "c": one_hot([1]), "d": one_hot([1])})
    items = [
        ProtocolItem("a", "a", "x", "x", False),
        ProtocolItem("b", "b", "y", "y", False),
        ProtocolItem("c", "a", "z", "x", True),  # visual 2 vs audio 0 -> detected
        ProtocolItem("d", "a", "x", "w", True),  # visual 0 vs audio 0 -> missed
    ]
    scores = score_items(items, visual, audio)
    assert scores.predicted.tolist() == [False, True, True, False]
    # agreeing heads: -log(p0^2 + 2 q^2) with p0 = 1 / (1 + 2e^-10); disagreeing: -log(2 p0 q + q^2), q = e^-10 p0
    p0 = 1 / (1 + 2 * np.exp(-10)); q = np.exp(-10) * p0
    agree, disagree = -np.log(p0 ** 2 + 2 * q ** 2), -np.log(2 * p0 * q + q ** 2)
    np.testing.assert_allclose([s.mean() for s in scores.per_second], [agree, disagree, disagree, agree], rtol=1e-6)
    m = vadd_metrics(scores, ("p", "q", "r"))
    rule = m["paper_rule"]
    assert rule["precision"] == 0.5 and rule["recall"] == 0.5 and rule["f1"] == 0.5 and rule["accuracy"] == 0.5
    assert m["mismatch_score"]["roc_auc"] == 0.5 and m["verdict_rule"] == "mismatch_score"
    assert rule["false_alarm_class_pairs"] == [{"visual": "q", "audio": "r", "count": 1}]
    assert rule["missed_class_pairs"] == [{"video_label": "x", "audio_label": "w", "count": 1}]


def test_mismatch_in_nats_does_not_saturate_where_one_minus_agreement_in_float32_did():
    """Confident swaps (margins 12 and 30) all read 1.0 as ``1 - sum p p`` in float32; in nats they stay apart and the
    temperature divides the logits."""
    for margin in (12.0, 30.0):
        v, a = one_hot([0], margin=margin), one_hot([1], margin=margin)
        old = 1 - (predictions({"v": v}).probs["v"] * predictions({"a": a}).probs["a"]).sum(-1).astype(np.float32)
        assert old[0] == pytest.approx(1.0, abs=1e-4)
        assert second_mismatch(v, a)[0] == pytest.approx(margin - np.log(2), rel=1e-3)
    assert second_mismatch(one_hot([0], margin=30), one_hot([1], margin=30), 2.0, 2.0)[0] == pytest.approx(15 - np.log(2), rel=1e-3)
    assert second_mismatch(one_hot([1]), one_hot([1]))[0] < 1e-3


def test_threshold_is_a_midpoint_between_validation_scores():
    truth = np.array([False, False, True, True])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    # flags 0.35, 0.4, 0.8: precision 2/3, recall 1 -> F1 0.8, the best possible; halfway between 0.1 and 0.35
    assert midpoint_threshold(truth, scores) == (pytest.approx(0.225), pytest.approx(0.8))
    separated = midpoint_threshold(np.array([False, False, True]), np.array([0.0, 1.0, 30.0]))
    assert separated == (15.5, 1.0)  # never an observed score: a validation score equal to a test one is no tie to lose
    with pytest.raises(ValueError, match="both pristine and manipulated"):
        midpoint_threshold(np.array([True, True]), np.array([0.1, 0.2]))


def test_verdict_rule_figures_known_auc_ap_and_f1():
    items = [ProtocolItem(f"v{i}", f"a{i}", "x", "y", t) for i, t in enumerate([False, False, True, True])]
    per_second = [np.array([0.1]), np.array([0.4]), np.array([0.35]), np.array([0.8])]
    scores = ItemScores(items, np.zeros(4, int), np.zeros(4, int), np.zeros(4, bool), per_second)
    # of the 4 (manipulated, pristine) pairs only (0.35, 0.4) is misordered: AUC 3/4
    m = vadd_metrics(scores, ("p",), VerdictRule(SegmentParams(0.225), 1.0, 0.0))["mismatch_score"]
    assert m["roc_auc"] == 0.75 and m["threshold"] == 0.225
    assert m["average_precision"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["f1"] == pytest.approx(0.8) and m["recall"] == 1.0


def test_rule_chosen_on_validation_finds_the_spliced_spans():
    rng = np.random.default_rng(0)
    pristine = [rng.exponential(0.05, 10) for _ in range(12)]
    swapped = [rng.exponential(0.05, 10) + 8.0 for _ in range(12)]
    pristine[0][4] = 9.0  # one pristine second disagrees: a minimum duration or smoothing ignores it
    per_second, truth = pristine + swapped, np.array([False] * 12 + [True] * 12)
    found = validation_sequences(per_second, truth, seed=1)
    assert found.kind.count("spliced") == found.kind.count("pristine_long") == 12
    assert all(2 <= e - s <= 8 for s, e in (sp for sp in found.spans if sp))
    rule, report = choose_rule(per_second, truth, seed=1)
    assert report["f1"] == 1.0 and report["spliced_mean_iou"] > 0.9
    assert rule.segments.min_duration_s > 1 or rule.segments.smoothing_s > 1
    assert rule.probability(rule.threshold + 5) > 0.9 > 0.1 > rule.probability(0.0)
    assert rule == VerdictRule.from_dict(rule.to_dict())


def test_scoring_aligns_on_the_shorter_clip():
    visual = predictions({"a": one_hot([0])}, {"a": np.array([True, True, False, False])})
    audio_logits = one_hot([0])
    audio_logits[2:] = [0, 10, 0]  # would disagree on seconds the video does not have
    audio = predictions({"b": audio_logits})
    scores = score_items([ProtocolItem("a", "b", "x", "y", True)], visual, audio)
    assert scores.predicted.tolist() == [False] and len(scores.per_second[0]) == 2


def test_missing_clip_is_a_clear_error():
    visual = predictions({})
    with pytest.raises(ValueError, match="no embeddings"):
        score_items([ProtocolItem("a", "a", "x", "x", False)], visual, visual)
