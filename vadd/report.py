"""Files of a ``vadd eval`` run folder: per-item and per-second scores, the ROC plot, the markdown table."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from classify.published import PAPER_SOURCE, PAPER_TABLE1, PAPER_VADD_F1, TABLE1_NAMES
from extract.taxonomy import IOV_CLASSES, TAU_SCENES
from vadd.score import ItemScores

PAPER = {  # the first paper's figures as fractions, by TAU class tuple (classify.published)
    classes: {"vadd_f1": round(PAPER_VADD_F1[name] / 100, 4),
              **{TABLE1_NAMES[inputs].lower(): round(PAPER_TABLE1[(inputs, name)] / 100, 4) for inputs in TABLE1_NAMES}}
    for classes, name in ((TAU_SCENES, "10"), (IOV_CLASSES, "3"))
}
NO_PAPER = dict.fromkeys(PAPER[TAU_SCENES])  # other class sets: the paper has no figure


def write_item_scores(path: Path, scores: ItemScores, classes: tuple[str, ...]) -> None:
    """One row per protocol item: truth, the paper rule's decision, voted classes, mean mismatch."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_clip", "audio_clip", "manipulated", "predicted", "visual_class", "audio_class", "mismatch"])
        for item, v, a, p, m in zip(scores.items, scores.visual_class, scores.audio_class, scores.predicted, scores.mismatch):
            writer.writerow([item.video_clip, item.audio_clip, int(item.manipulated), int(p), classes[v], classes[a], f"{m:.6f}"])


def write_second_scores(path: Path, scores: ItemScores) -> None:
    """One row per aligned second of each item: where in a clip the two modalities disagree."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_clip", "audio_clip", "second", "mismatch"])
        for item, seconds in zip(scores.items, scores.per_second):
            for k, m in enumerate(seconds):
                writer.writerow([item.video_clip, item.audio_clip, k, f"{m:.6f}"])


def write_roc_png(path: Path, scores: ItemScores, threshold: float, title: str) -> None:
    """ROC curve of the mean mismatch score, with the validation threshold and the paper rule marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    truth = np.array([i.manipulated for i in scores.items])
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    if len(set(truth.tolist())) == 2:
        fpr, tpr, _ = roc_curve(truth, scores.mismatch)
        ax.plot(fpr, tpr, label=f"mismatch score (AUC {roc_auc_score(truth, scores.mismatch):.3f})")
        at = scores.mismatch >= threshold
        ax.plot([at[~truth].mean()], [at[truth].mean()], "o", label=f"validation threshold {threshold:.3f}")
        ax.plot([scores.predicted[~truth].mean()], [scores.predicted[truth].mean()], "s", label="paper rule (classes differ)")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate (pristine flagged)")
    ax.set_ylabel("true positive rate (manipulated found)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def write_markdown(path: Path, metrics: dict) -> None:
    """The paper's published values beside ours, clearly labelled."""
    paper = PAPER.get(tuple(metrics["classes"]), NO_PAPER)
    acc = metrics["classification_clip_accuracy"]
    rule, score = metrics["paper_rule"], metrics["mismatch_score"]
    ours = f"ours ({metrics['store']}, {metrics['protocol']} protocol, head {metrics['head_kind']})"
    rows = [
        ("VADD F1, paper rule (manipulated = positive)", paper["vadd_f1"], rule["f1"]),
        ("VADD precision, paper rule", None, rule["precision"]),
        ("VADD recall, paper rule", None, rule["recall"]),
        ("VASC clip accuracy (audio-visual head)", paper["vasc"], acc["vasc"]),
        ("ASC clip accuracy (audio-only head)", paper["asc"], acc["asc"]),
        ("VSC clip accuracy (visual-only head)", paper["vsc"], acc["vsc"]),
        ("mismatch score ROC AUC", None, score["roc_auc"]),
        ("mismatch score average precision", None, score["average_precision"]),
        (f"mismatch score F1 at validation threshold {score['threshold']:.4f}", None, score.get("f1")),
    ]
    lines = [
        f"# VADD, {metrics['n_classes']} classes (--classes {metrics['class_set']}; {metrics['n_items']} items, {metrics['n_manipulated']} manipulated)",
        "",
        f"| metric | {PAPER_SOURCE} | {ours} |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {_pct(theirs)} | {_pct(mine)} |" for name, theirs, mine in rows]
    lines += ["", f"Extractors: {metrics['extractors']}. Clip-level results vote over the seconds of a clip.",
              "The paper's column is copied from the publication (TAU Urban Audio-Visual Scenes 2021, fold1_evaluate); "
              "it is comparable only to a run on the same data with the official protocol."]
    if metrics.get("excluded_clips"):
        lines += ["", f"Protocol: {metrics['protocol_items']}; {len(metrics['dropped_items'])} dropped and "
                  f"{len(metrics['excluded_clips'])} clips excluded (no embeddings for every extractor): "
                  + ", ".join(e["clip"] for e in metrics["excluded_clips"][:20])]
    confused = rule["false_alarm_class_pairs"]
    if confused:
        lines += ["", "Most frequent false alarms (predicted visual → audio): "
                  + ", ".join(f"{c['visual']} → {c['audio']} ({c['count']})" for c in confused)]
    missed = rule["missed_class_pairs"]
    if missed:
        lines += ["", "Most frequent misses (true video label / audio label): "
                  + ", ".join(f"{c['video_label']} / {c['audio_label']} ({c['count']})" for c in missed)]
    path.write_text("\n".join(lines) + "\n")
