"""VADD scoring: visual-only and audio-only heads judge each protocol item.

The paper's rule: an item is manipulated iff the clip-level (voted) visual and audio classes differ.
Beyond it: the per-second mismatch score ``-log sum_c p_visual(c) p_audio(c)`` in nats, computed from the heads'
logits in float64 (logsumexp of the temperature-scaled log-probabilities), which does not saturate as
``1 - sum_c p_v(c) p_a(c)`` in float32 did (every confident swap scored exactly 1.0). Items are decided by the
verdict rule (:mod:`vadd.rule`): manipulated when the per-second scores hold a segment (:mod:`vadd.segments`).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from classify.calibration import log_softmax
from classify.data import ClipSet
from classify.metrics import clip_vote
from classify.train import TrainedHead
from avscene.progress import progress_bar
from vadd.protocol import ProtocolItem
from vadd.rule import VerdictRule
from vadd.segments import Segment, SegmentParams, detection_score

MISMATCH_DEFINITION = ("per second -log sum_c p_visual(c) p_audio(c) in nats (float64, temperature-scaled logits); "
                       "an item's detection score is the largest threshold at which it holds a segment (vadd.segments)")


@dataclass
class ModalityPredictions:
    """Per-second logits and probabilities of one modality's head, by clip id; ``temperature`` divides the logits
    for the mismatch score (the paper rule votes on the head's own probabilities, which it does not change)."""

    probs: dict[str, np.ndarray]  # id -> (T, K) float32 softmax
    mask: dict[str, np.ndarray]  # id -> (T,)
    logits: dict[str, np.ndarray] = field(default_factory=dict)  # id -> (T, K) float32
    temperature: float = 1.0

    @classmethod
    def from_head(cls, head: TrainedHead, clips: ClipSet, temperature: float = 1.0) -> "ModalityPredictions":
        logits = head.predict_logits(clips)
        probs = head.predict_proba(clips, logits)
        return cls({c: probs[i] for i, c in enumerate(clips.ids)}, {c: clips.mask[i] for i, c in enumerate(clips.ids)},
                   {c: logits[i] for i, c in enumerate(clips.ids)}, temperature)


@dataclass
class ItemScores:
    """Decisions and scores for protocol items (aligned arrays)."""

    items: list[ProtocolItem]
    visual_class: np.ndarray  # (n,) voted class index
    audio_class: np.ndarray
    predicted: np.ndarray  # (n,) bool, the paper's rule
    per_second: list[np.ndarray]  # per item: mismatch in nats on its aligned seconds, float64


def second_mismatch(logits_visual: np.ndarray, logits_audio: np.ndarray, temperature_visual: float = 1.0,
                    temperature_audio: float = 1.0) -> np.ndarray:
    """``-log sum_c p_v(c) p_a(c)`` per second, in nats, from logits ``(T, K)``: 0 when both heads are certain of the
    same class, growing with their logit margins when they are certain of different ones; float64 ``(T,)``."""
    from scipy.special import logsumexp

    joint = log_softmax(logits_visual, temperature_visual) + log_softmax(logits_audio, temperature_audio)
    return np.maximum(-logsumexp(joint, axis=-1), 0.0)


def score_items(items: list[ProtocolItem], visual: ModalityPredictions, audio: ModalityPredictions) -> ItemScores:
    """Pair visual and audio predictions per item, aligned on the seconds both clips have."""
    missing = sorted({i.video_clip for i in items} - visual.probs.keys() | {i.audio_clip for i in items} - audio.probs.keys())
    if missing:
        raise ValueError(f"{len(missing)} protocol clips have no embeddings in the store, e.g. {missing[:5]}")
    v_cls, a_cls, per_second = [], [], []
    for item in progress_bar(items, desc="score", unit="item", leave=False):
        mask = visual.mask[item.video_clip] & audio.mask[item.audio_clip]
        pv, pa = visual.probs[item.video_clip][None], audio.probs[item.audio_clip][None]
        v_cls.append(clip_vote(pv, mask[None])[0])
        a_cls.append(clip_vote(pa, mask[None])[0])
        per_second.append(second_mismatch(visual.logits[item.video_clip][mask], audio.logits[item.audio_clip][mask],
                                          visual.temperature, audio.temperature))
    v, a = np.array(v_cls), np.array(a_cls)
    return ItemScores(items, v, a, v != a, per_second)


def detection_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """F1 (manipulated = positive), precision, recall and accuracy of boolean decisions."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    return {
        "f1": float(f1_score(truth, predicted, zero_division=0)),
        "precision": float(precision_score(truth, predicted, zero_division=0)),
        "recall": float(recall_score(truth, predicted, zero_division=0)),
        "accuracy": float((truth == predicted).mean()),
    }


def item_segments(scores: ItemScores, rule: VerdictRule) -> list[list[Segment]]:
    """The segments the verdict rule finds in each item's per-second scores."""
    return [rule.find(p) for p in scores.per_second]


def mismatch_metrics(scores: ItemScores, rule: VerdictRule | None) -> dict:
    """The mismatch score's item figures: ROC AUC and AP of the detection score (with the rule's segment settings;
    without a rule, the highest second's score), and with a rule its F1, precision, recall and accuracy (manipulated =
    has a segment) and the Brier score of its probability."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    truth = np.array([i.manipulated for i in scores.items])
    both = len(set(truth.tolist())) == 2
    params = rule.segments if rule is not None else SegmentParams(0.0)
    detection = np.array([detection_score(p, params) for p in scores.per_second])
    out: dict = {
        "definition": MISMATCH_DEFINITION,
        "roc_auc": float(roc_auc_score(truth, detection)) if both else None,
        "average_precision": float(average_precision_score(truth, detection)) if both else None,
        "threshold": None if rule is None else rule.threshold,
    }
    if rule is not None:
        flagged = np.array([bool(s) for s in item_segments(scores, rule)])
        out.update(detection_metrics(truth, flagged))
        out["rule"] = rule.to_dict()
        out["probability_brier"] = float(np.mean((rule.probability(detection) - truth) ** 2))
    return out


def vadd_metrics(scores: ItemScores, classes: tuple[str, ...], rule: VerdictRule | None = None, top: int = 5) -> dict:
    """The paper's rule and the mismatch score (:func:`mismatch_metrics`); ``verdict_rule`` names the one
    ``vadd check`` decides by.

    ``paper_rule`` also lists the most frequent confused class pairs: false alarms by their predicted
    (visual, audio) classes, misses by their true (video, audio) labels.
    """
    truth = np.array([i.manipulated for i in scores.items])
    false_alarms = [(classes[v], classes[a]) for v, a, p, t in
                    zip(scores.visual_class, scores.audio_class, scores.predicted, truth) if p and not t]
    misses = [(i.video_label, i.audio_label) for i, p in zip(scores.items, scores.predicted) if i.manipulated and not p]
    return {
        "n_items": int(len(truth)),
        "n_manipulated": int(truth.sum()),
        "paper_rule": {
            **detection_metrics(truth, scores.predicted),
            "false_alarm_class_pairs": [
                {"visual": v, "audio": a, "count": n} for (v, a), n in Counter(false_alarms).most_common(top)
            ],
            "missed_class_pairs": [
                {"video_label": v, "audio_label": a, "count": n} for (v, a), n in Counter(misses).most_common(top)
            ],
        },
        "mismatch_score": mismatch_metrics(scores, rule),
        "verdict_rule": "mismatch_score",
    }
