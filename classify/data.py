"""Stage-2 input: a split of the store in RAM, as labelled (clips, seconds, features) arrays."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from extract.manifest import IOV_CLASSES, SCENE_TO_IOV
from extract.store import EmbeddingStore

ClassCount = Literal[10, 3]


@dataclass
class ClipSet:
    """Clips of one split with per-extractor features ``(n, T, D)`` float32 and a joint mask ``(n, T)``."""

    ids: np.ndarray
    scene_labels: np.ndarray  # (n,) str, the store's labels
    targets: np.ndarray  # (n,) int64 index into ``classes`` (-1 when unlabeled)
    classes: tuple[str, ...]
    features: dict[str, np.ndarray]
    mask: np.ndarray
    fingerprints: dict[str, str]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: np.ndarray) -> "ClipSet":
        return ClipSet(
            self.ids[rows], self.scene_labels[rows], self.targets[rows], self.classes,
            {k: v[rows] for k, v in self.features.items()}, self.mask[rows], self.fingerprints,
        )


def class_names(store_classes: tuple[str, ...], n_classes: int) -> tuple[str, ...]:
    """10 = the store's scene classes; 3 = indoor/outdoor/vehicle."""
    if n_classes == 3:
        return IOV_CLASSES
    if n_classes != len(store_classes):
        raise ValueError(f"CLASSES must be 3 or {len(store_classes)} (the store's classes), got {n_classes}")
    return store_classes


def encode_labels(scene_labels: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """Scene labels -> class indexes (mapping scenes to indoor/outdoor/vehicle for 3 classes)."""
    mapped = [SCENE_TO_IOV.get(s, "") if classes == IOV_CLASSES else s for s in scene_labels]
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(s, -1) for s in mapped], dtype=np.int64)


def load_clips(store: EmbeddingStore, extractors: list[str], split: str | None, n_classes: int) -> ClipSet:
    """Load ``split`` for ``extractors`` in one pass; only clips every extractor embedded are kept."""
    data = store.load_split(extractors, split)
    classes = class_names(store.classes, n_classes)
    mask = np.logical_and.reduce([data.valid[n] for n in extractors])
    return ClipSet(
        ids=data.ids,
        scene_labels=data.labels,
        targets=encode_labels(data.labels, classes),
        classes=classes,
        features={n: data.embeddings[n].astype(np.float32) for n in extractors},
        mask=mask,
        fingerprints=data.fingerprints,
    )
