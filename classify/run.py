"""One training run: load the cache, train on the train split, score the test split, write a run folder."""
from __future__ import annotations

import hashlib
import json
import logging
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from classify.data import ClipSet, augmented_views, extraction_coverage, load_clips
from classify.heads import HeadConfig
from classify.metrics import classification_metrics, save_confusion_png, write_predictions_csv
from classify.persist import save_head
from classify.train import TrainConfig, TrainedHead, train_head
from avscene.run_folder import check_replaceable, run_folder
from avscene.textfiles import read_json
from extract.store import DEFAULT_VIEW, EmbeddingStore, report_excluded
from extract.taxonomy import ClassSet

logger = logging.getLogger(__name__)


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_views(store: EmbeddingStore, names: list[str], split: str, classes: ClassSet, with_augmented: bool,
               kinds: tuple[str, ...] = (), rule_extractors: list[str] | None = None,
               original: ClipSet | None = None) -> ClipSet:
    """``split`` from the ``original`` view, plus the augmented visual views (of ``kinds``, default all) when
    ``with_augmented``: the clips usable for ``names`` (or for ``rule_extractors``, a superset, e.g. every extractor of
    a VADD run) in every one of these views. ``original``: the split's original view as the caller already loaded it
    (same extractors and classes); its rows are reused, not read from the store again."""
    views = augmented_views(store, names, kinds) if with_augmented else []
    usable = store.usable_clips(rule_extractors or names, split, (DEFAULT_VIEW, *views))  # one clip set for every view
    if original is None:
        parts = [load_clips(store, names, split, classes, usable=usable)]
    else:
        parts = [original.subset(np.flatnonzero(np.isin(original.ids, store.clips.ids[usable.rows])))]
    parts += [load_clips(store, names, split, classes, v, usable=usable) for v in views]
    if views:
        logger.info("%s: %d clips from original + %d augmented view(s) %s", split, len(parts[0]), len(views), views)
    return ClipSet.concat(parts) if len(parts) > 1 else parts[0]


@lru_cache(maxsize=1)
def recorded_store(run_dir: Path) -> str | None:
    """The store a run folder's head was trained on (its ``config.json``); None when the folder records none."""
    config = Path(run_dir) / "config.json"
    if not config.is_file():
        return None
    return read_json(config).get("store") or None


def code_version() -> str:
    """sha256 (first 16 hex digits) of the source of the ``classify`` package, which trains and scores every head:
    a run recorded under another code version is never reused."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def run_config(
    store: EmbeddingStore,
    names: list[str],
    classes: str | int,
    head_config: HeadConfig,
    train_config: TrainConfig,
    train_split: str = "train",
    eval_split: str = "test",
) -> dict:
    """Everything that determines a run's results (written as config.json; equal dicts = same run).

    ``classes``: a class set of the store's taxonomy by name ('' = the store's own classes)."""
    return {
        "code_version": code_version(),
        "store": store.location, "extractors": list(names),
        "fingerprints": {n: store.group_record(n).fingerprint for n in names},
        "views": augmented_views(store, names, train_config.view_kinds) if train_config.augmented_views else [],
        "class_set": store.taxonomy.class_set(classes).name, "head": head_config.to_dict(), "train": train_config.to_dict(),
        "train_split": train_split, "eval_split": eval_split,
    }


def grouped_probs(probs: np.ndarray, classes: tuple[str, ...], grouping: ClassSet) -> np.ndarray:
    """Map probabilities over the dataset's ``classes`` ``(n, T, K)`` to ``grouping``'s groups ``(n, T, G)`` by
    summing the classes of each group."""
    out = np.zeros((*probs.shape[:-1], len(grouping.classes)), dtype=probs.dtype)
    for k, label in enumerate(classes):
        out[..., grouping.classes.index(grouping.class_of(label))] += probs[..., k]
    return out


def run_training(
    store_location: str,
    extractors: list[str] | None,
    classes: str | int,
    head_config: HeadConfig,
    train_config: TrainConfig,
    out_dir: Path,
    train_split: str = "train",
    eval_split: str = "test",
    allow_incomplete: bool = False,
) -> tuple[TrainedHead, dict]:
    """Train on ``train_split`` (and its augmented views) and evaluate on ``eval_split``; returns head and metrics.
    The run folder ``out_dir`` is written whole (:func:`avscene.run_folder.run_folder`) or not at all.

    ``classes`` names a class set of the store's taxonomy ('' = the store's own classes). A head trained on the
    store's own classes is also scored on each grouping (``metrics["grouped"][name]``), its probabilities summed
    per group. A store whose extraction is not complete is refused unless ``allow_incomplete`` (then
    ``metrics["incomplete_extraction"]`` records the class coverage)."""
    store = EmbeddingStore.open(store_location)
    names = extractors or store.extractor_names()
    if not names:
        raise ValueError(f"{store_location} has no extractor embeddings yet; run `make extract` first")
    check_replaceable(out_dir)
    class_set = store.taxonomy.class_set(classes)
    coverage = extraction_coverage(store, names, train_split, allow_incomplete)
    config = run_config(store, names, class_set.name, head_config, train_config, train_split, eval_split)
    started = time.perf_counter()
    train = load_views(store, names, train_split, class_set, train_config.augmented_views, train_config.view_kinds)
    test = load_views(store, names, eval_split, class_set, train_config.evaluate_augmented_views, train_config.view_kinds)
    load_s = time.perf_counter() - started
    trained = train_head(train, head_config, train_config)
    train_s = time.perf_counter() - started - load_s
    probs = trained.predict_proba(test)
    metrics = classification_metrics(probs, test.mask, test.targets, test.classes)
    if class_set.name == store.taxonomy.own_name:
        metrics["grouped"] = {
            g.name: classification_metrics(grouped_probs(probs, test.classes, g), test.mask, g.encode(test.scene_labels),
                                           g.classes)
            for g in map(store.taxonomy.class_set, store.taxonomy.names[1:])
        }
    excluded = report_excluded(train.excluded + test.excluded, store_location, f"training on {'+'.join(names)}")
    metrics.update({"n_train_clips": len(train), "load_seconds": load_s, "train_seconds": train_s,
                    "train_history": trained.history, "excluded_clips": excluded,
                    **({"incomplete_extraction": coverage} if coverage else {})})

    with run_folder(out_dir) as folder:  # the previous run stays whole until this one is
        write_json(folder / "config.json", {**config, "classes": list(trained.classes), "modalities": train.modalities})
        save_head(folder / "model.pt", trained)
        write_predictions_csv(folder / "predictions.csv", test.ids, probs, test.mask, test.classes)
        if metrics["n_clips"]:
            save_confusion_png(np.array(metrics["confusion_vote"]), test.classes, folder / "confusion.png",
                               f"{head_config.kind}: {'+'.join(names)} ({len(class_set.classes)} classes)")
        write_json(folder / "metrics.json", metrics)
    logger.info("clip accuracy %.4f, second accuracy %.4f on %d %s clips",
                metrics["clip_accuracy"] or 0, metrics["second_accuracy"] or 0, metrics["n_clips"], eval_split)
    return trained, metrics
