"""``vadd eval``: train VSC and ASC heads on the train split, pick a threshold on validation, score a test protocol.

The train split is divided (seeded, by recording location) into a fitting part and a validation part.
The visual-only (VSC), audio-only (ASC) and audio-visual (VASC, for the comparison table only) heads are
fitted on the fitting part (with its augmented visual views when ``train.augmented_views``, as the released code's
per-modality classifiers; ``metrics.json`` lists them under ``training_views``); a generated protocol on the validation part chooses the F1-optimal
mismatch-score threshold; the test protocol (generated on the test split, the official lists, or a CSV)
is scored once. No protocol clip is ever used for training or for the threshold.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from classify.data import augmented_views, extraction_coverage, load_clips
from classify.heads import HeadConfig
from classify.kinds import FIRST_PAPER_VIEW_KINDS
from classify.metrics import classification_metrics
from classify.persist import save_head
from classify.run import load_views, write_json
from classify.train import TrainConfig, TrainedHead, train_head
from avscene.progress import progress_bar
from extract.store import EmbeddingStore, UsableClips, report_excluded
from extract.taxonomy import ClassSet
from vadd.official import default_lists_dir, official_protocol
from vadd.protocol import (
    DroppedItem, ProtocolItem, check_protocol_labels, drop_unusable_items, generate_protocol, read_protocol_csv,
    validation_rows, write_protocol_csv,
)
from vadd.report import write_item_scores, write_markdown, write_roc_png, write_second_scores
from vadd.score import ItemScores, ModalityPredictions, f1_optimal_threshold, score_items, vadd_metrics

logger = logging.getLogger(__name__)

DEFAULT_HEAD = HeadConfig(kind="ls")  # the paper's late self-attention head
HEADS_FILE = "heads.json"


@dataclass(frozen=True)
class VaddConfig:
    """One VADD evaluation. ``classes``: a class set of the store's taxonomy ('' = its own classes; TAU: ``10`` or
    ``3``). ``protocol``: ``generated``, ``official`` (lists in ``lists_dir``) or a CSV path."""

    classes: str = ""
    protocol: str = "generated"
    lists_dir: str = ""  # "" = $AVSCENE_SHARED/vadd
    extractors: tuple[str, ...] = ()  # () = every extractor in the store
    head: HeadConfig = field(default_factory=lambda: DEFAULT_HEAD)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(view_kinds=FIRST_PAPER_VIEW_KINDS))  # as `vadd eval`
    validation_fraction: float = 0.2
    seed: int = 0
    strict: bool = False  # a fixed protocol's items naming unusable clips stop the run instead of being dropped

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", str(self.classes))
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["extractors"] = list(self.extractors)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "VaddConfig":
        data = dict(data)
        if "n_classes" in data:  # run folders written before taxonomies: 10 or 3, TAU's class set names
            data["classes"] = str(data.pop("n_classes"))
        data["head"] = HeadConfig.from_dict(data["head"])
        data["train"] = TrainConfig.from_dict(data["train"])
        data["extractors"] = tuple(data["extractors"])
        return cls(**data)


def extractors_by_modality(store: EmbeddingStore, names: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Split the store's (or the given) extractors into visual and audio ones, from their stored specs."""
    out: dict[str, list[str]] = {"visual": [], "audio": []}
    for name in names or store.extractor_names():
        out[store.group_record(name).spec.modality].append(name)
    for modality, found in out.items():
        if not found:
            raise ValueError(f"{store.location}: VADD needs at least one {modality} extractor; found none")
    return out


def fixed_protocol(
    config: VaddConfig, store: EmbeddingStore, classes: ClassSet, usable_test: UsableClips
) -> tuple[list[ProtocolItem] | None, int, list[DroppedItem]]:
    """The official lists or a protocol CSV, checked against the store's test split, without the items naming a clip
    that ``usable_test`` excludes: (kept items, items in the protocol, dropped items); (None, 0, []) for
    ``generated``. A protocol clip absent from the test split stops the run (another dataset's protocol)."""
    if config.protocol == "generated":
        return None, 0, []
    if config.protocol == "official":
        items = official_protocol(Path(config.lists_dir) if config.lists_dir else default_lists_dir(), classes)
    else:
        items = read_protocol_csv(Path(config.protocol))
    needed = {i.video_clip for i in items} | {i.audio_clip for i in items}
    test_ids = set(store.clips.ids[store.clips.splits == "test"].tolist())
    missing = sorted(needed - test_ids)
    if missing:
        elsewhere = [c for c in missing if c in set(store.clips.ids.tolist())]
        hint = (" PROTOCOL=official needs a TAU Urban Audio-Visual Scenes 2021 store whose test split is fold1_evaluate."
                if config.protocol == "official" else "")
        raise ValueError(
            f"{store.location}: {len(missing)} of the {len(needed)} protocol clips are not in the store's test split "
            f"({len(elsewhere)} of them are in another split), e.g. {', '.join(missing[:10])}.{hint}"
        )
    scene_of = dict(zip(store.clips.ids.tolist(), store.clips.labels.tolist()))
    check_protocol_labels(items, scene_of, classes, config.protocol)
    reason_of = {e.clip: e.reason for e in usable_test.excluded}
    kept, dropped = drop_unusable_items(items, reason_of, config.protocol, config.strict)
    return kept, len(items), dropped


