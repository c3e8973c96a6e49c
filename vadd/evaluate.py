"""``vadd eval``: train VSC and ASC heads on the train split, calibrate them and choose the verdict rule on validation,
score a test protocol.

The train split is divided (seeded, by recording location) into a fitting part and a validation part.
The visual-only (VSC), audio-only (ASC) and audio-visual (VASC, for the comparison table only) heads are
fitted on the fitting part (with its augmented visual views when ``train.augmented_views``, as the released code's
per-modality classifiers; ``metrics.json`` lists them under ``training_views``). On the validation part each of the
VSC and ASC heads is temperature-scaled (:mod:`classify.calibration`; NLL and ECE before/after in ``metrics.json``),
and a generated protocol chooses the verdict rule (:mod:`vadd.rule`: segment settings, threshold between validation
scores, probability). The test protocol (generated on the test split, the official lists, or a CSV) is scored once.
No protocol clip is ever used for training, calibration or the rule.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from classify.calibration import calibration_report, fit_temperature
from classify.data import ClipSet, augmented_views, extraction_coverage, load_clips
from classify.heads import HeadConfig
from classify.kinds import FIRST_PAPER_VIEW_KINDS
from classify.metrics import classification_metrics
from classify.persist import save_head
from classify.run import load_views, write_json
from classify.train import TrainConfig, TrainedHead, train_head
from avscene.progress import progress_bar
from avscene.run_folder import check_replaceable, run_folder
from extract.store import EmbeddingStore, UsableClips, report_excluded
from extract.taxonomy import ClassSet
from vadd.correspondence import CorrespondenceConfig
from vadd.official import default_lists_dir, official_protocol
from vadd.protocol import (
    DroppedItem, ProtocolItem, check_protocol_labels, drop_unusable_items, generate_protocol, read_protocol_csv,
    validation_rows, write_protocol_csv,
)
from vadd.report import write_item_scores, write_markdown, write_roc_png, write_second_scores, write_segments_csv
from vadd.rule import VerdictRule, choose_rule
from vadd.splice import write_spliced_csv
from vadd.table import TableInputs, append_table, build_table, spliced_protocol
from vadd.score import MISMATCH_DEFINITION, ItemScores, ModalityPredictions, score_items, vadd_metrics

logger = logging.getLogger(__name__)

DEFAULT_HEAD = HeadConfig(kind="ls")  # the paper's late self-attention head
HEADS_FILE = "heads.json"


@dataclass(frozen=True)
class VaddConfig:
    """One VADD evaluation. ``classes``: a class set of the store's taxonomy ('' = its own classes; TAU: ``10`` or
    ``3``). ``protocol``: ``generated``, ``official`` (lists in ``lists_dir``), ``partial``, ``same-class``
    (:mod:`vadd.splice`) or a CSV path (either format). ``correspondence``: the contrastive head of the table."""

    classes: str = ""
    protocol: str = "generated"
    lists_dir: str = ""  # "" = $AVSCENE_SHARED/vadd
    extractors: tuple[str, ...] = ()  # () = every extractor in the store
    head: HeadConfig = field(default_factory=lambda: DEFAULT_HEAD)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(view_kinds=FIRST_PAPER_VIEW_KINDS))  # as `vadd eval`
    validation_fraction: float = 0.2
    seed: int = 0
    strict: bool = False  # a fixed protocol's items naming unusable clips stop the run instead of being dropped
    correspondence: CorrespondenceConfig = field(default_factory=CorrespondenceConfig)

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
        data["correspondence"] = CorrespondenceConfig(**data.get("correspondence", {}))  # absent before the table
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
    ``second_scores.csv``, ``segments.csv`` (the verdict rule's segments of each test item), ``metrics.json``,
    ``metrics.md``, ``roc.png``, ``config.json``, and the heads ``vsc.pt``/``asc.pt`` with ``heads.json`` (classes,
    verdict rule, temperatures, extractors, fingerprints) for ``vadd check``, whole or not at all
    (:func:`avscene.run_folder.run_folder`: ``complete.json`` records every file's digest).
    """
    check_replaceable(out_dir)
    store = EmbeddingStore.open(store_location)
    class_set = store.taxonomy.class_set(config.classes)
    coverage = extraction_coverage(store, list(config.extractors or store.extractor_names()), "train", allow_incomplete)
    modalities = extractors_by_modality(store, config.extractors)
    # one clip set for every head, the validation protocol and the test protocol: usable for all the extractors
    usable = {split: store.usable_clips(modalities["visual"] + modalities["audio"], split) for split in ("train", "test")}
    excluded = report_excluded(usable["train"].excluded + usable["test"].excluded, store_location, "VADD")
    spliced_kind, items, n_protocol_items, dropped = spliced_protocol(config.protocol, store, class_set, usable["test"],
                                                                      config.strict)
    if spliced_kind is None:  # checked before any training
        items, n_protocol_items, dropped = fixed_protocol(config, store, class_set, usable["test"])
    clips = store.clips
    train_rows = usable["train"].rows
    held = validation_rows(clips.ids[train_rows].tolist(), clips.labels[train_rows].tolist(),
                           config.validation_fraction, config.seed, location_of=store.taxonomy.location)
    validation_ids = set(clips.ids[train_rows][held].tolist())

    heads: dict[str, TrainedHead] = {}
    val_pred: dict[str, ModalityPredictions] = {}
    test_pred: dict[str, ModalityPredictions] = {}
    accuracy: dict[str, float | None] = {}
    calibration: dict[str, dict] = {}
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
            val_pred[key], test_pred[key], calibration[key] = calibrated_predictions(
                head, train.subset(np.flatnonzero(in_val)), test)
    every_extractor = (train, test)  # the last head's splits read every extractor: the protocol table reuses them
    classes = heads["visual"].classes

    rule, validation, validation_items = choose_verdict_rule(store, sorted(validation_ids), val_pred, config, class_set)
    given = {spliced_kind: items} if spliced_kind and items is not None else {}
    if items is None and spliced_kind is None:
        test_ids = sorted(set(test_pred["visual"].probs) & set(test_pred["audio"].probs))
        label_of = dict(zip(clips.ids.tolist(), clips.labels.tolist()))
        items = generate_protocol(test_ids, [label_of[i] for i in test_ids], class_set, config.seed)
        n_protocol_items = len(items)
    if items is not None and not any(i.manipulated for i in items):
        raise ValueError(f"{store_location}: the test protocol has no manipulated item (too few test clips of different classes)")
    official = items if config.protocol == "official" else official_or_reason(config, store, class_set, usable["test"])
    table = build_table(TableInputs(store, class_set, modalities, usable, validation_ids, validation_items,
                                    {"generated": items if config.protocol == "generated" else None, "official": official},
                                    *every_extractor, config.seed, config.correspondence),
                        heads, {m: val_pred[m].temperature for m in heads}, given)
    if spliced_kind:  # the run's own items and scores are the table's row of that protocol
        if spliced_kind not in table.items:
            raise ValueError(f"{store_location}: no {spliced_kind} protocol: "
                             f"{table.report['protocols'][spliced_kind]['unavailable']}")
        items = table.items[spliced_kind]
        n_protocol_items = n_protocol_items or len(items)
        scores = table.evidence[spliced_kind].item_scores()
    else:
        scores = score_items(items, test_pred["visual"], test_pred["audio"])
    metrics = vadd_metrics(scores, classes, rule)
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
        "calibration": calibration,
        "validation": validation,
        "protocol_items": f"{len(items)} of {n_protocol_items} items",
        "dropped_items": [d.to_dict() for d in dropped],
        "excluded_clips": excluded,
        "training_views": training_views,
        "dataset": {"folder": store.data_root, **store.dataset_card.to_dict()},  # travels with the heads (heads.json)
        "protocol_table": table.report,
        **({"incomplete_extraction": coverage} if coverage else {}),
    })
    with run_folder(out_dir) as folder:  # the previous run stays whole until this one is
        write_run_folder(folder, config, store_location, (items, validation_items), scores, metrics, heads, modalities,
                         rule)
    return metrics


