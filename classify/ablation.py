"""The first paper's Table 2 and its VASC/ASC/VSC runs, from the cache only, beside the published numbers.

Every row is one run folder under ``out_dir``; a run whose folder holds a ``complete`` record (every file as the
finished run wrote it, :mod:`avscene.run_folder`) and an identical ``config.json`` (config, store fingerprints and
code version) is reused and marked so in the table, so re-running the ablation only trains what changed.
"""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from avscene.run_folder import finished_problem
from avscene.textfiles import read_json
from classify.data import extractor_modalities
from classify.heads import HeadConfig
from classify.kinds import FIRST_PAPER_VIEW_KINDS, WANG_VIEW_KINDS
from classify.published import PAPER_SOURCE, PAPER_TABLE1, PAPER_TABLE2, TABLE1_NAMES
from classify.run import run_config, run_training
from classify.train import TrainConfig
from avscene.progress import progress_bar
from extract.store import EmbeddingStore

logger = logging.getLogger(__name__)

TABLE2_KINDS: tuple[str, ...] = ("ns", "ls", "es", "ms", "es+ls", "ms+ls", "es+ms", "es+ms+ls", "mlp")


@dataclass(frozen=True)
class AblationRow:
    """One run of the ablation: which inputs, which head, which class set of the store's taxonomy, with the
    augmented views or not."""

    inputs: str  # "audio-visual" | "visual" | "audio"
    kind: str
    classes: str  # a class set name: the store's own classes ("10" for TAU) or a grouping ("3")
    augmented: bool = True

    @property
    def name(self) -> str:
        return f"{self.inputs}-{self.kind.replace('+', '_')}-{self.classes}cls" + ("" if self.augmented else "-no-da")

    def published(self, tau: bool) -> tuple[float | None, str]:
        """The first paper's figure for this row and where it is printed ("" when it prints none, or when the store
        is not TAU's: ``tau`` False)."""
        if not tau:
            return None, ""
        if self.inputs == "audio-visual" and self.classes == "10" and (self.kind, self.augmented) in PAPER_TABLE2:
            label = "Proposed without DA" if not self.augmented else self.kind.upper() + (" + DA" if self.kind == "ls" else "")
            return PAPER_TABLE2[(self.kind, self.augmented)], f"Table 2: {label}"
        if self.kind == "ls" and self.augmented and (self.inputs, self.classes) in PAPER_TABLE1:
            return (PAPER_TABLE1[(self.inputs, self.classes)],
                    f"Table 1: {TABLE1_NAMES[self.inputs]}, {self.classes} classes")
        return None, ""


def ablation_rows(modalities: set[str], class_sets: tuple[str, ...]) -> list[AblationRow]:
    """Table 2 (the store's own classes, every kind, both modalities; LS also without augmented views) then
    VASC/VSC/ASC with LS for every class set (``class_sets``: the taxonomy's names, its own classes first; TAU: 10
    and 3)."""
    both = {"visual", "audio"} <= modalities
    own = class_sets[0]
    rows = [AblationRow("audio-visual", k, own) for k in TABLE2_KINDS] if both else []
    rows += [AblationRow("audio-visual", "ls", own, augmented=False)] if both else []
    for inputs in (["audio-visual"] if both else []) + [m for m in ("visual", "audio") if m in modalities]:
        rows += [r for r in (AblationRow(inputs, "ls", c) for c in class_sets) if r not in rows]
    return rows


def _row_extractors(row: AblationRow, modalities: dict[str, str]) -> list[str]:
    return [n for n, m in modalities.items() if row.inputs == "audio-visual" or m == row.inputs]


def _reuse_problem(folder: Path, config: dict) -> str:
    """'' when ``folder`` is a finished, unaltered run (its ``complete`` record) of ``config``, else why it is not
    reused."""
    if not folder.exists():
        return "no run yet"
    problem = finished_problem(folder)
    if problem:
        return problem
    saved = read_json(folder / "config.json")
    changed = sorted(k for k, v in json.loads(json.dumps(config)).items() if saved.get(k) != v)
    return f"{folder}: run of another {', '.join(changed)}" if changed else ""