def evaluate_vadd(store_location: str, config: VaddConfig, out_dir: Path, allow_incomplete: bool = False) -> dict:
    """Run the VADD evaluation and write its run folder; returns the metrics. A store whose extraction is not complete
    is refused unless ``allow_incomplete`` (then ``metrics["incomplete_extraction"]`` records the class coverage).

    Writes ``protocol.csv`` (explicit items), ``validation_protocol.csv``, ``item_scores.csv``,
    ``second_scores.csv``, ``metrics.json``, ``metrics.md``, ``roc.png``, ``config.json``, and the heads
    ``vsc.pt``/``asc.pt`` with ``heads.json`` (classes, threshold, extractors, fingerprints) for ``vadd check``.
    """
    store = EmbeddingStore.open(store_location)
    class_set = store.taxonomy.class_set(config.classes)
    coverage = extraction_coverage(store, list(config.extractors or store.extractor_names()), "train", allow_incomplete)
    modalities = extractors_by_modality(store, config.extractors)
    # one clip set for every head, the validation protocol and the test protocol: usable for all the extractors
    usable = {split: store.usable_clips(modalities["visual"] + modalities["audio"], split) for split in ("train", "test")}
    excluded = report_excluded(usable["train"].excluded + usable["test"].excluded, store_location, "VADD")
    items, n_protocol_items, dropped = fixed_protocol(config, store, class_set, usable["test"])  # checked before any training
    clips = store.clips
    train_rows = usable["train"].rows
    held = validation_rows(clips.ids[train_rows].tolist(), clips.labels[train_rows].tolist(),
                           config.validation_fraction, config.seed, location_of=store.taxonomy.location)
    validation_ids = set(clips.ids[train_rows][held].tolist())

    heads: dict[str, TrainedHead] = {}
    val_pred: dict[str, ModalityPredictions] = {}
    test_pred: dict[str, ModalityPredictions] = {}
    accuracy: dict[str, float | None] = {}
    training_views: dict[str, list[str]] = {}
    head_bar = progress_bar((("visual", modalities["visual"]), ("audio", modalities["audio"]),
                             ("audio_visual", modalities["visual"] + modalities["audio"])), desc="VADD heads", unit="head")
    for key, names in head_bar:
        head_bar.set_postfix(head=key)
        train = load_clips(store, names, "train", class_set, usable=usable["train"])
        in_val = np.isin(train.ids, list(validation_ids))
        # like the released code's VSC/ASC (2_train_av_classifiers.py, 'data_aug': 1, lines 83-126 and 577-597): the
        # fitting clips plus their augmented visual views when config.train.augmented_views
        fitting = load_views(store, names, "train", class_set, config.train.augmented_views,
                             config.train.view_kinds, rule_extractors=modalities["visual"] + modalities["audio"],
                             original=train)
        training_views[key] = augmented_views(store, names, config.train.view_kinds) if config.train.augmented_views else []
        in_val_views = np.isin([i.split("#", 1)[0] for i in fitting.ids], list(validation_ids))
        head = train_head(fitting.subset(np.flatnonzero(~in_val_views)), config.head, config.train)
        test = load_clips(store, names, "test", class_set, usable=usable["test"])
        accuracy[key] = classification_metrics(head.predict_proba(test), test.mask, test.targets, test.classes)["clip_accuracy"]
        if key != "audio_visual":
            heads[key] = head
            val_pred[key] = ModalityPredictions.from_head(head, train.subset(np.flatnonzero(in_val)))
            test_pred[key] = ModalityPredictions.from_head(head, test)
    classes = heads["visual"].classes

    threshold, validation, validation_items = choose_threshold(store, sorted(validation_ids), val_pred, config, class_set)
    if items is None:
        test_ids = sorted(set(test_pred["visual"].probs) & set(test_pred["audio"].probs))
        label_of = dict(zip(clips.ids.tolist(), clips.labels.tolist()))
        items = generate_protocol(test_ids, [label_of[i] for i in test_ids], class_set, config.seed)
        n_protocol_items = len(items)
    if not any(i.manipulated for i in items):
        raise ValueError(f"{store_location}: the test protocol has no manipulated item (too few test clips of different classes)")
    scores = score_items(items, test_pred["visual"], test_pred["audio"])
    metrics = vadd_metrics(scores, classes, threshold)
    metrics.update({
        "n_classes": len(classes),
        "class_set": class_set.name,
        "classes": list(classes),
        "protocol": config.protocol,
        "store": store_location,
        "extractors": modalities,
        "head_kind": config.head.kind,
        "clip_seconds": int(store.seconds_max),
        "classification_clip_accuracy": {"vsc": accuracy["visual"], "asc": accuracy["audio"], "vasc": accuracy["audio_visual"]},
        "validation": validation,
        "protocol_items": f"{len(items)} of {n_protocol_items} items",
        "dropped_items": [d.to_dict() for d in dropped],
        "excluded_clips": excluded,
        "training_views": training_views,
        "dataset": {"folder": store.data_root, **store.dataset_card.to_dict()},  # travels with the heads (heads.json)
        **({"incomplete_extraction": coverage} if coverage else {}),
    })
    write_run_folder(out_dir, config, store_location, (items, validation_items), scores, metrics, heads, modalities, threshold)
    return metrics


