"""Localisation metrics of manipulated segments, as two public scorers define them.

Inputs are plain: per item, the true manipulated segments ``[(start_s, end_s)]`` and the predicted ones
``[(start_s, end_s, score)]`` (any order; higher score = more confident).

- :func:`second_level_f1`: the segment-level F-score of audio-visual video parsing (AVVP; Tian et al., ECCV 2020,
  ``utils/eval_metrics.py::segment_level`` in YapengTian/AVVP-ECCV20): each item's 1-s segments are predicted
  positive or not; per item ``F = 2 TP / (2 TP + FP + FN)``, an item with neither a predicted nor a true positive
  second counts ``1.0`` ("all true negatives"), and the result is the mean over items.
- :func:`segment_ap` and :func:`segment_ar`: the temporal localisation metrics of AV-Deepfake1M (Cai et al., ACM MM
  2024; the scorer ``ap_ar_1d`` of ControlNet/AV-Deepfake1M, ``src/loc_1d.rs``): IoU of two intervals is their
  intersection over their hull; AP at an IoU threshold pools every item's proposals, sorted by score, a proposal
  being a true positive when it is the first (in score order) not yet taken with IoU > the threshold for some true
  segment, and integrates the interpolated precision over recall; AR@N is the share of true segments covered
  (IoU > threshold) by one of the N best proposals of their item, averaged over IoU 0.5:0.05:0.95.
"""
from __future__ import annotations

import numpy as np

Truth = list[tuple[float, float]]
Proposals = list[tuple[float, float, float]]
AR_IOU_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2).tolist())  # AV-Deepfake1M's AR thresholds


def _seconds(segments: list[tuple], length_s: int) -> np.ndarray:
    """Boolean ``(length_s,)``: True for each second ``t`` whose ``[t, t+1)`` lies inside a segment."""
    flags = np.zeros(length_s, bool)
    for start_s, end_s, *_ in segments:
        flags[int(np.floor(start_s)) : int(np.ceil(end_s))] = True
    return flags


def second_level_f1(truth: list[Truth], predicted: list[Proposals], lengths_s: list[int]) -> float:
    """AVVP's segment-level F-score over 1-s segments, averaged over items (see the module docstring)."""
    scores = []
    for true, pred, length_s in zip(truth, predicted, lengths_s, strict=True):
        t, p = _seconds(true, length_s), _seconds(pred, length_s)
        tp, fp, fn = int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum())
        scores.append(1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else float("nan")


def iou_1d(proposals: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(m, n)`` IoU of ``(m, 2)`` proposals with ``(n, 2)`` targets: intersection over hull, as AV-Deepfake1M."""
    inner = np.clip(np.minimum(proposals[:, None, 1], targets[None, :, 1]) - np.maximum(proposals[:, None, 0], targets[None, :, 0]), 0, None)
    hull = np.maximum(proposals[:, None, 1], targets[None, :, 1]) - np.minimum(proposals[:, None, 0], targets[None, :, 0])
    return np.divide(inner, hull, out=np.zeros_like(inner), where=hull > 0)


def _ranked(pred: Proposals) -> np.ndarray:
    rows = np.array(sorted(pred, key=lambda p: -p[2]), dtype=np.float64).reshape(-1, 3)
    return rows


def segment_ap(truth: list[Truth], predicted: list[Proposals], iou_threshold: float) -> float:
    """AV-Deepfake1M's AP at one IoU threshold over all items (NaN without true segments)."""
    confidence, is_tp, n_true = [], [], 0
    for true, pred in zip(truth, predicted, strict=True):
        rows, targets = _ranked(pred), np.array(true, dtype=np.float64).reshape(-1, 2)
        n_true += len(targets)
        hit = np.zeros(len(rows), bool)
        if len(targets) and len(rows):
            over = iou_1d(rows[:, :2], targets) > iou_threshold
            for j in range(len(targets)):  # each true segment takes the first free proposal above the threshold
                free = np.flatnonzero(over[:, j] & ~hit)
                if len(free):
                    hit[free[0]] = True
        confidence.append(rows[:, 2])
        is_tp.append(hit)
    if n_true == 0:
        return float("nan")
    order = np.argsort(-np.concatenate(confidence), kind="stable")
    tp = np.cumsum(np.concatenate(is_tp)[order])
    precision = tp / np.arange(1, len(tp) + 1)
    recall = tp / n_true
    # the scorer's curve: (recall 1, precision 0) then the points from the lowest score up; precision interpolated
    # as its running maximum along that order, integrated over |d recall|
    r = np.concatenate([[1.0], recall[::-1]])
    p = np.maximum.accumulate(np.concatenate([[0.0], precision[::-1]]))
    return float((np.abs(np.diff(r)) * p[:-1]).sum())


def segment_ar(truth: list[Truth], predicted: list[Proposals], n_proposals: int,
               iou_thresholds: tuple[float, ...] = AR_IOU_THRESHOLDS) -> float:
    """AV-Deepfake1M's AR@``n_proposals``, averaged over ``iou_thresholds`` (NaN without true segments)."""
    covered, n_true = np.zeros(len(iou_thresholds)), 0
    for true, pred in zip(truth, predicted, strict=True):
        rows, targets = _ranked(pred)[:n_proposals], np.array(true, dtype=np.float64).reshape(-1, 2)
        n_true += len(targets)
        if len(targets) and len(rows):
            best = iou_1d(rows[:, :2], targets).max(0)
            covered += [(best > t).sum() for t in iou_thresholds]
    return float((covered / n_true).mean()) if n_true else float("nan")
