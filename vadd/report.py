"""Files of a ``vadd eval`` run folder: per-item, per-second and segment scores, the ROC plot, the markdown table."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from classify.published import PAPER_SOURCE, PAPER_TABLE1, PAPER_VADD_F1, TABLE1_NAMES
from extract.taxonomy import IOV_CLASSES, TAU_SCENES
from vadd.rule import VerdictRule
from vadd.score import ItemScores, item_segments

PAPER = {  # the first paper's figures as fractions, by TAU class tuple (classify.published)
    classes: {"vadd_f1": round(PAPER_VADD_F1[name] / 100, 4),
              **{TABLE1_NAMES[inputs].lower(): round(PAPER_TABLE1[(inputs, name)] / 100, 4) for inputs in TABLE1_NAMES}}
    for classes, name in ((TAU_SCENES, "10"), (IOV_CLASSES, "3"))
}
NO_PAPER = dict.fromkeys(PAPER[TAU_SCENES])  # other class sets: the paper has no figure


def write_item_scores(path: Path, scores: ItemScores, classes: tuple[str, ...], rule: VerdictRule) -> None:
    """One row per protocol item: truth, the paper rule's decision and voted classes, the verdict rule's detection
    score (nats), probability and decision."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_clip", "audio_clip", "manipulated", "predicted", "visual_class", "audio_class",
                         "detection_score", "probability", "verdict_manipulated", "n_segments"])
        for item, v, a, p, seconds, found in zip(scores.items, scores.visual_class, scores.audio_class, scores.predicted,
                                                 scores.per_second, item_segments(scores, rule)):
            score = rule.score(seconds)
            writer.writerow([item.video_clip, item.audio_clip, int(item.manipulated), int(p), classes[v], classes[a],
                             f"{score:.6f}", f"{float(rule.probability(score)):.6f}", int(bool(found)), len(found)])


def write_second_scores(path: Path, scores: ItemScores) -> None:
    """One row per aligned second of each item: where in a clip the two modalities disagree (mismatch in nats)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_clip", "audio_clip", "second", "mismatch_nats"])
        for item, seconds in zip(scores.items, scores.per_second):
            for k, m in enumerate(seconds):
                writer.writerow([item.video_clip, item.audio_clip, k, f"{m:.6f}"])


def write_segments_csv(path: Path, scores: ItemScores, rule: VerdictRule) -> None:
    """One row per segment the verdict rule finds in a protocol item (seconds from the item's start)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_clip", "audio_clip", "manipulated", "start_s", "end_s", "score"])
        for item, found in zip(scores.items, item_segments(scores, rule)):
            for segment in found:
                writer.writerow([item.video_clip, item.audio_clip, int(item.manipulated), f"{segment.start_s:g}",
                                 f"{segment.end_s:g}", f"{segment.score:.6f}"])


def write_roc_png(path: Path, scores: ItemScores, rule: VerdictRule, title: str) -> None:
    """ROC curve of the detection score, with the verdict rule's operating point and the paper rule's marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    truth = np.array([i.manipulated for i in scores.items])
    detection = np.array([rule.score(p) for p in scores.per_second])
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    if len(set(truth.tolist())) == 2:
        fpr, tpr, _ = roc_curve(truth, detection)
        ax.plot(fpr, tpr, label=f"mismatch score (AUC {roc_auc_score(truth, detection):.3f})")
        at = detection >= rule.threshold
        ax.plot([at[~truth].mean()], [at[truth].mean()], "o", label=f"verdict rule (threshold {rule.threshold:.3g} nats)")
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
        (f"verdict rule F1 (segments of the mismatch score, threshold {score['threshold']:.4g} nats)", None,
         score.get("f1")),
        ("verdict rule precision", None, score.get("precision")),
        ("verdict rule recall", None, score.get("recall")),
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
              "it is comparable only to a run on the same data with the official protocol.",
              "", f"Mismatch score: {score['definition']}. Verdict rule (what `vadd check` decides by): "
              f"{_rule_text(score['rule'])}, chosen on the validation protocol.",
              "", "Temperature scaling of each head on the validation clips (NLL in nats / ECE, before → after):",
              *[f"- {m}: T = {c['temperature']:.3f}; validation {_calibration_text(c['validation'])}; "
                f"test {_calibration_text(c['test'])}" for m, c in metrics.get("calibration", {}).items()]]
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


def _rule_text(rule: dict) -> str:
    seg = rule["segments"]
    return (f"a segment of at least {seg['min_duration_s']} s whose {seg['smoothing_s']}-s smoothed score reaches "
            f"{seg['threshold']:.4g} nats and stays above {seg['hysteresis']:g} x that")


def _calibration_text(report: dict) -> str:
    if not report.get("n_seconds"):
        return "no labelled seconds"
    return (f"NLL {report['nll_before']:.4f} → {report['nll_after']:.4f}, ECE {report['ece_before']:.4f} → "
            f"{report['ece_after']:.4f} ({report['n_seconds']} s)")
