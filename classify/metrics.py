"""Scores of per-second class probabilities: the DCASE per-second unit and the paper's per-clip vote."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def clip_vote(probs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Majority vote of per-second argmaxes ``(n, T, K)`` -> ``(n,)``; ties go to the higher mean probability."""
    n, _, k = probs.shape
    votes = np.zeros((n, k))
    seconds_argmax = probs.argmax(-1)
    for c in range(k):
        votes[:, c] = ((seconds_argmax == c) & mask).sum(1)
    mean = clip_mean_proba(probs, mask)
    tie_break = votes + mean * 1e-3  # mean probabilities are < 1, so they only order tied vote counts
    return tie_break.argmax(1)


def clip_mean_proba(probs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean probability over the valid seconds of each clip, ``(n, K)``."""
    counts = np.maximum(mask.sum(1, keepdims=True), 1)
    return (probs * mask[..., None]).sum(1) / counts


def vote_confusion(targets: np.ndarray, vote: np.ndarray, n_classes: int) -> np.ndarray:
    """:func:`sklearn.metrics.confusion_matrix` of the clip votes (rows true, columns predicted); zeros without clips,
    and ``[[n]]`` for one class (a grouping of every class into one), whose 1x1 matrix sklearn warns about."""
    from sklearn.metrics import confusion_matrix

    if len(targets) == 0:
        return np.zeros((n_classes, n_classes), np.int64)
    if n_classes == 1:
        return np.array([[len(targets)]], np.int64)
    return confusion_matrix(targets, vote, labels=np.arange(n_classes))


def second_log_loss(targets: np.ndarray, probs: np.ndarray, n_classes: int) -> float | None:
    """:func:`sklearn.metrics.log_loss` of seconds' probabilities ``(n, K)`` (float64, rows renormalised to sum to one,
    clipped at float64's eps); None without seconds; for one class, which sklearn refuses, the same clipped mean of
    ``-log p``."""
    from sklearn.metrics import log_loss

    if len(targets) == 0:
        return None
    probs = probs.astype(np.float64)
    if n_classes == 1:
        return float(-np.log(np.clip(probs[:, 0], np.finfo(np.float64).eps, 1.0)).mean())
    return float(log_loss(targets, probs / probs.sum(1, keepdims=True), labels=np.arange(n_classes)))


def classification_metrics(probs: np.ndarray, mask: np.ndarray, targets: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Per-second accuracy and log loss (:func:`second_log_loss`), per-clip accuracy (vote and mean probability),
    per-class, confusion of the votes (:func:`vote_confusion`)."""
    k = len(classes)
    labelled = targets >= 0
    probs, mask, targets = probs[labelled], mask[labelled], targets[labelled]
    second_targets = np.broadcast_to(targets[:, None], mask.shape)[mask]
    second_probs = probs[mask]
    vote = clip_vote(probs, mask)
    mean_pred = clip_mean_proba(probs, mask).argmax(1)
    cm = vote_confusion(targets, vote, k)
    per_class = {
        c: (float(cm[i, i] / cm[i].sum()) if cm[i].sum() else None) for i, c in enumerate(classes)
    }
    return {
        "n_clips": int(len(targets)),
        "n_seconds": int(mask.sum()),
        "second_accuracy": float((second_probs.argmax(1) == second_targets).mean()) if len(second_targets) else None,
        "second_log_loss": second_log_loss(second_targets, second_probs, k),
        "clip_accuracy": float((vote == targets).mean()) if len(targets) else None,
        "clip_accuracy_mean_proba": float((mean_pred == targets).mean()) if len(targets) else None,
        "per_class_clip_accuracy": per_class,
        "classes": list(classes),
        "confusion_vote": cm.tolist(),
    }


def save_confusion_png(confusion: np.ndarray, classes: tuple[str, ...], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(classes), 0.8 + 0.6 * len(classes)))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    for (i, j), v in np.ndenumerate(confusion):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    ax.set_xlabel("predicted (clip vote)")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_predictions_csv(path: Path, ids: np.ndarray, probs: np.ndarray, mask: np.ndarray, classes: tuple[str, ...]) -> None:
    """One row per valid second: clip, second, one probability column per class."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["clip", "second", *classes])
        for i, clip in enumerate(ids):
            for t in np.flatnonzero(mask[i]):
                writer.writerow([clip, int(t), *(f"{p:.6f}" for p in probs[i, t])])