def official_or_reason(config: VaddConfig, store: EmbeddingStore, classes: ClassSet, usable_test: UsableClips
                       ) -> list[ProtocolItem] | str:
    """The official protocol's usable items for the table, or why this store has none (not TAU, no lists)."""
    try:
        return fixed_protocol(replace(config, protocol="official"), store, classes, usable_test)[0]
    except (ValueError, OSError) as err:
        return str(err).split(" e.g. ")[0].rstrip(" ,")


def calibrated_predictions(
    head: TrainedHead, validation: ClipSet, test: ClipSet
) -> tuple[ModalityPredictions, ModalityPredictions, dict]:
    """The head's validation and test predictions with the temperature fitted on the validation clips, and its NLL
    and ECE on both before and after."""
    val_pred = ModalityPredictions.from_head(head, validation)
    val_logits = np.stack([val_pred.logits[c] for c in validation.ids])
    temperature = fit_temperature(val_logits, validation.mask, validation.targets)
    val_pred.temperature = temperature
    test_pred = ModalityPredictions.from_head(head, test, temperature)
    test_logits = np.stack([test_pred.logits[c] for c in test.ids]) if len(test) else np.zeros((0, 0, len(head.classes)))
    report = {"temperature": temperature, "validation": calibration_report(val_logits, validation.mask, validation.targets,
                                                                           temperature),
              "test": calibration_report(test_logits, test.mask, test.targets, temperature)}
    logger.info("temperature %.3f: validation NLL %.4f -> %.4f, ECE %.4f -> %.4f", temperature,
                report["validation"]["nll_before"], report["validation"]["nll_after"],
                report["validation"]["ece_before"], report["validation"]["ece_after"])
    return val_pred, test_pred, report


