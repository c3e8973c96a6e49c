"""The verdict rule: segments of the per-second mismatch score, its settings chosen on the validation protocol.

A video (or protocol item) is manipulated when its per-second mismatch scores (nats, :func:`vadd.score.second_mismatch`)
hold a segment (:func:`vadd.segments.find_segments`). Smoothing, minimum duration and hysteresis are chosen on the
validation protocol, and the threshold *between* its scores: the midpoint (in nats) of the neighbouring pristine and
manipulated detection scores that gives the best F1, never an observed score. The validation protocol's items are
scored as they are (pristine clips, whole-clip swaps), and also as partial splices built from their per-second scores:
two pristine items end to end (a pristine long item) and the same with 2-8 s of a swapped item's scores in place of
some of its seconds (a spliced item whose span is known). Splicing scores assumes a head's per-second answer does not
depend on the seconds around it, which attention heads only approximate. A logistic fit of the validation labels on
the detection score (classes weighted equally) gives the probability that a video is manipulated, at even odds.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from vadd.segments import Segment, SegmentParams, detection_score, find_segments, parameter_grid, with_threshold

logger = logging.getLogger(__name__)

SPLICE_SECONDS = (2, 8)  # shortest and longest span of a spliced validation item
RULE_NAME = "segments of the mismatch score"


@dataclass(frozen=True)
class VerdictRule:
    """Segment settings (with the threshold) and the logistic map from detection score to probability."""

    segments: SegmentParams
    probability_slope: float
    probability_intercept: float

    def to_dict(self) -> dict:
        return {"name": RULE_NAME, "segments": self.segments.to_dict(),
                "probability": {"slope": self.probability_slope, "intercept": self.probability_intercept}}

    @classmethod
    def from_dict(cls, data: dict) -> "VerdictRule":
        return cls(SegmentParams.from_dict(data["segments"]), float(data["probability"]["slope"]),
                   float(data["probability"]["intercept"]))

    @property
    def threshold(self) -> float:
        return self.segments.threshold

    def score(self, per_second: np.ndarray) -> float:
        """Detection score (nats): manipulated iff ``>= threshold``."""
        return detection_score(per_second, self.segments)

    def find(self, per_second: np.ndarray, hop_s: float = 1.0) -> list[Segment]:
        return find_segments(per_second, self.segments, hop_s)

    def probability(self, score: float | np.ndarray) -> np.ndarray:
        """Probability that a video with this detection score is manipulated (validation's even odds)."""
        return 1.0 / (1.0 + np.exp(-(self.probability_slope * np.asarray(score, np.float64) + self.probability_intercept)))


def midpoint_threshold(truth: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The F1-best threshold of ``scores >= t`` among the midpoints between consecutive distinct scores (and one below
    them all: flag everything); ties go to the widest gap. Returns (threshold, F1 there)."""
    truth, scores = np.asarray(truth, bool), np.asarray(scores, np.float64)
    if truth.all() or not truth.any():
        raise ValueError("choosing a threshold needs both pristine and manipulated validation items")
    values = np.unique(scores[np.isfinite(scores)])
    gaps = np.diff(values)
    candidates = np.concatenate([[values[0] - 1.0], values[:-1] + gaps / 2])
    widths = np.concatenate([[0.0], gaps])
    flagged = scores[None, :] >= candidates[:, None]
    tp = (flagged & truth).sum(1)
    f1 = 2 * tp / (flagged.sum(1) + truth.sum())
    best = np.lexsort((-widths, -f1))[0]
    return float(candidates[best]), float(f1[best])


@dataclass(frozen=True)
class ValidationSequences:
    """Per-second mismatch sequences of the validation protocol with their truth and, for spliced ones, the span."""

    per_second: list[np.ndarray]
    manipulated: np.ndarray  # (n,) bool
    kind: list[str]  # pristine | swapped | pristine_long | spliced
    spans: list[tuple[int, int] | None]  # seconds [start, end) of a splice


def validation_sequences(per_second: list[np.ndarray], manipulated: np.ndarray, seed: int = 0) -> ValidationSequences:
    """The validation items as they are, plus score-level splices (see the module docstring), seeded."""
    rng = np.random.default_rng(seed)
    manipulated = np.asarray(manipulated, bool)
    pristine = [p for p, m in zip(per_second, manipulated) if not m]
    swapped = [p for p, m in zip(per_second, manipulated) if m]
    sequences = [*per_second]
    kinds = ["swapped" if m else "pristine" for m in manipulated]
    spans: list[tuple[int, int] | None] = [None] * len(per_second)
    truth = manipulated.tolist()
    for k, swap in enumerate(swapped if pristine else []):
        base = np.concatenate([pristine[k % len(pristine)], pristine[(k + 1) % len(pristine)]])
        sequences.append(base.copy())
        kinds.append("pristine_long")
        spans.append(None)
        truth.append(False)
        length = min(int(rng.integers(SPLICE_SECONDS[0], SPLICE_SECONDS[1] + 1)), len(swap), len(base) - 1)
        if length < 1:
            continue
        start = int(rng.integers(0, len(base) - length + 1))
        base[start : start + length] = swap[:length]
        sequences.append(base)
        kinds.append("spliced")
        spans.append((start, start + length))
        truth.append(True)
    return ValidationSequences(sequences, np.array(truth, bool), kinds, spans)


def best_iou(segments: list[Segment], span: tuple[int, int]) -> float:
    return max((s.iou(*span) for s in segments), default=0.0)


def choose_rule(per_second: list[np.ndarray], manipulated: np.ndarray, seed: int = 0) -> tuple[VerdictRule, dict]:
    """Choose the segment settings and threshold on the validation protocol's per-second scores: the best item F1
    over every validation sequence, ties broken by the mean IoU of the spliced spans, then by the simpler setting.
    Returns the rule and what the choice saw (for ``metrics.json``)."""
    from sklearn.linear_model import LogisticRegression

    found = validation_sequences(per_second, manipulated, seed)
    spliced = [i for i, k in enumerate(found.kind) if k == "spliced"]
    best: tuple | None = None
    for rank, params in enumerate(parameter_grid()):
        scores = np.array([detection_score(p, params) for p in found.per_second])
        threshold, f1 = midpoint_threshold(found.manipulated, scores)
        chosen = with_threshold(params, threshold)
        iou = float(np.mean([best_iou(find_segments(found.per_second[i], chosen), found.spans[i]) for i in spliced])) \
            if spliced else None
        key = (f1, iou or 0.0, -rank)
        if best is None or key > best[0]:
            best = (key, chosen, scores, f1, iou)
    _, params, scores, f1, iou = best
    fit = LogisticRegression(class_weight="balanced").fit(scores[:, None], found.manipulated)
    rule = VerdictRule(params, float(fit.coef_[0, 0]), float(fit.intercept_[0]))
    flagged = scores >= params.threshold
    counts = {k: found.kind.count(k) for k in ("pristine", "swapped", "pristine_long", "spliced")}
    logger.info("verdict rule chosen on %d validation sequences: %s (F1 %.4f)", len(scores), params, f1)
    return rule, {
        "rule": rule.to_dict(), "n_sequences": counts, "f1": f1, "spliced_mean_iou": iou,
        "flagged_by_kind": {k: int(flagged[[i for i, x in enumerate(found.kind) if x == k]].sum()) for k in counts},
        "how": "segment settings and threshold chosen on the validation protocol and score-level splices of it "
               "(vadd.rule); the threshold is the F1-best midpoint between neighbouring validation scores",
    }