def run_ablation(
    store_location: str, out_dir: Path, head_config: HeadConfig, train_config: TrainConfig,
    extractors: list[str] | None = None,
) -> list[dict]:
    """Run (or reuse) every row; write ``ablation.md``, ``ablation.csv`` and ``ablation.png``; return the table.

    Rows train on the first paper's augmented views only (``paper_aug``) unless ``train_config.view_kinds`` says.
    """
    if not train_config.view_kinds:
        train_config = replace(train_config, view_kinds=FIRST_PAPER_VIEW_KINDS)
    store = EmbeddingStore.open(store_location)
    names = extractors or store.extractor_names()
    modalities = extractor_modalities(store, names)
    table = []
    class_sets, tau = store.taxonomy.names, store.taxonomy.is_tau
    for row in progress_bar(ablation_rows(set(modalities.values()), class_sets), desc="ablation", unit="row"):
        row_names = _row_extractors(row, modalities)
        row_train = train_config if row.augmented else replace(train_config, augmented_views=False)
        metrics = _run_or_reuse(store, store_location, out_dir / row.name, row_names, row.classes,
                                replace(head_config, kind=row.kind), row_train)
        table.append(_table_row(row.name, row.inputs, row.kind, row.classes, row_names, metrics,
                                *row.published(tau), class_sets))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table(table, out_dir, head_config, train_config, store_location)
    return table


# The second paper (Wang et al. 2022, ../shared/papers/wang2022_avsc.txt): the rows of its Tables 1 (single
# modalities, joint MLP) and 3 (video RandAugment, joint audio-video mixup) that run from the cache. Fine-tuning
# (Fine_A/Fine_V) trains from media: ``python -m classify finetune``.
@dataclass(frozen=True)
class WangRow:
    """One cache row of the second paper: which inputs, which preset, with or without augmented visual views."""

    name: str
    inputs: str  # "audio" | "visual" | "audio-visual"
    preset: str  # classify.train.PRESETS key
    views: bool  # train also on the store's augmented visual views (randaug)


WANG_ROWS: tuple[WangRow, ...] = (
    WangRow("wang-audio-mlp", "audio", "adam", False),
    WangRow("wang-visual-mlp", "visual", "adam", False),
    WangRow("wang-av-mlp", "audio-visual", "adam", False),
    WangRow("wang-av-mlp-randaug", "audio-visual", "adam", True),
    WangRow("wang-av-mlp-randaug-mixup", "audio-visual", "adam-mixup", True),
)
# Its Table 1 (accuracy %, development set; "all these preliminary experiments are conducted without data
# augmentation"): audio model, video model, Pre_V (pre-trained video model), Fine_A, Fine_V.
WANG_TABLE1: tuple[tuple[str, float], ...] = (
    ("VGGish (AudioSet), Fine_A", 59.3), ("FCNN", 75.2), ("VGG, from scratch", 76.2), ("VGG, Pre_V", 80.3),
    ("FCNN + VGG, Pre_V", 87.4), ("FCNN + ResNet, Pre_V", 91.6), ("FCNN + ResNeSt, Pre_V", 92.2),
    ("FCNN + DenseNet, Pre_V", 92.5), ("FCNN + DenseNet, Pre_V, Fine_A", 93.1), ("FCNN + DenseNet, Pre_V, Fine_V", 92.9),
    ("FCNN + DenseNet, Pre_V, Fine_A, Fine_V", 93.2),
)
# Its Table 3: augmentations of the A-FCNN + V-DenseNet system fine-tuned on both sides (its first row is Table 1's
# last, 93.2): audio augmentation, video perturbation (RandAugment Sharpness/Contrast/Identity), joint mixup share.
WANG_TABLE3: tuple[tuple[str, float], ...] = (
    ("no augmentation", 93.2), ("audio", 93.4), ("video", 93.7), ("audio + video", 93.9),
    ("audio + video + mixup 20 %", 94.2), ("audio + video + mixup 50 %", 93.8), ("audio + video + mixup 100 %", 94.0),
)
# row -> (Table 1 row when the FCNN was trained without audio augmentation, Table 3 row when with): the figure of
# the paper's configuration that the row runs (the Table 3 ones add fine-tuning, which no cache row does).
WANG_PAPER_ROWS: dict[str, tuple[str | None, str | None]] = {
    "wang-audio-mlp": ("Table 1: FCNN", None),
    "wang-visual-mlp": (None, None),  # Table 1 has visual-only rows for VGG only
    "wang-av-mlp": ("Table 1: FCNN + DenseNet, Pre_V", "Table 3: audio"),
    "wang-av-mlp-randaug": ("Table 3: video", "Table 3: audio + video"),
    "wang-av-mlp-randaug-mixup": (None, "Table 3: audio + video + mixup 20 %"),
}
WANG_FINAL_SYSTEM_ACCURACY = 94.2  # abstract and Table 3: FCNN + DenseNet161, joint MLP, augmentations, fine-tuning


