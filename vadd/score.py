"""VADD scoring: visual-only and audio-only heads judge each protocol item.

The paper's rule: an item is manipulated iff the clip-level (voted) visual and audio classes differ.
Beyond it: a continuous mismatch score 1 - sum_c p_visual(c) p_audio(c) per second, averaged per item.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from classify.data import ClipSet
from classify.metrics import clip_vote
from classify.train import TrainedHead
from avscene.progress import progress_bar
from vadd.protocol import ProtocolItem


@dataclass
class ModalityPredictions:
    """Per-second probabilities of one modality's head, by clip id."""

    probs: dict[str, np.ndarray]  # id -> (T, K)
    mask: dict[str, np.ndarray]  # id -> (T,)

    @classmethod
    def from_head(cls, head: TrainedHead, clips: ClipSet) -> "ModalityPredictions":
        probs = head.predict_proba(clips)
        return cls({c: probs[i] for i, c in enumerate(clips.ids)}, {c: clips.mask[i] for i, c in enumerate(clips.ids)})


@dataclass
class ItemScores:
    """Decisions and scores for protocol items (aligned arrays)."""

    items: list[ProtocolItem]
    visual_class: np.ndarray  # (n,) voted class index
    audio_class: np.ndarray
    predicted: np.ndarray  # (n,) bool, the paper's rule
    mismatch: np.ndarray  # (n,) mean per-second mismatch score in [0, 1]
    per_second: list[np.ndarray]  # per item (aligned seconds,)


def second_mismatch(p_visual: np.ndarray, p_audio: np.ndarray) -> np.ndarray:
    """``1 - sum_c p_v(c) p_a(c)`` per second: 0 when both heads agree with certainty."""
    return 1.0 - (p_visual * p_audio).sum(-1)


def score_items(items: list[ProtocolItem], visual: ModalityPredictions, audio: ModalityPredictions) -> ItemScores:
    """Pair visual and audio predictions per item, aligned on the seconds both clips have."""
    missing = sorted({i.video_clip for i in items} - visual.probs.keys() | {i.audio_clip for i in items} - audio.probs.keys())
    if missing:
        raise ValueError(f"{len(missing)} protocol clips have no embeddings in the store, e.g. {missing[:5]}")
    v_cls, a_cls, scores, per_second = [], [], [], []
    for item in progress_bar(items, desc="score", unit="item", leave=False):
        mask = visual.mask[item.video_clip] & audio.mask[item.audio_clip]
        pv, pa = visual.probs[item.video_clip][None], audio.probs[item.audio_clip][None]
        v_cls.append(clip_vote(pv, mask[None])[0])
        a_cls.append(clip_vote(pa, mask[None])[0])
        seconds = second_mismatch(pv[0][mask], pa[0][mask])
        per_second.append(seconds)
        scores.append(seconds.mean() if len(seconds) else 1.0)
    v, a = np.array(v_cls), np.array(a_cls)
    return ItemScores(items, v, a, v != a, np.array(scores), per_second)


def f1_optimal_threshold(truth: np.ndarray, score: np.ndarray) -> float:
    """The observed score ``t`` maximising F1 of ``score >= t`` (manipulated = positive); ties: the lowest ``t``.

    Meant for a validation protocol, never the test one.
    """
    from sklearn.metrics import precision_recall_curve

    truth = np.asarray(truth, bool)
    if truth.all() or not truth.any():
        raise ValueError("choosing a threshold needs both pristine and manipulated validation items")
    precision, recall, thresholds = precision_recall_curve(truth, score)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def detection_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """F1 (manipulated = positive), precision, recall and accuracy of boolean decisions."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    return {
        "f1": float(f1_score(truth, predicted, zero_division=0)),
        "precision": float(precision_score(truth, predicted, zero_division=0)),
        "recall": float(recall_score(truth, predicted, zero_division=0)),
        "accuracy": float((truth == predicted).mean()),
    }


def vadd_metrics(scores: ItemScores, classes: tuple[str, ...], threshold: float | None = None, top: int = 5) -> dict:
    """The paper's rule and the mismatch score (ROC AUC, AP, and F1 at ``threshold`` when given).

    ``paper_rule`` also lists the most frequent confused class pairs: false alarms by their predicted
    (visual, audio) classes, misses by their true (video, audio) labels.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    truth = np.array([i.manipulated for i in scores.items])
    both = len(set(truth.tolist())) == 2
    false_alarms = [(classes[v], classes[a]) for v, a, p, t in
                    zip(scores.visual_class, scores.audio_class, scores.predicted, truth) if p and not t]
    misses = [(i.video_label, i.audio_label) for i, p in zip(scores.items, scores.predicted) if i.manipulated and not p]
    mismatch: dict = {
        "roc_auc": float(roc_auc_score(truth, scores.mismatch)) if both else None,
        "average_precision": float(average_precision_score(truth, scores.mismatch)) if both else None,
        "threshold": threshold,
    }
    if threshold is not None:
        mismatch.update(detection_metrics(truth, scores.mismatch >= threshold))
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
        "mismatch_score": mismatch,
    }
