"""The protocol x score table of ``vadd eval``: four protocols, four ways to decide, detection and localisation.

Protocols (rows): ``generated`` (whole-clip swaps across classes), ``official`` (the VADD lists, on a TAU store),
``partial`` and ``same-class`` (:mod:`vadd.splice`). Every item is assembled from the cache and the heads see it in
windows of their training clips' length, as ``vadd check`` sees a video.

Scores (columns):

- ``paper_rule``: manipulated iff the voted visual and audio classes differ (the paper's rule); its segments are
  the runs of seconds whose visual and audio classes differ (confidence 1).
- ``mismatch``: the per-second class mismatch in nats (:func:`vadd.score.second_mismatch`).
- ``correspondence``: ``1 - cos`` of the contrastive head's visual and audio embeddings (:mod:`vadd.correspondence`).
- ``fusion``: ``w z(mismatch) + (1 - w) z(correspondence)``, each standardised by its validation seconds, ``w`` the
  validation's best of :data:`FUSION_WEIGHTS`.

The three continuous scores are decided by the verdict rule (:func:`vadd.rule.choose_rule`: segment settings and a
threshold between validation scores), chosen per score on the run's generated validation protocol; an item is
manipulated when it holds a segment; its detection score gives the ROC AUC. Localisation metrics are
:mod:`vadd.localise`'s (AVVP's second-level F1, AV-Deepfake1M's AP and AR), the segments being the proposals.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np

from classify.data import ClipSet
from classify.metrics import clip_vote
from classify.train import TrainedHead
from vadd.correspondence import CorrespondenceHead
from vadd.localise import second_level_f1, segment_ap, segment_ar
from vadd.rule import VerdictRule, choose_rule
from vadd.score import ItemScores, detection_metrics, second_mismatch
from vadd.segments import true_runs
from vadd.splice import SplicedItem, assemble

logger = logging.getLogger(__name__)

SCORES = ("paper_rule", "mismatch", "correspondence", "fusion")
TABLE_PROTOCOLS = ("generated", "official", "partial", "same-class")
FUSION_WEIGHTS = (0.5, 0.25, 0.75)  # the first wins ties
AP_IOUS = (0.5, 0.75)
AR_PROPOSALS = (10, 5)


@dataclass
class Evidence:
    """Per item of a protocol: voted classes and the per-second scores (masked seconds score 0: consistent)."""

    items: list[SplicedItem]
    visual_class: np.ndarray  # (n,)
    audio_class: np.ndarray
    classes_differ: list[np.ndarray]  # per item (L,) bool: per-second argmaxes differ
    mismatch: list[np.ndarray]  # per item (L,) float64 nats
    correspondence: list[np.ndarray]  # per item (L,) float64

    @property
    def truth(self) -> np.ndarray:
        return np.array([i.manipulated for i in self.items])

    def item_scores(self) -> ItemScores:
        """The mismatch evidence as the run folder's per-item scores."""
        return ItemScores(self.items, self.visual_class, self.audio_class, self.visual_class != self.audio_class,
                          self.mismatch)


def gather_evidence(items: list[SplicedItem], clips: ClipSet, window_s: int, heads: dict[str, TrainedHead],
                    temperatures: dict[str, float], correspondence: CorrespondenceHead) -> Evidence:
    """Score ``items`` (taken from ``clips``) with the VSC/ASC heads (temperature-scaled for the mismatch) and the
    correspondence head."""
    assembled = assemble(items, clips, window_s)
    windows = assembled.windows
    logits = {m: heads[m].predict_logits(windows) for m in ("visual", "audio")}
    probs = {m: heads[m].predict_proba(windows, logits[m]) for m in ("visual", "audio")}
    corr = correspondence.second_scores(windows)
    out = Evidence(items, np.zeros(len(items), int), np.zeros(len(items), int), [], [], [])
    for i, item in enumerate(items):
        seconds = lambda array: assembled.per_second(array, i, item.length_s)  # noqa: E731
        mask = seconds(windows.mask)
        pv, pa = seconds(probs["visual"]), seconds(probs["audio"])
        out.visual_class[i] = clip_vote(pv[None], mask[None])[0]
        out.audio_class[i] = clip_vote(pa[None], mask[None])[0]
        out.classes_differ.append((pv.argmax(-1) != pa.argmax(-1)) & mask)
        nats = second_mismatch(seconds(logits["visual"]), seconds(logits["audio"]), temperatures["visual"], temperatures["audio"])
        out.mismatch.append(np.where(mask, nats, 0.0))
        out.correspondence.append(np.where(mask, np.nan_to_num(seconds(corr)), 0.0))
    return out


@dataclass(frozen=True)
class Fusion:
    """``weight * z(mismatch) + (1 - weight) * z(correspondence)`` with validation means and standard deviations."""

    weight: float
    mean: tuple[float, float]
    std: tuple[float, float]

    @classmethod
    def standardising(cls, evidence: Evidence, weight: float) -> "Fusion":
        m, c = np.concatenate(evidence.mismatch), np.concatenate(evidence.correspondence)
        return cls(weight, (float(m.mean()), float(c.mean())), (max(float(m.std()), 1e-9), max(float(c.std()), 1e-9)))

    def __call__(self, mismatch: np.ndarray, correspondence: np.ndarray) -> np.ndarray:
        return (self.weight * (mismatch - self.mean[0]) / self.std[0]
                + (1 - self.weight) * (correspondence - self.mean[1]) / self.std[1])

    def to_dict(self) -> dict:
        return {"weight_mismatch": self.weight, "mean": list(self.mean), "std": list(self.std)}