def choose_verdict_rule(
    store: EmbeddingStore, validation_ids: list[str], predictions: dict[str, ModalityPredictions],
    config: VaddConfig, classes: ClassSet,
) -> tuple[VerdictRule, dict, list[ProtocolItem]]:
    """The verdict rule (:func:`vadd.rule.choose_rule`) on a generated protocol over the held-out part of the train
    split; also the validation figures of the mismatch score and the paper rule."""
    label_of = dict(zip(store.clips.ids.tolist(), store.clips.labels.tolist()))
    items = generate_protocol(validation_ids, [label_of[i] for i in validation_ids], classes, config.seed)
    if not any(i.manipulated for i in items):
        raise ValueError(
            f"{store.location}: the validation part of the train split ({len(validation_ids)} clips) is too small to pair "
            f"clips of different classes; raise --validation-fraction (now {config.validation_fraction})"
        )
    scores = score_items(items, predictions["visual"], predictions["audio"])
    truth = np.array([i.manipulated for i in items])
    rule, chosen = choose_rule(scores.per_second, truth, config.seed)
    found = vadd_metrics(scores, classes.classes, rule)
    logger.info("verdict rule threshold %.4f nats chosen on %d validation items (%d clips)", rule.threshold, len(items),
                len(validation_ids))
    return rule, {
        "n_clips": len(validation_ids), "n_items": len(items), "roc_auc": found["mismatch_score"]["roc_auc"],
        "f1_at_threshold": found["mismatch_score"]["f1"], "paper_rule_f1": found["paper_rule"]["f1"], "choice": chosen,
    }, items


def write_run_folder(
    out_dir: Path, config: VaddConfig, store_location: str, protocols: tuple[list[ProtocolItem], list[ProtocolItem]],
    scores: ItemScores,
    metrics: dict, heads: dict[str, TrainedHead], modalities: dict[str, list[str]], rule: VerdictRule,
) -> None:
    """Everything ``vadd eval`` writes (see :func:`evaluate_vadd`) into the existing folder ``out_dir``."""
    (write_protocol_csv if isinstance(protocols[0][0], ProtocolItem) else write_spliced_csv)(out_dir / "protocol.csv",
                                                                                             protocols[0])
    write_protocol_csv(out_dir / "validation_protocol.csv", protocols[1])
    classes = heads["visual"].classes
    write_item_scores(out_dir / "item_scores.csv", scores, classes, rule)
    write_second_scores(out_dir / "second_scores.csv", scores)
    write_segments_csv(out_dir / "segments.csv", scores, rule)
    write_roc_png(out_dir / "roc.png", scores, rule, f"VADD {len(classes)}-class, {config.protocol} protocol")
    for key, name in (("visual", "vsc.pt"), ("audio", "asc.pt")):
        save_head(out_dir / name, heads[key])
    write_json(out_dir / HEADS_FILE, {
        "classes": list(classes), "class_set": metrics["class_set"], "dataset": metrics["dataset"],
        "window_seconds": metrics["clip_seconds"],  # `vadd check` applies the heads to windows of the training clips' length
        "score": MISMATCH_DEFINITION, "rule": rule.to_dict(), "threshold": rule.threshold,
        "threshold_source": f"F1-best midpoint between validation scores of a generated protocol over "
                            f"{metrics['validation']['n_clips']} held-out train clips",
        "visual": {"head": "vsc.pt", "extractors": modalities["visual"], "fingerprints": heads["visual"].fingerprints,
                   "temperature": metrics["calibration"]["visual"]["temperature"]},
        "audio": {"head": "asc.pt", "extractors": modalities["audio"], "fingerprints": heads["audio"].fingerprints,
                  "temperature": metrics["calibration"]["audio"]["temperature"]},
    })
    write_json(out_dir / "config.json", {
        "store": store_location, **config.to_dict(),
        "rule": "paper: manipulated iff voted visual class != voted audio class; "
                f"verdict rule: {MISMATCH_DEFINITION}; manipulated iff a segment passes the validation threshold",
    })
    write_json(out_dir / "metrics.json", metrics)
    write_markdown(out_dir / "metrics.md", metrics)
    append_table(out_dir / "metrics.md", metrics["protocol_table"], metrics["dataset"].get("synthetic"))