def wang_published(row: str, audio_augmented: bool | None) -> tuple[float | None, str]:
    """The second paper's figure for ``row`` given whether the store's FCNN was trained with audio augmentation
    (None = unknown: no figure)."""
    if audio_augmented is None:
        return None, ""
    source = WANG_PAPER_ROWS[row][int(audio_augmented)]
    if source is None:
        return None, ""
    table, label = source.split(": ", 1)
    return dict(WANG_TABLE1 if table == "Table 1" else WANG_TABLE3)[label], source


def fcnn_audio_augmented(store: EmbeddingStore, names: list[str]) -> bool | None:
    """Whether the audio extractors among ``names`` were trained here with offline audio augmentation (their run
    record in the store); None when none of them carries a run record."""
    records = [store.group_record(n).training_run for n in names]
    records = [r for r in records if r]
    if not records:
        return None
    return any(r.get("config", {}).get("augment", {}).get("offline") for r in records)


def run_wang_ablation(store_location: str, out_dir: Path, extractors: list[str] | None = None,
                      **train_overrides) -> list[dict]:
    """The second paper's cache rows (:data:`WANG_ROWS`, MLP head, the store's own classes) beside its published
    figures."""
    from classify.train import preset

    store = EmbeddingStore.open(store_location)
    names = extractors or store.extractor_names()
    modalities = extractor_modalities(store, names)
    audio_augmented = fcnn_audio_augmented(store, [n for n, m in modalities.items() if m == "audio"])
    head_config = HeadConfig(kind="mlp")
    table = []
    classes = store.taxonomy.own_name
    for row in progress_bar(WANG_ROWS, desc="ablation", unit="row"):
        row_names = _row_extractors(AblationRow(row.inputs, "mlp", classes), modalities)
        if not row_names:
            logger.warning("%s: no %s extractor in %s; row skipped", row.name, row.inputs, store_location)
            continue
        train_config = preset(row.preset, augmented_views=row.views, view_kinds=WANG_VIEW_KINDS, **train_overrides)
        metrics = _run_or_reuse(store, store_location, out_dir / row.name, row_names, classes, head_config, train_config)
        published = wang_published(row.name, audio_augmented)
        table.append({**_table_row(row.name, row.inputs, "mlp", classes, row_names, metrics, *published,
                                   store.taxonomy.names),
                      "preset": row.preset, "views": ",".join(metrics.get("views", [])) or "-"})
    out_dir.mkdir(parents=True, exist_ok=True)
    augmented = {None: "unknown (no run record of a trained audio extractor in the store): paper column blank",
                 True: "with offline audio augmentation", False: "without audio augmentation"}[audio_augmented]
    published = ["", "Published (Wang et al. 2022, development set, accuracy %):", "",
                 "| Table 1 row | acc | | Table 3 row (fine-tuned FCNN + DenseNet) | acc |", "|---|---|---|---|---|"]
    for k in range(max(len(WANG_TABLE1), len(WANG_TABLE3))):
        left = WANG_TABLE1[k] if k < len(WANG_TABLE1) else ("", "")
        right = WANG_TABLE3[k] if k < len(WANG_TABLE3) else ("", "")
        published.append(f"| {left[0]} | {left[1]} | | {right[0]} | {right[1]} |")
    write_table(table, out_dir, head_config, preset("adam", **train_overrides), store_location,
                note=f"Second paper. The store's audio extractor was trained {augmented}; Table 1 rows are without "
                     f"augmentation, Table 3 rows add fine-tuning of both extractors (not done from the cache). Its "
                     f"final system reaches {WANG_FINAL_SYSTEM_ACCURACY} %.", appendix="\n".join(published))
    return table