def per_second(evidence: Evidence, score: str, fusion: Fusion | None = None) -> list[np.ndarray]:
    """The per-second sequences of one continuous score."""
    if score == "fusion":
        return [fusion(m, c) for m, c in zip(evidence.mismatch, evidence.correspondence)]
    return getattr(evidence, score)


@dataclass
class ChosenRules:
    """What validation chose: a verdict rule per continuous score and the fusion."""

    rules: dict[str, VerdictRule]
    fusion: Fusion
    report: dict  # for metrics.json


def choose_rules(validation: Evidence, seed: int = 0) -> ChosenRules:
    """A verdict rule for the mismatch, the correspondence and each fusion weight on the validation protocol; the
    fusion weight with the best validation F1."""
    truth = validation.truth
    rules, report = {}, {}
    for score in ("mismatch", "correspondence"):
        rules[score], report[score] = choose_rule(per_second(validation, score), truth, seed)
    best = None
    for weight in FUSION_WEIGHTS:
        fusion = Fusion.standardising(validation, weight)
        rule, seen = choose_rule(per_second(validation, "fusion", fusion), truth, seed)
        if best is None or seen["f1"] > best[2]["f1"]:
            best = (fusion, rule, seen)
    fusion, rules["fusion"], report["fusion"] = best
    report["fusion"] = {**report["fusion"], **fusion.to_dict()}
    return ChosenRules(rules, fusion, report)


def score_metrics(items: list[SplicedItem], decided: np.ndarray, item_score: np.ndarray,
                  segments: list[list[tuple[float, float, float]]]) -> dict:
    """Item F1 and ROC AUC, AVVP second-level F1, AV-Deepfake1M AP@IoU and AR@N."""
    from sklearn.metrics import roc_auc_score

    truth = np.array([i.manipulated for i in items])
    true_segments = [i.truth_segments() for i in items]
    out = {**detection_metrics(truth, decided),
           "roc_auc": float(roc_auc_score(truth, item_score)) if len(set(truth.tolist())) == 2 else None,
           "second_f1": second_level_f1(true_segments, segments, [i.length_s for i in items])}
    out.update({f"ap@{iou}": segment_ap(true_segments, segments, iou) for iou in AP_IOUS})
    out.update({f"ar@{n}": segment_ar(true_segments, segments, n) for n in AR_PROPOSALS})
    return out


def protocol_scores(evidence: Evidence, chosen: ChosenRules) -> dict[str, dict]:
    """Every score's metrics on one protocol."""
    paper = evidence.visual_class != evidence.audio_class
    runs = [[(float(a), float(b), 1.0) for a, b in true_runs(f)] for f in evidence.classes_differ]
    out = {"paper_rule": score_metrics(evidence.items, paper, paper.astype(float), runs)}
    for score in ("mismatch", "correspondence", "fusion"):
        rule = chosen.rules[score]
        sequences = per_second(evidence, score, chosen.fusion)
        segments = [[(s.start_s, s.end_s, s.score) for s in rule.find(x)] for x in sequences]
        out[score] = score_metrics(evidence.items, np.array([bool(s) for s in segments]),
                                   np.array([rule.score(x) for x in sequences]), segments)
    return out


def kinds_count(items: list[SplicedItem]) -> dict[str, int]:
    return dict(Counter(item.kind for item in items))


TABLE_METRICS = (("f1", "item F1"), ("roc_auc", "item AUC"), ("second_f1", "second F1"), ("ap@0.5", "AP@0.5"),
                 ("ap@0.75", "AP@0.75"), ("ar@10", "AR@10"))


def table_markdown(table: dict, synthetic: bool | None) -> list[str]:
    """The protocol x score table as markdown lines (percentages; ``—`` where undefined or unavailable)."""
    lines = ["", "## Protocols x scores" + (" (SYNTHETIC data)" if synthetic else ""), "",
             "| protocol | items (manipulated) | score | " + " | ".join(name for _, name in TABLE_METRICS) + " |",
             "|---|---|---|" + "---|" * len(TABLE_METRICS)]
    notes = []
    for protocol in TABLE_PROTOCOLS:
        row = table["protocols"].get(protocol)
        if row is None or "unavailable" in row:
            notes.append(f"- {protocol}: not run ({row['unavailable'] if row else 'not requested'})")
            continue
        for score in SCORES:
            cells = [_cell(row["scores"][score].get(key)) for key, _ in TABLE_METRICS]
            lines.append(f"| {protocol} | {row['n_items']} ({row['n_manipulated']}) | {score} | " + " | ".join(cells) + " |")
        if row.get("note"):
            notes.append(f"- {protocol}: {row['note']}")
    fusion = table["validation"]["fusion"]
    lines += ["", f"Rules chosen on the validation protocol ({table['validation']['n_items']} items): fusion weight "
              f"{fusion['weight_mismatch']:.2f} on the mismatch. Item F1/AUC: manipulated = positive; second F1: AVVP's "
              "segment-level F-score; AP@IoU and AR@10 (mean over IoU 0.5:0.05:0.95): AV-Deepfake1M's scorer "
              "(see vadd.localise)."]
    return lines + notes


def _cell(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{100 * value:.1f}"