def choose_threshold(
    store: EmbeddingStore, validation_ids: list[str], predictions: dict[str, ModalityPredictions],
    config: VaddConfig, classes: ClassSet,
) -> tuple[float, dict, list[ProtocolItem]]:
    """F1-optimal mismatch threshold on a generated protocol over the held-out part of the train split."""
    label_of = dict(zip(store.clips.ids.tolist(), store.clips.labels.tolist()))
    items = generate_protocol(validation_ids, [label_of[i] for i in validation_ids], classes, config.seed)
    if not any(i.manipulated for i in items):
        raise ValueError(
            f"{store.location}: the validation part of the train split ({len(validation_ids)} clips) is too small to pair "
            f"clips of different classes; raise --validation-fraction (now {config.validation_fraction})"
        )
    scores = score_items(items, predictions["visual"], predictions["audio"])
    truth = np.array([i.manipulated for i in items])
    threshold = f1_optimal_threshold(truth, scores.mismatch)
    found = vadd_metrics(scores, classes.classes, threshold)
    logger.info("threshold %.4f chosen on %d validation items (%d clips)", threshold, len(items), len(validation_ids))
    return threshold, {
        "n_clips": len(validation_ids), "n_items": len(items), "roc_auc": found["mismatch_score"]["roc_auc"],
        "f1_at_threshold": found["mismatch_score"]["f1"],
    }, items


def write_run_folder(
    out_dir: Path, config: VaddConfig, store_location: str, protocols: tuple[list[ProtocolItem], list[ProtocolItem]],
    scores: ItemScores,
    metrics: dict, heads: dict[str, TrainedHead], modalities: dict[str, list[str]], threshold: float,
) -> None:
    """Everything ``vadd eval`` writes (see :func:`evaluate_vadd`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_protocol_csv(out_dir / "protocol.csv", protocols[0])
    write_protocol_csv(out_dir / "validation_protocol.csv", protocols[1])
    classes = heads["visual"].classes
    write_item_scores(out_dir / "item_scores.csv", scores, classes)
    write_second_scores(out_dir / "second_scores.csv", scores)
    write_roc_png(out_dir / "roc.png", scores, threshold, f"VADD {len(classes)}-class, {config.protocol} protocol")
    for key, name in (("visual", "vsc.pt"), ("audio", "asc.pt")):
        save_head(out_dir / name, heads[key])
    write_json(out_dir / HEADS_FILE, {
        "classes": list(classes), "class_set": metrics["class_set"], "threshold": threshold, "dataset": metrics["dataset"],
        "window_seconds": metrics["clip_seconds"],  # `vadd check` applies the heads to windows of the training clips' length
        "threshold_source": f"F1-optimal on a generated protocol over {metrics['validation']['n_clips']} held-out train clips",
        "visual": {"head": "vsc.pt", "extractors": modalities["visual"], "fingerprints": heads["visual"].fingerprints},
        "audio": {"head": "asc.pt", "extractors": modalities["audio"], "fingerprints": heads["audio"].fingerprints},
    })
    write_json(out_dir / "config.json", {
        "store": store_location, **config.to_dict(),
        "rule": "paper: manipulated iff voted visual class != voted audio class; "
                "score: mean over seconds of 1 - sum_c p_visual(c) p_audio(c), manipulated iff score >= threshold",
    })
    write_json(out_dir / "metrics.json", metrics)
    write_markdown(out_dir / "metrics.md", metrics)

