"""Builds ``vadd eval``'s protocol x score table (:mod:`vadd.compare`) from the run's trained heads.

The correspondence head is trained here on the fitting part of the train split (pristine clips; never a
validation or test clip); the verdict rules and the fusion are chosen on the run's generated validation protocol;
then each protocol of :data:`vadd.compare.TABLE_PROTOCOLS` is assembled from the test split and scored once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from classify.data import ClipSet
from classify.train import TrainedHead
from extract.store import EmbeddingStore, UsableClips
from extract.taxonomy import ClassSet
from vadd.compare import Evidence, choose_rules, gather_evidence, kinds_count, protocol_scores, table_markdown
from vadd.correspondence import CorrespondenceConfig, train_correspondence
from vadd.protocol import DroppedItem, ProtocolItem, generate_protocol
from vadd.splice import (
    SPLICED_KINDS, SplicedItem, clip_infos, clips_of, from_protocol_items, generate_partial, generate_same_class,
    is_spliced_csv, read_spliced_csv, same_location_items,
)

logger = logging.getLogger(__name__)


@dataclass
class ProtocolTable:
    """Each protocol's items and evidence, and the report for ``metrics.json``."""

    items: dict[str, list[SplicedItem]] = field(default_factory=dict)
    evidence: dict[str, Evidence] = field(default_factory=dict)
    report: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TableInputs:
    """What the run already has: the store, its class set and extractors, the usable clips, the validation hold-out
    and its protocol, the test protocols given as whole-clip items (None = to generate; a str = why unavailable)."""

    store: EmbeddingStore
    class_set: ClassSet
    modalities: dict[str, list[str]]
    usable: dict[str, UsableClips]
    validation_ids: set[str]
    validation_items: list[ProtocolItem]
    fixed: dict[str, list[ProtocolItem] | str]  # "generated" / "official" -> items, or why not
    train: ClipSet  # the train and test splits of every extractor (visual then audio), as the run loaded them
    test: ClipSet
    seed: int = 0
    correspondence: CorrespondenceConfig = CorrespondenceConfig()


def build_table(inputs: TableInputs, heads: dict[str, TrainedHead], temperatures: dict[str, float],
                given: dict[str, list[SplicedItem]] | None = None) -> ProtocolTable:
    """Train the correspondence head, choose the rules on validation, score every protocol.

    ``given``: a partial or same-class protocol read from a CSV, by kind (it replaces the generated one).
    """
    store, train = inputs.store, inputs.train
    in_val = np.isin(train.ids, list(inputs.validation_ids))
    correspondence = train_correspondence(train.subset(np.flatnonzero(~in_val)), inputs.modalities,
                                          store.taxonomy.location, inputs.correspondence)
    window_s = int(store.seconds_max)
    validation = train.subset(np.flatnonzero(in_val))
    val_items = from_protocol_items(inputs.validation_items, clip_infos(validation, store.taxonomy.location))
    val_evidence = gather_evidence(val_items, validation, window_s, heads, temperatures, correspondence)
    chosen = choose_rules(val_evidence, inputs.seed)
    test = inputs.test
    infos = clip_infos(test, store.taxonomy.location)
    table = ProtocolTable(report={
        "validation": {"n_items": len(val_items), **chosen.report},
        "correspondence": {**inputs.correspondence.to_dict(), "n_train_clips": int((~in_val).sum()),
                           "infonce_loss_by_epoch": [round(x, 4) for x in correspondence.history]},
        "protocols": {},
    })
    for protocol, items, note in _protocols(inputs, test, infos, given or {}):
        if isinstance(items, str):
            table.report["protocols"][protocol] = {"unavailable": items}
            continue
        evidence = gather_evidence(items, test, window_s, heads, temperatures, correspondence)
        table.items[protocol], table.evidence[protocol] = items, evidence
        table.report["protocols"][protocol] = {
            "n_items": len(items), "n_manipulated": int(evidence.truth.sum()), "kinds": kinds_count(items),
            "scores": protocol_scores(evidence, chosen), **({"note": note} if note else {}),
        }
    return table


