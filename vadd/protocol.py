"""VADD protocols: which video is paired with which audio, and whether that pair is manipulated.

A generated protocol is seeded: the test clips are split (stratified by class) into a pristine and a
manipulated half; manipulated clips are paired across different classes at the chosen granularity and
exchange their audio; every clip is used at most once and pristine and manipulated items are equal in
number. It is written as an explicit CSV, the format the loader reads back.
"""
from __future__ import annotations

import csv
import logging
import math
from collections import defaultdict
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np

from avscene.textfiles import csv_rows
from extract.taxonomy import ClassSet

logger = logging.getLogger(__name__)

PROTOCOL_COLUMNS = ("video_clip", "audio_clip", "video_label", "audio_label", "manipulated")


@dataclass(frozen=True)
class ProtocolItem:
    """One test item: the visual embeddings of ``video_clip`` with the audio embeddings of ``audio_clip``."""

    video_clip: str
    audio_clip: str
    video_label: str
    audio_label: str
    manipulated: bool


def generate_protocol(ids: list[str], scenes: list[str], classes: ClassSet, seed: int = 0) -> list[ProtocolItem]:
    """Balanced pristine/manipulated items from ``ids`` (the test split, dataset labels ``scenes``) at the
    granularity of ``classes``, reproducible for a seed."""
    rng = np.random.default_rng(seed)
    labels = [classes.class_of(s) for s in scenes]
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    # classes one after another, each shuffled; alternating over the whole sequence stratifies the halves
    ordered = [m for label in sorted(by_class) for m in rng.permutation(by_class[label]).tolist()]
    pristine_pool = ordered[0::2]
    manipulated_pool: dict[str, list[int]] = defaultdict(list)
    for i in ordered[1::2]:
        manipulated_pool[labels[i]].append(i)
    pairs = []
    while True:
        ranked = sorted((c for c in manipulated_pool if manipulated_pool[c]), key=lambda c: (-len(manipulated_pool[c]), c))
        if len(ranked) < 2:
            break
        pairs.append((manipulated_pool[ranked[0]].pop(), manipulated_pool[ranked[1]].pop()))
    leftovers = [i for c in sorted(manipulated_pool) for i in manipulated_pool[c]]
    pristine_pool = [pristine_pool[j] for j in rng.permutation(len(pristine_pool))] + leftovers
    items = [
        ProtocolItem(ids[i], ids[i], labels[i], labels[i], False) for i in pristine_pool[: 2 * len(pairs)]
    ]
    for a, b in pairs:
        items.append(ProtocolItem(ids[a], ids[b], labels[a], labels[b], True))
        items.append(ProtocolItem(ids[b], ids[a], labels[b], labels[a], True))
    return items