def _run_or_reuse(store: EmbeddingStore, store_location: str, folder: Path, names: list[str], classes: str,
                  head: HeadConfig, train_config: TrainConfig) -> dict:
    """A row's metrics (``reused``: True when read back): from ``folder`` when it holds a finished run (its ``complete``
    record, every file unaltered) of this config, store fingerprints and code version
    (:func:`classify.run.run_config`), else trained now; a folder without the record (an older avscene, an interrupted
    run) is trained again."""
    config = run_config(store, names, classes, head, train_config)
    problem = _reuse_problem(folder, config)
    reused = not problem
    if reused:
        logger.info("%s: complete for this config and code version, reused", folder.name)
        metrics = read_json(folder / "metrics.json")
    else:
        logger.info("%s: training %s on %s (not reused: %s)", folder.name, head.kind, "+".join(names), problem)
        _, metrics = run_training(store_location, names, classes, head, train_config, folder)
    return {**metrics, "views": config["views"], "reused": reused}


def _table_row(run: str, inputs: str, kind: str, classes: str, names: list[str], metrics: dict,
               published: float | None, published_source: str, class_sets: tuple[str, ...]) -> dict:
    """One table row; a head on the store's own classes (``class_sets[0]``) is also scored on each grouping."""
    grouped = {f"{g}cls_acc_from_{class_sets[0]}cls_head": _percent(metrics.get("grouped", {}).get(g, {}).get("clip_accuracy"))
               for g in class_sets[1:]}
    return {
        "run": run, "inputs": inputs, "head": kind, "classes": classes, "extractors": "+".join(names),
        "clip_acc_vote": _percent(metrics["clip_accuracy"]),
        "clip_acc_mean_proba": _percent(metrics["clip_accuracy_mean_proba"]),
        "second_acc": _percent(metrics["second_accuracy"]),
        "second_log_loss": round(metrics["second_log_loss"], 4) if metrics["second_log_loss"] is not None else None,
        **grouped,
        "paper_clip_acc": published,
        "paper_row": published_source or None,
        "train_seconds": round(metrics["train_seconds"], 1),
        "reused": "reused" if metrics.get("reused") else "trained",
    }


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100.0 * value, 2)


def write_table(table: list[dict], out_dir: Path, head_config: HeadConfig, train_config: TrainConfig, store: str,
                note: str = "", appendix: str = "") -> None:
    columns = list(table[0])
    with open(out_dir / "ablation.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table)
    header = {"paper_clip_acc": f"{PAPER_SOURCE}: clip acc %"}
    lines = [
        f"Store `{store}`; head {json.dumps(head_config.to_dict())}; training {json.dumps(train_config.to_dict())}.",
        "Accuracies in %, on the eval split's clips (vote = majority of per-second argmaxes). "
        f"Column \"{PAPER_SOURCE}\": the published figure of the row's configuration (`paper_row` says where it is "
        "printed); empty where the paper prints none. `reused`: read back from a finished run of the same config, "
        "store fingerprints and code version; `trained`: trained in this invocation.",
        *([note] if note else []),
        "",
        "| " + " | ".join(header.get(c, c) for c in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join("" if r[c] is None else str(r[c]) for c in columns) + " |" for r in table]
    lines += [appendix] if appendix else []
    (out_dir / "ablation.md").write_text("\n".join(lines) + "\n")
    _bar_plot(table, out_dir / "ablation.png")


def _bar_plot(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(table)), 4.5))
    x = range(len(table))
    ax.bar([i - 0.2 for i in x], [r["clip_acc_vote"] or 0 for r in table], width=0.4, label="ours (clip vote)")
    ax.bar([i + 0.2 for i in x], [r["paper_clip_acc"] or 0 for r in table], width=0.4, label=PAPER_SOURCE)
    ax.set_xticks(list(x), [r["run"] for r in table], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("clip accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