def _protocols(inputs: TableInputs, test: ClipSet, infos: dict, given: dict[str, list[SplicedItem]]):
    """(name, items or why unavailable, note) for each protocol of the table."""
    generated = inputs.fixed.get("generated")
    if generated is None:
        order = np.argsort(test.ids)
        generated = generate_protocol(test.ids[order].tolist(), test.scene_labels[order].tolist(), inputs.class_set,
                                      inputs.seed)
    yield "generated", _checked(from_protocol_items(generated, infos)), ""
    official = inputs.fixed.get("official", "not requested")
    yield "official", official if isinstance(official, str) else _checked(from_protocol_items(official, infos)), ""
    yield "partial", _checked(given.get("partial") or generate_partial(infos, inputs.seed)), ""
    same_class = given.get("same-class") or generate_same_class(infos, inputs.seed)
    same_place = same_location_items(same_class)
    note = (f"{same_place} of its manipulated items pair two clips of one recording location (their class has a "
            "single location in the test split)") if same_place else ""
    yield "same-class", _checked(same_class), note


def _checked(items: list[SplicedItem]) -> list[SplicedItem] | str:
    """``items``, or why they cannot be scored (no manipulated or no pristine item)."""
    truth = [i.manipulated for i in items]
    if not any(truth) or all(truth):
        return f"{len(items)} items, {sum(truth)} manipulated: the test split is too small for this protocol"
    return items


def spliced_protocol(protocol: str, store: EmbeddingStore, classes: ClassSet, usable_test: UsableClips,
                     strict: bool = False) -> tuple[str | None, list[SplicedItem] | None, int, list[DroppedItem]]:
    """Which spliced protocol ``--protocol`` names: (kind, items read from a spliced CSV or None to generate, items
    in the CSV, dropped items); (None, None, 0, []) for the whole-clip protocols and their CSVs.

    A CSV's clips must be in the store's test split and its labels the store's at ``classes``; items naming a clip
    ``usable_test`` excludes are dropped (``strict``: refused).
    """
    if protocol in SPLICED_KINDS:
        return protocol, None, 0, []
    path = Path(protocol)
    if protocol in ("generated", "official") or not path.is_file() or not is_spliced_csv(path):
        return None, None, 0, []
    items = read_spliced_csv(path)
    if not items:
        raise ValueError(f"{path}: no items")
    split_of = dict(zip(store.clips.ids.tolist(), store.clips.splits.tolist()))
    scene_of = dict(zip(store.clips.ids.tolist(), store.clips.labels.tolist()))
    for number, item in enumerate(items, start=1):
        for span in item.spans:
            for clip, label in ((span.video_clip, span.video_label), (span.audio_clip, span.audio_label)):
                if split_of.get(clip) != "test":
                    raise ValueError(f"{path}: item {number}: {clip} is not in the store's test split")
                if classes.class_of(scene_of[clip]) != label:
                    raise ValueError(f"{path}: item {number}: {clip} is labelled {label!r}, the store's label gives "
                                     f"{classes.class_of(scene_of[clip])!r} at --classes {classes.name}")
    reason_of = {e.clip: e.reason for e in usable_test.excluded}
    kept, dropped = [], []
    for number, item in enumerate(items, start=1):
        reasons = tuple(f"{c}: {reason_of[c]}" for c in sorted(clips_of([item])) if c in reason_of)
        if reasons:
            dropped.append(DroppedItem(number, item, reasons))
        else:
            kept.append(item)
    if dropped and strict:
        raise ValueError(f"{path}: {len(dropped)} of {len(items)} protocol items name clips without embeddings "
                         f"(--strict wants every item), e.g. item {dropped[0].number} ({', '.join(dropped[0].reasons)})")
    kind = "same-class" if any(i.kind == "same-class" for i in items) else "partial"
    return kind, kept, len(items), dropped


def append_table(path: Path, report: dict, synthetic: bool | None) -> None:
    """Add the protocol x score table to a run's ``metrics.md``."""
    with open(path, "a") as f:
        f.write("\n".join(table_markdown(report, synthetic)) + "\n")