def validation_rows(ids: list[str], scenes: list[str], fraction: float, seed: int = 0, *,
                    location_of: Callable[[str], str]) -> np.ndarray:
    """Seeded hold-out of about ``fraction`` of each scene's clips, whole recording locations at a time.

    ``location_of`` gives a clip's recording location (the taxonomy's
    :meth:`~extract.taxonomy.Taxonomy.location`; TAU: from the file name).

    Holding out locations (as TAU's train/evaluate split does) keeps the validation part from being
    easier than the test split. Locations are taken in a seeded order while the scene's held-out count
    stays <= ``ceil(fraction * n_scene)``; a scene keeps at least one location for training. A scene where
    no location fits (a single location, as in tiny stores) holds out single clips instead, with a warning.

    Returns:
        bool ``(len(ids),)``, True for validation clips.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held = np.zeros(len(ids), bool)
    by_clip: list[str] = []
    for scene in sorted(set(scenes)):
        rows = [i for i, s in enumerate(scenes) if s == scene]
        by_location: dict[str, list[int]] = defaultdict(list)
        for i in rows:
            by_location[location_of(ids[i])].append(i)
        locations = sorted(by_location)
        target, taken = math.ceil(fraction * len(rows)), 0
        for j in rng.permutation(len(locations))[:-1]:  # the last location of the permutation stays in training
            size = len(by_location[locations[j]])
            if taken + size <= target:
                held[by_location[locations[j]]] = True
                taken += size
        if taken == 0 and len(rows) > 1:  # one location, or every location too big: hold out single clips
            held[rng.permutation(rows)[: min(target, len(rows) - 1)]] = True
            by_clip.append(scene)
    if by_clip:
        logger.warning("validation hold-out by single clips (not whole locations) for %d scenes with too few "
                       "locations: %s", len(by_clip), ", ".join(by_clip))
    return held


def check_protocol_labels(items: list[ProtocolItem], scene_of: dict[str, str], classes: ClassSet, source: str) -> None:
    """Refuse a protocol whose labels disagree with the store's labels at the granularity of ``classes``, or whose
    manipulated item pairs two clips of the same class there (e.g. a 10-class bus/tram swap used for 3 classes).

    Items are numbered from 1 (a protocol CSV's line is the number + 1).
    """
    for number, item in enumerate(items, start=1):
        for clip, label in ((item.video_clip, item.video_label), (item.audio_clip, item.audio_label)):
            expected = classes.class_of(scene_of[clip])
            if label != expected:
                raise ValueError(f"{source}: item {number}: {clip} is labelled {label!r}, the store's label gives "
                                 f"{expected!r} at --classes {classes.name}")
        if item.manipulated and item.video_label == item.audio_label:
            raise ValueError(f"{source}: item {number}: manipulated, but video and audio are both {item.video_label!r} "
                             f"at --classes {classes.name}")


@dataclass(frozen=True)
class DroppedItem:
    """A fixed protocol's item left out because a clip it names is not usable (its embeddings failed)."""

    number: int  # from 1, as in :func:`check_protocol_labels`
    item: ProtocolItem
    reasons: tuple[str, ...]  # per unusable clip: "<clip>: <the store's reason>"

    def to_dict(self) -> dict:
        return {"item": self.number, "video_clip": self.item.video_clip, "audio_clip": self.item.audio_clip,
                "manipulated": self.item.manipulated, "reasons": list(self.reasons)}


def drop_unusable_items(
    items: list[ProtocolItem], excluded_reason: dict[str, str], source: str, strict: bool = False
) -> tuple[list[ProtocolItem], list[DroppedItem]]:
    """Split a fixed protocol into the items whose clips are all usable and the dropped ones.

    ``excluded_reason`` maps each unusable clip of the store's split to why it is excluded. ``strict`` refuses
    any drop instead (all items or nothing).
    """
    kept, dropped = [], []
    for number, item in enumerate(items, start=1):
        reasons = tuple(f"{c}: {excluded_reason[c]}" for c in dict.fromkeys((item.video_clip, item.audio_clip))
                        if c in excluded_reason)
        if reasons:
            dropped.append(DroppedItem(number, item, reasons))
        else:
            kept.append(item)
    if dropped:
        listed = "; ".join(f"item {d.number} ({', '.join(d.reasons)})" for d in dropped[:10])
        if strict:
            raise ValueError(f"{source}: {len(dropped)} of {len(items)} protocol items name clips without embeddings "
                             f"(--strict wants every item): {listed}")
        logger.warning("%s: %d of %d protocol items dropped, they name clips without embeddings: %s%s", source,
                       len(dropped), len(items), listed, " ..." if len(dropped) > 10 else "")
    return kept, dropped


def write_protocol_csv(path: Path, items: list[ProtocolItem]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(PROTOCOL_COLUMNS)
        for item in items:
            row = astuple(item)
            writer.writerow([*row[:4], int(row[4])])


def read_protocol_csv(path: Path) -> list[ProtocolItem]:
    """Read a protocol CSV written by :func:`write_protocol_csv`, rejecting malformed rows by line number."""
    records = csv_rows(path)
    header = next(records, (0, None))[1]
    if header is None or tuple(h.strip() for h in header) != PROTOCOL_COLUMNS:
        raise ValueError(f"{path}: header must be {','.join(PROTOCOL_COLUMNS)}, got {header}")
    items = []
    for line, row in records:
        if not row:
            continue
        if len(row) != len(fields(ProtocolItem)) or row[4] not in ("0", "1") or not all(row[:4]):
            raise ValueError(f"{path}:{line}: expected 4 non-empty names and manipulated 0/1, got {row}")
        if row[4] == "0" and (row[0] != row[1] or row[2] != row[3]):
            raise ValueError(f"{path}:{line}: a pristine row (manipulated 0) must name one clip and one label, got {row}")
        items.append(ProtocolItem(*row[:4], manipulated=row[4] == "1"))
    return items
