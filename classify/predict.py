"""Scoring a split with a trained head in the DCASE 2021 Task 1B output format (works on unlabeled splits)."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from classify.data import load_clips
from classify.metrics import clip_mean_proba
from classify.persist import load_head
from extract.store import EmbeddingStore, report_excluded
from extract.taxonomy import ClassSet

logger = logging.getLogger(__name__)


def write_dcase_csv(path: Path, filenames: list[str], clip_probs: np.ndarray, classes: tuple[str, ...]) -> None:
    """Tab-separated ``filename``, ``scene_label`` (argmax), one probability column per class; one row per clip."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["filename", "scene_label", *classes])
        for name, p in zip(filenames, clip_probs):
            writer.writerow([name, classes[int(p.argmax())], *(f"{v:.6f}" for v in p)])


def predict_split(model_path: Path, store_location: str, split: str | None, out_path: Path) -> tuple[int, list[dict]]:
    """Score every usable clip of ``split`` (None = all) with the head at ``model_path``; returns the number of rows
    and the excluded clips (as :func:`~extract.store.report_excluded` lists them).

    A clip's probabilities are the mean over its valid seconds; ``filename`` is the clip's video path in the store
    (its id when the store has none).
    """
    trained = load_head(model_path)
    store = EmbeddingStore.open(store_location)
    class_set = store.taxonomy.class_set_with(trained.classes)
    if store.classes and class_set is None:
        raise ValueError(f"{store_location}: no class set of the store ({', '.join(store.taxonomy.names)}) has the "
                         f"head's classes {trained.classes}")
    clips = load_clips(store, trained.extractors, split, class_set or ClassSet("", trained.classes, {}))
    excluded = report_excluded(clips.excluded, store_location, f"the predictions of split {split}")
    probs = trained.predict_proba(clips)
    table = store.clips
    video_of = dict(zip(table.ids, table.video_paths))
    filenames = [video_of.get(c) or str(c) for c in clips.ids]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_dcase_csv(out_path, filenames, clip_mean_proba(probs, clips.mask), trained.classes)
    logger.info("%d clips of split %s scored into %s", len(clips), split, out_path)
    return len(clips), excluded
